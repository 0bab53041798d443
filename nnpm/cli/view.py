"""`nnpm view NAME[==VER]`: open an installed model's graph in Netron, served on 127.0.0.1 and kept offline.

Netron (the optional `nnpm[view]` extra) is imported inside the command only. Its Python
server fetches nothing; its page, though, asks ipinfo.io for the country (to decide on a
cookie banner) and sends Google Analytics events from a packaged release. nnpm serves that
page with a Content-Security-Policy header that allows nothing but the local server, so
the browser refuses every such request, and with Netron's own `consent` cookie set, so
the banner about those reports (which cannot leave) is not shown.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional

import typer

from nnpm.cli.common import ENV

if TYPE_CHECKING:
    from nnpm.install.env import Environment, InstalledPackage

HOST = "127.0.0.1"
# Only the local server: fetch/XHR/beacons, scripts, images, fonts, frames; inline styles and data:/blob: URLs
# (Netron draws and exports graphs with them) stay allowed.
CSP = "default-src 'self' 'unsafe-inline' data: blob:; form-action 'none'; base-uri 'none'"
NEEDS_NETRON = "nnpm view needs Netron: pip install 'nnpm[view]'"


def view(
    spec: str = typer.Argument(..., metavar="NAME[==VER]", help="An installed package (NAME, NAME==VER or NAME:GRAPH)."),
    env: Optional[str] = ENV,
    graph: Optional[str] = typer.Option(None, "--graph", help="Which graph of a package of several (default: the first)."),
    variant: Optional[str] = typer.Option(None, "--variant", help="Which variant (default: the one installed)."),
    port: Optional[int] = typer.Option(None, "--port", "-p", min=1, max=65535,
                                       help="Port on 127.0.0.1 (default: a free one)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Print the address only; open no browser."),
) -> None:
    """Open an installed model in Netron, served on 127.0.0.1 until Ctrl-C."""
    from nnpm.cli.output import literal

    netron = import_netron()
    path, note = graph_file(spec, env=env, graph=graph, variant=variant)
    if note:
        print(literal(note), flush=True)
    address = serve(netron, path, port)
    url = f"http://{address[0]}:{address[1]}"
    print(f"Netron: {url}  (Ctrl-C to stop)", flush=True)
    if not no_browser and has_display():
        import webbrowser

        webbrowser.open(url)
    wait(netron, address)


def import_netron() -> ModuleType:
    """The netron package, or ConfigError saying how to install the extra."""
    from nnpm.errors import ConfigError

    try:
        import netron
        import netron.server
    except ImportError:
        raise ConfigError(NEEDS_NETRON) from None
    return netron


def graph_file(spec: str, *, env: str | None = None, graph: str | None = None,
               variant: str | None = None) -> tuple[Path, str]:
    """The verified .onnx file to show for a spec, and a note (which graph of several) or ''."""
    from nnpm.errors import ManifestError
    from nnpm.format.spec import parse_spec
    from nnpm.install.env import open_env

    parsed = parse_spec(spec)
    if parsed.is_path:
        raise ManifestError(f"nnpm view opens an installed package, and {spec!r} is a path",
                            hint="install it first ('nnpm install PATH'), or open the .onnx file with 'netron FILE'")
    if graph and parsed.graph and graph != parsed.graph:
        raise ManifestError(f"two graphs asked for: {parsed.graph!r} (in {spec!r}) and --graph {graph!r}")
    environment = open_env(env)
    pkg = environment.matching(parsed)
    pkg.verify()
    if pkg.manifest.project.pipeline:
        return _pipeline_graph(pkg, environment, graph or parsed.graph, variant), ""
    return _model_graph(pkg, environment, graph or parsed.graph, variant)


def _model_graph(pkg: "InstalledPackage", environment: "Environment", graph: str | None,
                 variant: str | None) -> tuple[Path, str]:
    from nnpm.errors import ManifestError, NotInstalledError

    manifest = pkg.manifest
    if variant is not None and variant != pkg.variant:
        if variant not in manifest.variant_names():
            raise ManifestError(f"{pkg.name} {pkg.version} has no variant {variant!r}",
                                hint="its variants: " + ", ".join(manifest.variant_names()))
        raise NotInstalledError(f"{pkg.name} {pkg.version} is installed as variant {pkg.variant!r}, not {variant!r}",
                                hint=f"run '{environment.install_command(f'{pkg.name}=={pkg.version}')} "
                                     f"--variant {variant}'")
    names = manifest.graph_names()
    if graph is not None and graph not in names:
        raise ManifestError(f"{pkg.name} has no graph {graph!r}", hint="its graphs: " + ", ".join(names))
    chosen = graph or names[0]
    note = ""
    if graph is None and len(names) > 1:
        note = f"{pkg.name} has {len(names)} graphs ({', '.join(names)}): showing {chosen!r}; --graph picks another"
    entry = manifest.graph(pkg.variant, chosen)
    return pkg.path / entry.file, note


def _pipeline_graph(pkg: "InstalledPackage", environment: "Environment", graph: str | None,
                    variant: str | None) -> Path:
    """A pipeline's fused graph (built and cached on first use, as `nnpm run` does)."""
    from nnpm.errors import ManifestError
    from nnpm.runtime.fusion import fused_path

    if graph is not None or variant not in (None, "reference"):
        what = f"graph {graph!r}" if graph is not None else f"variant {variant!r}"
        steps = ", ".join(pkg.manifest.project.pipeline.steps)
        raise ManifestError(f"{pkg.name} is a pipeline; it has no {what} to show",
                            hint=f"'nnpm view {pkg.name}' shows it fused; a step is its own package (steps: {steps})")
    return fused_path(pkg, environment)


def serve(netron: ModuleType, path: Path, port: int | None) -> tuple[str, int]:
    """Start Netron's server for one file on 127.0.0.1 (a free port when `port` is None); (host, port)."""
    import errno
    import logging

    from nnpm.errors import ConfigError

    logging.getLogger("netron").setLevel(logging.WARNING)   # nnpm prints the address itself
    server = netron.server
    base = getattr(server, "_HTTPRequestHandler", None)
    if base is None:
        raise ConfigError(f"nnpm view cannot keep Netron {getattr(netron, '__version__', '?')} offline "
                          "(its server has changed)", hint="pip install 'netron>=7,<10'")
    server._HTTPRequestHandler = _offline(base)   # read once, when serve() makes its server thread
    try:
        host, bound = netron.serve(str(path), None, address=(HOST, port), browse=False)
    except OSError as exc:
        if port is not None and exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {HOST} is in use",
                              hint="pick another --port, or leave it out for a free one") from None
        raise
    finally:
        server._HTTPRequestHandler = base
    return host, bound


def _offline(base: type) -> type:
    """Netron's request handler, answering with the CSP that keeps the page off the network."""

    class OfflineHandler(base):  # type: ignore[misc, valid-type]
        def end_headers(self) -> None:
            self.send_header("Content-Security-Policy", CSP)
            if self.path.split("?")[0] in ("/", "/index.html"):
                self.send_header("Set-Cookie", "consent=1; Path=/; Max-Age=2592000; SameSite=Strict")
            super().end_headers()

    return OfflineHandler


def wait(netron: ModuleType, address: tuple[str, int]) -> None:
    """Block until Ctrl-C (or SIGTERM), then stop the server."""
    import signal
    import time

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        while netron.status(address):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        netron.stop(address)


def has_display() -> bool:
    """Whether a browser can open a window: always on macOS and Windows, with DISPLAY or WAYLAND_DISPLAY elsewhere."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def register(app: typer.Typer) -> None:
    """Add `nnpm view` to the app."""
    app.command()(view)

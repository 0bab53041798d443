"""Consumer commands: install, uninstall, list, info, search."""

from __future__ import annotations

import json
from typing import Optional

import typer

_ENV = typer.Option(None, "--env", "-e", help="Environment (default: NNPM_ENV or 'default').")
_REGISTRY = typer.Option(None, "--registry", help="Registry URL (default: NNPM_REGISTRY or the login).")


def _installer(env: str | None, registry: str | None, progress: bool | None = None):
    from nnpm.config import load_settings
    from nnpm.env import open_env
    from nnpm.install import Installer

    settings = load_settings(env=env, registry=registry)
    return Installer(settings, open_env(settings=settings), progress=progress)


def install(
    specs: Optional[list[str]] = typer.Argument(None, help="Names, requirements ('resnet18>=1,<2'), folders or .nnpm files."),
    env: str = _ENV,
    registry: str = _REGISTRY,
    pre: bool = typer.Option(False, "--pre", help="Allow pre-release versions."),
    locked: bool = typer.Option(False, "--locked", help="Install exactly what the lock file says."),
    lock_file: str = typer.Option(None, "--lock", help="Lock file for --locked (default: the environment's)."),
    force: bool = typer.Option(False, "--force", help="Rebuild installed folders from the store."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Install packages and their dependencies into an environment."""
    from pathlib import Path

    from nnpm.cli.show import human_size, say
    from nnpm.env import Lock
    from nnpm.errors import ManifestError

    inst = _installer(env, registry, progress=False if quiet else None)
    if locked:
        if specs:
            raise ManifestError("--locked installs what the lock file says; give no package names with it")
        result = inst.install_locked(Lock.read(Path(lock_file)) if lock_file else None)
    else:
        if not specs:
            raise ManifestError("nothing to install", hint="e.g. nnpm install resnet18, or --locked")
        result = inst.install(specs, pre=pre, force=force)
    for name, version in result.installed:
        say(f"installed {name} {version}")
    for name, version in result.removed:
        say(f"removed {name} {version}")
    if result.unchanged and not result.installed:
        say("already installed: " + ", ".join(f"{n} {v}" for n, v in result.unchanged))
    f = result.fetched
    say(f"env {inst.env.name}: {f.downloaded} blobs fetched ({human_size(f.bytes)}), "
        f"{f.present} already in the store, {result.linked} files linked")


def uninstall(
    names: list[str] = typer.Argument(..., help="Packages to remove."),
    env: str = _ENV,
) -> None:
    """Remove packages from an environment (and dependencies nothing else needs)."""
    from nnpm.cli.show import say

    removed = _installer(env, None).uninstall(names)
    for name, version in removed:
        say(f"removed {name} {version}")


def list_(
    env: str = _ENV,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List installed packages."""
    from nnpm.cli.show import console, human_size
    from nnpm.env import open_env

    e = open_env(env)
    lock = e.lock()
    rows = [{"name": n, "version": p.version, "source": p.source, "requested": p.requested,
             "size": sum(s for _, s, _ in p.files)} for n, p in sorted(lock.packages.items())]
    if as_json:
        print(json.dumps({"env": e.name, "packages": rows}, indent=1))
        return
    out = console()
    if not rows:
        out.print(f"env {e.name}: no packages installed")
        return
    from rich.table import Table

    table = Table(show_edge=False, box=None, pad_edge=False)
    for col in ("name", "version", "size", "source"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"] + ("" if r["requested"] else " (dep)"), r["version"], human_size(r["size"]), r["source"])
    out.print(f"env {e.name}:")
    out.print(table)


def info(
    spec: str = typer.Argument(..., help="NAME or NAME==VERSION"),
    env: str = _ENV,
    registry: str = _REGISTRY,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show a package: manifest, signature, dependencies, files, params, where installed."""
    from nnpm.package_info import describe

    data = describe(spec, env=env, registry=registry)
    if as_json:
        print(json.dumps(data, indent=1))
        return
    from nnpm.cli.show import console, human_size, summary
    from nnpm.manifest import Manifest

    manifest = Manifest.from_dict(data["manifest"])
    out = console()
    summary(manifest)
    for f in manifest.files:
        out.print(f"  {f.path}  {human_size(f.size)}  sha256:{f.sha256[:16]}…")
    out.print(f"  installed: {data['installed_path'] or 'no'}")
    if data.get("versions"):
        out.print("  versions: " + ", ".join(v + (" (yanked)" if y else "") for v, y in data["versions"]))


def search(
    query: str = typer.Argument("", help="Words to look for in names, descriptions and tags."),
    registry: str = _REGISTRY,
) -> None:
    """Search the registry."""
    from nnpm.cli.show import console
    from nnpm.client import RegistryClient
    from nnpm.config import load_settings

    settings = load_settings(registry=registry)
    results = RegistryClient(settings.require_registry(), token=settings.token).search(query)
    out = console()
    if not results:
        out.print(f"no packages match {query!r}")
    for r in results:
        out.print(f"[bold]{r['name']}[/bold] {r['version']}  {r.get('description', '')}")


def register(app: typer.Typer) -> None:
    """Add the consumer commands to the app."""
    app.command()(install)
    app.command()(uninstall)
    app.command("list")(list_)
    app.command()(info)
    app.command()(search)

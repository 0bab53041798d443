"""`nnpm outdated`: installed packages for which the registry has a newer version."""

from __future__ import annotations

import json

import typer

from nnpm.cli.common import ENV, REGISTRY


def outdated(env: str = ENV, registry: str = REGISTRY,
             as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List installed packages with a newer version on the registry (what 'nnpm install -U NAME' would get)."""
    from nnpm.cli.common import registry_client
    from nnpm.cli.output import say
    from nnpm.install.env import open_env

    e = open_env(env)
    rows = []
    with registry_client(registry, None, need_token=False) as client:
        for name, locked in sorted(e.lock().packages.items()):
            if locked.source.startswith("path:"):
                continue
            packument = client.packument(name)
            latest = packument.latest if packument else None
            if latest is not None and str(latest.version) != locked.version and \
                    latest.version > _version(locked.version):
                rows.append({"name": name, "installed": locked.version, "latest": str(latest.version)})
    if as_json:
        print(json.dumps({"env": e.name, "outdated": rows}, indent=1))
    elif not rows:
        say(f"env {e.name}: everything is up to date")
    for r in rows if not as_json else ():
        say(f"{r['name']}  {r['installed']} -> {r['latest']}")


def _version(text: str):
    from packaging.version import Version

    return Version(text)


def register(app: typer.Typer) -> None:
    """Add `nnpm outdated`."""
    app.command()(outdated)

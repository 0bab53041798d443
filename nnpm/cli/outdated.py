"""`nnpm outdated`: installed packages for which the registry has a newer version."""

from __future__ import annotations

import json

import typer

from nnpm.cli.common import ENV, REGISTRY


def outdated(env: str = ENV, registry: str = REGISTRY,
             as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List installed (or, in a project, locked) packages with a newer version on the registry."""
    from nnpm.cli.common import registry_client
    from nnpm.cli.output import say
    from nnpm.install.env import open_env

    e = open_env(env)
    packages = e.lock().packages
    wanted = {}
    if e.project is not None:   # a project: what its lock pins, and what its specifiers allow
        from nnpm.project.sync import read_lock

        packages = (read_lock(e.project) or e.lock()).packages
        wanted = {n: d.specifier for n, d in e.project.dependencies.items()}
    rows = []
    with registry_client(registry, None, need_token=False) as client:
        for name, locked in sorted(packages.items()):
            if locked.source.startswith("path:"):
                continue
            packument = client.packument(name)
            latest = packument.latest if packument else None
            if latest is not None and str(latest.version) != locked.version and \
                    latest.version > _version(locked.version):
                row = {"name": name, "installed": locked.version, "latest": str(latest.version)}
                if e.project is not None:
                    row["allowed"] = name not in wanted or wanted[name].contains(latest.version, prereleases=True)
                rows.append(row)
    if as_json:
        print(json.dumps({"env": e.name, "project": e.project is not None, "outdated": rows}, indent=1))
    elif not rows:
        say(f"{e.label}: everything is up to date")
    for r in rows if not as_json else ():
        say(f"{r['name']}  {r['installed']} -> {r['latest']}" + _how(r, e.project is not None))


def _how(row: dict, project: bool) -> str:
    """In a project, which command takes the newer version."""
    if not project:
        return ""
    if row["allowed"]:
        return f"  (nnpm lock --upgrade-package {row['name']})"
    return f"  (outside nnpm.toml's specifier: nnpm add '{row['name']}>={row['latest']}')"


def _version(text: str):
    from packaging.version import Version

    return Version(text)


def register(app: typer.Typer) -> None:
    """Add `nnpm outdated`."""
    app.command()(outdated)

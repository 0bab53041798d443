"""`nnpm add`, `remove`, `lock` and `sync`: the models an application uses, locked in its repository."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import typer

from nnpm.cli.common import REGISTRY, REQUIRE_SIGNATURES, variant_policy

if TYPE_CHECKING:
    from nnpm.config import Settings
    from nnpm.format.application import Application
    from nnpm.project.sync import ProjectResult

QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars.")


def current_project(registry: str | None = None, *, create: bool = False,
                    require_signatures: bool = False) -> tuple["Application", "Settings"]:
    """The project in use and the settings (`create`: start one in this folder when there is none;
    `require_signatures`: on, whatever the configuration says)."""
    from dataclasses import replace
    from pathlib import Path

    from nnpm.config import load_settings
    from nnpm.errors import ManifestError
    from nnpm.format.application import project_from_environment, read_application

    app = project_from_environment()
    if app is None and create:
        from nnpm.cli.output import say
        from nnpm.project.edit import start_project

        path = start_project(Path.cwd())
        say(f"started project in {path}")
        app = read_application(Path.cwd())
    if app is None:
        raise ManifestError("not in a project: no nnpm.toml with [project] (or pyproject.toml with [tool.nnpm]) "
                            "here or in a folder above", hint="run 'nnpm add NAME' in the application's folder to "
                            "start one, or give --project DIR")
    settings = load_settings(registry=registry)
    return app, replace(settings, require_signatures=True) if require_signatures else settings


def add(
    specs: list[str] = typer.Argument(..., help="Requirements: 'resnet18', 'resnet18>=1,<2'."),
    registry: str = REGISTRY,
    variant: str = typer.Option(None, "--variant", help="Pin this variant of the named packages."),
    prefer: str = typer.Option("reference", "--prefer", help="Choose the variant by measured speed or size "
                               "within --max-drift.", metavar="reference|speed|size"),
    max_drift: Optional[float] = typer.Option(None, "--max-drift", min=0.0, help="Largest drift --prefer accepts."),
    quiet: bool = QUIET,
    require_signatures: bool = REQUIRE_SIGNATURES,
) -> None:
    """Add packages to the project's dependencies, lock, and sync its environment."""
    from nnpm.format.application import Dependency
    from nnpm.format.spec import parse_spec
    from nnpm.install.variants import DEFAULT_MAX_DRIFT
    from nnpm.project.sync import change

    variant_policy(prefer, DEFAULT_MAX_DRIFT if max_drift is None else max_drift, variant)   # refuses what install refuses
    app, settings = current_project(registry, create=True, require_signatures=require_signatures)
    deps = []
    for text in specs:
        spec = parse_spec(text, paths=False)
        deps.append(Dependency(spec.name, spec.specifier, variant, prefer, max_drift))
    app, result = change(app, settings, add=deps, progress=False if quiet else None)
    _report(app, result)


def remove(names: list[str] = typer.Argument(..., help="Packages to take out of the dependencies."),
           registry: str = REGISTRY, quiet: bool = QUIET) -> None:
    """Remove packages from the project's dependencies, lock, and sync its environment."""
    from nnpm.format.fields import canonical_name
    from nnpm.project.sync import change

    app, settings = current_project(registry)
    app, result = change(app, settings, remove=[canonical_name(n, key="package") for n in names],
                         progress=False if quiet else None)
    _report(app, result)


def lock(registry: str = REGISTRY,
         upgrade: bool = typer.Option(False, "--upgrade", "-U", help="Newest allowed versions of everything."),
         upgrade_package: Optional[list[str]] = typer.Option(None, "--upgrade-package", "-P",
                                                             help="Newest allowed version of this package."),
         require_signatures: bool = REQUIRE_SIGNATURES,
         ) -> None:
    """Resolve the project's dependencies and write nnpm.lock (the environment is not touched)."""
    from nnpm.format.fields import canonical_name
    from nnpm.project.sync import ProjectResult, read_lock, relock

    app, settings = current_project(registry, require_signatures=require_signatures)
    names = frozenset(canonical_name(n, key="package") for n in upgrade_package or ())
    new, changes = relock(app, settings, read_lock(app), upgrade=upgrade, upgrade_packages=names)
    new.write(app.lock_path)
    _report(app, ProjectResult(changes=changes, lock_written=True))


def sync(registry: str = REGISTRY,
         frozen: bool = typer.Option(False, "--frozen", help="Fail when nnpm.lock is missing or out of date "
                                     "instead of locking again (for CI and servers)."),
         force: bool = typer.Option(False, "--force", help="Re-verify the store's blobs and rebuild every folder."),
         quiet: bool = QUIET, require_signatures: bool = REQUIRE_SIGNATURES) -> None:
    """Make the project's environment (.nnpm/) match nnpm.lock exactly."""
    from nnpm.project.sync import sync as do_sync

    app, settings = current_project(registry, require_signatures=require_signatures)
    _report(app, do_sync(app, settings, frozen=frozen, force=force, progress=False if quiet else None))


def _report(app: "Application", result: "ProjectResult") -> None:
    from nnpm.cli.output import human_size, literal, plural, say

    c = result.changes
    for name, version in c.added:
        say(f"locked {name} {version}")
    for name, old, new in c.updated:
        say(f"updated {name} {old} -> {new}")
    for name, version in c.removed:
        say(f"unlocked {name} {version}")
    if result.lock_written and not (c.added or c.updated or c.removed):
        say("nnpm.lock: no changes")
    s = result.synced
    if s is None:
        return
    for name, version in s.installed:
        say(f"installed {name} {version}")
        if name in s.variants:
            say(f"  variant {literal(s.variants[name].variant)}: {literal(s.variants[name].reason)}")
    for name, version in s.removed:
        say(f"removed {name} {version}")
    f = s.fetched
    say(f"project {app.name}: {plural(len(s.installed) + len(s.unchanged), 'package')} in .nnpm, "
        f"{plural(f.downloaded, 'blob')} fetched ({human_size(f.bytes)}), {f.present} already in the store ({human_size(f.present_bytes)} not fetched), "
        f"{plural(s.linked, 'file')} linked")


def register(app: typer.Typer) -> None:
    """Add `nnpm add`, `remove`, `lock` and `sync`."""
    for command in (add, remove, lock, sync):
        app.command()(command)

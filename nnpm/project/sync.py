"""`nnpm add`, `remove`, `lock` and `sync`: keep project file, lock and `.nnpm/` in step.

The order keeps every failure harmless: resolve in memory, make the environment match the
new lock (a transaction: nnpm.install.transaction), and only then write the lock and the
project file. A failed resolve or download leaves all three as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from nnpm.errors import EnvError, IntegrityError, ManifestError
from nnpm.format.application import Application, Dependency
from nnpm.fsutil import atomic_write
from nnpm.project.lockfile import LockChanges, ProjectLock, is_current

if TYPE_CHECKING:
    from nnpm.config import Settings
    from nnpm.install.transaction import InstallResult


@dataclass
class ProjectResult:
    """What one command did: the lock's changes, whether it was written, and the sync's result."""

    changes: LockChanges = field(default_factory=LockChanges)
    lock_written: bool = False
    synced: "InstallResult | None" = None


def registry_for(settings: "Settings", lock: ProjectLock | None) -> "Settings":
    """Settings whose registry is the configured one, else the one the lock names (a mirror may stand in)."""
    from nnpm.config import load_settings

    if settings.registry or lock is None or lock.source() is None:
        return settings
    found = load_settings(registry=lock.source())
    return replace(settings, registry=found.registry, token=found.token)


def read_lock(app: Application) -> ProjectLock | None:
    """The project's lock, or None when it has none yet."""
    return ProjectLock.read(app.lock_path) if app.lock_path.exists() else None


def relock(app: Application, settings: "Settings", previous: ProjectLock | None, **options) -> tuple[ProjectLock, LockChanges]:
    """Resolve the project again (keeping what `previous` holds where it still fits)."""
    from nnpm.client.api import RegistryClient
    from nnpm.install.store import Store

    settings = registry_for(settings, previous)
    with RegistryClient.for_settings(settings) as client:
        from nnpm.project.locking import lock_project  # resolving: only when the lock must change

        return lock_project(app, client, Store(settings.store_dir), previous,
                            require_signatures=settings.require_signatures, **options)


def sync_env(app: Application, settings: "Settings", lock: ProjectLock, *, force: bool = False,
             progress: bool | None = None) -> "InstallResult":
    """Make `.nnpm/` hold exactly what `lock` says: install what is missing, remove the rest."""
    from nnpm.install.env import claim_project_env, project_env
    from nnpm.install.transaction import Installer

    env = project_env(app)
    claim_project_env(env, settings)
    try:
        return Installer(registry_for(settings, lock), env, progress=progress).install_locked(lock.env_lock(),
                                                                                           force=force)
    except IntegrityError as exc:   # the environment's hints speak of --locked; a project's lock is a file in git
        raise IntegrityError(exc.message, hint="restore nnpm.lock from version control, or run 'nnpm lock' to "
                             "write it again from nnpm.toml") from None


@contextmanager
def _exclusive(app: Application) -> Iterator[Application]:
    """One add, remove or sync of a project at a time; the project file as it is once the turn comes."""
    from nnpm.format.application import read_application
    from nnpm.install.env import project_env

    with project_env(app).install_lock():
        yield read_application(app.root) or app


def sync(app: Application, settings: "Settings", *, frozen: bool = False, force: bool = False,
         progress: bool | None = None) -> ProjectResult:
    """`nnpm sync`: lock first when the lock is missing or stale (refused with `frozen`), then sync."""
    with _exclusive(app) as app:
        return _sync(app, settings, frozen=frozen, force=force, progress=progress)


def _sync(app: Application, settings: "Settings", *, frozen: bool, force: bool, progress: bool | None) -> ProjectResult:
    lock = read_lock(app)
    out = ProjectResult()
    stale = lock is None or not is_current(app, lock)
    if stale:
        if frozen:
            why = "there is no nnpm.lock" if lock is None else f"nnpm.lock is out of date with {app.file.name}"
            raise EnvError(f"{why} (--frozen syncs from the lock as it is)", hint="run 'nnpm lock' and commit nnpm.lock")
        lock, out.changes = relock(app, settings, lock)
    out.synced = sync_env(app, settings, lock, force=force, progress=progress)
    if stale:   # written once the environment holds it
        lock.write(app.lock_path)
        out.lock_written = True
    return out


def change(app: Application, settings: "Settings", *, add: list[Dependency] = (), remove: list[str] = (),
           progress: bool | None = None) -> tuple[Application, ProjectResult]:
    """`nnpm add` / `nnpm remove`: edit the dependencies, re-lock, sync, then write lock and project file."""
    with _exclusive(app) as app:
        return _change(app, settings, add, remove, progress)


def _change(app: Application, settings: "Settings", add: list[Dependency], remove: list[str],
            progress: bool | None) -> tuple[Application, ProjectResult]:
    from nnpm.project.edit import edited_text

    missing = [n for n in remove if n not in app.dependencies]
    if missing:
        raise ManifestError(f"{missing[0]} is not a dependency of project {app.name!r}",
                            hint=f"its dependencies: {', '.join(sorted(app.dependencies)) or 'none'}")
    text, new_app = edited_text(app, add, remove)
    previous = read_lock(app)
    lock, changes = relock(new_app, settings, previous,
                           upgrade_packages=frozenset(d.name for d in add if d.name in app.dependencies))
    text, new_app, lock = _floor_new_specifiers(app, new_app, add, remove, lock, text)
    out = ProjectResult(changes=changes)
    out.synced = sync_env(new_app, settings, lock, progress=progress)
    lock.write(app.lock_path)
    atomic_write(app.file, text.encode(), durable=True)
    out.lock_written = True
    return new_app, out


def _floor_new_specifiers(app: Application, new_app: Application, add: list[Dependency], remove: list[str],
                          lock: ProjectLock, text: str) -> tuple[str, Application, ProjectLock]:
    """A package added without a specifier is written `>=VERSION` of what was locked, as uv and npm do."""
    from packaging.specifiers import SpecifierSet

    from nnpm.project.edit import edited_text
    from nnpm.project.lockfile import requirement_keys

    floors = {d.name: replace(d, specifier=SpecifierSet(f">={lock.packages[d.name].version}"))
              for d in add if not str(d.specifier) and d.name in lock.packages}
    if not floors:
        return text, new_app, lock
    text, new_app = edited_text(app, [floors.get(d.name, d) for d in add], remove)
    return text, new_app, replace(lock, requirements=requirement_keys(new_app))


def add_requirement(app: Application, spec) -> ProjectResult:
    """`nnpm add SPEC` from Python (`nnpm.load(..., install=True)` inside a project)."""
    from nnpm.config import load_settings

    dep = Dependency(spec.name, spec.specifier)
    return change(app, load_settings(), add=[dep], progress=False)[1]

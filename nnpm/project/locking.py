"""`nnpm lock`: resolve a project's dependencies into a ProjectLock.

Versions the previous lock holds are tried first (`prefer`), so re-locking after an edit
moves only what the edit needs; `--upgrade` drops every preference, `--upgrade-package`
drops one. Each direct dependency's variant comes from its entry (a pinned `variant`, or a
`prefer`/`max-drift` policy); a dependency pulled in by another keeps the variant the
previous lock chose while the version still has it, else the reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from packaging.version import Version

from nnpm.format.application import Application, Dependency
from nnpm.install.lockfile import LockedPackage
from nnpm.install.variants import DEFAULT_MAX_DRIFT, Choice, Policy, keep_or_choose
from nnpm.project.lockfile import LockChanges, ProjectLock, requirement_keys

if TYPE_CHECKING:
    from nnpm.client.api import RegistryClient
    from nnpm.format.manifest import Manifest
    from nnpm.install.store import Store


def policy_of(dep: Dependency) -> Policy:
    """The variant policy one `[dependencies]` entry asks for."""
    drift = DEFAULT_MAX_DRIFT if dep.max_drift is None else dep.max_drift
    return Policy(prefer=dep.prefer, max_drift=drift, pin=dep.variant)


def lock_project(app: Application, client: "RegistryClient", store: "Store", previous: ProjectLock | None = None, *,
                 upgrade: bool = False, upgrade_packages: frozenset[str] = frozenset(), pre: bool = False,
                 require_signatures: bool = False) -> tuple[ProjectLock, LockChanges]:
    """Resolve the project's dependencies against the registry; the manifests go into the store.

    Every signed release's publisher signature is verified against its packument's keys and
    recorded; `require_signatures` refuses unsigned ones."""
    from nnpm.install.resolve import resolve
    from nnpm.install.signatures import refuse_unsigned, release_signature

    previous = previous or ProjectLock()
    keep = {} if upgrade else {n: Version(p.version) for n, p in previous.packages.items()
                               if n not in upgrade_packages and not p.source.startswith("path:")}
    seen: dict = {}
    chosen = resolve([d.requirement for d in app.dependencies.values()],
                     lambda name: seen.setdefault(name, client.packument(name)), pre=pre, prefer=keep)
    signed = {name: release_signature(seen[name], cand.release) for name, cand in chosen.items()}
    if require_signatures:
        refuse_unsigned([n for n, fields in signed.items() if not fields])
    lock = ProjectLock(requirements=requirement_keys(app))
    for name, cand in chosen.items():
        manifest = cand.release.manifest
        raw = manifest.to_json()
        digest = store.add_bytes(raw)
        choice = _variant(name, manifest, cand.release.measured, app, previous.packages.get(name))
        lock.packages[name] = LockedPackage(
            name=name, version=str(manifest.version), manifest_sha256=digest, source=client.url,
            requested=name in app.dependencies,
            files=tuple((f.path, f.size, f.sha256) for f in manifest.files_for(choice.variant)),
            variant=choice.variant, variant_reason=choice.reason, **signed[name])
        lock.dependencies[name] = sorted(manifest.project.dependencies)
    return lock, _changes(previous, lock)


def _variant(name: str, manifest: "Manifest", measured: dict | None, app: Application,
             before: LockedPackage | None) -> Choice:
    dep = app.dependencies.get(name)
    same = before is not None and before.version == str(manifest.version)   # a new version is chosen afresh
    return keep_or_choose(manifest, measured, policy_of(dep) if dep else Policy(),
                          Choice(before.variant, before.variant_reason) if same else None)


def _changes(old: ProjectLock, new: ProjectLock) -> LockChanges:
    out = LockChanges()
    for name, p in sorted(new.packages.items()):
        before = old.packages.get(name)
        if before is None:
            out.added.append((name, p.version))
        elif (before.version, before.variant) != (p.version, p.variant):
            out.updated.append((name, _shown(before), _shown(p)))
    out.removed = [(n, p.version) for n, p in sorted(old.packages.items()) if n not in new.packages]
    return out


def _shown(p: LockedPackage) -> str:
    return p.version if p.variant == "reference" else f"{p.version} ({p.variant})"

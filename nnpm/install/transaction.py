"""`nnpm install` / `uninstall` as one transaction: resolve, fetch into the store, swap the env.

Order matters for crash safety: blobs are fetched and verified into the store first,
package folders are prepared aside, and the lock file is replaced last (nnpm.install.env).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.version import Version

from nnpm import crash
from nnpm.errors import IntegrityError, ManifestError, NotInstalledError
from nnpm.format.fields import canonical_name
from nnpm.format.manifest import MANIFEST_NAME, Manifest
from nnpm.format.packument import Packument, Release
from nnpm.format.spec import Spec, parse_spec
from nnpm.fsutil import remove_tree
from nnpm.install.compat import check_runtime
from nnpm.install.env import Environment, open_env
from nnpm.install.fetch import FetchStats, Wanted, fetch_all
from nnpm.install.lockfile import Lock, LockedPackage, check_lock_entry
from nnpm.install.store import Store
from nnpm.install.variants import Choice, Policy, keep_or_choose

if TYPE_CHECKING:
    from nnpm.client.api import RegistryClient
    from nnpm.config import Settings


@dataclass
class InstallResult:
    """What changed: (name, version) installed, removed, unchanged; fetch and link counts."""

    installed: list[tuple[str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    unchanged: list[tuple[str, str]] = field(default_factory=list)
    upgraded: list[tuple[str, str, str]] = field(default_factory=list)   # (name, from, to); also in `installed`
    warnings: list[str] = field(default_factory=list)
    fetched: FetchStats = field(default_factory=FetchStats)
    linked: int = 0
    satisfied: bool = False            # everything asked for was installed already: nothing was fetched
    variants: dict[str, Choice] = field(default_factory=dict)   # the variant chosen per package with variants


@dataclass(frozen=True)
class _Local:
    """A package installed from a folder or archive: fixed manifest, files already in the store."""

    manifest: Manifest
    source: str


def _add_local(spec: Spec, store: Store, *, force: bool = False) -> _Local:
    """Validate a folder or archive and put its files in the store (`force`: replacing corrupt blobs)."""
    from nnpm.author import pack
    from nnpm.format import archive

    path = spec.path
    if not path.exists():
        raise ManifestError(f"{spec} does not exist", hint="give a package folder, a .nnpm file or a package name")
    if path.is_dir():   # packed as publish packs it (tensor-addressed), so the store shares tensors
        with pack.staged(path, allow_hardlinks=True, scratch=store.root / "tmp") as built:
            for entry in built.manifest.files:
                store.add_file(built.paths[entry.path], entry.sha256, entry.size, recheck=force)
        return _Local(built.manifest, f"path:{path.resolve()}")
    tmp_root = store.root / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
        manifest = archive.extract(path, Path(tmp) / "x")
        for entry in manifest.files:  # extract verified every member against the manifest
            if force and store.has(entry.sha256) and not store.verify_blob(entry.sha256):
                store.discard(entry.sha256)
            if not store.has(entry.sha256, entry.size):
                store.commit(Path(tmp) / "x" / entry.path, entry.sha256, entry.size, verified_digest=entry.sha256)
    return _Local(manifest, f"path:{path.resolve()}")


def _packument_of(local: _Local) -> Packument:
    return Packument.of(local.manifest.name, [Release.from_manifest(local.manifest)])


class Installer:
    """Installs into one environment using one store and (when needed) one registry."""

    def __init__(self, settings: "Settings", env: Environment | None = None,
                 client: "RegistryClient | None" = None, *, progress: bool | None = None) -> None:
        self.settings = settings
        self.env = env or open_env(settings=settings)
        self.store = Store(settings.store_dir)
        self._client = client
        self.progress = progress
        self._prepared: dict[str, tuple[_Local, str]] = {}   # name -> (package in the store, its one variant)

    @property
    def client(self) -> "RegistryClient":
        """The registry client, made on first use (local-only installs never need one)."""
        if self._client is None:
            from nnpm.client.api import RegistryClient

            self._client = RegistryClient.for_settings(self.settings)
        return self._client

    def _source(self) -> str:
        if self._client is not None and isinstance(getattr(self._client, "url", None), str):
            return self._client.url      # an injected client: the registry, or an OCI index
        return self.settings.registry or "registry"

    def install(self, specs: list[str], *, pre: bool = False, force: bool = False,
                upgrade: bool = False, policy: Policy | None = None,
                prepared: list[tuple[Manifest, str, str]] = ()) -> InstallResult:
        """Install packages (names, requirements, folders, archives) and their dependencies.

        As pip does: a requirement the environment already satisfies changes nothing and
        needs no network, unless `upgrade` (newest allowed versions), `force` (rebuild) or a
        variant `policy` other than the default (nnpm/install/variants.py)."""
        policy = policy or Policy()
        # Packages whose files are in the store already (pulled from OCI): (manifest, variant, source).
        self._prepared = {m.name: (_Local(m, source), variant) for m, variant, source in prepared}
        specs = list(specs) + [f"{m.name}=={m.version}" for m, _, _ in prepared]
        # Read the current lock and commit the new one under the same lock: a concurrent install
        # would otherwise resolve from a stale lock and drop what the other one just installed.
        with self.env.install_lock():
            if not (force or upgrade or policy.explicit or self.settings.require_signatures):
                done = self._already_satisfied(specs)
                if done is not None:
                    return done
            return self._install(specs, pre=pre, force=force, upgrade=upgrade, policy=policy)

    def _already_satisfied(self, specs: list[str]) -> InstallResult | None:
        """The result when every spec names an installed version it allows (None otherwise); no network."""
        parsed = [parse_spec(text) for text in specs]
        current = self.env.lock()
        if any(s.is_path or s.name not in current.packages for s in parsed):
            return None
        if not all(s.allows(Version(current.packages[s.name].version)) for s in parsed):
            return None
        names = {s.name for s in parsed}
        if any(not current.packages[n].requested for n in names):   # now asked for by name: remember it
            self.env.commit(Lock({n: replace(p, requested=p.requested or n in names)
                                  for n, p in current.packages.items()}))
        return InstallResult(unchanged=[(n, current.packages[n].version) for n in sorted(names)], satisfied=True)

    def _install(self, specs: list[str], *, pre: bool, force: bool, upgrade: bool, policy: Policy) -> InstallResult:
        from nnpm.errors import ResolutionError
        from nnpm.install.resolve import resolve

        locals_: dict[str, _Local] = {}
        reqs: list[Spec] = []
        for text in specs:
            spec = parse_spec(text)
            if spec.is_path:
                local = _add_local(spec, self.store, force=force)
                locals_[local.manifest.name] = local
                spec = parse_spec(f"{local.manifest.name}=={local.manifest.version}")
            reqs.append(spec)
        locals_.update({name: local for name, (local, _) in self._prepared.items()})
        current = self.env.lock()
        requested = {r.name for r in reqs}
        for name, locked in current.packages.items():
            # A package installed from a path or an OCI artifact stays pinned until the user asks for it by name.
            if _pinned_source(locked.source) and name not in requested:
                locals_[name] = _Local(self._stored_manifest(locked), locked.source)

        seen: dict[str, Packument | None] = {}   # the packuments resolved from: their keys verify signatures

        def get_packument(name: str) -> Packument | None:
            if name in locals_:
                return _packument_of(locals_[name])
            seen[name] = self.client.packument(name)
            return seen[name]

        kept = [(n, p) for n, p in current.packages.items() if p.requested and n not in requested]
        if not upgrade:  # a named package the environment satisfies stays where it is
            kept += [(r.name, current.packages[r.name]) for r in reqs if r.name in current.packages
                     and r.name not in locals_ and r.allows(Version(current.packages[r.name].version))]
        try:  # keep what is installed where it still fits; upgrade it only when needed
            chosen = resolve(reqs + [f"{n}=={p.version}" for n, p in kept], get_packument, pre=pre)
        except ResolutionError:
            if not kept:
                raise
            chosen = resolve(reqs + [n for n, _ in kept if n not in requested], get_packument, pre=pre)
        manifests = {}
        for name, cand in chosen.items():
            manifest = locals_[name].manifest if name in locals_ else cand.release.manifest
            check_runtime(manifest)
            manifests[name] = manifest
        signed = self._signatures(chosen, seen, locals_, _asked_or_changed(chosen, current, requested))
        flags = {n for n, p in current.packages.items() if p.requested} | requested
        sources = {n: (locals_[n].source if n in locals_ else self._source()) for n in manifests}
        variants = self._choose_variants(manifests, chosen, current, policy, requested)
        result = self._apply(manifests, sources, flags, variants, force=force, signed=signed)
        result.warnings += [f"{n} {c.version} is yanked: {c.release.yanked_reason or 'no reason given'}"
                            for n, c in chosen.items() if c.yanked]
        result.upgraded = [(n, current.packages[n].version, v) for n, v in result.installed
                           if n in current.packages and current.packages[n].version != v]
        return result

    def _signatures(self, chosen: dict, packuments: dict, locals_: dict, checked: set[str]) -> dict[str, dict[str, str]]:
        """Each registry release's publisher signature, verified against its packument's keys before anything is
        fetched or written (a SignatureError aborts the install); when signatures are required, unsigned ones
        among `checked` (asked for, or changing) are refused, as pip's --require-hashes checks what it installs.
        Folders, archives and OCI artifacts the user named carry none and are not refused."""
        from nnpm.install.signatures import refuse_unsigned, release_signature

        out = {n: release_signature(packuments[n], c.release) for n, c in chosen.items() if n not in locals_}
        if self.settings.require_signatures:
            refuse_unsigned([n for n, fields in out.items() if not fields and n in checked])
        return out

    def _choose_variants(self, manifests: dict[str, Manifest], chosen: dict, current: Lock, policy: Policy,
                         requested: set[str]) -> dict[str, Choice]:
        """One variant per package: the policy's, or (by default) the one already installed where it still exists."""
        out = {}
        for name, manifest in manifests.items():
            if name in self._prepared:   # an OCI artifact holds one variant's files
                variant = self._prepared[name][1]
                out[name] = Choice(variant, "" if len(manifest.variant_names()) == 1 else
                                   f"the variant of the OCI artifact ({variant})")
                continue
            before = current.packages.get(name)
            release = chosen[name].release if name in chosen else None
            out[name] = keep_or_choose(manifest, release.measured if release else None, policy,
                                       Choice(before.variant, before.variant_reason) if before else None,
                                       pinned_here=name in requested)
        return out

    def _stored_manifest(self, locked: LockedPackage) -> Manifest:
        """The manifest of an installed package: from the store, else its env folder."""
        path = self.store.path(locked.manifest_sha256)
        if not path.exists():
            path = self.env.package_dir(locked.name, locked.version) / MANIFEST_NAME
        return Manifest.from_json(path.read_bytes(), file=str(path))

    def install_locked(self, lock: Lock | None = None, *, force: bool = False) -> InstallResult:
        """Reproduce an environment exactly from a lock file (offline when the store has every blob);
        `force` re-verifies the blobs and rebuilds the folders."""
        lock = lock or self.env.lock()
        manifests, sources = {}, {}
        for name, locked in lock.packages.items():
            manifest = self._locked_manifest(locked)
            check_runtime(manifest)
            manifests[name], sources[name] = manifest, locked.source
        if self.settings.require_signatures:
            from nnpm.install.signatures import refuse_unsigned

            refuse_unsigned([n for n, p in lock.packages.items() if p.signer is None and not _pinned_source(p.source)])
        flags = {n for n, p in lock.packages.items() if p.requested}
        variants = {n: Choice(p.variant, p.variant_reason) for n, p in lock.packages.items()}
        signed = {n: p.signed_fields() for n, p in lock.packages.items()}
        return self._apply(manifests, sources, flags, variants, force=force, signed=signed)

    def _locked_manifest(self, locked: LockedPackage) -> Manifest:
        if self.store.has(locked.manifest_sha256):
            raw = self.store.path(locked.manifest_sha256).read_bytes()
        elif _pinned_source(locked.source):
            raise NotInstalledError(f"{locked.name} {locked.version} came from {locked.source.removeprefix('path:')} "
                                    "and is not in the store", hint="install it from there again")
        else:
            raw = self.client.release(locked.name, locked.version).manifest.to_json()
        if hashlib.sha256(raw).hexdigest() != locked.manifest_sha256:
            raise IntegrityError(f"{locked.name} {locked.version}: the manifest differs from the one in the lock file",
                                 hint="the registry changed a published version, or the lock file was edited")
        if locked.signer is not None:   # the lock's own key and signature, before the manifest is used
            from nnpm.install.signatures import verify_locked

            verify_locked(locked, raw, hint="the lock file or the registry's manifest was changed; restore the lock "
                          "file, or install again without --locked")
        manifest = Manifest.from_json(raw)
        check_lock_entry(locked, manifest)
        return manifest

    def _apply(self, manifests: dict[str, Manifest], sources: dict[str, str], requested: set[str],
               variants: dict[str, Choice], *, force: bool = False, signed: dict | None = None) -> InstallResult:
        """Fetch what is missing (the chosen variants' files only), prepare folders aside, swap the lock in;
        `force` re-verifies and rebuilds."""
        files = {n: m.files_for(variants[n].variant) for n, m in manifests.items()}
        with self.store.using():   # `cache clean` waits until these blobs are linked and locked
            if force:
                self._discard_corrupt(files)
            wanted = [Wanted(f.sha256, f.size, f"{n} {f.path}") for n, fs in files.items() for f in fs]
            fetched = fetch_all(lambda: self.client, self.store, wanted, progress=self.progress)
            crash.point("after-fetch")
            result = self._link(manifests, sources, requested, variants, force=force, signed=signed or {})
        result.fetched = fetched
        result.variants = {n: c for n, c in variants.items() if len(manifests[n].variant_names()) > 1}
        return result

    def _discard_corrupt(self, files: dict[str, tuple]) -> None:
        """For --force: re-hash every stored blob these packages use; a corrupt one goes, to be fetched again."""
        for digest in {f.sha256 for fs in files.values() for f in fs}:
            if self.store.has(digest) and not self.store.verify_blob(digest):
                self.store.discard(digest)

    def _link(self, manifests: dict[str, Manifest], sources: dict[str, str], requested: set[str],
              variants: dict[str, Choice], *, force: bool, signed: dict) -> InstallResult:
        result = InstallResult()
        with self.env.install_lock():
            old = self.env.lock()
            new = Lock()
            for name, m in sorted(manifests.items()):
                raw = m.to_json()
                digest = self.store.add_bytes(raw)
                variant = variants[name]
                if force:
                    _drop(self.env.package_dir(name, str(m.version), variant.variant))
                _, links = self.env.prepare(self.store, m, raw, variant.variant)
                result.linked += links
                new.packages[name] = LockedPackage(
                    name=name, version=str(m.version), manifest_sha256=digest, source=sources[name],
                    requested=name in requested,
                    files=tuple((f.path, f.size, f.sha256) for f in m.files_for(variant.variant)),
                    variant=variant.variant, variant_reason=variant.reason, **signed.get(name, {}))
                before = old.packages.get(name)
                same = before and (before.version, before.variant) == (str(m.version), variant.variant)
                target = result.unchanged if same and not force else result.installed
                target.append((name, str(m.version)))
            crash.point("before-commit")
            result.removed = [(n, p.version) for n, p in old.packages.items() if n not in new.packages]
            self.env.commit(new)
            crash.point("after-commit")
        return result

    def uninstall(self, names: list[str]) -> list[tuple[str, str]]:
        """Remove packages that nothing else installed needs; returns what was removed."""
        with self.env.install_lock():
            lock = self.env.lock()
            targets = {canonical_name(n, key="package") for n in names}
            for name in targets:
                if name not in lock.packages:
                    raise NotInstalledError(f"{name} is not installed in environment {self.env.name!r}")
            remaining = {n: p for n, p in lock.packages.items() if n not in targets}
            for name, locked in remaining.items():
                deps = self._stored_manifest(locked).project.dependencies
                blocked = sorted(targets & set(deps))
                if blocked:
                    raise NotInstalledError(f"cannot uninstall {', '.join(blocked)}: {name} {locked.version} depends on it",
                                            hint=f"uninstall {name} too")
            # Dependencies that only the removed packages needed go with them.
            needed = _closure({n for n, p in remaining.items() if p.requested}, remaining, self._stored_manifest)
            new = Lock({n: p for n, p in remaining.items() if n in needed})
            removed = [(n, p.version) for n, p in lock.packages.items() if n not in new.packages]
            self.env.commit(new)
        return removed


def _pinned_source(source: str) -> bool:
    """A folder, an archive or one OCI artifact: a source no registry can be asked about again."""
    return source.startswith("path:") or (source.startswith("oci://") and "@sha256:" in source)


def _drop(folder: Path) -> None:
    """For --force: remove a (damaged) package folder so it is rebuilt from the store."""
    remove_tree(folder)


def _closure(roots: set[str], packages: dict[str, LockedPackage], manifest_of) -> set[str]:
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in packages:
            continue
        seen.add(name)
        todo.extend(manifest_of(packages[name]).project.dependencies)
    return seen


def _asked_or_changed(chosen: dict, current: Lock, requested: set[str]) -> set[str]:
    """The packages an install asks for or changes: the ones `--require-signatures` holds to account."""
    return {n for n, c in chosen.items()
            if n in requested or n not in current.packages or current.packages[n].version != str(c.version)}

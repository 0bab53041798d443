"""Importing a bundle (`nnpm registry import`): every version as it was published elsewhere, or nothing.

In order, cheap to dear, nothing written until all is known: the bundle's metadata is
verified (nnpm/format/bundlecheck.py) and planned against this registry (an identical
version is skipped, another one under the same number refused 409, a package that exists
here takes versions only from its owners, and a package with keys here no unsigned ones)
before any blob is read; the blobs stream into scratch, checked; then they are stored and
claimed (as a publish claims them, so gc keeps them), each manifest is re-parsed as a
publish parses it and each model's graphs re-read by the worker (publish.py's checks;
the measurement the bundle carries is kept, not redone; the graphs' overview, which no
packument carries, is read here as at publish). One transaction then adds the
packages, their owners (the publishers), the publisher keys (removed ones too), the
versions with their publisher, date, yank and signature, checks each pipeline's wiring
against what is already added, and re-signs the index (services/index.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from nnpm.errors import ConflictError, ForbiddenError, ManifestError, SignatureError, TooLargeError
from nnpm.format.bundlecheck import CheckedBundle, CheckedVersion
from nnpm.format.signing import PublicKey
from nnpm.fsutil import remove_tree
from registry_server.db.tables import Owner, Package, PackageKey, User, utcnow
from registry_server.services.auth import check_user_name, find_user
from registry_server.services.catalog import find_package, find_version
from registry_server.services.index import packages_changed
from registry_server.services.keys import active_keys
from registry_server.services.owners import is_owner
from registry_server.services.publish import check_blobs, parse_manifest
from registry_server.settings import ServerSettings
from registry_server.storage.base import CHUNK, BlobStore


@dataclass
class Report:
    """What an import did: versions imported and skipped (identical ones here), blobs stored, notes."""

    imported: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    blobs: int = 0
    blob_bytes: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Planned:
    """One version to add: as checked, its publisher here, and its packument's keys."""

    version: CheckedVersion
    publisher: str
    keys: tuple[dict, ...]


def import_bundle(session: Session, store: BlobStore, settings: ServerSettings, bundle: Path, *,
                  root: bytes | None = None, owner: str | None = None) -> Report:
    """Verify `bundle` whole, then add its versions to this registry (none when any check fails)."""
    from nnpm.format.bundle import read_bundle
    from nnpm.format.bundlecheck import check_metadata, choose_root

    report, planned = Report(), []

    def expect(meta) -> dict[str, int]:
        trusted, note = choose_root(meta, given=root, pinned=None)
        checked = check_metadata(meta, trusted)
        report.notes += [note] if note else []
        planned.extend(_plan(session, settings, checked, owner, report))
        session.commit()   # end the read transaction: no connection waits on the blobs below
        return checked.blobs()

    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bundle-", dir=settings.tmp_dir))
    try:
        read_bundle(bundle, scratch, expect)
        _store_blobs(session, store, scratch, planned, report)
    finally:
        remove_tree(scratch)
    overviews = _check_graphs(store, settings, planned)
    _commit(session, planned, overviews)
    report.imported = [(p.version.package.name, str(p.version.manifest.version)) for p in planned]
    _readmes(session, store, settings, planned)
    return report


def _plan(session: Session, settings: ServerSettings, checked: CheckedBundle, owner: str | None,
          report: Report) -> list[_Planned]:
    """The versions to add, each checked against this registry; refused before any blob is read."""
    out = []
    for v in checked.versions:
        name, version = v.package.name, str(v.manifest.version)
        canonical = v.manifest.to_json()
        if len(canonical) > settings.max_manifest_size or any(f.size > settings.max_blob_size
                                                               for f in v.manifest.files):
            raise TooLargeError(f"{name} {version} is over this registry's manifest or blob size limit")
        parse_manifest(canonical, settings)   # as a publish parses it
        existing = find_version(session, name, version)
        if existing is not None:
            if existing.manifest_sha256 != hashlib.sha256(canonical).hexdigest():
                raise ConflictError(f"{name} {existing.version} is already published here with other content",
                                    hint="versions are immutable; nothing was imported")
            report.skipped.append((name, version))
            continue
        publisher = v.release.publisher or owner
        if publisher is None:
            raise ManifestError(f"{name} {version} names no publisher", hint="pass --owner USER")
        check_user_name(publisher)
        _check_package_here(session, name, version, publisher, v)
        out.append(_Planned(v, publisher, checked.packuments[name].keys))
    return out


def _check_package_here(session: Session, name: str, version: str, publisher: str, v: CheckedVersion) -> None:
    """A package this registry has takes versions only from its owners, and only signed ones when it has keys."""
    pkg = find_package(session, name)
    if pkg is None:
        return
    user = find_user(session, publisher)
    if user is None or not is_owner(session, pkg, user):
        raise ForbiddenError(f"{publisher!r} published {name} {version} but is not an owner of {name!r} here",
                             hint=f"add them first: nnpm owner add {name} {publisher}")
    if v.key is None and active_keys(session, pkg.id):
        raise SignatureError(f"{name} {version} is unsigned, but {name} has publisher keys on this registry")


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _store_blobs(session: Session, store: BlobStore, scratch: Path, planned: list[_Planned], report: Report) -> None:
    """The planned versions' blobs into the blob store (verified again by it), claimed as a publish claims them."""
    from registry_server.services.blobs import claim_for_publish

    wanted = {f.sha256: f.size for p in planned for f in p.version.manifest.files}
    for digest, size in sorted(wanted.items()):
        if store.size(digest) == size:
            continue
        if asyncio.run(store.put(digest, _chunks(scratch / digest), size=size)):
            report.blobs += 1
            report.blob_bytes += size
    for p in planned:
        claim_for_publish(session, p.version.manifest, store)
        check_blobs(p.version.manifest, store)


def _check_graphs(store: BlobStore, settings: ServerSettings, planned: list[_Planned]) -> dict[int, dict | None]:
    """Each model's labels and graphs checked as at publish (the measurement is the bundle's, not redone); each
    model's overview, by the index of its plan."""
    from registry_server.services.publish import check_labels
    from registry_server.services.validate import check_model

    quick = replace(settings, no_measure=True)
    overviews: dict[int, dict | None] = {}
    for i, p in enumerate(planned):
        if p.version.manifest.project.model is not None:
            check_labels(p.version.manifest, store)
            overviews[i] = check_model(p.version.manifest, store, quick).overview
    return overviews


def _ordered(planned: list[_Planned]) -> list[_Planned]:
    """Steps before the pipelines that use them (within the bundle), else by name and version."""
    todo, out = list(planned), []
    while todo:
        ready = [p for p in todo if not (set(p.version.manifest.project.dependencies)
                                         & {q.version.package.name for q in todo if q is not p})]
        for p in ready or todo[:1]:   # a cycle is the wiring check's to refuse
            out.append(p)
            todo.remove(p)
    return out


def _commit(session: Session, planned: list[_Planned], overviews: dict[int, dict | None]) -> None:
    """Packages, owners, keys and versions in one transaction with the index re-signed; nothing on failure."""
    from registry_server.services.publish import check_wiring, version_row

    overview_of = {id(p): overviews.get(i) for i, p in enumerate(planned)}
    try:
        for p in _ordered(planned):
            v, pkg = p.version, _package(session, p)
            canonical = v.manifest.to_json()
            signature = check_wiring(session, v.manifest) if v.manifest.project.model is None else None
            row = version_row(v.manifest, str(v.manifest.version), canonical, v.package.manifest_sha256,
                              signature, v.release.measured, overview_of[id(p)])
            row.package_id, row.publisher = pkg.id, p.publisher
            row.published_at = _when(v.release.published_at) or utcnow()
            row.yanked, row.yanked_reason = v.release.yanked, v.release.yanked_reason
            if v.key is not None:
                row.signer_keyid, row.manifest_sig = v.release.signed_data["keyid"], v.release.signed_data["sig"]
            session.add(row)
            session.flush()   # the next pipeline's wiring check sees this version
        packages_changed(session, sorted({p.version.package.name for p in planned}))
        session.commit()
    except BaseException:
        session.rollback()
        raise


def _package(session: Session, p: _Planned) -> Package:
    """The package row (made, with its publisher as owner, when new), its publisher's user and its keys."""
    name = p.version.package.name
    user = find_user(session, p.publisher)
    if user is None:
        user = User(name=p.publisher)   # no token: the person logs in once the operator issues one
        session.add(user)
        session.flush()
    pkg = find_package(session, name)
    if pkg is None:
        pkg = Package(name=name)
        session.add(pkg)
        session.flush()
    if not is_owner(session, pkg, user):   # a new package's publishers are its owners (checked above otherwise)
        session.add(Owner(package_id=pkg.id, user_id=user.id))
    known = set(session.scalars(select(PackageKey.keyid).where(PackageKey.package_id == pkg.id)))
    for entry in p.keys:
        key = PublicKey.from_dict(entry)   # the key id checked against the key's bytes
        if key.keyid not in known:
            session.add(PackageKey(package_id=pkg.id, keyid=key.keyid, public=key.to_dict()["public"],
                                   added_at=_when(entry.get("added_at")) or utcnow(),
                                   removed_at=_when(entry.get("removed_at"))))
            known.add(key.keyid)
    session.flush()
    return pkg


def _when(text: object) -> datetime | None:
    """A packument's `2026-11-23T01:00:00Z`, or None."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise ManifestError(f"the bundle's packument holds a time {text[:40]!r} that is not like "
                            "2026-01-31T12:00:00Z") from None


def _readmes(session: Session, store: BlobStore, settings: ServerSettings, planned: list[_Planned]) -> None:
    """Each new version's README rendered once, as after a publish (a failure leaves it plain text)."""
    from registry_server.services.publish import render_readme_once

    for p in planned:
        row = find_version(session, p.version.package.name, str(p.version.manifest.version))
        if row is not None:
            render_readme_once(session, store, settings, row, p.version.package.name)

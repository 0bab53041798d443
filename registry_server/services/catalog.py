"""Reading the catalog: packages, versions, packuments (search: services/search.py). No writes here.

A stored manifest never changes, so it is parsed once per process (`manifest_of`, an LRU
keyed by its sha256), and a packument body is built once per state of its package's rows
(`packument`): anonymous reads do not re-validate or re-serialise large manifests.
"""

from __future__ import annotations

import hashlib
import json

from packaging.version import Version
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, defer

from nnpm.errors import ManifestError, NotFoundError
from nnpm.format import packument as wire
from nnpm.format.fields import canonical_name, parse_version
from nnpm.format.limits import MIB
from nnpm.format.manifest import Manifest
from nnpm.format.packument import latest_version
from registry_server.db.tables import Owner, Package, PackageKey, Release, User, iso, version_key
from registry_server.services.cache import LRU

# Parsed manifests by sha256, bounded by the bytes of their JSON (a parsed one takes a few times that).
MANIFESTS: LRU[Manifest] = LRU(max_entries=1024, max_cost=32 * MIB)
# Packument bodies and ETags by (name, state of every row), bounded by the bytes of the bodies.
PACKUMENTS: LRU[tuple[bytes, str]] = LRU(max_entries=256, max_cost=64 * MIB)


def url_name(name: str) -> str:
    """A package name from a URL, canonical, or 400 invalid_manifest."""
    return canonical_name(name, file=None, key="name")


def url_version(version: str) -> str:
    """A version from a URL, normalised, or 400 invalid_manifest."""
    try:
        return str(parse_version(version, file=None, key="version"))
    except ValueError:  # e.g. a release number over Python's int digit limit
        raise ManifestError(f"invalid version {version[:100]!r}", key="version") from None


def find_package(session: Session, name: str) -> Package | None:
    """The package with canonical name `name`, or None."""
    return session.scalar(select(Package).where(Package.name == name))


def require_package(session: Session, name: str) -> Package:
    """The package, or 404."""
    pkg = find_package(session, name)
    if pkg is None:
        raise NotFoundError(f"no package {name!r} on this registry")
    return pkg


def find_version(session: Session, name: str, version: str) -> Release | None:
    """One version row by canonical name and PEP 440 version (any spelling: 1.0 finds 1.0.0), or None."""
    return session.scalar(select(Release).join(Package, Release.package_id == Package.id)
                          .where(Package.name == name, Release.version_key == version_key(version)))


def require_version(session: Session, name: str, version: str) -> Release:
    """The version row, or 404 naming what is missing."""
    row = find_version(session, name, version)
    if row is None:
        require_package(session, name)
        raise NotFoundError(f"package {name!r} has no version {version}")
    return row


def versions_of(session: Session, package: Package) -> list[Release]:
    """Every version of a package, PEP 440 ascending; a row's manifest and README load only when read."""
    rows = session.scalars(select(Release).where(Release.package_id == package.id)
                           .options(defer(Release.manifest_json), defer(Release.readme_html),
                                    defer(Release.measured_json), defer(Release.overview_json))).all()
    return sorted(rows, key=lambda r: Version(r.version))


def latest(rows: list) -> Release | None:
    """The row `nnpm install NAME` would pick: as `Packument.latest` chooses (nnpm.format.packument)."""
    top = latest_version((Version(r.version), r.yanked) for r in rows)
    return next((r for r in rows if Version(r.version) == top), None)


def stored_manifest(sha256: str, manifest_json: str) -> Manifest:
    """The Manifest of stored canonical bytes, parsed once per process (stored manifests never change)."""
    return MANIFESTS.get_or_make(sha256, len(manifest_json), lambda: Manifest.from_json(manifest_json))


def manifest_of(row: Release) -> Manifest:
    """The parsed manifest of a version row (cached by its sha256; the JSON is read only on a miss)."""
    cached = MANIFESTS.get(row.manifest_sha256)
    return cached if cached is not None else stored_manifest(row.manifest_sha256, row.manifest_json)


def version_view(row: Release, name: str) -> dict:
    """`{"name","version","yanked","yanked_reason","published_at","manifest"}`, for a pipeline `"signature"`, and
    `"measured"` when the registry measured the version at publish.

    A pipeline's `signature` is the one its wiring gave at publish (`Signature.to_dict()`
    form), or null when it was published before the registry stored it. Models have no
    such key: their signature is in the manifest."""
    manifest = json.loads(row.manifest_json)
    view = {
        "name": name,
        "version": row.version,
        "yanked": row.yanked,
        "yanked_reason": row.yanked_reason,
        "published_at": iso(row.published_at),
        "manifest": manifest,
    }
    if isinstance(manifest, dict) and "pipeline" in manifest:
        view["signature"] = json.loads(row.signature_json) if row.signature_json else None
    if row.measured_json:
        view["measured"] = json.loads(row.measured_json)
    view |= _publisher(row.publisher, row.signer_keyid, row.manifest_sig)
    return view


def _publisher(publisher: str | None, keyid: str | None, sig: str | None) -> dict:
    """`"publisher"` and `"signed"` of a version entry, each when the version has it."""
    out: dict = {"publisher": publisher} if publisher is not None else {}
    if keyid is not None and sig is not None:
        out["signed"] = {"keyid": keyid, "sig": sig}
    return out


# The hottest read: prepared queries for the columns the packument shows, and no ORM objects.
# First the small columns (the state of the package); the manifests only when that state is new.
_PACKUMENT_STATE = (select(Release.version, Release.yanked, Release.yanked_reason, Release.published_at,
                           Release.manifest_sha256, Release.publisher, Release.signer_keyid, Release.manifest_sig)
                    .join(Package, Release.package_id == Package.id).where(Package.name == bindparam("name")))
_PACKUMENT_KEYS = (select(PackageKey.keyid, PackageKey.public, PackageKey.added_at, PackageKey.removed_at)
                   .join(Package, PackageKey.package_id == Package.id).where(Package.name == bindparam("name")))
_PACKUMENT_MANIFESTS = (select(Release.manifest_sha256, Release.manifest_json, Release.signature_json,
                               Release.measured_json)
                        .join(Package, Release.package_id == Package.id).where(Package.name == bindparam("name")))


def packument(conn: Connection | Session, name: str) -> tuple[bytes, str]:
    """The packument of `name` as JSON bytes, and its ETag (a hash of those bytes).

    Takes a plain Connection (cheaper than an ORM Session per request) or a Session. The
    body is built once per state of the package's rows (versions, yanks, manifests, publishers and
    signatures, registered keys)."""
    rows = conn.execute(_PACKUMENT_STATE, {"name": name}).all()
    if not rows and conn.execute(select(Package.id).where(Package.name == name)).first() is None:
        raise NotFoundError(f"no package {name!r} on this registry")
    keys = tuple(sorted((iso(k.added_at), k.keyid, k.public, iso(k.removed_at) if k.removed_at else None)
                        for k in conn.execute(_PACKUMENT_KEYS, {"name": name}).all()))
    state = (name, tuple((r.version, r.yanked, r.yanked_reason, iso(r.published_at), r.manifest_sha256,
                          r.publisher, r.signer_keyid, r.manifest_sig) for r in rows), keys)
    cached = PACKUMENTS.get(state)
    if cached is not None:
        return cached
    stored = {sha: (manifest, signature, measured) for sha, manifest, signature, measured in
              conn.execute(_PACKUMENT_MANIFESTS, {"name": name}).all()}
    doc = wire.Packument.of(name, [
        wire.Release(name, Version(version), json.loads(stored[sha][0]), yanked, reason, published,
                     json.loads(stored[sha][1]) if stored[sha][1] else None, None, publisher,
                     _publisher(None, keyid, sig).get("signed"))
        for version, yanked, reason, published, sha, publisher, keyid, sig in state[1]],
        [{"keyid": keyid, "public": public, "added_at": added, "removed_at": removed}
         for added, keyid, public, removed in keys])
    measured = {Version(r[0]): json.loads(stored[r[4]][2]) for r in state[1] if stored[r[4]][2]}
    body = _packument_bytes(doc, measured)
    answer = body, '"' + hashlib.sha256(body).hexdigest() + '"'
    PACKUMENTS.put(state, answer, len(body))
    return answer


def _packument_bytes(doc: wire.Packument, measured: dict[Version, dict]) -> bytes:
    """`Packument.to_json()`'s canonical bytes, with `"signature": null` in a pipeline's entry that has none stored,
    and each measured version's `"measured"` block.

    A signature and a measurement are fixed at publish, like the manifest, so the state
    that keys the cache (manifest digests among it) decides them too."""
    top = doc.latest
    entries = []
    for release in doc.releases:
        entry = release.to_dict()
        if "pipeline" in release.manifest_data:
            entry.setdefault("signature", None)
        if release.version in measured:
            entry.setdefault("measured", measured[release.version])
        entries.append(entry)
    body = {"name": doc.name, "latest": str(top.version) if top else None, "versions": entries}
    if doc.keys:
        body["keys"] = list(doc.keys)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def owners_of(session: Session, package: Package) -> list[str]:
    """Owner names, sorted."""
    return sorted(session.scalars(select(User.name).join(Owner, Owner.user_id == User.id)
                                  .where(Owner.package_id == package.id)).all())

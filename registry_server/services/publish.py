"""Publishing one version: parse and bound the body, check blobs and graph, commit once.

The order is cheap to dear: size and JSON shape, strict manifest validation, URL match,
ownership, existing version (200 identical / 409 other), blobs claimed for this publish
(so garbage collection keeps them) and present with their sizes, every graph re-read (then
the package self-tested and measured) by the worker, then one transaction under
UNIQUE(package, version), storing what was measured and the graphs' overview (operator
counts, largest initializers) with the version. The README is
rendered once, right after (`publish_version`), and stored with the version.

No transaction stays open during the slow checks (blob store, worker), so a publish
holds no database connection while it waits. Races between publishers, on one server or
many sharing one database, end at a unique constraint (packages.name, or the version
key); the loser rolls back and is answered as if it had arrived just after the winner:
ownership first (403 unless the winner's commit made it an owner), then the version
(200 for the same canonical bytes, 409 for other bytes). The first to commit a new name
owns it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from packaging.version import Version
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.orm import Session

from nnpm.errors import (
    ConflictError,
    ForbiddenError,
    IntegrityError,
    ManifestError,
    NotFoundError,
    RegistryError,
    TooLargeError,
)
from nnpm.format.manifest import MANIFEST_NAME, Manifest, Signature
from registry_server.db.tables import Owner, Package, Release, User, version_key
from registry_server.services import index
from registry_server.services.blobs import claim_for_publish
from registry_server.services.catalog import find_package, find_version, manifest_of
from registry_server.services.keys import SignedPublish, check_publish, recheck_publish, register_first_key, stamp
from registry_server.services.owners import is_owner
from registry_server.services.pipelines import signature_json, wiring_signature
from registry_server.services.readme import readme_text, render_bounded
from registry_server.settings import ServerSettings
from registry_server.storage.base import BlobStore

if TYPE_CHECKING:
    from registry_server.services.workers import WorkerPool

log = logging.getLogger("registry_server")
MAX_VERSION_LENGTH = 100  # versions.version is VARCHAR(100)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


async def read_body(chunks: AsyncIterator[bytes], content_length: str | None, limit: int, what: str) -> bytes:
    """The whole body, refusing (413) anything over `limit` bytes before or while reading."""
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise TooLargeError(f"the {what} is {int(content_length)} bytes; this registry takes at most {limit}")
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise TooLargeError(f"the {what} is over this registry's limit of {limit} bytes")
    return bytes(buf)


def check_json_depth(body: bytes, max_depth: int) -> None:
    """Refuse JSON nested deeper than about `max_depth`, without parsing it.

    Strings are blanked, everything but brackets dropped, then innermost `[]`/`{}` pairs
    are peeled a layer (or more) per pass, at C speed. More than `max_depth` passes means
    deeper than `max_depth`; leftovers mean unbalanced brackets, which json.loads reports.
    """
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    for _ in range(max_depth + 1):
        if not brackets:
            return
        peeled = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if peeled == brackets:
            return
        brackets = peeled
    if brackets:
        raise ManifestError(f"the JSON is nested deeper than {max_depth} levels", file=MANIFEST_NAME)


def parse_manifest(body: bytes, settings: ServerSettings) -> Manifest:
    """Bytes → a strictly validated Manifest, or 400 invalid_manifest."""
    check_json_depth(body, settings.max_json_depth)
    try:
        data = json.loads(body)
    except RecursionError:
        raise ManifestError("the JSON is nested too deeply", file=MANIFEST_NAME) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limits
        raise ManifestError(f"not valid JSON: {exc}", file=MANIFEST_NAME) from None
    try:
        return Manifest.from_dict(data, file=MANIFEST_NAME)
    except ValueError as exc:  # not a ManifestError: e.g. a version number over Python's int digit limit
        raise ManifestError(f"invalid value: {exc}", file=MANIFEST_NAME) from None


def check_blobs(manifest: Manifest, store: BlobStore) -> None:
    """Every listed file is stored with the listed size: else 404 naming it (or 400 for a size lie)."""
    for f in manifest.files:
        size = store.size(f.sha256)
        if size is None:
            raise NotFoundError(f"file {f.path!r} (sha256:{f.sha256}) is not on the registry",
                                hint=f"upload it first: PUT /api/v1/blobs/sha256:{f.sha256}")
        if size != f.size:
            raise IntegrityError(f"file {f.path!r} is {f.size} bytes in the manifest, "
                                 f"but blob sha256:{f.sha256} holds {size}")


def check_labels(manifest: Manifest, store: BlobStore) -> None:
    """Every labels file is UTF-8 text without control characters (what reaches people's terminals): else 400."""
    from nnpm.format.labels import parse_labels
    from nnpm.format.limits import MAX_LABELS_BYTES

    for info in (o for m in manifest.project.models.values() for o in m.outputs.values()):
        if info.labels:
            entry = manifest.file(info.labels)
            parse_labels(store.read(entry.sha256, MAX_LABELS_BYTES + 1), path=info.labels)


def check_wiring(session: Session, manifest: Manifest) -> Signature | None:
    """A pipeline's steps must resolve on this registry and wire together: its signature, else 422 invalid_pipeline."""
    return wiring_signature(session, manifest)


def _check_contents(session: Session, store: BlobStore, settings: ServerSettings, manifest: Manifest,
                    workers: WorkerPool | None) -> tuple[Signature | None, dict | None, dict | None]:
    """A model's graphs re-read, self-tested and measured by a worker (what it measured and the graphs' overview
    returned); a pipeline's wiring checked (its signature returned)."""
    if manifest.project.model is not None:
        from registry_server.services.validate import check_model

        check_labels(manifest, store)
        if workers is None:
            checked = check_model(manifest, store, settings)
        else:
            checked = check_model(manifest, store, settings, workers=workers)
        return (None, *checked) if checked is not None else (None, None, None)
    signature = check_wiring(session, manifest)
    session.commit()  # end the read transaction of the wiring check
    return signature, None, None


def _manifest_for_url(body: bytes, settings: ServerSettings, name: str, version: str) -> tuple[Manifest, str, bytes]:
    """The strictly parsed manifest of the URL's package and version, its normalised version and canonical bytes."""
    manifest = parse_manifest(body, settings)
    if manifest.name != name:
        raise ManifestError(f"the manifest is for package {manifest.name!r}, not {name!r}", key="package.name",
                            hint="PUT it to /api/v1/packages/{its name}/{its version}")
    if manifest.version != Version(version):
        raise ManifestError(f"the manifest is for version {manifest.version}, not {version}", key="package.version")
    version = str(manifest.version)
    if len(version) > MAX_VERSION_LENGTH:
        raise ManifestError(f"the version is {len(version)} characters long; this registry takes at most "
                            f"{MAX_VERSION_LENGTH}", key="package.version")
    try:
        return manifest, version, manifest.to_json()
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") in some string
        raise ManifestError("the manifest holds text that is not valid Unicode (a lone surrogate)",
                            file=MANIFEST_NAME) from None


def publish(session: Session, store: BlobStore, settings: ServerSettings, user: User,
            name: str, version: str, body: bytes, *, workers: WorkerPool | None = None,
            signed: SignedPublish | None = None) -> tuple[int, Release]:
    """Validate and commit one version; (201, row) when created, (200, row) for an identical retry.

    `workers`: the pool of pre-started model-reading workers (services/workers.py); without
    one, a worker process is started for this publish alone. `signed`: the publisher's
    signature (services/keys.py), checked against the package's keys before the slow checks."""
    manifest, version, canonical = _manifest_for_url(body, settings, name, version)
    digest = hashlib.sha256(canonical).hexdigest()

    pkg = find_package(session, name)
    settled = _settled(session, pkg, user, version, digest)
    if settled is not None:
        return settled
    check_publish(session, pkg, signed, canonical, f"{name} {version}")
    session.commit()  # end the read transaction: no connection waits on the blob store or the worker
    claim_for_publish(session, manifest, store)
    check_blobs(manifest, store)
    signature, measured, overview = _check_contents(session, store, settings, manifest, workers)

    for _ in range(3):  # a lost race on the package or version row is settled by re-reading
        try:
            pkg = find_package(session, name)
            settled = _settled(session, pkg, user, version, digest)
            if settled is not None:
                return settled
            if pkg is None:
                pkg = Package(name=name)
                session.add(pkg)
                session.flush()  # on PostgreSQL this waits for a concurrent creator of the name to finish
                session.add(Owner(package_id=pkg.id, user_id=user.id))
                register_first_key(session, pkg, signed, user)
            else:  # an owner may have removed the signer's key while the worker ran
                recheck_publish(session, pkg, signed, f"{name} {version}")
            row = version_row(manifest, version, canonical, digest, signature, measured, overview)
            row.package_id = pkg.id
            stamp(row, user, signed)
            session.add(row)
            index.packages_changed(session, [name])   # the signed index names the new version in the same commit
            session.commit()
            return 201, row
        except DbIntegrityError:
            session.rollback()
        except BaseException:
            session.rollback()
            raise
    raise RegistryError("the version could not be committed; try again", status=503)


def publish_version(session: Session, store: BlobStore, settings: ServerSettings, user: User,
                    name: str, version: str, body: bytes, *,
                    workers: WorkerPool | None = None, signed: SignedPublish | None = None) -> tuple[int, Release]:
    """`publish`, then the version's README rendered once and stored with it (when that is not done yet)."""
    status, row = publish(session, store, settings, user, name, version, body, workers=workers, signed=signed)
    render_readme_once(session, store, settings, row, name)
    return status, row


def render_readme_once(session: Session, store: BlobStore, settings: ServerSettings, row: Release, name: str) -> None:
    """After a version is committed: its README rendered and stored, unless that is done; a failure is logged."""
    if row.readme_html is not None:
        return
    try:
        store_readme(session, store, settings, row)
    except Exception:  # the version is committed; its card shows the README as text until a retry renders it
        session.rollback()
        log.exception("could not store the rendered README of %s %s", name, row.version)


def store_readme(session: Session, store: BlobStore, settings: ServerSettings, row: Release) -> None:
    """Render the README of a version (bounded in time: plain text when slower) and store the HTML (commits).

    "" means the package has no README; NULL stays when its blob cannot be read now."""
    manifest = manifest_of(row)
    text = readme_text(manifest, store, settings.max_readme_size) if manifest.project.readme else ""
    if text is None:
        return
    html = render_bounded(text, timeout=settings.readme_timeout) if text else ""
    session.execute(update(Release).where(Release.id == row.id, Release.readme_html.is_(None))
                    .values(readme_html=html))
    session.commit()
    row.readme_html = html


def _settled(session: Session, pkg: Package | None, user: User, version: str,
             digest: str) -> tuple[int, Release] | None:
    """The answer when an existing package decides it: 403 not an owner, 200 identical, 409 other bytes."""
    if pkg is None:
        return None
    _require_owner(session, pkg, user)
    existing = find_version(session, pkg.name, version)
    if existing is None:
        return None
    session.commit()  # nothing to write: end the read transaction
    return _same_or_conflict(existing, digest, pkg.name, version)


def version_row(manifest: Manifest, version: str, canonical: bytes, digest: str, signature: Signature | None,
                measured: dict | None, overview: dict | None = None) -> Release:
    """A new Release row (a fresh object per attempt: a rolled-back one may keep a stale id)."""
    return Release(version=version, version_key=version_key(version), manifest_json=canonical.decode(),
                   manifest_sha256=digest, description=_storable(manifest.project.description),
                   tags="\n".join(_storable(t) for t in manifest.project.tags),
                   signature_json=signature_json(signature),
                   measured_json=json.dumps(measured, sort_keys=True) if measured is not None else None,
                   overview_json=json.dumps(overview, sort_keys=True) if overview is not None else None)


def _storable(text: str) -> str:
    """Text for the search columns: PostgreSQL's text holds no NUL, so NULs go (the manifest keeps them, escaped)."""
    return text.replace("\x00", "")


def _require_owner(session: Session, pkg: Package, user: User) -> None:
    if not is_owner(session, pkg, user):
        session.rollback()
        raise ForbiddenError(f"{user.name!r} is not an owner of {pkg.name!r}",
                             hint=f"ask an owner to add you: nnpm owner add {pkg.name} {user.name}")


def _same_or_conflict(existing: Release, digest: str, name: str, version: str) -> tuple[int, Release]:
    if existing.manifest_sha256 == digest:
        return 200, existing
    raise ConflictError(f"{name} {existing.version} is already published with other content",
                        hint="versions are immutable; publish a new version number")

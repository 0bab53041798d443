"""Reading the catalog: packages, versions, packuments, search. No writes here."""

from __future__ import annotations

import hashlib
import json

from packaging.version import Version
from sqlalchemy import bindparam, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from nnpm.errors import ManifestError, NotFoundError
from nnpm.format import packument as wire
from nnpm.format.fields import canonical_name, parse_version
from nnpm.format.packument import latest_version
from registry_server.db.tables import Owner, Package, Release, User, iso, version_key


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
    """Every version of a package, PEP 440 ascending."""
    rows = session.scalars(select(Release).where(Release.package_id == package.id)).all()
    return sorted(rows, key=lambda r: Version(r.version))


def latest(rows: list[Release]) -> Release | None:
    """The row `nnpm install NAME` would pick: as `Packument.latest` chooses (nnpm.format.packument)."""
    top = latest_version((Version(r.version), r.yanked) for r in rows)
    return next((r for r in rows if Version(r.version) == top), None)


def version_view(row: Release, name: str) -> dict:
    """`{"name","version","yanked","yanked_reason","published_at","manifest"}`."""
    return {
        "name": name,
        "version": row.version,
        "yanked": row.yanked,
        "yanked_reason": row.yanked_reason,
        "published_at": iso(row.published_at),
        "manifest": json.loads(row.manifest_json),
    }


# The hottest read: one prepared query for the columns the packument shows, and no ORM objects.
_PACKUMENT_ROWS = (select(Release.version, Release.yanked, Release.yanked_reason, Release.published_at,
                          Release.manifest_json)
                   .join(Package, Release.package_id == Package.id).where(Package.name == bindparam("name")))


def packument(conn: Connection | Session, name: str) -> tuple[bytes, str]:
    """The packument of `name` as JSON bytes, and its ETag (a hash of those bytes).

    Takes a plain Connection (cheaper than an ORM Session per request) or a Session."""
    rows = conn.execute(_PACKUMENT_ROWS, {"name": name}).all()
    if not rows and conn.execute(select(Package.id).where(Package.name == name)).first() is None:
        raise NotFoundError(f"no package {name!r} on this registry")
    body = wire.Packument.of(name, [
        wire.Release(name, Version(r.version), json.loads(r.manifest_json), r.yanked, r.yanked_reason,
                     iso(r.published_at)) for r in rows]).to_json()
    return body, '"' + hashlib.sha256(body).hexdigest() + '"'


def owners_of(session: Session, package: Package) -> list[str]:
    """Owner names, sorted."""
    return sorted(session.scalars(select(User.name).join(Owner, Owner.user_id == User.id)
                                  .where(Owner.package_id == package.id)).all())


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search(session: Session, q: str, limit: int) -> list[dict]:
    """Packages whose name, description or tags contain `q` (case-insensitive), best name match first."""
    q = "".join(ch for ch in q if ch.isprintable()).strip()
    stmt = select(Package.id, Package.name).join(Release, Release.package_id == Package.id).distinct()
    if q:
        needles = {q.lower(), "-".join(q.lower().replace("_", "-").replace(".", "-").split())}
        conds = []
        for needle in needles:
            pattern = _like(needle)
            conds += [Package.name.ilike(pattern, escape="\\"), Release.description.ilike(pattern, escape="\\"),
                      Release.tags.ilike(pattern, escape="\\")]
        stmt = stmt.where(or_(*conds))
    else:
        stmt = stmt.order_by(Package.name).limit(limit)
    found = session.execute(stmt).all()

    def rank(item: tuple[int, str]) -> tuple[int, str]:
        name = item[1]
        lowered = q.lower()
        return (0 if name == lowered else 1 if name.startswith(lowered) else 2 if lowered in name else 3, name)

    results = []
    for pkg_id, name in sorted(found, key=rank)[:limit]:
        rows = session.scalars(select(Release).where(Release.package_id == pkg_id)).all()
        top = latest(list(rows))
        if top is None:
            continue
        results.append({"name": name, "version": top.version, "description": top.description,
                        "tags": [t for t in top.tags.split("\n") if t]})
    return results

"""Search and the package list: matches by name, description and tags, counted, sorted and cut to a page.

Reads no manifests: the columns copied out at publish (description, tags) are enough.
"""

from __future__ import annotations

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from registry_server.db.tables import Package, Release
from registry_server.services.catalog import latest

SORTS = ("relevance", "name", "recent")  # best name match first; by name; newest publish first


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _matching(q: str) -> Select:
    """The ids of packages with a version whose name, description or tags contain `q` (also with -_. and spaces as -)."""
    needles = {q.lower(), "-".join(q.lower().replace("_", "-").replace(".", "-").split())}
    conds = []
    for needle in needles:
        pattern = _like(needle)
        conds += [Package.name.ilike(pattern, escape="\\"), Release.description.ilike(pattern, escape="\\"),
                  Release.tags.ilike(pattern, escape="\\")]
    return select(Release.package_id).join(Package, Release.package_id == Package.id).where(or_(*conds))


def _rank(q: str):
    lowered = q.lower()

    def rank(item) -> tuple[int, str]:
        name = item[1]
        return (0 if name == lowered else 1 if name.startswith(lowered) else 2 if lowered in name else 3, name)
    return rank


def search(session: Session, q: str, limit: int, offset: int = 0, sort: str = "relevance") -> tuple[list[dict], int]:
    """(one page of matches, how many match in all): packages whose name, description or tags contain `q`
    (case-insensitive; every package when `q` is empty), each once with its `latest` version.

    `sort`: "relevance" (exact name, then prefix, then the rest, each by name; by name when
    `q` is empty), "name", or "recent" (newest publish first)."""
    q = "".join(ch for ch in q if ch.isprintable()).strip()
    newest, last_id = func.max(Release.published_at).label("newest"), func.max(Release.id).label("last_id")
    listing = (select(Package.id, Package.name, newest, last_id).join(Release, Release.package_id == Package.id)
               .group_by(Package.id, Package.name))
    if q:
        listing = listing.where(Package.id.in_(_matching(q)))
    total = session.scalar(select(func.count()).select_from(listing.subquery())) or 0
    if sort == "relevance" and q:
        found = session.execute(select(Package.id, Package.name).where(Package.id.in_(_matching(q)))).all()
        chosen = [(pkg_id, name) for pkg_id, name in sorted(found, key=_rank(q))[offset:offset + limit]]
    else:
        order = (newest.desc(), last_id.desc(), Package.name) if sort == "recent" else (Package.name,)
        chosen = [(r.id, r.name) for r in session.execute(listing.order_by(*order).limit(limit).offset(offset))]
    return _results(session, chosen), total


def _results(session: Session, chosen: list[tuple[int, str]]) -> list[dict]:
    """`{"name","version","description","tags"}` of each chosen package's latest version, in the same order."""
    by_package: dict[int, list] = {}
    if chosen:  # the columns search shows, for every chosen package at once (no manifests)
        for row in session.execute(select(Release.package_id, Release.version, Release.yanked, Release.description,
                                          Release.tags).where(Release.package_id.in_([p for p, _ in chosen]))):
            by_package.setdefault(row.package_id, []).append(row)
    results = []
    for pkg_id, name in chosen:
        top = latest(by_package.get(pkg_id, []))
        if top is None:
            continue
        results.append({"name": name, "version": top.version, "description": top.description,
                        "tags": [t for t in top.tags.split("\n") if t]})
    return results

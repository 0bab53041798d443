"""Blob records: who uploaded which blob (the per-user upload quota), and the handshake with gc.

A `blobs` row is written when an upload starts (only with a quota: it reserves the bytes)
and when it ends, and touched (`used_at`) by every upload of a blob already stored and by
every publish that names it. Garbage collection (services/gc.py) deletes a blob only
after flipping its row to `collecting` with a conditional UPDATE that fails when the row
was used within the grace period. A publish touches its blobs first and refuses those
being collected, so between the two, one always sees the other: a publish never commits
a version whose blob gc has decided to delete.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.orm import Session

from nnpm.errors import NotFoundError, TooLargeError
from nnpm.format.manifest import Manifest
from registry_server.db.tables import Blob, User, utcnow

_BATCH = 500  # digests per IN (...) list


def _batches(items: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(items))
    for i in range(0, len(items), _BATCH):
        yield items[i:i + _BATCH]


def uploaded_bytes(session: Session, user: User) -> int:
    """Bytes of the blobs `user` uploaded (and of uploads in flight it reserved)."""
    return int(session.scalar(select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.uploader_id == user.id)))


def reserve(session: Session, user: User, digest: str, size: int, quota: int) -> bool:
    """Before an upload streams: 413 when it would take `user` past `quota` bytes; else record it (commits).

    True when this call wrote the row (a failed upload then calls `release`). Uploads of one
    user are serialised here (a lock on the user's row), so parallel uploads cannot pass
    the quota together."""
    session.execute(update(User).where(User.id == user.id).values(name=User.name))  # lock the user's row
    used = uploaded_bytes(session, user)
    if used + size > quota:
        session.rollback()
        raise TooLargeError(f"this upload of {size} bytes would take {user.name!r} past the registry's upload quota "
                            f"({used} of {quota} bytes used)",
                            hint="ask the registry's operator for a larger quota, or to collect unused blobs")
    now = utcnow()
    session.add(Blob(digest=digest, size=size, uploader_id=user.id, uploaded_at=now, used_at=now, collecting=False))
    try:
        session.commit()
    except DbIntegrityError:  # the blob is stored or being uploaded already: its bytes are counted once
        session.rollback()
        return False
    return True


def release(session: Session, user: User, digest: str) -> None:
    """Drop the row `reserve` wrote for an upload that stored nothing (commits)."""
    row = session.get(Blob, digest)
    if row is not None and row.uploader_id == user.id:
        session.delete(row)
        session.commit()


def record_stored(session: Session, user: User | None, digest: str, size: int) -> None:
    """After an upload (new, or of a stored blob): the blob is used now; its first uploader keeps it (commits)."""
    now = utcnow()
    touched = session.execute(update(Blob).where(Blob.digest == digest).values(used_at=now)).rowcount
    if not touched:
        session.add(Blob(digest=digest, size=size, uploader_id=user.id if user else None, uploaded_at=now,
                         used_at=now, collecting=False))
        try:
            session.commit()
            return
        except DbIntegrityError:  # recorded concurrently: touch that row
            session.rollback()
            session.execute(update(Blob).where(Blob.digest == digest).values(used_at=now))
    session.commit()


def _touch(session: Session, digests: list[str], now: datetime) -> tuple[set[str], set[str]]:
    """Mark rows not being collected as used now; (digests being collected, digests without a row)."""
    session.execute(update(Blob).where(Blob.digest.in_(digests), Blob.collecting.is_(False)).values(used_at=now))
    rows = session.execute(select(Blob.digest, Blob.collecting).where(Blob.digest.in_(digests))).all()
    return {d for d, collecting in rows if collecting}, set(digests) - {d for d, _ in rows}


def claim_for_publish(session: Session, manifest: Manifest, store) -> None:
    """Tell gc a publish needs these blobs (commits); 404 naming a file whose blob gc is collecting.

    A stored blob without a row (uploaded before rows existed) gets one, so gc sees it used."""
    now = utcnow()
    collecting: set[str] = set()
    unrecorded: set[str] = set()
    for batch in _batches(f.sha256 for f in manifest.files):
        gone, missing = _touch(session, batch, now)
        collecting |= gone
        unrecorded |= missing
    session.commit()  # no transaction stays open while the store is asked below
    for digest in sorted(unrecorded):
        size = store.size(digest)
        if size is None:  # not stored: check_blobs names it; no row for a blob nobody uploaded
            continue
        session.add(Blob(digest=digest, size=size, uploader_id=None, uploaded_at=now, used_at=now, collecting=False))
        try:
            session.commit()
        except DbIntegrityError:  # recorded meanwhile (an upload, or gc adopting it): touch it like the others
            session.rollback()
            collecting |= _touch(session, [digest], now)[0]
            session.commit()
    for f in manifest.files:
        if f.sha256 in collecting:
            raise NotFoundError(f"file {f.path!r} (sha256:{f.sha256}) is being removed from the registry as unused",
                                hint=f"upload it again: PUT /api/v1/blobs/sha256:{f.sha256}, then publish again")

"""Garbage collection: delete the blobs no published version references, never one a publish may still need.

A blob is collected when no version's manifest lists it and nothing used it within the
grace period: not its upload (the row's `used_at`, or the store's timestamp for a blob
stored before rows existed) and not a publish naming it (services/blobs.py touches the
row before checking the blob). For each such blob the row is flipped to `collecting` by
one conditional UPDATE that fails if the row was used meanwhile; only then is the blob
deleted from the store, then the row. A publish that touches the row after the flip sees
`collecting` and refuses the blob (404), so no committed version ever names a deleted
blob. Rows left by uploads that never finished (server killed) go too, after the grace
period. A dry run (the default) changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.orm import Session, sessionmaker

from registry_server.db.tables import Blob, Release, as_utc, utcnow
from registry_server.storage.base import BlobStore, StoredBlob


@dataclass
class Report:
    """What a collection found: blobs collected (or that would be), kept because recently used, and stale rows."""

    collected: list[StoredBlob] = field(default_factory=list)
    recent: int = 0
    referenced: int = 0
    stale_rows: int = 0

    @property
    def collected_bytes(self) -> int:
        """Bytes of the collected blobs."""
        return sum(b.size for b in self.collected)


def referenced_digests(session: Session) -> set[str]:
    """Every digest some version's manifest lists (yanked versions too: they stay installable when pinned)."""
    found: set[str] = set()
    for (raw,) in session.execute(select(Release.manifest_json).execution_options(yield_per=100)):
        files = json.loads(raw).get("files") or []
        found.update(f["sha256"] for f in files if isinstance(f, dict) and isinstance(f.get("sha256"), str))
    return found


def collect(sessions: sessionmaker[Session], store: BlobStore, *, grace: float, delete_blobs: bool,
            now: datetime | None = None) -> Report:
    """Find (and with `delete_blobs`, delete) unreferenced blobs unused for `grace` seconds."""
    cutoff = (now or utcnow()) - timedelta(seconds=grace)
    report = Report()
    with sessions() as session:
        referenced = referenced_digests(session)
        rows = {d: as_utc(used) for d, used in session.execute(select(Blob.digest, Blob.used_at))}
        session.commit()
        stored = {}
        for blob in store.list_blobs():
            stored[blob.digest] = blob
            if blob.digest in referenced:
                report.referenced += 1
                continue
            used = rows.get(blob.digest) or datetime.fromtimestamp(blob.mtime, timezone.utc)
            if used >= cutoff:
                report.recent += 1
            elif not delete_blobs or _collect_one(session, store, blob, blob.digest in rows, cutoff):
                report.collected.append(blob)
        report.stale_rows = _stale_rows(session, set(rows) - set(stored) - referenced, cutoff, delete_blobs)
    return report


def _collect_one(session: Session, store: BlobStore, blob: StoredBlob, recorded: bool, cutoff: datetime) -> bool:
    """Flip the blob's row to collecting (unless it was used since `cutoff`), delete the blob, then the row."""
    if not recorded:  # stored before rows existed: record it as last used when it was stored
        stored_at = datetime.fromtimestamp(blob.mtime, timezone.utc)
        session.add(Blob(digest=blob.digest, size=blob.size, uploader_id=None, uploaded_at=stored_at,
                         used_at=stored_at, collecting=False))
        try:
            session.commit()
        except DbIntegrityError:  # recorded just now by an upload or a publish: it is in use
            session.rollback()
            return False
    flipped = session.execute(update(Blob).where(Blob.digest == blob.digest, Blob.used_at < cutoff)
                              .values(collecting=True)).rowcount
    session.commit()
    if flipped != 1:  # used since the listing: keep it
        return False
    store.delete(blob.digest)
    session.execute(delete(Blob).where(Blob.digest == blob.digest))
    session.commit()
    return True


def _stale_rows(session: Session, digests: set[str], cutoff: datetime, delete_rows: bool) -> int:
    """Rows of blobs that are not stored (uploads that never finished), unused since `cutoff`: counted or deleted."""
    stale = 0
    for digest in sorted(digests):
        stmt = delete(Blob) if delete_rows else select(Blob.digest)
        result = session.execute(stmt.where(Blob.digest == digest, Blob.used_at < cutoff))
        stale += result.rowcount if delete_rows else len(result.all())
    session.commit()
    return stale

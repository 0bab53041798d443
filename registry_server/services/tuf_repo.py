"""The registry as a TUF repository: the roles' shapes, their rows (TufMetadata, TufTarget), the lock, pruning.

Root is signed offline; targets, the 32 hash bins (`bins-00`…`bins-1f`, a succinct
delegation from targets), snapshot and timestamp by one online key. Consistent snapshots:
every file is stored (and served) by version, targets by hash, so a client mid-update
always finds the files its snapshot names. The flows that sign are in tuf_sign.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import Signer
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session
from tuf.api.metadata import (
    Delegations,
    Key,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)

from nnpm.format.tufverify import BIN_BITS, BIN_PREFIX
from registry_server.db.tables import TufMetadata, TufTarget, as_utc

DAY = 86400
EXPIRY = {"root": 365 * DAY, "targets": 365 * DAY, "bins": 365 * DAY, "snapshot": 7 * DAY}
ONLINE_ROLES = ("targets", "snapshot", "timestamp")
KEEP_SECONDS = 3600          # a replaced file stays servable this long, for clients mid-update
_PG_LOCK = 0x6E6E706D747566  # "nnpmtuf": the advisory lock every signer takes first


def utc_now() -> datetime:
    """Now, in UTC, to the microsecond (rows made in one second still sort)."""
    return datetime.now(timezone.utc)


def expires_in(seconds: int) -> datetime:
    """The expiry `seconds` from now, rounded up to the second (TUF writes no fractions; never a shorter life)."""
    when = utc_now() + timedelta(seconds=seconds)
    return when.replace(microsecond=0) + timedelta(seconds=1 if when.microsecond else 0)


def bins(keyids: list[str]) -> SuccinctRoles:
    """The succinct hash-bin delegation, signed by `keyids` (the online key)."""
    return SuccinctRoles(keyids, 1, BIN_BITS, BIN_PREFIX)


BIN_NAMES = tuple(bins(["-"]).get_roles())


def lock(session: Session) -> None:
    """Serialise signers across processes for the rest of this transaction, before any version is read.

    PostgreSQL: a transaction-level advisory lock. SQLite: its one write lock, taken now by
    an UPDATE that changes nothing (pysqlite begins the transaction at the first write)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
    elif dialect == "sqlite":
        session.execute(text("UPDATE tuf_metadata SET version = version WHERE 1 = 0"))


def newest(session: Session, role: str) -> TufMetadata | None:
    """The newest stored version of a role, or None."""
    return session.scalar(select(TufMetadata).where(TufMetadata.role == role)
                          .order_by(TufMetadata.version.desc()).limit(1))


def stored(session: Session, role: str, version: int) -> TufMetadata | None:
    """One stored version of a role, or None."""
    return session.get(TufMetadata, (role, version))


def parse(row: TufMetadata) -> Metadata:
    """The Metadata object of a stored row."""
    return Metadata.from_bytes(row.body.encode())


def expiry_of(body: str) -> datetime:
    """When a stored file expires, read without building Metadata (the hot read of timestamp.json)."""
    return datetime.strptime(json.loads(body)["signed"]["expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def signed_by(row: TufMetadata) -> set[str]:
    """The key ids that signed a stored file."""
    return {sig["keyid"] for sig in json.loads(row.body).get("signatures", [])}


def store(session: Session, role: str, md: Metadata, signers: Iterable[Signer]) -> bytes:
    """Sign `md` with every signer (replacing old signatures), add its row, return the bytes as served."""
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    body = md.to_bytes()
    session.add(TufMetadata(role=role, version=md.signed.version, body=body.decode(), created_at=utc_now()))
    return body


def put_target(session: Session, path: str, body: bytes) -> TargetFile:
    """Keep a target's exact bytes by hash (a row already there counts as new again); its TargetFile."""
    sha = hashlib.sha256(body).hexdigest()
    row = session.get(TufTarget, sha)
    if row is None:
        session.add(TufTarget(sha256=sha, path=path, body=body.decode(), created_at=utc_now()))
    else:  # the same bytes again (a yank undone): newest again, so pruning keeps it
        row.created_at = utc_now()
    return TargetFile(len(body), {"sha256": sha}, path)


def new_root(root_keys: list[Key], threshold: int, online: Key, version: int = 1) -> Metadata[Root]:
    """A root naming the offline root keys (with their threshold) and the online key for the other roles."""
    root = Root(version=version, expires=expires_in(EXPIRY["root"]), consistent_snapshot=True)
    for key in root_keys:
        root.add_key(key, Root.type)
    root.roles[Root.type].threshold = threshold
    for role in ONLINE_ROLES:
        root.add_key(online, role)
    return Metadata(root)


def new_targets(online: Key, version: int = 1) -> Metadata[Targets]:
    """Top-level targets: no targets of its own, every path delegated to the hash bins."""
    targets = Targets(version=version, expires=expires_in(EXPIRY["targets"]))
    targets.delegations = Delegations(keys={online.keyid: online}, roles=None, succinct_roles=bins([online.keyid]))
    return Metadata(targets)


def new_bin(files: dict[str, TargetFile], version: int = 1) -> Metadata[Targets]:
    """One hash bin listing its packuments."""
    return Metadata(Targets(version=version, expires=expires_in(EXPIRY["bins"]), targets=files))


def new_snapshot(versions: dict[str, int], version: int) -> Metadata[Snapshot]:
    """A snapshot naming the version of targets and of every bin."""
    return Metadata(Snapshot(version=version, expires=expires_in(EXPIRY["snapshot"]),
                             meta={f"{role}.json": MetaFile(v) for role, v in versions.items()}))


def new_timestamp(version: int, expiry: int, snapshot_version: int, snapshot_body: bytes) -> Metadata[Timestamp]:
    """A timestamp naming the snapshot by version, length and hash."""
    meta = MetaFile(snapshot_version, len(snapshot_body), {"sha256": hashlib.sha256(snapshot_body).hexdigest()})
    return Metadata(Timestamp(version=version, expires=expires_in(expiry), snapshot_meta=meta))


def prune(session: Session, roles: Iterable[str], paths: Iterable[str]) -> None:
    """Drop versions (never of root) and targets replaced over KEEP_SECONDS ago; the newest always stays.

    A row is replaced when its successor is made: it stays while that successor is younger
    than KEEP_SECONDS, so a client that read the previous snapshot still finds its files."""
    cutoff = utc_now() - timedelta(seconds=KEEP_SECONDS)
    for role in roles:
        if role == Root.type:
            continue
        top = session.scalar(select(func.max(TufMetadata.version)).where(TufMetadata.role == role))
        first_recent = session.scalar(select(func.min(TufMetadata.version))
                                      .where(TufMetadata.role == role, TufMetadata.created_at > cutoff))
        if top is None:
            continue
        keep_from = top if first_recent is None else first_recent - 1
        session.execute(delete(TufMetadata).where(TufMetadata.role == role, TufMetadata.version < keep_from))
    for path in paths:
        rows = session.execute(select(TufTarget.sha256, TufTarget.created_at).where(TufTarget.path == path)
                               .order_by(TufTarget.created_at.desc())).all()
        old = [(sha, as_utc(made)) for sha, made in rows if as_utc(made) <= cutoff]
        gone = [sha for sha, made in old[1:] if made < old[0][1]]   # the newest old one was current at cutoff
        if gone:
            session.execute(delete(TufTarget).where(TufTarget.sha256.in_(gone)))


def target_body(session: Session, sha256: str, path: str) -> str | None:
    """The stored bytes of a target by hash, when they are the target at `path`; else None."""
    row = session.get(TufTarget, sha256)
    return row.body if row is not None and row.path == path else None

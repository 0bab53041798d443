"""Signing the TUF index: a change of packages, a reader finding it half-expired, `keys init`, `keys rotate`.

Every flow takes `tuf_repo.lock` first, then reads the newest versions, so two publishes
committing at once (on any replica) never both sign version N+1.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from datetime import timedelta

from securesystemslib.signer import Signer
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from tuf.api.metadata import Metadata, MetaFile, Root

from nnpm.errors import ConfigError, NnpmError, NotFoundError
from nnpm.format.tufverify import bin_of, target_path
from registry_server.db.tables import Package, TufMetadata
from registry_server.services.catalog import packument
from registry_server.services.tuf_keys import OnlineKey
from registry_server.services.tuf_repo import (
    BIN_NAMES,
    EXPIRY,
    ONLINE_ROLES,
    expires_in,
    expiry_of,
    lock,
    new_bin,
    new_root,
    new_snapshot,
    new_targets,
    new_timestamp,
    newest,
    parse,
    prune,
    put_target,
    signed_by,
    store,
    utc_now,
)

log = logging.getLogger("registry_server")


def _packument(session: Session, name: str) -> bytes | None:
    try:
        return packument(session, name)[0]
    except NotFoundError:
        return None


def _online_signer(key: OnlineKey, timestamp: TufMetadata) -> Signer | None:
    """The online signer, if it is the key the index is signed with (a replica with a stale key signs nothing)."""
    try:
        signer = key.signer()
    except NnpmError as exc:
        log.error("the TUF index was not re-signed: %s", exc.message)
        return None
    if signer is None:
        log.warning("the TUF index was not re-signed: no online key at %s", key.path)
        return None
    if signer.public_key.keyid not in signed_by(timestamp):
        log.warning("the TUF index was not re-signed: the key at %s is not the index's online key", key.path)
        return None
    return signer


def _bump(md: Metadata, lifetime: int) -> Metadata:
    md.signed.version += 1
    md.signed.expires = expires_in(lifetime)
    return md


def _snapshot_and_timestamp(session: Session, signer: Signer, expiry: int, versions: dict[str, int]) -> None:
    snapshot = _bump(parse(newest(session, "snapshot")), EXPIRY["snapshot"])
    for role, version in versions.items():
        snapshot.signed.meta[f"{role}.json"] = MetaFile(version)
    body = store(session, "snapshot", snapshot, [signer])
    _timestamp(session, signer, expiry, snapshot.signed.version, body)


def _timestamp(session: Session, signer: Signer, expiry: int, snapshot_version: int, snapshot_body: bytes) -> None:
    top = newest(session, "timestamp")
    store(session, "timestamp", new_timestamp(top.version + 1 if top else 1, expiry, snapshot_version, snapshot_body),
          [signer])


def packages_changed(session: Session, key: OnlineKey, names: Iterable[str]) -> None:
    """Re-sign the bins whose packuments changed, then snapshot and timestamp, in the caller's transaction."""
    session.flush()   # the caller's rows first: the packuments signed must show them
    lock(session)
    top = newest(session, "timestamp")
    if top is None:   # `keys init` was never run on this database
        return
    signer = _online_signer(key, top)
    if signer is None:
        return
    loaded: dict[str, Metadata] = {}
    changed: set[str] = set()
    paths: list[str] = []
    for name in sorted(set(names)):
        path = target_path(name)
        role = bin_of(path)
        md = loaded[role] if role in loaded else loaded.setdefault(role, parse(newest(session, role)))
        body, old = _packument(session, name), md.signed.targets.get(path)
        if body is None:
            if md.signed.targets.pop(path, None) is not None:
                changed.add(role)
            continue
        if old is not None and old.length == len(body) and old.hashes.get("sha256") == hashlib.sha256(body).hexdigest():
            continue  # e.g. a yank of a version already yanked: nothing to sign
        md.signed.targets[path] = put_target(session, path, body)
        changed.add(role)
        paths.append(path)
    if not changed:
        return
    versions = {}
    for role in sorted(changed):
        store(session, role, _bump(loaded[role], EXPIRY["bins"]), [signer])
        versions[role] = loaded[role].signed.version
    _snapshot_and_timestamp(session, signer, key.timestamp_expiry, versions)
    prune(session, [*changed, "snapshot", "timestamp"], paths)


def stale(row: TufMetadata, lifetime: int) -> bool:
    """Whether a stored file has less than half its life left."""
    return expiry_of(row.body) - utc_now() < timedelta(seconds=lifetime / 2)


def refresh(sessions: sessionmaker[Session], key: OnlineKey) -> None:
    """Re-sign the timestamp (and targets, bins, snapshot that are half-expired) in a transaction of its own.

    For readers: called when the timestamp they read has less than half its life left. A
    lost race (another replica re-signed first) leaves what that one committed."""
    with sessions() as session:
        try:
            lock(session)
            top = newest(session, "timestamp")
            if top is None or not stale(top, key.timestamp_expiry):
                session.rollback()
                return
            signer = _online_signer(key, top)
            if signer is None:
                session.rollback()
                return
            _refresh_signed(session, signer, key.timestamp_expiry)
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            log.warning("could not re-sign the TUF timestamp: %s", type(exc).__name__)


def timestamp_body(sessions: sessionmaker[Session], key: OnlineKey) -> str | None:
    """The newest timestamp as served (None before `keys init`), re-signed first when half-expired."""
    with sessions() as session:
        row = newest(session, "timestamp")
        if row is None or not stale(row, key.timestamp_expiry):
            return row.body if row is not None else None
    refresh(sessions, key)
    with sessions() as session:
        row = newest(session, "timestamp")
        return row.body if row is not None else None


def _refresh_signed(session: Session, signer: Signer, expiry: int) -> None:
    versions = {}
    for role in ("targets", *BIN_NAMES):
        row = newest(session, role)
        lifetime = EXPIRY["targets" if role == "targets" else "bins"]
        if stale(row, lifetime):
            md = _bump(parse(row), lifetime)
            store(session, role, md, [signer])
            versions[role] = md.signed.version
    snapshot = newest(session, "snapshot")
    if versions or stale(snapshot, EXPIRY["snapshot"]):
        _snapshot_and_timestamp(session, signer, expiry, versions)
    else:
        _timestamp(session, signer, expiry, snapshot.version, snapshot.body.encode())
    prune(session, [*versions, "snapshot", "timestamp"], [])


def initialise(session: Session, root_signers: list[Signer], threshold: int, online: Signer, expiry: int) -> int:
    """Root version 1 (signed by every root key) and a first targets, bins, snapshot, timestamp over every package.

    Returns how many packages were signed (read under the lock: none is published unsigned meanwhile)."""
    lock(session)
    if newest(session, Root.type) is not None:
        raise ConfigError("this registry's signed index is already initialised; nothing was changed",
                          hint="use 'nnpm registry keys rotate' to change its keys")
    if not 1 <= threshold <= len(root_signers):
        raise ConfigError(f"a threshold of {threshold} needs between 1 and {len(root_signers)} root keys")
    online_key = online.public_key
    store(session, Root.type, new_root([s.public_key for s in root_signers], threshold, online_key), root_signers)
    store(session, "targets", new_targets(online_key), [online])
    files: dict[str, dict] = {role: {} for role in BIN_NAMES}
    names = session.scalars(select(Package.name)).all()
    for name in names:
        body = _packument(session, name)
        if body is not None:
            path = target_path(name)
            files[bin_of(path)][path] = put_target(session, path, body)
    for role in BIN_NAMES:
        store(session, role, new_bin(files[role]), [online])
    body = store(session, "snapshot", new_snapshot({"targets": 1, **dict.fromkeys(BIN_NAMES, 1)}, 1), [online])
    store(session, "timestamp", new_timestamp(1, expiry, 1, body), [online])
    return len(names)


def rotate(session: Session, old_signers: list[Signer], new_root_signers: list[Signer] | None,
           threshold: int | None, new_online: Signer | None, expiry: int) -> int:
    """Root N+1 signed by the old root's threshold and by its own keys; a new online key re-signs the rest.

    Returns N+1."""
    lock(session)
    row = newest(session, Root.type)
    if row is None:
        raise ConfigError("this registry has no signed index to rotate", hint="run 'nnpm registry keys init' first")
    old = parse(row)
    root = parse(row).signed
    role = root.roles[Root.type]
    usable = [s for s in old_signers if s.public_key.keyid in role.keyids]
    if len(usable) < role.threshold:
        raise ConfigError(f"root version {root.version} needs {role.threshold} of its keys; the keys given hold "
                          f"{len(usable)}", hint="pass the folder with the current root keys as --root-keys")
    if new_root_signers:
        for keyid in list(role.keyids):
            root.revoke_key(keyid, Root.type)
        for signer in new_root_signers:
            root.add_key(signer.public_key, Root.type)
    root.roles[Root.type].threshold = threshold or root.roles[Root.type].threshold
    if not 1 <= root.roles[Root.type].threshold <= len(root.roles[Root.type].keyids):
        raise ConfigError(f"a threshold of {root.roles[Root.type].threshold} needs at least as many root keys")
    if new_online is not None:
        for name in ONLINE_ROLES:
            for keyid in list(root.roles[name].keyids):
                root.revoke_key(keyid, name)
            root.add_key(new_online.public_key, name)
    root.version += 1
    root.expires = expires_in(EXPIRY["root"])
    signers = {s.public_key.keyid: s for s in [*usable, *(new_root_signers or [])]}
    md = Metadata(root)
    store(session, Root.type, md, signers.values())
    old.verify_delegate(Root.type, md)   # the chain a client walks: old threshold, then the new one's own
    md.verify_delegate(Root.type, md)
    if new_online is not None:
        _resign_online(session, new_online, expiry)
    return root.version


def _resign_online(session: Session, signer: Signer, expiry: int) -> None:
    targets = newest(session, "targets")
    store(session, "targets", new_targets(signer.public_key, targets.version + 1), [signer])
    versions = {"targets": targets.version + 1}
    for role in BIN_NAMES:
        md = _bump(parse(newest(session, role)), EXPIRY["bins"])
        store(session, role, md, [signer])
        versions[role] = md.signed.version
    _snapshot_and_timestamp(session, signer, expiry, versions)
    prune(session, ["targets", *BIN_NAMES, "snapshot", "timestamp"], [])

"""A tiny TUF repository in memory (python-tuf's metadata API) and tar surgery on bundles, for the bundle tests.

``TufRepo(packuments={name: bytes})`` signs root 1 (one key, or ``root_keys`` with a
``threshold``), targets delegating to 32 succinct bins ``bins-00``..``bins-1f``, the bins
holding ``packuments/<name>.json``, snapshot and timestamp, as docs/trust.md describes the
registry's index. ``.roots`` ({version: bytes}), ``.roles`` ({role: bytes}: timestamp,
snapshot, targets and the bins that hold a packument), ``.rotate_root(new_keys=1)`` signs
the next root with the old keys and the new ones; ``.resigned_root(N)`` is the newest root as
version N signed by its own keys only (a forged successor).

``members(path)`` reads a tar's members with their bytes, in order; ``rewrite(path, members)``
writes them back as given (any name, type or order), for bundles altered one way.
"""

from __future__ import annotations

import io
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path


def _signer():
    from securesystemslib.signer import CryptoSigner

    return CryptoSigner.generate_ed25519()


class TufRepo:
    """Signed metadata for a set of packuments; every role but root signed by one online key."""

    def __init__(self, packuments: dict[str, bytes], *, root_keys: int = 1, threshold: int = 1) -> None:
        from tuf.api.metadata import Metadata, Root

        self.expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)
        self.online = _signer()
        self.root_signers = [_signer() for _ in range(root_keys)]
        root = Root(expires=self.expires, consistent_snapshot=True)
        for s in self.root_signers:
            root.add_key(s.public_key, "root")
        root.roles["root"].threshold = threshold
        for role in ("timestamp", "snapshot", "targets"):
            root.add_key(self.online.public_key, role)
        self.root = Metadata(root)
        for s in self.root_signers:
            self.root.sign(s, append=True)
        self.roots = {1: self.root.to_bytes()}
        self.roles: dict[str, bytes] = {}
        self.sign_index(packuments)

    def sign_index(self, packuments: dict[str, bytes]) -> None:
        """targets, the bins, snapshot and timestamp over these packuments."""
        from tuf.api.metadata import (
            Delegations,
            Metadata,
            MetaFile,
            Snapshot,
            SuccinctRoles,
            TargetFile,
            Targets,
            Timestamp,
        )

        succinct = SuccinctRoles([], 1, 5, "bins")
        targets = Targets(expires=self.expires)
        targets.delegations = Delegations(keys={}, succinct_roles=succinct)
        targets.add_key(self.online.public_key)
        bins: dict[str, Targets] = {}
        for name, data in sorted(packuments.items()):
            path = f"packuments/{name}.json"
            role = succinct.get_role_for_target(path)
            bins.setdefault(role, Targets(expires=self.expires)).targets[path] = TargetFile.from_data(path, data)
        signed = {"targets": self._sign(Metadata(targets))}
        signed |= {role: self._sign(Metadata(t)) for role, t in bins.items()}
        snapshot = Snapshot(expires=self.expires)
        snapshot.meta = {f"{r}.json": MetaFile(1) for r in signed}
        for role in succinct.get_roles():   # every bin is listed, as a registry lists its empty ones
            snapshot.meta.setdefault(f"{role}.json", MetaFile(1))
        snap = self._sign(Metadata(snapshot))
        timestamp = Timestamp(expires=self.expires, snapshot_meta=MetaFile.from_data(1, snap, ["sha256"]))
        self.roles = {**signed, "snapshot": snap, "timestamp": self._sign(Metadata(timestamp))}

    def _sign(self, md) -> bytes:
        md.sign(self.online)
        return md.to_bytes()

    def resigned_root(self, version: int) -> bytes:
        """The newest root as version `version`, signed by this repository's root keys alone."""
        from tuf.api.metadata import Metadata

        md = Metadata.from_bytes(self.roots[max(self.roots)])
        md.signed.version = version
        md.signatures.clear()
        for s in self.root_signers:
            md.sign(s, append=True)
        return md.to_bytes()

    def rotate_root(self, new_keys: int = 1) -> None:
        """Root N+1 with fresh root keys, signed by the old keys and the new ones."""
        from tuf.api.metadata import Metadata

        new = [_signer() for _ in range(new_keys)]
        root = Metadata.from_bytes(self.roots[max(self.roots)]).signed
        for s in self.root_signers:
            root.revoke_key(s.public_key.keyid, "root")
        for s in new:
            root.add_key(s.public_key, "root")
        root.roles["root"].threshold = 1
        root.version += 1
        md = Metadata(root)
        for s in [*self.root_signers, *new]:
            md.sign(s, append=True)
        self.root_signers = new
        self.roots[root.version] = md.to_bytes()


def members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Every member of a tar with its bytes (empty for links), in order."""
    with tarfile.open(path) as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar.getmembers()]


def rewrite(path: Path, items: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """Write `items` as a tar at `path`, exactly in that order and under those names."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in items:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path

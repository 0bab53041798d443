"""What an export takes from the registry besides blobs: each packument's bytes as signed, and the signed index
that covers them.

A registry this machine pins (nnpm/client/trusted_index.py) gives its packuments through
python-tuf's updater, which leaves the metadata it verified in the pin's `metadata/`
folder: timestamp, snapshot, targets, the bins it read and the roots from the pinned one
(`root_history/`). Those files are what the bundle carries; roots older than the pin are
asked of the registry (`/tuf/metadata/N.root.json`), so the chain starts at 1. A registry
without a signed index gives its packuments as the plain API serves them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nnpm.errors import IndexTrustError, NotFoundError

if TYPE_CHECKING:
    from nnpm.client.api import RegistryClient
    from nnpm.client.trusted_index import TrustedIndex
    from nnpm.format.bundle import BundleInfo, BundleMetadata


def fetch_metadata(client: "RegistryClient", info: "BundleInfo") -> "BundleMetadata":
    """The bundle's small members for the packages `info` names: packuments (through the signed index when the
    registry has one, pinned now on first contact) and that index's files."""
    from nnpm.format.bundle import BundleMetadata

    meta = BundleMetadata(info)
    index = client.trusted_index()
    for name in sorted({p.name for p in info.packages}):
        raw = index.packument_bytes(name) if index is not None else client.packument_bytes(name)
        if raw is None:
            raise NotFoundError(f"no package {name!r} on {client.url}")
        meta.packuments[name] = raw
    if index is not None:
        _add_index(client, index, meta)
    return meta


def _add_index(client: "RegistryClient", index: "TrustedIndex", meta: "BundleMetadata") -> None:
    """The verified files the updater left, the bins the packuments are in, and the root chain from 1."""
    from nnpm.format.tufverify import role_of, root_version

    folder = index.metadata_dir
    for role in ("timestamp", "snapshot", "targets"):
        meta.roles[role] = _read(folder / f"{role}.json", role)
    for name in meta.packuments:
        role = role_of(meta.roles["targets"], name)
        meta.roles.setdefault(role, _read(folder / f"{role}.json", role))
    newest = root_version(_read(folder / "root.json", "root"))
    for version in range(1, newest + 1):
        held = folder / "root_history" / f"{version}.root.json"
        data = held.read_bytes() if held.is_file() else client.tuf_file(f"metadata/{version}.root.json")
        if data is None:
            raise IndexTrustError(f"{client.url} does not serve root version {version} of its signed index",
                                  role="root")
        meta.roots[version] = data


def _read(path: Path, role: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IndexTrustError(f"the verified {role} metadata is missing from {path.parent}", role=role) from None

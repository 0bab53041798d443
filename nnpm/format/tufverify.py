"""Offline verification of a registry's signed index (TUF metadata), for bundles: no network, no clock.

What python-tuf's updater checks online, against bytes already at hand: the root chain
from a trusted root (each version N+1 signed by a threshold of N's root keys and of its
own), timestamp by the final root, snapshot against timestamp's meta (version, and
length and hashes when given), targets and each bin against snapshot's meta and their
delegator's keys, and each packument's bytes against its bin's target entry
(`packuments/<name>.json`, in the bin `SuccinctRoles.get_role_for_target` names).
Expiry is not checked (a bundle may be carried for weeks); the timestamp's expiry is
reported so the importer can say how old the index is. Any failure is one
IndexTrustError naming the role. python-tuf is imported on first use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nnpm.errors import IndexTrustError

TARGET_PREFIX = "packuments/"
# The registry's targets delegate to 2**BIN_BITS hash bins named BIN_PREFIX-XX: one definition for the
# server that signs them (registry_server/services/tuf_repo.py) and the clients that name them.
BIN_BITS = 5                 # 32 bins: a publish re-signs one small file, not one listing every package
BIN_PREFIX = "bins"


def load_tuf() -> None:
    """Import python-tuf without the cloud SDKs it would pick up for KMS signers nnpm never uses.

    securesystemslib imports boto3 for its AWS signer whenever boto3 is installed (the registry's
    `[s3]` extra brings it): ~90 ms of a client command that only verifies. The import is kept
    from finding it while tuf loads, then undone, so a later `import boto3` works as ever."""
    import sys

    if "tuf.api.metadata" in sys.modules:
        return
    blocked = [name for name in ("boto3", "botocore") if name not in sys.modules]
    sys.modules.update(dict.fromkeys(blocked))   # None: `import boto3` raises ImportError meanwhile
    try:
        import tuf.api.metadata  # noqa: F401
    finally:
        for name in blocked:
            if sys.modules.get(name) is None:
                sys.modules.pop(name, None)


def target_path(name: str) -> str:
    """The TUF target path of a package's packument."""
    return f"{TARGET_PREFIX}{name}.json"


def bin_of(path: str) -> str:
    """The hash bin (`bins-XX`) that signs a target path."""
    load_tuf()
    from tuf.api.metadata import SuccinctRoles

    return SuccinctRoles([], 1, BIN_BITS, BIN_PREFIX).get_role_for_target(path)


def role_of(targets: bytes, name: str) -> str:
    """The role that signs a package's packument: the bin targets' succinct delegation names, else targets."""
    load_tuf()
    from tuf.api.metadata import Targets

    delegations = _load(Targets, "targets", targets).signed.delegations
    if delegations is None or delegations.succinct_roles is None:
        return "targets"
    return delegations.succinct_roles.get_role_for_target(target_path(name))


@dataclass(frozen=True)
class VerifiedIndex:
    """What a verified index said: its final root version and the timestamp's version and expiry."""

    root_version: int
    timestamp_version: int
    expires: datetime


@contextmanager
def _role(role: str, what: str = "") -> Iterator[None]:
    """Every python-tuf failure inside becomes one IndexTrustError naming `role`."""
    from securesystemslib.exceptions import Error as SslibError
    from tuf.api.exceptions import RepositoryError

    try:
        yield
    except IndexTrustError:
        raise
    except (RepositoryError, SslibError, ValueError, KeyError, TypeError, AttributeError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise IndexTrustError(f"the signed index's {role} metadata{what} does not verify: {detail}", role=role,
                              hint="the bundle was altered, or was not made from this registry's index") from None


def _load(kind: type, role: str, data: bytes) -> Any:
    """Metadata of the expected kind, parsed (not yet verified)."""
    from tuf.api.metadata import Metadata

    with _role(role):
        md = Metadata.from_bytes(data)
        if not isinstance(md.signed, kind):
            raise IndexTrustError(f"the signed index's {role} file holds {md.signed.type} metadata", role=role)
        return md


def root_version(data: bytes) -> int:
    """The version of root metadata bytes (IndexTrustError when they are not root metadata)."""
    load_tuf()
    from tuf.api.metadata import Root

    return _load(Root, "root", data).signed.version


def verify_root_chain(trusted: bytes, roots: dict[int, bytes]) -> Any:
    """The final Root: `trusted` (self-signed), then each newer root of `roots` in turn, signed by the
    previous one's threshold and by its own. Versions after the trusted one must follow without a gap."""
    load_tuf()
    from tuf.api.metadata import Root

    current = _load(Root, "root", trusted)
    with _role("root", f" (version {current.signed.version}, the trusted one)"):
        current.signed.verify_delegate(Root.type, current.signed_bytes, current.signatures)
    newer = sorted(v for v in roots if v > current.signed.version)
    if newer and newer != list(range(current.signed.version + 1, newer[-1] + 1)):
        raise IndexTrustError(f"the root chain has a gap after version {current.signed.version}", role="root")
    for version in newer:
        new = _load(Root, "root", roots[version])
        with _role("root", f" (version {version})"):
            if new.signed.version != version:
                raise IndexTrustError(f"tuf/root/{version}.root.json holds root version {new.signed.version}",
                                      role="root")
            current.signed.verify_delegate(Root.type, new.signed_bytes, new.signatures)
            new.signed.verify_delegate(Root.type, new.signed_bytes, new.signatures)
        current = new
    return current.signed


def _meta_checked(role: str, meta: Any, data: bytes, version: int) -> None:
    """Length and hashes (when the meta names them) and the version the meta names."""
    with _role(role):
        meta.verify_length_and_hashes(data)
        if version != meta.version:
            raise IndexTrustError(f"the signed index's {role} is version {version}; its snapshot names "
                                  f"version {meta.version}", role=role)


def verify_index(trusted_root: bytes, roots: dict[int, bytes], roles: dict[str, bytes],
                 packuments: dict[str, bytes]) -> VerifiedIndex:
    """Verify the whole index and every packument's bytes against it; IndexTrustError naming the role otherwise.

    `roles` holds timestamp, snapshot, targets and bins-XX bytes; `packuments` maps canonical
    names to the bytes the registry signed."""
    load_tuf()
    from tuf.api.metadata import Snapshot, Targets, Timestamp

    root = verify_root_chain(trusted_root, roots)
    for needed in ("timestamp", "snapshot", "targets"):
        if needed not in roles:
            raise IndexTrustError(f"the signed index has no {needed} metadata", role=needed)
    timestamp = _load(Timestamp, "timestamp", roles["timestamp"])
    with _role("timestamp"):
        root.verify_delegate(Timestamp.type, timestamp.signed_bytes, timestamp.signatures)
    snapshot = _load(Snapshot, "snapshot", roles["snapshot"])
    with _role("snapshot"):
        root.verify_delegate(Snapshot.type, snapshot.signed_bytes, snapshot.signatures)
    _meta_checked("snapshot", timestamp.signed.snapshot_meta, roles["snapshot"], snapshot.signed.version)
    targets = _load(Targets, "targets", roles["targets"])
    with _role("targets"):
        root.verify_delegate(Targets.type, targets.signed_bytes, targets.signatures)
    _meta_checked("targets", _snapshot_meta(snapshot.signed, "targets"), roles["targets"], targets.signed.version)
    bins = _verified_bins(targets.signed, snapshot.signed, roles)
    for name, data in packuments.items():
        _check_target(targets.signed, bins, name, data)
    return VerifiedIndex(root.version, timestamp.signed.version, timestamp.signed.expires)


def _snapshot_meta(snapshot: Any, role: str) -> Any:
    meta = snapshot.meta.get(f"{role}.json")
    if meta is None:
        raise IndexTrustError(f"the signed index's snapshot does not list {role}", role=role)
    return meta


def _verified_bins(targets: Any, snapshot: Any, roles: dict[str, bytes]) -> dict[str, Any]:
    """Each bin of `roles`, signed by the keys targets delegates it to, as snapshot lists it."""
    from tuf.api.metadata import Targets

    out = {}
    for role in sorted(r for r in roles if r.startswith("bins-")):
        md = _load(Targets, role, roles[role])
        with _role(role):
            targets.verify_delegate(role, md.signed_bytes, md.signatures)
        _meta_checked(role, _snapshot_meta(snapshot, role), roles[role], md.signed.version)
        out[role] = md.signed
    return out


def _check_target(targets: Any, bins: dict[str, Any], name: str, data: bytes) -> None:
    """A packument's bytes against the target entry of the bin that holds it."""
    path = target_path(name)
    delegations = targets.delegations
    if delegations is None or delegations.succinct_roles is None:
        entry, role = targets.targets.get(path), "targets"
    else:
        role = delegations.succinct_roles.get_role_for_target(path)
        if role not in bins:
            raise IndexTrustError(f"the signed index lacks {role}, which holds {path}", role=role)
        entry = bins[role].targets.get(path)
    if entry is None:
        raise IndexTrustError(f"the signed index's {role} does not list {path}", role=role,
                              hint="the registry's index does not know this package")
    with _role(role, f" entry for {path}"):
        entry.verify_length_and_hashes(data)

"""The air-gapped bundle (docs/trust.md): one uncompressed, deterministic tar, read without trusting it.

    bundle.json                   format, registry, created_at, packages, requested
    tuf/root/N.root.json          the root chain (when the registry signs its index)
    tuf/ROLE.json                 timestamp, snapshot, targets and the bins the packuments need
    packuments/NAME.json          each packument's bytes exactly as signed
    blobs/sha256-HEX              every file of every version bundled

Members come in that order (roots by version, the other roles, packuments and blobs by
name), each with fixed metadata (mode 0644, mtime 0, uid/gid 0), so the same contents
always write the same bytes, and a reader has every small file in memory, and checked by
its caller, before the first blob arrives. Reading takes only regular members whose names
match the grammar above, in that order, once each, within the limits of format/limits.py;
blobs are streamed to a scratch folder while hashed, and each must be one the caller
expects, with the size it expects and the sha256 its name says. This module knows the
layout only: what the TUF files and packuments mean is nnpm/format/tufverify.py's and the
importer's business.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from nnpm.errors import IntegrityError, ManifestError, PackageSafetyError
from nnpm.format import limits
from nnpm.fsutil import atomic_path
from nnpm.hashing import CHUNK, copy_matches

FORMAT = "nnpm-bundle/1"
BUNDLE_JSON = "bundle.json"
_NAME = r"[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?"     # a canonical (PEP 503) package name
_MEMBER = re.compile(r"^(?:(?P<info>bundle\.json)|tuf/root/(?P<root>[1-9][0-9]{0,8})\.root\.json"
                     r"|tuf/(?P<role>timestamp|snapshot|targets|bins-[0-9a-f]{1,8})\.json"
                     rf"|packuments/(?P<packument>{_NAME})\.json|blobs/sha256-(?P<blob>[0-9a-f]{{64}}))\Z", re.ASCII)
_RANK = {"info": 0, "root": 1, "role": 2, "packument": 3, "blob": 4}
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z", re.ASCII)
_DIGEST = re.compile(r"^[0-9a-f]{64}\Z", re.ASCII)
_VARIANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z", re.ASCII)
_VERSION = re.compile(r"^[0-9A-Za-z.!+_-]{1,100}\Z", re.ASCII)
MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class BundledPackage:
    """One version the bundle carries: its manifest's sha256 and the variant its lock chose (None: any)."""

    name: str
    version: str
    manifest_sha256: str
    variant: str | None = None

    def to_dict(self) -> dict:
        """The bundle.json form."""
        return {"name": self.name, "version": self.version, "manifest_sha256": self.manifest_sha256,
                "variant": self.variant}


@dataclass(frozen=True)
class BundleInfo:
    """bundle.json: where the packages came from, when, and which versions."""

    registry: str
    created_at: str
    packages: tuple[BundledPackage, ...]
    requested: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        """Canonical bytes: sorted keys, packages by name and version."""
        doc = {"format": FORMAT, "registry": self.registry, "created_at": self.created_at,
               "packages": [p.to_dict() for p in sorted(self.packages, key=lambda p: (p.name, p.version))],
               "requested": sorted(self.requested)}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes, *, source: str = BUNDLE_JSON) -> "BundleInfo":
        """Parse bundle.json strictly: exactly its keys, each of its type; ManifestError otherwise."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise ManifestError("not valid JSON", file=source) from None
        _keys(data, {"format", "registry", "created_at", "packages", "requested"}, source, "")
        if data["format"] != FORMAT:
            raise ManifestError(f"format {str(data['format'])[:40]!r}; this nnpm reads {FORMAT}", file=source,
                                key="format", hint="export the bundle with this nnpm's version")
        registry, created = data["registry"], data["created_at"]
        if not isinstance(registry, str) or not re.match(r"^https?://[\x21-\x7e]+\Z", registry) \
                or len(registry) > MAX_URL_LENGTH:
            raise ManifestError("not an http(s) URL", file=source, key="registry")
        if not isinstance(created, str) or not _TIME.match(created):
            raise ManifestError("not a UTC time like 2026-01-31T12:00:00Z", file=source, key="created_at")
        requested = data["requested"]
        if not isinstance(requested, list) or not all(isinstance(r, str) and len(r) <= 1000 for r in requested):
            raise ManifestError("not a list of strings", file=source, key="requested")
        packages = data["packages"]
        if not isinstance(packages, list) or len(packages) > limits.MAX_BUNDLE_MEMBERS:
            raise ManifestError("not a list", file=source, key="packages")
        parsed = tuple(_package(p, source, i) for i, p in enumerate(packages))
        if len({(p.name, p.version) for p in parsed}) != len(parsed):
            raise ManifestError("a version is listed twice", file=source, key="packages")
        return cls(registry, created, parsed, tuple(requested))


def _keys(data: Any, allowed: set[str], source: str, where: str) -> None:
    if not isinstance(data, dict) or set(data) != allowed:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ManifestError(f"expected exactly the keys {sorted(allowed)}, got {str(got)[:200]}", file=source,
                            key=where or None)


def _package(data: Any, source: str, i: int) -> BundledPackage:
    where = f"packages[{i}]"
    _keys(data, {"name", "version", "manifest_sha256", "variant"}, source, where)
    name, version, digest, variant = data["name"], data["version"], data["manifest_sha256"], data["variant"]
    if not isinstance(name, str) or not re.match(rf"^{_NAME}\Z", name):
        raise ManifestError("not a canonical package name", file=source, key=f"{where}.name")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ManifestError("not a version", file=source, key=f"{where}.version")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ManifestError("not 64 lowercase hex digits", file=source, key=f"{where}.manifest_sha256")
    if variant is not None and (not isinstance(variant, str) or not _VARIANT.match(variant)):
        raise ManifestError("not a variant name", file=source, key=f"{where}.variant")
    return BundledPackage(name, version, digest, variant)


@dataclass
class BundleMetadata:
    """Every member but the blobs: bundle.json parsed, the rest as bytes."""

    info: BundleInfo
    roots: dict[int, bytes] = field(default_factory=dict)        # root version -> bytes
    roles: dict[str, bytes] = field(default_factory=dict)        # timestamp, snapshot, targets, bins-XX -> bytes
    packuments: dict[str, bytes] = field(default_factory=dict)   # canonical name -> bytes as signed

    @property
    def signed(self) -> bool:
        """Whether the bundle carries a signed index (TUF metadata)."""
        return bool(self.roots or self.roles)

    def members(self) -> list[tuple[str, bytes]]:
        """(member name, bytes) of every small member, in bundle order."""
        out = [(BUNDLE_JSON, self.info.to_json())]
        out += [(f"tuf/root/{v}.root.json", self.roots[v]) for v in sorted(self.roots)]
        out += [(f"tuf/{r}.json", self.roles[r]) for r in sorted(self.roles)]
        out += [(f"packuments/{n}.json", self.packuments[n]) for n in sorted(self.packuments)]
        return out


def _member(name: str, size: int) -> tarfile.TarInfo:
    """Fixed metadata, so the same contents always write the same bytes."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = size, 0o644, 0, 0, 0, "", ""
    return ti


class _Hashing(io.RawIOBase):
    """A file read through while hashed and counted, telling `advance` how many bytes passed."""

    def __init__(self, f: IO[bytes], advance: Callable[[int], None] | None) -> None:
        self._f, self._advance = f, advance
        self.sha256, self.size = hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.sha256.update(data)
        self.size += len(data)
        if self._advance:
            self._advance(len(data))
        return data


def write_bundle(out: Path, meta: BundleMetadata, blobs: list[tuple[str, int, Path]], *,
                 advance: Callable[[int], None] | None = None) -> None:
    """Write a bundle to `out` atomically; `blobs` are (sha256 hex, size, path), each re-hashed as it is
    written (IntegrityError, and no bundle, when one changed)."""
    for name, _ in meta.members():
        if not _MEMBER.match(name):
            raise PackageSafetyError(f"{name!r} is not a bundle member name")
    with atomic_path(Path(out)) as tmp:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar:
            for name, data in meta.members():
                tar.addfile(_member(name, len(data)), io.BytesIO(data))
            for digest, size, path in sorted(set(blobs)):
                if not _DIGEST.match(digest):
                    raise IntegrityError(f"not a sha256 digest: {digest!r}")
                with open(path, "rb") as f:
                    read = _Hashing(f, advance)
                    tar.addfile(_member(f"blobs/sha256-{digest}", size), read)
                if read.size != size or read.sha256.hexdigest() != digest:
                    raise IntegrityError(f"blob sha256:{digest[:12]}… at {path} does not match its name",
                                         hint="run 'nnpm cache verify'")


def _metadata_limit(kind: str) -> int:
    return {"info": limits.MAX_BUNDLE_JSON_BYTES, "root": limits.MAX_TUF_METADATA_BYTES,
            "role": limits.MAX_TUF_METADATA_BYTES, "packument": limits.MAX_PACKUMENT_BYTES,
            "blob": limits.MAX_FILE_SIZE}[kind]


class _Reader:
    """One pass over a bundle's members, in order, each checked before it is read."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.last: tuple = (-1,)
        self.members = 0
        self.metadata_bytes = 0
        self.total_bytes = 0

    def check(self, member: tarfile.TarInfo) -> tuple[str, str]:
        """(kind, key) of an acceptable member; PackageSafetyError for anything else."""
        found = _MEMBER.match(member.name)
        if found is None:
            raise PackageSafetyError(f"{self.path}: member {member.name[:200]!r} is not part of a bundle")
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise PackageSafetyError(f"{self.path}: member {member.name!r} is a link or special file")
        kind = found.lastgroup
        key = found.group(kind)
        order = (_RANK[kind], int(key) if kind == "root" else key)
        if order <= self.last:
            raise PackageSafetyError(f"{self.path}: member {member.name!r} is repeated or out of order",
                                     hint="bundles are written by 'nnpm bundle export'")
        self.last = order
        self.members += 1
        self.total_bytes += member.size
        if kind != "blob":
            self.metadata_bytes += member.size
        if member.size > _metadata_limit(kind) or self.members > limits.MAX_BUNDLE_MEMBERS or \
                self.metadata_bytes > limits.MAX_BUNDLE_METADATA_BYTES or self.total_bytes > limits.MAX_BUNDLE_BYTES:
            raise PackageSafetyError(f"{self.path}: member {member.name!r} takes the bundle over its size limits")
        return kind, key


def read_bundle(path: Path, scratch: Path, expect: Callable[[BundleMetadata], dict[str, int]], *,
                advance: Callable[[int], None] | None = None) -> BundleMetadata:
    """Read a bundle: the small members into memory, then `expect(metadata)` (which checks them and answers
    {sha256 hex: size} of the blobs it needs), then every blob into `scratch/HEX`, size and sha256 checked.

    PackageSafetyError for a member that does not belong, IntegrityError for bytes that do
    not match, ManifestError for a malformed bundle.json; whatever `expect` raises."""
    reader = _Reader(path)
    try:
        with tarfile.open(path, "r:") as tar:
            meta, member, kind, digest = _read_metadata(tar, reader)
            wanted = expect(meta)
            seen: set[str] = set()
            while member is not None:   # the metadata is past: only blobs may follow (check() keeps the order)
                if digest not in wanted:
                    raise PackageSafetyError(f"{path}: member {member.name!r} is not a file of any bundled version")
                if member.size != wanted[digest]:
                    raise IntegrityError(f"{path}: blob sha256:{digest[:12]}… is {member.size} bytes; its manifest "
                                         f"says {wanted[digest]}")
                _copy_verified(tar.extractfile(member), Path(scratch) / digest, member.size, digest, advance)
                seen.add(digest)
                member = tar.next()
                if member is not None:
                    kind, digest = reader.check(member)
    except (tarfile.TarError, EOFError) as exc:
        raise IntegrityError(f"{path} is truncated or is not a bundle ({exc})") from None
    missing = sorted(set(wanted) - seen)
    if missing:
        raise IntegrityError(f"{path} lacks blob sha256:{missing[0][:12]}… (and {len(missing) - 1} more)"
                             if len(missing) > 1 else f"{path} lacks blob sha256:{missing[0][:12]}…")
    return meta


def _read_metadata(tar: tarfile.TarFile, reader: _Reader) -> tuple[BundleMetadata, tarfile.TarInfo | None, str, str]:
    """Every member before the first blob; the metadata, and that first blob's member (or None), kind and digest."""
    member = tar.next()
    if member is None or member.name != BUNDLE_JSON:
        raise PackageSafetyError(f"{reader.path} does not start with {BUNDLE_JSON}",
                                 hint="bundles are written by 'nnpm bundle export'")
    reader.check(member)
    meta = BundleMetadata(BundleInfo.from_json(tar.extractfile(member).read(), source=f"{reader.path}:{BUNDLE_JSON}"))
    kind = key = ""
    while (member := tar.next()) is not None:
        kind, key = reader.check(member)
        if kind == "blob":
            break
        data = tar.extractfile(member).read()
        if kind == "root":
            meta.roots[int(key)] = data
        elif kind == "role":
            meta.roles[key] = data
        else:
            meta.packuments[key] = data
    _check_structure(reader.path, meta)
    return meta, member, kind, key


def _check_structure(path: Path, meta: BundleMetadata) -> None:
    """Every bundled package has its packument and no packument is extra; a signed index is whole."""
    named = {p.name for p in meta.info.packages}
    if named != set(meta.packuments):
        odd = sorted(named ^ set(meta.packuments))[0]
        raise PackageSafetyError(f"{path}: package {odd!r} is in bundle.json or packuments/ but not both")
    if meta.signed and not (meta.roots and {"timestamp", "snapshot", "targets"} <= set(meta.roles)):
        raise PackageSafetyError(f"{path}: the signed index is incomplete (it needs tuf/root/, timestamp, "
                                 "snapshot and targets)")


def _copy_verified(src: IO[bytes], target: Path, size: int, digest: str,
                   advance: Callable[[int], None] | None) -> None:
    if not copy_matches(src, target, size, digest, advance):
        raise IntegrityError(f"blob sha256:{digest[:12]}… in the bundle does not match its name (size or sha256 "
                             "differs)", hint="the bundle was damaged or altered; export it again")

"""The `.nnpm` archive: a plain, deterministic tar of manifest.json and the package files.

Reading one never trusts the tar: only regular members named in the manifest are taken,
each streamed to disk while hashing and checked against its size and sha256.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from nnpm.errors import IntegrityError, ManifestError, PackageSafetyError
from nnpm.format.limits import MAX_MANIFEST_BYTES
from nnpm.format.manifest import MANIFEST_NAME, Manifest
from nnpm.fsutil import atomic_path
from nnpm.hashing import copy_matches


def tar_member(name: str, size: int) -> tarfile.TarInfo:
    """The header of one archive member: fixed metadata, so the same package always packs to the same bytes."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = size, 0o644, 0, 0, 0, "", ""
    return ti


def write_archive(manifest: Manifest, paths: dict[str, Path], out: Path) -> None:
    """Write manifest + files as a tar to `out` atomically (temp file, then rename)."""
    with atomic_path(Path(out)) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        data = manifest.to_json()
        tar.addfile(tar_member(MANIFEST_NAME, len(data)), io.BytesIO(data))
        for entry in manifest.files:
            with open(paths[entry.path], "rb") as f:
                tar.addfile(tar_member(entry.path, entry.size), f)


def read_manifest(archive: Path) -> Manifest:
    """The manifest of an archive, validated."""
    try:
        with tarfile.open(archive, "r:") as tar:
            member = tar.next()
            if member is None or member.name != MANIFEST_NAME or not member.isreg():
                raise ManifestError(f"{archive} does not start with {MANIFEST_NAME}",
                                    hint="make archives with 'nnpm pack'")
            if member.size > MAX_MANIFEST_BYTES:
                raise ManifestError(f"{archive}: {MANIFEST_NAME} is {member.size} bytes, over the limit of "
                                    f"{MAX_MANIFEST_BYTES}", hint="a package lists at most 10,000 files")
            return Manifest.from_json(tar.extractfile(member).read(), file=f"{archive}:{MANIFEST_NAME}")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ManifestError(f"{archive} is not a readable .nnpm archive ({exc})") from None


def extract(archive: Path, dest: Path) -> Manifest:
    """Unpack a verified archive into `dest` (which must not exist); returns its manifest."""
    manifest = read_manifest(archive)
    wanted = {f.path: f for f in manifest.files}
    dest = Path(dest)
    dest.mkdir(parents=True)
    seen = set()
    try:
        with tarfile.open(archive, "r:") as tar:
            tar.next()  # manifest.json, already read
            while (member := tar.next()) is not None:
                entry = wanted.get(member.name)
                if entry is None or member.name in seen:
                    raise PackageSafetyError(f"{archive}: member {member.name!r} is not listed in the manifest")
                if not member.isreg():
                    raise PackageSafetyError(f"{archive}: member {member.name!r} is a link or special file")
                seen.add(member.name)
                _copy_verified(tar.extractfile(member), dest / entry.path, entry.size, entry.sha256, member.name)
    except (tarfile.TarError, EOFError) as exc:
        raise IntegrityError(f"{archive} is truncated or corrupt ({exc})") from None
    missing = set(wanted) - seen
    if missing:
        raise IntegrityError(f"{archive} lacks {', '.join(sorted(missing))}")
    return manifest


def _copy_verified(src, target: Path, size: int, digest: str, name: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not copy_matches(src, target, size, digest):
        raise IntegrityError(f"{name} does not match its manifest entry (size or sha256 differs)")

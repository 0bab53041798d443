"""`nnpm cache verify`: re-hash the store and every environment's files, and say which packages are hurt.

An installed file is a hard link to its store blob, so editing it in one environment edits
the blob every environment shares. The audit hashes each distinct file (by inode) once and
reports, per environment, the packages whose files do not match their manifest, with the
command that repairs each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nnpm.hashing import file_digest
from nnpm.install.env import FILES_DIR, all_envs

if TYPE_CHECKING:
    from nnpm.config import Settings
    from nnpm.install.store import Store


@dataclass
class Damage:
    """One installed package whose files do not match its manifest."""

    env: str
    name: str
    version: str
    paths: list[str] = field(default_factory=list)
    hint: str = ""

    def repair(self) -> str:
        """The command that repairs it."""
        return self.hint.removeprefix("run ").replace("'", "")


@dataclass
class Audit:
    """What a full check found: corrupt store blobs and damaged installed packages."""

    blobs_checked: int = 0
    corrupt_blobs: list[str] = field(default_factory=list)
    damaged: list[Damage] = field(default_factory=list)
    files_checked: int = 0


def audit(settings: "Settings", store: "Store") -> Audit:
    """Re-hash every store blob and every environment's installed files."""
    result = Audit()
    hashes: dict[tuple[int, int], str] = {}          # (device, inode) -> sha256, each file hashed once
    for digest, path in store.blobs():
        result.blobs_checked += 1
        actual = _hash(path, hashes)
        if actual != digest:
            result.corrupt_blobs.append(digest)
    for env in all_envs(settings):
        for name, locked in sorted(env.lock().packages.items()):
            files_dir = env.package_dir(name, locked.version, locked.variant) / FILES_DIR
            bad = []
            for rel, size, digest in locked.files:
                result.files_checked += 1
                path = files_dir / rel
                if path.is_symlink() or not path.is_file() or path.stat().st_size != size \
                        or _hash(path, hashes) != digest:
                    bad.append(rel)
            if bad:
                result.damaged.append(Damage(env.name, name, locked.version, bad, env.repair_hint(name, locked.version)))
    return result


def _hash(path, cache: dict[tuple[int, int], str]) -> str:
    st = os.stat(path)
    key = (st.st_dev, st.st_ino)
    if key not in cache:
        cache[key] = file_digest(path)[0]
    return cache[key]

"""Environments: folders of installed packages whose one record is the lock file.

    NNPM_HOME/envs/<env>/
      nnpm.lock                 the record: exact versions, sources, every file's sha256
      pkgs/<name>-<version>/
        files/...               the package's files, hard-linked from the store (read-only)
        manifest.json           nnpm's record: the package's canonical manifest
        stat.json               (size, mtime, inode) per file at install time
      cache/                    derived files (fused pipeline graphs)
      .install.lock             serialises installs into this env

A state change prepares every new package folder aside (under a temp name, renamed
when complete), then replaces nnpm.lock atomically, then removes folders the new lock
no longer names. The lock is therefore always the old one or the new one, and every
folder it names is complete: a killed install leaves the old state.

nnpm's records never share a folder with the package's files, so no package file can be
named like a record, and nnpm never writes through a link into the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name
from packaging.version import Version

from nnpm.errors import EnvError, IntegrityError, NotInstalledError, PackageSafetyError
from nnpm.format.manifest import MANIFEST_NAME, Manifest
from nnpm.fsutil import atomic_write, remove_tree
from nnpm.install.lockfile import LOCK_NAME, Lock, LockedPackage

if TYPE_CHECKING:
    from nnpm.config import Settings
    from nnpm.install.store import Store

_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}\Z", re.ASCII)
FILES_DIR = "files"          # the package's own files, exactly as its manifest lists them
STAT_NAME = "stat.json"      # nnpm's record beside them: (size, mtime, inode) per file at link time


def repair_hint(name: str, version: object) -> str:
    """The command that puts a damaged installed package right (re-verifies and re-fetches its blobs)."""
    return f"run 'nnpm install --force {name}=={version}'"


@dataclass(frozen=True)
class InstalledPackage:
    """A package present in an environment: its files under `path`, nnpm's records in `path.parent`."""

    name: str
    version: Version
    path: Path
    manifest: Manifest
    variant: str = "reference"

    @property
    def files(self) -> tuple:
        """The manifest entries of the files installed: the installed variant's."""
        return self.manifest.files_for(self.variant)

    def verify(self) -> None:
        """Check the folders are real, every file's size, and its sha256 when its stat changed since install."""
        from nnpm.format.safety import check_file

        for folder in (self.path.parent, self.path):
            if folder.is_symlink() or not folder.is_dir():
                raise IntegrityError(f"{self.name} {self.version}: {folder} is not the folder nnpm installed "
                                     "(a link or missing)", hint=repair_hint(self.name, self.version))
        try:
            recorded = json.loads((self.path.parent / STAT_NAME).read_text())
        except (OSError, ValueError):
            recorded = {}
        for entry in self.files:
            try:
                path = check_file(self.path, entry.path, allow_hardlinks=True, what="installed file")
            except PackageSafetyError as exc:
                raise IntegrityError(f"{self.name} {self.version}: {exc.message}",
                                     hint=repair_hint(self.name, self.version)) from None
            st = os.lstat(path)
            if st.st_size != entry.size:
                raise IntegrityError(f"{self.name} {self.version}: {entry.path} was changed after install "
                                     f"(size {st.st_size}, expected {entry.size})",
                                     hint=repair_hint(self.name, self.version))
            if recorded.get(entry.path) != [st.st_size, st.st_mtime_ns, st.st_ino]:
                from nnpm.hashing import file_digest  # hashlib only when a file changed

                if file_digest(path)[0] != entry.sha256:
                    raise IntegrityError(f"{self.name} {self.version}: {entry.path} was changed after install "
                                         "(sha256 differs)", hint=repair_hint(self.name, self.version))


class Environment:
    """One named environment under NNPM_HOME/envs."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = Path(root)
        self.name = name

    @property
    def lock_path(self) -> Path:
        """The lock file (the environment's record)."""
        return self.root / LOCK_NAME

    def exists(self) -> bool:
        """True when the environment folder exists."""
        return self.root.is_dir()

    def lock(self) -> Lock:
        """The current lock."""
        return Lock.read(self.lock_path)

    def package_dir(self, name: str, version: str, variant: str = "reference") -> Path:
        """Folder of one installed version (and variant: `NAME-VERSION@int8`)."""
        return self.root / "pkgs" / (f"{name}-{version}" + ("" if variant == "reference" else f"@{variant}"))

    def cache_dir(self) -> Path:
        """Per-environment folder for derived files (e.g. fused graphs)."""
        path = self.root / "cache"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def installed(self) -> dict[str, InstalledPackage]:
        """Every installed package by canonical name."""
        return {name: self._installed(name, locked) for name, locked in self.lock().packages.items()}

    def _installed(self, name: str, locked: LockedPackage) -> InstalledPackage:
        folder = self.package_dir(name, locked.version, locked.variant)
        record = folder / MANIFEST_NAME
        try:
            raw = record.read_bytes()
        except FileNotFoundError:
            raise EnvError(f"environment {self.name!r} is damaged: {record} is missing",
                           hint=repair_hint(name, locked.version)) from None
        if hashlib.sha256(raw).hexdigest() != locked.manifest_sha256:
            raise EnvError(f"environment {self.name!r} is damaged: {record} is not the manifest the lock names",
                           hint=repair_hint(name, locked.version))
        manifest = Manifest.from_json(raw, file=str(record))
        return InstalledPackage(name, Version(locked.version), folder / FILES_DIR, manifest, locked.variant)

    def get(self, name: str, version: str | None = None) -> InstalledPackage:
        """One installed package (optionally an exact version) or NotInstalledError."""
        key = canonicalize_name(name)
        locked = self.lock().packages.get(key)  # parse only this package's manifest
        pkg = self._installed(key, locked) if locked else None
        if pkg is None or (version is not None and pkg.version != Version(version)):
            what = f"{key}=={version}" if version else key
            raise NotInstalledError(f"{what} is not installed in environment {self.name!r}",
                                    hint=f"run 'nnpm install {what}'")
        return pkg

    def install_lock(self):
        """A file lock that serialises state changes of this environment."""
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        # One reentrant lock per path in this process: Installer.install holds it from reading
        # the old lock to committing the new one, and _apply takes it again inside.
        return FileLock(str(self.root / ".install.lock"), is_singleton=True)

    def prepare(self, store: "Store", manifest: Manifest, manifest_bytes: bytes,
                variant: str = "reference") -> tuple[Path, int]:
        """Make the folder of one version (one variant's files) from store blobs, aside then renamed; (folder, links).

        The package's files go under files/, nnpm's records beside it: no package path can
        name a record, so writing a record can never write through a link into the store.
        """
        final = self.package_dir(manifest.name, str(manifest.version), variant)
        if final.is_dir():
            return final, 0
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        remove_tree(tmp)
        (tmp / FILES_DIR).mkdir(parents=True)
        links = 0
        stats = {}
        for entry in manifest.files_for(variant):
            dest = tmp / FILES_DIR / entry.path
            links += store.link_into(entry.sha256, dest)
            st = os.lstat(dest)
            stats[entry.path] = [st.st_size, st.st_mtime_ns, st.st_ino]
        atomic_write(tmp / MANIFEST_NAME, manifest_bytes)
        atomic_write(tmp / STAT_NAME, json.dumps(stats).encode())
        os.replace(tmp, final)
        return final, links

    def commit(self, lock: Lock) -> None:
        """Write the new lock atomically, then remove folders it no longer names."""
        atomic_write(self.lock_path, lock.to_json(), durable=True)
        keep = {self.package_dir(n, p.version, p.variant).name for n, p in lock.packages.items()}
        pkgs = self.root / "pkgs"
        if pkgs.is_dir():
            for folder in pkgs.iterdir():
                if folder.name not in keep:
                    remove_tree(folder)


def env_names(settings: "Settings") -> list[str]:
    """Names of every environment."""
    if not settings.envs_dir.is_dir():
        return []
    return sorted(p.name for p in settings.envs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def open_env(name: str | None = None, settings: "Settings | None" = None) -> Environment:
    """The named environment (default: NNPM_ENV or 'default')."""
    from nnpm.config import load_settings

    settings = settings or load_settings(env=name)
    env_name = name or settings.env
    if not isinstance(env_name, str) or not _ENV_NAME.match(env_name):
        raise EnvError(f"invalid environment name {env_name!r}",
                       hint="use up to 100 letters, digits, '-' and '_', starting with a letter or digit")
    return Environment(settings.envs_dir / env_name, env_name)

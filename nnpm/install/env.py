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

from packaging.version import Version

from nnpm.errors import EnvError, IntegrityError, NotInstalledError, PackageSafetyError
from nnpm.format.fields import normal_name
from nnpm.format.manifest import MANIFEST_NAME, Manifest
from nnpm.fsutil import atomic_write, remove_tree
from nnpm.install.lockfile import LOCK_NAME, Lock, LockedPackage

if TYPE_CHECKING:
    from nnpm.config import Settings
    from nnpm.format.application import Application
    from nnpm.format.spec import Spec
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
    repair: str = ""              # the command that puts it right, when not repair_hint's
    locked: LockedPackage | None = None   # its lock entry: a signed one is re-verified by verify()

    @property
    def files(self) -> tuple:
        """The manifest entries of the files installed: the installed variant's."""
        return self.manifest.files_for(self.variant)

    def _repair(self) -> str:
        return self.repair or repair_hint(self.name, self.version)

    def verify(self) -> None:
        """Check the folders are real, the publisher signature the lock records (when signed), every file's size,
        and its sha256 when its stat changed since install."""
        from nnpm.format.safety import check_file

        for folder in (self.path.parent, self.path):
            if folder.is_symlink() or not folder.is_dir():
                raise IntegrityError(f"{self.name} {self.version}: {folder} is not the folder nnpm installed "
                                     "(a link or missing)", hint=self._repair())
        if self.locked is not None and self.locked.signer is not None:
            from nnpm.install.signatures import verify_locked

            verify_locked(self.locked, (self.path.parent / MANIFEST_NAME).read_bytes(), hint=self._repair())
        try:
            recorded = json.loads((self.path.parent / STAT_NAME).read_text())
        except (OSError, ValueError):
            recorded = {}
        for entry in self.files:
            try:
                path = check_file(self.path, entry.path, allow_hardlinks=True, what="installed file")
            except PackageSafetyError as exc:
                raise IntegrityError(f"{self.name} {self.version}: {exc.message}",
                                     hint=self._repair()) from None
            st = os.lstat(path)
            if st.st_size != entry.size:
                raise IntegrityError(f"{self.name} {self.version}: {entry.path} was changed after install "
                                     f"(size {st.st_size}, expected {entry.size})",
                                     hint=self._repair())
            if recorded.get(entry.path) != [st.st_size, st.st_mtime_ns, st.st_ino]:
                from nnpm.hashing import file_digest  # hashlib only when a file changed

                if file_digest(path)[0] != entry.sha256:
                    raise IntegrityError(f"{self.name} {self.version}: {entry.path} was changed after install "
                                         "(sha256 differs)", hint=self._repair())


class Environment:
    """One named environment under NNPM_HOME/envs, or a project's `.nnpm/` (`project` set)."""

    def __init__(self, root: Path, name: str, project: "Application | None" = None) -> None:
        self.root = Path(root)
        self.name = name
        self.project = project

    @property
    def label(self) -> str:
        """How messages name it: "environment 'default'" or "project 'my-app'"."""
        return f"project {self.name!r}" if self.project else f"environment {self.name!r}"

    def repair_hint(self, name: str, version: object) -> str:
        """The command that puts a damaged package of this environment right."""
        if self.project is not None:
            return f"run 'nnpm sync --force' in {self.root.parent}"
        return f"run 'nnpm install --force {name}=={version} --env {self.name}'"

    def install_command(self, what: str) -> str:
        """The command that puts `what` into it: 'nnpm add' in a project, 'nnpm install' elsewhere."""
        return f"nnpm add {what}" if self.project else f"nnpm install {what}"

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
            raise EnvError(f"{self.label} is damaged: {record} is missing",
                           hint=self.repair_hint(name, locked.version)) from None
        if hashlib.sha256(raw).hexdigest() != locked.manifest_sha256:
            raise EnvError(f"{self.label} is damaged: {record} is not the manifest the lock names",
                           hint=self.repair_hint(name, locked.version))
        manifest = Manifest.from_json(raw, file=str(record))
        return InstalledPackage(name, Version(locked.version), folder / FILES_DIR, manifest, locked.variant,
                                self.repair_hint(name, locked.version), locked)

    def get(self, name: str, version: str | None = None) -> InstalledPackage:
        """One installed package (optionally an exact version) or NotInstalledError."""
        key = normal_name(name)
        locked = self.lock().packages.get(key)  # parse only this package's manifest
        pkg = self._installed(key, locked) if locked else None
        if pkg is None or (version is not None and pkg.version != Version(version)):
            what = f"{key}=={version}" if version else key
            raise NotInstalledError(f"{what} is not installed in {self.label}",
                                    hint=f"run '{self.install_command(what)}'")
        return pkg

    def matching(self, spec: "Spec") -> InstalledPackage:
        """The installed package a parsed spec names, or NotInstalledError when its version is not allowed."""
        pkg = self.get(spec.name, str(spec.pinned) if spec.pinned else None)
        if not spec.allows(pkg.version):
            raise NotInstalledError(f"{spec.name} {pkg.version} is installed in {self.label}, "
                                    f"but {spec.text!r} was asked for",
                                    hint=f"run '{self.install_command(chr(34) + spec.requirement + chr(34))}'")
        return pkg

    def install_lock(self):
        """A file lock that serialises state changes of this environment."""
        from nnpm.fsutil import reentrant_lock

        self.root.mkdir(parents=True, exist_ok=True)
        # Reentrant: Installer.install holds it from reading the old lock to committing the new
        # one, and _apply takes it again inside.
        return reentrant_lock(self.root / ".install.lock")

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


def project_env(app: "Application") -> Environment:
    """A project's environment: `.nnpm/` beside its project file (refused when a cloned repository made it a link)."""
    env = Environment(app.env_dir, app.name, app)
    _check_not_linked(env)
    return env


def _check_not_linked(env: Environment) -> None:
    """A repository is a stranger's: a committed `.nnpm` (or its `pkgs`, `cache`) that is a link would
    have sync write into, and remove folders from, wherever it points. nnpm makes these folders itself."""
    for folder in (env.root, env.root / "pkgs", env.root / "cache"):
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise EnvError(f"{folder} is a link or a file, not the folder nnpm keeps a project's environment in",
                           hint=f"remove it (nnpm sync makes {env.root.name}/ again from nnpm.lock), and keep "
                                f"{env.root.name}/ out of version control")


def claim_project_env(env: Environment, settings: "Settings") -> None:
    """Create a project's `.nnpm/` (git-ignored) and record it under NNPM_HOME/projects.

    The record lets `nnpm cache clean` and `cache verify` see which blobs the project's
    folders use, as they see every named environment's."""
    _check_not_linked(env)
    env.root.mkdir(parents=True, exist_ok=True)
    ignore = env.root / ".gitignore"
    if not ignore.exists():
        atomic_write(ignore, b"# nnpm's project environment: rebuilt by 'nnpm sync' from nnpm.lock\n*\n")
    known = settings.home / "projects" / hashlib.sha256(str(env.root.resolve()).encode()).hexdigest()[:32]
    if not known.exists():
        known.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(known, str(env.root.resolve()).encode())


def all_envs(settings: "Settings") -> list[Environment]:
    """Every named environment, then every project environment this NNPM_HOME has synced that still exists."""
    envs = [open_env(name, settings) for name in env_names(settings)]
    known = settings.home / "projects"
    for record in sorted(known.iterdir()) if known.is_dir() else ():
        try:
            root = Path(record.read_text())
        except (OSError, UnicodeDecodeError):
            continue
        if (root / LOCK_NAME).is_file() and not root.is_symlink():
            envs.append(Environment(root, root.parent.name, project=_ProjectAt(root.parent)))
        else:
            record.unlink(missing_ok=True)   # the checkout is gone: forget it
    return envs


@dataclass(frozen=True)
class _ProjectAt:
    """A project known only by its folder (its file is not read to audit its environment)."""

    root: Path


def env_names(settings: "Settings") -> list[str]:
    """Names of every environment."""
    if not settings.envs_dir.is_dir():
        return []
    return sorted(p.name for p in settings.envs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def open_env(name: str | None = None, settings: "Settings | None" = None) -> Environment:
    """The environment in use: the named one; else, inside a project, the project's; else NNPM_ENV or 'default'."""
    from nnpm.config import load_settings

    settings = settings or load_settings(env=name)
    if name is None and not settings.env_explicit:
        from nnpm.format.application import project_from_environment

        app = project_from_environment()
        if app is not None:
            return project_env(app)
    env_name = name or settings.env
    if not isinstance(env_name, str) or not _ENV_NAME.match(env_name):
        raise EnvError(f"invalid environment name {env_name!r}",
                       hint="use up to 100 letters, digits, '-' and '_', starting with a letter or digit")
    return Environment(settings.envs_dir / env_name, env_name)

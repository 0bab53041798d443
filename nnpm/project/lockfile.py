"""The project lock, `nnpm.lock` beside the project file: text, sorted, one concern per line.

    # written by 'nnpm lock'; commit it, do not edit it by hand
    version = 1
    requires-nnpm = ">=0.2"
    requirements = [
        "resnet18>=1.0",
    ]

    [[package]]
    name = "resnet18"
    version = "1.0.0"
    source = "http://127.0.0.1:8000"
    manifest = "sha256:…"
    variant = "reference"
    signer = "sha256:…"           # these three only for a package with a verified publisher signature
    public-key = "…"
    signature = "…"
    dependencies = []
    files = [
        { path = "model.onnx", size = 46800000, sha256 = "…" },
    ]

Nothing in it depends on the time or the machine's paths, and packages and requirements are
sorted, so adding one package changes only that package's lines. The entries are the
environment lock's (`nnpm.install.lockfile.LockedPackage`), so one check serves both.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from nnpm._version import __version__
from nnpm.errors import EnvError
from nnpm.format.application import Application
from nnpm.format.fields import is_digest
from nnpm.fsutil import atomic_write
from nnpm.install.lockfile import Lock, LockedPackage

FORMAT = 1
REQUIRES_NNPM = ">=0.2"           # the first release that reads format 1
_NAME = re.compile(r"[a-z0-9-]*")   # a requirement starts with its canonical name
HEADER = "# written by 'nnpm lock'; commit it, do not edit it by hand\n"


@dataclass
class ProjectLock:
    """The whole project lock: what led to it and every package it pins."""

    requirements: list[str] = field(default_factory=list)
    packages: dict[str, LockedPackage] = field(default_factory=dict)
    dependencies: dict[str, list[str]] = field(default_factory=dict)   # package -> the names it depends on

    def direct(self) -> set[str]:
        """The names the project asks for itself (the rest are their dependencies)."""
        return {_NAME.match(r).group(0) for r in self.requirements}

    def env_lock(self) -> Lock:
        """The same packages as an environment's lock (what `Installer.install_locked` reproduces)."""
        direct = self.direct()
        return Lock({n: replace(p, requested=n in direct) for n, p in self.packages.items()})

    def source(self) -> str | None:
        """The registry the packages came from (the first one named), or None."""
        return next((p.source for _, p in sorted(self.packages.items()) if not p.source.startswith("path:")), None)

    def to_text(self) -> str:
        """Deterministic TOML."""
        out = [HEADER, f"version = {FORMAT}\n", f"requires-nnpm = {_q(REQUIRES_NNPM)}\n", "requirements = ["]
        out += [f"\n    {_q(r)}," for r in sorted(self.requirements)]
        out.append("\n]\n" if self.requirements else "]\n")
        for name, p in sorted(self.packages.items()):
            out.append(f"\n[[package]]\nname = {_q(name)}\nversion = {_q(p.version)}\nsource = {_q(p.source)}\n"
                       f"manifest = {_q('sha256:' + p.manifest_sha256)}\nvariant = {_q(p.variant)}\n")
            if p.variant_reason:
                out.append(f"variant-reason = {_q(p.variant_reason)}\n")
            if p.signer is not None:
                out.append(f"signer = {_q(p.signer)}\npublic-key = {_q(p.public_key)}\nsignature = {_q(p.signature)}\n")
            deps = sorted(self.dependencies.get(name, ()))
            out.append("dependencies = [" + ", ".join(_q(d) for d in deps) + "]\nfiles = [")
            out += [f"\n    {{ path = {_q(path)}, size = {size}, sha256 = {_q(digest)} }}," for path, size, digest in p.files]
            out.append("\n]\n" if p.files else "]\n")
        return "".join(out)

    def write(self, path: Path) -> None:
        """Replace the lock file atomically."""
        atomic_write(path, self.to_text().encode(), durable=True)

    @classmethod
    def read(cls, path: Path) -> "ProjectLock":
        """Parse a project lock; EnvError naming the file and what is wrong."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EnvError(f"there is no lock file at {path}", hint="run 'nnpm lock'") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise EnvError(f"{path} is not valid TOML ({exc})", hint="restore it from version control, "
                           "or run 'nnpm lock' to write it again") from None
        try:
            return cls._parse(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EnvError(f"{path} is not a valid nnpm project lock ({exc})",
                           hint="restore it from version control, or run 'nnpm lock' to write it again") from None

    @classmethod
    def _parse(cls, data: dict) -> "ProjectLock":
        if data.get("version") != FORMAT:
            raise ValueError(f"lock format {data.get('version')!r}; this nnpm reads format {FORMAT}")
        _check_requires(data.get("requires-nnpm", REQUIRES_NNPM))
        reqs = data.get("requirements", [])
        if not isinstance(reqs, list) or not all(isinstance(r, str) for r in reqs):
            raise ValueError("requirements must be a list of strings")
        lock = cls(requirements=list(reqs))
        for entry in data.get("package", []):
            name = entry["name"]
            if not isinstance(name, str) or name in lock.packages:
                raise ValueError(f"package {name!r} is not a name, or is listed twice")
            manifest = entry["manifest"]
            if not isinstance(manifest, str) or not is_digest(manifest.removeprefix("sha256:")):
                raise ValueError(f"{name}: manifest must be 'sha256:' and 64 hex digits")
            files = entry["files"]
            if not all(isinstance(f, dict) and isinstance(f.get("sha256"), str) and is_digest(f["sha256"]) for f in files):
                raise ValueError(f"{name}: every file needs a sha256 of 64 hex digits")
            deps = entry.get("dependencies", [])
            if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
                raise ValueError(f"{name}: dependencies must be a list of names")
            lock.packages[name] = LockedPackage.from_dict(name, {
                "version": entry["version"], "manifest_sha256": manifest.removeprefix("sha256:"),
                "source": str(entry["source"]), "requested": True, "files": files,
                "variant": entry.get("variant", "reference"), "variant_reason": entry.get("variant-reason", ""),
                "signer": entry.get("signer"), "public_key": entry.get("public-key"), "signature": entry.get("signature")})
            lock.dependencies[name] = deps
        return lock


@dataclass
class LockChanges:
    """What re-locking changed, for the summary: added, removed, (name, old, new) updated."""

    added: list[tuple[str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    updated: list[tuple[str, str, str]] = field(default_factory=list)


def requirement_keys(app: Application) -> list[str]:
    """What the lock records as having led to it: one line per dependency entry, sorted."""
    return sorted(d.key() for d in app.dependencies.values())


def is_current(app: Application, lock: ProjectLock) -> bool:
    """True when the lock was made from exactly this project file's dependencies."""
    return sorted(lock.requirements) == requirement_keys(app)


def _check_requires(text: object) -> None:
    try:
        spec = SpecifierSet(str(text))
    except InvalidSpecifier:
        raise ValueError(f"requires-nnpm {text!r} is not a version specifier") from None
    if not spec.contains(Version(__version__), prereleases=True):
        raise EnvError(f"this lock file needs nnpm {spec}; this is nnpm {__version__}",
                       hint="upgrade nnpm (pip install -U nnpm)")


def _q(value: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, and DEL, which JSON leaves bare, is escaped too."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")

"""The lock file: exactly which version of each package an environment holds, and every file's digest.

JSON, deterministic (sorted keys), format 1:

    {"format": 1, "packages": {"resnet18": {"version": "1.0.0", "manifest_sha256": "...",
        "source": "http://registry", "requested": true,
        "files": [{"path": "model.onnx", "size": 46800000, "sha256": "..."}]}}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nnpm.errors import EnvError

LOCK_NAME = "nnpm.lock"
LOCK_FORMAT = 1


@dataclass(frozen=True)
class LockedPackage:
    """One package as the lock file records it."""

    name: str
    version: str
    manifest_sha256: str
    source: str                   # registry URL, or "path:<where it came from>"
    requested: bool               # asked for by the user (not only a dependency)
    files: tuple[tuple[str, int, str], ...]   # (path, size, sha256)

    def to_dict(self) -> dict:
        """JSON form."""
        return {"version": self.version, "manifest_sha256": self.manifest_sha256, "source": self.source,
                "requested": self.requested,
                "files": [{"path": p, "size": s, "sha256": d} for p, s, d in self.files]}

    @classmethod
    def from_dict(cls, name: str, data: dict) -> "LockedPackage":
        """Parse one lock entry."""
        try:
            return cls(name=name, version=data["version"], manifest_sha256=data["manifest_sha256"],
                       source=data["source"], requested=bool(data.get("requested", True)),
                       files=tuple((f["path"], int(f["size"]), f["sha256"]) for f in data["files"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvError(f"lock entry for {name!r} is malformed ({exc})",
                           hint="reinstall the package, or remove the lock file") from None


@dataclass
class Lock:
    """The whole lock file."""

    packages: dict[str, LockedPackage] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """Deterministic bytes."""
        body = {"format": LOCK_FORMAT,
                "packages": {n: p.to_dict() for n, p in sorted(self.packages.items())}}
        return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def read(cls, path: Path) -> "Lock":
        """Read a lock file; an absent file is an empty lock."""
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_bytes())
            if data.get("format") != LOCK_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            return cls({n: LockedPackage.from_dict(n, p) for n, p in data["packages"].items()})
        except (ValueError, KeyError, AttributeError) as exc:
            raise EnvError(f"{path} is not a valid nnpm lock file ({exc})") from None

"""The lock file: exactly which version of each package an environment holds, and every file's digest.

JSON, deterministic (sorted keys), format 1:

    {"format": 1, "packages": {"resnet18": {"version": "1.0.0", "manifest_sha256": "...",
        "source": "http://registry", "requested": true,
        "files": [{"path": "model.onnx", "size": 46800000, "sha256": "..."}],
        "signer": "sha256:...", "public_key": "<base64>", "signature": "<base64>"}}}

`signer`, `public_key` and `signature` are there only for a package whose publisher signature
was verified at install (nnpm/install/signatures.py), so older locks read the same.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.version import Version

from nnpm.errors import EnvError, IntegrityError
from nnpm.format.variants import VARIANT_NAME

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?\Z", re.ASCII)   # PEP 503 normal form

if TYPE_CHECKING:
    from nnpm.format.manifest import Manifest

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
    files: tuple[tuple[str, int, str], ...]   # (path, size, sha256): the installed variant's files
    variant: str = "reference"    # which precision of the package is installed
    variant_reason: str = ""      # why the installer chose it (empty for a package without variants)
    signer: str | None = None     # the publisher key id ("sha256:…") whose signature verified; None: unsigned
    public_key: str | None = None   # that key, base64 of its 32 raw bytes
    signature: str | None = None    # the signature of the canonical manifest bytes, base64

    def signed_fields(self) -> dict[str, str]:
        """`{"signer","public_key","signature"}` when signed, else {}."""
        if self.signer is None:
            return {}
        return {"signer": self.signer, "public_key": self.public_key, "signature": self.signature}

    def to_dict(self) -> dict:
        """JSON form (variant keys only for a package with variants, so older locks read the same)."""
        out = {"version": self.version, "manifest_sha256": self.manifest_sha256, "source": self.source,
               "requested": self.requested,
               "files": [{"path": p, "size": s, "sha256": d} for p, s, d in self.files]}
        if self.variant != "reference" or self.variant_reason:
            out |= {"variant": self.variant, "variant_reason": self.variant_reason}
        return out | self.signed_fields()

    @classmethod
    def from_dict(cls, name: str, data: dict) -> "LockedPackage":
        """Parse one lock entry."""
        try:
            if not _NAME.match(name) or str(Version(data["version"])) != data["version"]:
                raise ValueError("the name or the version is not in nnpm's normal form")   # both name folders
            variant, reason = data.get("variant", "reference"), data.get("variant_reason", "")
            if not isinstance(variant, str) or not isinstance(reason, str):
                raise ValueError("variant and variant_reason must be strings")
            if variant != "reference" and not VARIANT_NAME.match(variant):   # it names a folder: no paths
                raise ValueError(f"{variant[:64]!r} is not a variant name")
            signed = [data.get(k) for k in ("signer", "public_key", "signature")]
            if any(v is not None for v in signed) and not all(isinstance(v, str) for v in signed):
                raise ValueError("signer, public_key and signature go together, as strings")
            return cls(name=name, version=data["version"], manifest_sha256=data["manifest_sha256"],
                       source=data["source"], requested=bool(data.get("requested", True)),
                       files=tuple((f["path"], int(f["size"]), f["sha256"]) for f in data["files"]),
                       variant=variant, variant_reason=reason, signer=signed[0], public_key=signed[1],
                       signature=signed[2])
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
    def read(cls, path: Path, *, missing_ok: bool = True) -> "Lock":
        """Read a lock file; an absent file is an empty lock when `missing_ok` (an environment's own lock)."""
        path = Path(path)
        if path.is_dir():
            raise EnvError(f"{path} is a folder, not a lock file", hint="give the path of an nnpm.lock file")
        if not path.exists():
            if missing_ok:
                return cls()
            raise EnvError(f"there is no lock file at {path}", hint="check the path given to --lock")
        try:
            data = json.loads(path.read_bytes())
            if data.get("format") != LOCK_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            return cls({n: LockedPackage.from_dict(n, p) for n, p in data["packages"].items()})
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            raise EnvError(f"{path} is not a valid nnpm lock file ({exc})") from None
        except OSError as exc:
            raise EnvError(f"cannot read the lock file {path}: {exc.strerror}") from None


def check_lock_entry(locked: LockedPackage, manifest: "Manifest") -> None:
    """IntegrityError unless the lock entry names this manifest's package, version, variant and its exact files."""
    if locked.variant not in manifest.variant_names():
        raise IntegrityError(f"{locked.name} {locked.version}: the lock file names variant {locked.variant!r}, which "
                             "the package does not have", hint="restore the lock file, or install again without --locked")
    files = tuple((f.path, f.size, f.sha256) for f in manifest.files_for(locked.variant))
    if (manifest.name, str(manifest.version)) != (locked.name, locked.version) or files != locked.files:
        what = "version" if str(manifest.version) != locked.version or manifest.name != locked.name else "files"
        raise IntegrityError(f"{locked.name} {locked.version}: the lock file's {what} do not match the manifest it "
                             "names", hint="the lock file was edited by hand; restore it, or install again without --locked")

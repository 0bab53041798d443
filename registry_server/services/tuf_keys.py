"""The TUF index's keys: Ed25519 PEM files (PKCS#8, mode 0600) and the online signer a registry holds.

The online key lives in a file beside the data (`--tuf-online-key`); it is read when first
needed and again whenever the file changes, so `nnpm registry keys init` or a rotation
takes effect on a running server without a restart.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from securesystemslib.signer import CryptoSigner

from nnpm.errors import ConfigError
from nnpm.fsutil import atomic_write


def generate() -> CryptoSigner:
    """A new Ed25519 signer."""
    return CryptoSigner.generate_ed25519()


def write_key(path: Path, signer: CryptoSigner) -> None:
    """Write the private key as PEM PKCS#8, mode 0600 from the start; ConfigError when the file exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; no key was overwritten") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(signer.private_bytes)
        fh.flush()
        os.fsync(fh.fileno())


def replace_key(path: Path, signer: CryptoSigner) -> None:
    """Replace the key at `path` by one rename (a server reading it sees the old key or the new one)."""
    atomic_write(path, signer.private_bytes, mode=0o600, durable=True)


def read_key(path: Path) -> CryptoSigner:
    """The Ed25519 signer in a PEM PKCS#8 file; ConfigError naming the file when it is not one."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"cannot read the key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key")
    return CryptoSigner(key)


def key_files(folder: Path) -> list[Path]:
    """The `*.key` files of a folder, sorted."""
    return sorted(folder.glob("*.key")) if folder.is_dir() else []


@dataclass
class OnlineKey:
    """The registry's online signing key (or its absence) and how long the timestamps it signs live."""

    path: Path
    timestamp_expiry: int = 86400
    _loaded: tuple[tuple[int, int], CryptoSigner] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def signer(self) -> CryptoSigner | None:
        """The signer, re-read when the file changed; None when there is no key file."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_ino)
        with self._lock:
            if self._loaded is None or self._loaded[0] != stamp:
                self._loaded = (stamp, read_key(self.path))
            return self._loaded[1]

"""Publisher keys on this machine: `nnpm keys generate|list`, and the private key `nnpm publish --sign` uses.

    NNPM_HOME/keys/NAME.key    Ed25519 private key, PEM PKCS#8 (encrypted with a passphrase when
                               one was given), mode 0600
    NNPM_HOME/keys/NAME.pub    its public key, PEM SubjectPublicKeyInfo (what owners register)

A private key readable by group or others is refused, as ssh refuses one. The crypto is
`cryptography`'s, imported only here and in nnpm/format/signing.py, when a key is used.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnpm.errors import ConfigError, SignatureError
from nnpm.format.signing import PublicKey
from nnpm.fsutil import atomic_write

DEFAULT_KEY = "default"
PASSPHRASE_ENV = "NNPM_KEY_PASSPHRASE"
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z", re.ASCII)
_ENCRYPTED = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


@dataclass(frozen=True)
class LocalKey:
    """A key pair in NNPM_HOME/keys: its name, files and public key."""

    name: str
    private_path: Path
    public_path: Path
    public: PublicKey | None      # None when the .pub file is missing or unreadable
    encrypted: bool


def keys_dir(home: Path) -> Path:
    """NNPM_HOME/keys."""
    return Path(home) / "keys"


def _check_name(name: str) -> str:
    if not _KEY_NAME.match(name):
        raise ConfigError(f"{name[:70]!r} is not a key name",
                          hint="use up to 64 letters, digits, '.', '-' and '_', starting with a letter or digit")
    return name


def generate(home: Path, name: str = DEFAULT_KEY, *, passphrase: str | None = None,
             force: bool = False) -> LocalKey:
    """Write a new Ed25519 pair to NNPM_HOME/keys/NAME.key (0600) and NAME.pub; ConfigError when one exists."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = keys_dir(home)
    private_path, public_path = folder / f"{_check_name(name)}.key", folder / f"{name}.pub"
    if not force and (private_path.exists() or public_path.exists()):
        raise ConfigError(f"key {name!r} exists already ({private_path})",
                          hint="give another name, or --force to replace it")
    key = Ed25519PrivateKey.generate()
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public = PublicKey(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(private_path, pem, mode=0o600, durable=True)
    atomic_write(public_path, public.to_pem(), mode=0o644, durable=True)
    return LocalKey(name, private_path, public_path, public, bool(passphrase))


def list_keys(home: Path) -> list[LocalKey]:
    """The key pairs in NNPM_HOME/keys, by name."""
    folder = keys_dir(home)
    found = []
    for path in sorted(folder.glob("*.key")) if folder.is_dir() else ():
        pub = path.with_suffix(".pub")
        try:
            public = PublicKey.from_pem(pub.read_bytes(), source=str(pub))
        except (OSError, SignatureError):
            public = None
        try:
            encrypted = path.read_bytes().lstrip().startswith(_ENCRYPTED)
        except OSError:
            encrypted = False
        found.append(LocalKey(path.stem, path, pub, public, encrypted))
    return found


def key_path(home: Path, key: str | None) -> Path:
    """The private key file `--key` names: a path (holding a separator or an existing file), else a key name."""
    key = key or DEFAULT_KEY
    if os.sep in key or "/" in key or (key.endswith((".key", ".pem")) and Path(key).is_file()):
        return Path(key).expanduser()
    path = keys_dir(home) / f"{_check_name(key)}.key"
    if not path.is_file():
        raise ConfigError(f"there is no key {key!r} ({path})", hint="make one with 'nnpm keys generate"
                          + ("'" if key == DEFAULT_KEY else f" {key}'") + ", or give --key PATH")
    return path


def is_encrypted(path: Path) -> bool:
    """True when the private key file is protected by a passphrase."""
    return _read_private(path).lstrip().startswith(_ENCRYPTED)


def _read_private(path: Path) -> bytes:
    """The key file's bytes, refused when others may read it (as ssh refuses such a key)."""
    try:
        st = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"there is no key file {path}", hint="make one with 'nnpm keys generate'") from None
    if os.name == "posix" and st.st_mode & 0o077:
        raise ConfigError(f"permissions {st.st_mode & 0o777:04o} for {path} are too open: a private key must be "
                          "readable by you only", hint=f"run 'chmod 600 {path}'")
    return data


def load_private_key(path: Path, passphrase: str | None = None) -> Any:
    """The Ed25519 private key in `path` (a `cryptography` object); the passphrase from the argument or
    NNPM_KEY_PASSPHRASE. One ConfigError or SignatureError line when it cannot be used."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read_private(path)
    encrypted = data.lstrip().startswith(_ENCRYPTED)
    if passphrase is None:
        passphrase = os.environ.get(PASSPHRASE_ENV) or None
    if encrypted and not passphrase:
        raise ConfigError(f"the key {path} is encrypted and no passphrase was given",
                          hint=f"set {PASSPHRASE_ENV}, or run on a terminal to be asked")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode() if encrypted else None)
    except (ValueError, TypeError):
        if encrypted:
            raise SignatureError(f"wrong passphrase for the key {path}",
                                 hint=f"check {PASSPHRASE_ENV} or the passphrase typed") from None
        raise SignatureError(f"{path} is not a PEM private key",
                             hint="give the .key file 'nnpm keys generate' wrote") from None
    except Exception as exc:   # cryptography's UnsupportedAlgorithm and kin: not a key nnpm can use
        raise SignatureError(f"{path} cannot be read as a private key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path} holds a {type(key).__name__.removeprefix('_')}, not an Ed25519 key",
                             hint="make one with 'nnpm keys generate'")
    return key


def public_of(private_key: Any) -> PublicKey:
    """The public key of a `cryptography` Ed25519 private key."""
    from cryptography.hazmat.primitives import serialization

    return PublicKey(private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                           serialization.PublicFormat.Raw))

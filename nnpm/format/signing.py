"""Publisher signatures: Ed25519 over a version's canonical manifest bytes, for client and server alike.

A key is known by its id, `sha256:<hex>` of its 32 raw public bytes. A signature travels
as `{"keyid": "sha256:…", "sig": "<base64>"}` (the `X-Nnpm-Signature` header of a publish,
`"signed"` in a packument entry, the lock). The signed message is the canonical manifest
bytes (`Manifest.to_json()`) behind a context line, so a signature made for nnpm cannot be
replayed as one over other bytes that happen to match. Keys on the wire and in packuments
are `{"keyid", "public": "<base64 raw>"}`; key files are PEM (docs/trust.md).

The crypto is `cryptography`'s; it is imported only when a key or signature is used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from nnpm.errors import SignatureError

CONTEXT = b"nnpm manifest signature v1\n"
APPROVAL_CONTEXT = b"nnpm key change v1\n"
APPROVAL_WINDOW = 300   # seconds an approval's time may be from the registry's clock
KEYID_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")
RAW_KEY_BYTES = 32
SIG_BYTES = 64


def short(keyid: str) -> str:
    """`sha256:1a2b3c4d5e6f…`: how people are shown a key id."""
    return keyid[:19] + "…" if keyid.startswith("sha256:") else keyid


def signed_message(manifest_bytes: bytes) -> bytes:
    """What a publisher signs: the context line, then the canonical manifest bytes."""
    return CONTEXT + manifest_bytes


def _b64(text: Any, size: int, what: str) -> bytes:
    if not isinstance(text, str) or len(text) > 4 * size:
        raise SignatureError(f"{what} is not base64 text")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise SignatureError(f"{what} is not valid base64") from None
    if len(raw) != size:
        raise SignatureError(f"{what} is {len(raw)} bytes; an Ed25519 one is {size}")
    return raw


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key: its 32 raw bytes."""

    raw: bytes

    @property
    def keyid(self) -> str:
        """`sha256:<hex>` of the raw bytes: the key's fingerprint."""
        return "sha256:" + hashlib.sha256(self.raw).hexdigest()

    def to_dict(self) -> dict:
        """`{"keyid", "public"}`: the wire form."""
        return {"keyid": self.keyid, "public": base64.b64encode(self.raw).decode()}

    @classmethod
    def from_b64(cls, text: Any) -> "PublicKey":
        """A key from the base64 of its raw bytes; SignatureError otherwise."""
        return cls(_b64(text, RAW_KEY_BYTES, "the public key"))

    @classmethod
    def from_dict(cls, data: Any) -> "PublicKey":
        """A key from its wire form, its id checked against its bytes."""
        if not isinstance(data, dict):
            raise SignatureError("a public key entry is not a JSON object")
        key = cls.from_b64(data.get("public"))
        if data.get("keyid") != key.keyid:
            raise SignatureError("a public key entry's keyid is not the sha256 of its bytes", keyid=key.keyid)
        return key

    @classmethod
    def from_pem(cls, pem: bytes, *, source: str = "the key file") -> "PublicKey":
        """A key from a PEM public key file (or an OpenSSH `ssh-ed25519` line)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            if pem.lstrip().startswith(b"ssh-ed25519"):
                key = serialization.load_ssh_public_key(pem.strip())
            else:
                key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError, UnicodeDecodeError):
            raise SignatureError(f"{source} is not a PEM public key",
                                 hint="give the .pub file 'nnpm keys generate' wrote") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SignatureError(f"{source} holds a {type(key).__name__.removeprefix('_')}, not an Ed25519 key",
                                 hint="make one with 'nnpm keys generate'")
        return cls(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def to_pem(self) -> bytes:
        """The key as a PEM SubjectPublicKeyInfo file."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        return Ed25519PublicKey.from_public_bytes(self.raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class ManifestSignature:
    """A publisher's signature of one manifest: which key, and the 64 signature bytes."""

    keyid: str
    sig: bytes

    def to_dict(self) -> dict:
        """`{"keyid", "sig"}`: the wire form."""
        return {"keyid": self.keyid, "sig": base64.b64encode(self.sig).decode()}

    def header(self) -> str:
        """The `X-Nnpm-Signature` header value of a publish: `KEYID SIG`."""
        return f"{self.keyid} {base64.b64encode(self.sig).decode()}"

    @classmethod
    def from_header(cls, value: str) -> "ManifestSignature":
        """Parse an `X-Nnpm-Signature` header; SignatureError when malformed."""
        parts = value.split(" ")
        if len(parts) != 2:
            raise SignatureError("the X-Nnpm-Signature header is not 'sha256:KEYID BASE64SIG'")
        return cls.from_dict({"keyid": parts[0], "sig": parts[1]})

    @classmethod
    def from_dict(cls, data: Any) -> "ManifestSignature":
        """Parse the wire form strictly: a malformed signature is an error, never 'unsigned'."""
        if not isinstance(data, dict):
            raise SignatureError("a manifest signature is not a JSON object")
        keyid = data.get("keyid")
        if not isinstance(keyid, str) or not KEYID_RE.match(keyid):
            raise SignatureError("a manifest signature's keyid is not 'sha256:' and 64 hex digits")
        return cls(keyid, _b64(data.get("sig"), SIG_BYTES, "the manifest signature"))

    def verify(self, key: PublicKey, manifest_bytes: bytes, *, what: str) -> None:
        """SignatureError unless this signature, by this very key, is over these manifest bytes."""
        if key.keyid != self.keyid:
            raise SignatureError(f"{what} is signed by key {short(self.keyid)}, not by {short(key.keyid)}",
                                 keyid=self.keyid)
        if not self.verifies(key, signed_message(manifest_bytes)):
            raise SignatureError(f"{what}: the publisher signature does not verify against its manifest "
                                 f"(key {short(self.keyid)})", keyid=self.keyid,
                                 hint="the manifest or its signature was changed after signing; do not use it")

    def verifies(self, key: PublicKey, message: bytes) -> bool:
        """Whether this is `key`'s signature of `message` (a key with another id never verifies)."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if key.keyid != self.keyid:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(key.raw).verify(self.sig, message)
            return True
        except (InvalidSignature, ValueError):
            return False


def sign_manifest(private_key: Any, manifest_bytes: bytes) -> ManifestSignature:
    """Sign canonical manifest bytes with a `cryptography` Ed25519PrivateKey."""
    return _sign(private_key, signed_message(manifest_bytes))


def key_change_message(action: str, package: str, keyid: str, when: str) -> bytes:
    """What an active key signs to approve adding or removing a package's key: action, package, key, time."""
    return APPROVAL_CONTEXT + "\n".join((action, package, keyid, when)).encode()


def sign_key_change(private_key: Any, action: str, package: str, keyid: str, when: str) -> ManifestSignature:
    """An approval of `action` ("add" or "remove") of key `keyid` for `package` at `when` (ISO UTC)."""
    return _sign(private_key, key_change_message(action, package, keyid, when))


def _sign(private_key: Any, message: bytes) -> ManifestSignature:
    from cryptography.hazmat.primitives import serialization

    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return ManifestSignature(PublicKey(raw).keyid, private_key.sign(message))

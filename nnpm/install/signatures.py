"""Publisher signatures where packages are installed: verified against the packument's keys, recorded in
the lock (`signer`, `public_key`, `signature`), and re-verified from the lock before use (docs/trust.md).

`cryptography` is imported (by nnpm/format/signing.py) only when an entry is signed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nnpm.errors import SignatureError

if TYPE_CHECKING:
    from nnpm.format.packument import Packument, Release
    from nnpm.install.lockfile import LockedPackage

REQUIRED_BY = "--require-signatures, require-signatures in config.toml, or NNPM_REQUIRE_SIGNATURES"


def release_signature(packument: "Packument", release: "Release") -> dict[str, str]:
    """The lock fields of a release whose signature verifies against its packument's keys; {} when unsigned.

    SignatureError when the signature is malformed, does not verify, or names a key the packument lacks."""
    key = packument.publisher_key(release)
    if key is None:
        return {}
    return {"signer": key.keyid, "public_key": key.to_dict()["public"], "signature": release.signed_data["sig"]}


def refuse_unsigned(names: list[str]) -> None:
    """When signatures are required: SignatureError naming the packages that have none."""
    if names:
        listed = ", ".join(sorted(names))
        raise SignatureError(f"{listed} {'is' if len(names) == 1 else 'are'} not signed by a publisher, and "
                             "signatures are required", hint=f"asked for by {REQUIRED_BY}")


def verify_locked(locked: "LockedPackage", manifest_bytes: bytes, *, hint: str) -> None:
    """SignatureError (with `hint`) unless a signed lock entry's signature verifies over these manifest bytes
    with the entry's own key, and the entry's key id is that key's sha256. Nothing for an unsigned entry."""
    if locked.signer is None:
        return
    from nnpm.format.signing import ManifestSignature, PublicKey

    what = f"{locked.name} {locked.version}"
    try:
        key = PublicKey.from_b64(locked.public_key)
        if key.keyid != locked.signer:
            raise SignatureError(f"{what}: the lock's signer is not the sha256 of its public key", keyid=locked.signer)
        signature = ManifestSignature.from_dict({"keyid": locked.signer, "sig": locked.signature})
        signature.verify(key, manifest_bytes, what=what)
    except SignatureError as exc:
        text = exc.message if exc.message.startswith(what) else f"{what}: {exc.message}"
        raise SignatureError(text, keyid=locked.signer, hint=hint) from None

"""Publisher keys of a package (list, add, remove) and a publish's signature checked against them.

docs/trust.md, "Publisher signatures". A publish may carry `X-Nnpm-Signature: sha256:KEYID SIG`
(and, for the first signed publish of a new package, `X-Nnpm-Public-Key: <base64 raw>`,
which registers that key). A package with active keys takes only publishes signed by one of
them; a package without keys takes unsigned ones and records them unsigned. Removed keys stay
as rows with `removed_at`, so what they signed still verifies.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.orm import Session

from nnpm.errors import ManifestError, NotFoundError, SignatureError
from nnpm.format.signing import APPROVAL_WINDOW, KEYID_RE, ManifestSignature, PublicKey, key_change_message, short
from registry_server.db.tables import Package, PackageKey, Release, User, iso, utcnow
from registry_server.services import index

SIGNATURE_HEADER = "x-nnpm-signature"
APPROVAL_HEADER = "x-nnpm-approval"            # "sha256:KEYID SIG": an active key's signature of the key change
APPROVAL_TIME_HEADER = "x-nnpm-approval-time"  # the ISO UTC time the approval names
PUBLIC_KEY_HEADER = "x-nnpm-public-key"
MAX_HEADER = 200   # a key id and a base64 signature take 160 characters


@dataclass(frozen=True)
class SignedPublish:
    """A publish's signature and, when the client sent it, the public key that made it."""

    signature: ManifestSignature
    public: PublicKey | None


def from_headers(headers: Mapping[str, str]) -> SignedPublish | None:
    """The signature a publish carries (None: unsigned); 400 bad_signature when a header is malformed."""
    value = headers.get(SIGNATURE_HEADER)
    if value is None:
        return None
    if len(value) > MAX_HEADER:
        raise SignatureError("the X-Nnpm-Signature header is too long")
    signature = ManifestSignature.from_header(value.strip())
    raw = headers.get(PUBLIC_KEY_HEADER)
    public = PublicKey.from_b64(raw.strip()[:MAX_HEADER]) if raw else None
    if public is not None and public.keyid != signature.keyid:
        raise SignatureError("the X-Nnpm-Public-Key header is not the key the signature names",
                             keyid=signature.keyid)
    return SignedPublish(signature, public)


def active_keys(session: Session, package_id: int) -> dict[str, PublicKey]:
    """The package's keys that are not removed, by key id."""
    rows = session.execute(select(PackageKey.keyid, PackageKey.public).where(
        PackageKey.package_id == package_id, PackageKey.removed_at.is_(None))).all()
    return {keyid: PublicKey.from_b64(public) for keyid, public in rows}


def _refused(message: str, *, keyid: str | None = None, hint: str | None = None) -> SignatureError:
    return SignatureError(message, keyid=keyid, hint=hint, status=403)


def check_publish(session: Session, pkg: Package | None, signed: SignedPublish | None, canonical: bytes,
                  what: str) -> None:
    """Before the slow checks: 403 bad_signature unless this publish's signature (or its absence) is accepted.

    `pkg` None: a new package, whose first signed publish names (and so registers) its own key."""
    keys = active_keys(session, pkg.id) if pkg is not None else {}
    _check_membership(keys, pkg, signed, what)
    if signed is None:
        return
    key = keys.get(signed.signature.keyid) or signed.public
    try:
        signed.signature.verify(key, canonical, what=what)
    except SignatureError as exc:
        exc.status = 403
        raise


def recheck_publish(session: Session, pkg: Package | None, signed: SignedPublish | None, what: str) -> None:
    """In the commit's transaction: the signer is still an active key (an owner may have removed it meanwhile)."""
    if pkg is not None:
        _check_membership(active_keys(session, pkg.id), pkg, signed, what)


def _check_membership(keys: dict[str, PublicKey], pkg: Package | None, signed: SignedPublish | None,
                      what: str) -> None:
    if signed is None:
        if keys:
            raise _refused(f"{what}: package {pkg.name!r} has registered publisher keys, so an unsigned publish is "
                           "refused", hint="sign it: nnpm publish --sign [--key NAME]")
        return
    keyid = signed.signature.keyid
    if keyid in keys:
        return
    if pkg is None:
        if signed.public is None:
            raise _refused(f"{what}: the first signed publish of a new package must carry its public key "
                           "(X-Nnpm-Public-Key)", keyid=keyid, hint="publish with 'nnpm publish --sign'")
        return
    raise _refused(f"{what}: key {short(keyid)} is not registered for {pkg.name!r}", keyid=keyid,
                   hint=f"an owner registers it: nnpm owner key add {pkg.name} KEY.pub")


def register_first_key(session: Session, pkg: Package, signed: SignedPublish | None, user: User) -> None:
    """The first signed publish of a new package registers its key (in the caller's transaction)."""
    if signed is not None and signed.public is not None:
        session.add(PackageKey(package_id=pkg.id, keyid=signed.public.keyid,
                               public=signed.public.to_dict()["public"], added_by=user.name))


def stamp(row: Release, user: User, signed: SignedPublish | None) -> None:
    """Record on a new version row who published it and, when signed, the key and signature."""
    row.publisher = user.name
    if signed is not None:
        row.signer_keyid = signed.signature.keyid
        row.manifest_sig = base64.b64encode(signed.signature.sig).decode()


def check_approval(session: Session, pkg: Package, action: str, keyid: str, headers: Mapping[str, str]) -> None:
    """403 bad_signature unless a package with active keys has this key change approved by one of them.

    A stolen API token must not be enough to add its own key (then publish signed) or to remove the
    owners' keys (then publish unsigned): once a package has keys, changing them takes one of them.
    A package without keys takes its first key on the token alone, as a new package takes its name."""
    keys = active_keys(session, pkg.id)
    if not keys:
        return
    hint = (f"approve it with a key registered for {pkg.name}: nnpm owner key {action} {pkg.name} ... --key NAME|PATH"
            " (a lost last key: ask the registry's operator)")
    value, when = headers.get(APPROVAL_HEADER), headers.get(APPROVAL_TIME_HEADER)
    if not value or not when:
        raise _refused(f"{pkg.name!r} has publisher keys: a key change must be approved by one of them", hint=hint)
    approval = ManifestSignature.from_header(value.strip()[:MAX_HEADER])
    try:
        moment = datetime.fromisoformat(when.strip()[:40].replace("Z", "+00:00"))
        skew = abs((datetime.now(timezone.utc) - moment).total_seconds())
    except (ValueError, TypeError):
        raise SignatureError("X-Nnpm-Approval-Time is not an ISO time with its zone") from None
    key = keys.get(approval.keyid)
    if key is None:
        raise _refused(f"the approval is signed by key {short(approval.keyid)}, which is not an active key of "
                       f"{pkg.name!r}", keyid=approval.keyid, hint=hint)
    if skew > APPROVAL_WINDOW:
        raise _refused(f"the approval was made {int(skew)} s from the registry's time; at most {APPROVAL_WINDOW} s "
                       "are allowed", hint="check this machine's clock, then try again")
    if not approval.verifies(key, key_change_message(action, pkg.name, keyid, when.strip())):
        raise _refused(f"the approval of this key change does not verify (key {short(approval.keyid)})",
                       keyid=approval.keyid, hint=hint)


def key_entry(row: PackageKey) -> dict:
    """`{"keyid","public","added_at","removed_at","added_by"}`: a key as the API shows it."""
    return {"keyid": row.keyid, "public": row.public, "added_at": iso(row.added_at),
            "removed_at": iso(row.removed_at) if row.removed_at else None, "added_by": row.added_by}


def list_keys(session: Session, pkg: Package) -> list[dict]:
    """Every key registered for a package, removed ones too, oldest first."""
    rows = session.scalars(select(PackageKey).where(PackageKey.package_id == pkg.id)).all()
    return [key_entry(r) for r in sorted(rows, key=lambda r: (iso(r.added_at), r.keyid))]


def key_from_request(public: str | None, pem: str | None) -> PublicKey:
    """The key a POST names: `{"public": "<base64 raw>"}` or `{"pem": "..."}`; 400 otherwise."""
    if (public is None) == (pem is None):
        raise ManifestError('give the key as {"public": "<base64 of the 32 raw bytes>"} or {"pem": "..."}',
                            key="public")
    return PublicKey.from_b64(public) if public is not None else PublicKey.from_pem(pem.encode(), source="the pem")


def add_key(session: Session, pkg: Package, user: User, key: PublicKey) -> tuple[bool, dict]:
    """Register a key (a removed one comes back); (False, entry) when it is active already. Commits."""
    row = session.scalar(select(PackageKey).where(PackageKey.package_id == pkg.id, PackageKey.keyid == key.keyid))
    if row is not None and row.removed_at is None:
        session.commit()
        return False, key_entry(row)
    if row is None:
        row = PackageKey(package_id=pkg.id, keyid=key.keyid, public=key.to_dict()["public"], added_by=user.name,
                         added_at=utcnow())
        session.add(row)
    else:
        row.removed_at, row.added_by, row.added_at = None, user.name, utcnow()
    try:
        session.flush()
        index.packages_changed(session, [pkg.name])
        session.commit()
    except DbIntegrityError:   # added concurrently: the same outcome
        session.rollback()
        row = session.scalar(select(PackageKey).where(PackageKey.package_id == pkg.id,
                                                      PackageKey.keyid == key.keyid))
        return False, key_entry(row)
    return True, key_entry(row)


def remove_key(session: Session, pkg: Package, keyid: str) -> dict:
    """Stop a key signing new versions (it stays listed, so old signatures verify); 404 unless it is active.

    Removing the last key is allowed: the package then takes unsigned publishes again."""
    row = session.scalar(select(PackageKey).where(PackageKey.package_id == pkg.id, PackageKey.keyid == keyid)) \
        if KEYID_RE.match(keyid) else None
    if row is None or row.removed_at is not None:
        session.rollback()
        raise NotFoundError(f"{pkg.name!r} has no active key {short(keyid)}",
                            hint=f"see its keys: nnpm owner key list {pkg.name}")
    row.removed_at = utcnow()
    try:
        session.flush()
        index.packages_changed(session, [pkg.name])
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return key_entry(row)

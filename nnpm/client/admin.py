"""The owner-side calls of `RegistryClient` (nnpm/client/api.py): yank, owners, tokens, publisher keys.

A mixin over the client's one request seam (`_get_json`), so api.py keeps the protocol's
reads and publishes; the URL segment helpers both use live here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import quote

from nnpm.format.fields import canonical_name, parse_version

if TYPE_CHECKING:
    from nnpm.format.signing import PublicKey


def seg(text: str) -> str:
    """One URL path segment, every reserved character escaped."""
    return quote(text, safe="")


def name_seg(name: str) -> str:
    """A package name as its canonical URL segment (ManifestError when it is not a name)."""
    return seg(canonical_name(name, key="name"))


def version_seg(version: object) -> str:
    """A version as its normalised URL segment (ManifestError when it is not PEP 440)."""
    return seg(str(parse_version(str(version), key="version")))


class AdminCalls:
    """Calls that change who may do what with a package; need a token."""

    def _get_json(self, method: str, path: str, what: str, **kw) -> dict:   # RegistryClient's
        raise NotImplementedError

    def yank(self, name: str, version: str, reason: str) -> dict:
        """Mark a version yanked (PEP 592) with a reason; returns the version object."""
        return self._get_json("POST", f"/packages/{name_seg(name)}/{version_seg(version)}/yank", "yank",
                              content=json.dumps({"reason": reason}).encode(),
                              headers={"Content-Type": "application/json"})

    def unyank(self, name: str, version: str) -> dict:
        """Undo a yank; returns the version object."""
        return self._get_json("DELETE", f"/packages/{name_seg(name)}/{version_seg(version)}/yank", "unyank")

    def add_owner(self, name: str, user: str) -> list[str]:
        """Let another user publish and yank a package; returns the owners."""
        data = self._get_json("PUT", f"/packages/{name_seg(name)}/owners/{seg(user)}", "owners")
        return list(data.get("owners") or [])

    def remove_owner(self, name: str, user: str) -> list[str]:
        """Take a user's rights to a package away (the last owner stays); returns the owners."""
        data = self._get_json("DELETE", f"/packages/{name_seg(name)}/owners/{seg(user)}", "owners")
        return list(data.get("owners") or [])

    def tokens(self) -> list[dict]:
        """The caller's API tokens: id, created_at, last_used_at, prefix, current (never the tokens)."""
        items = self._get_json("GET", "/tokens", "tokens").get("tokens")
        return [t for t in items if isinstance(t, dict)] if isinstance(items, list) else []

    def revoke_token(self, token_id: int) -> None:
        """Revoke one of the caller's tokens (the one in use too)."""
        self._get_json("DELETE", f"/tokens/{int(token_id)}", "revoke")

    def package_keys(self, name: str) -> list[dict]:
        """A package's publisher keys: keyid, public, added_at, removed_at (None while active), added_by."""
        items = self._get_json("GET", f"/packages/{name_seg(name)}/keys", "keys").get("keys")
        return [k for k in items if isinstance(k, dict)] if isinstance(items, list) else []

    def add_package_key(self, name: str, key: "PublicKey", approval: tuple | None = None) -> tuple[dict, list[dict]]:
        """Register a publisher key for a package (owners only; once it has keys, `approval` = (signature, time)
        by one of them); (the key's entry, every key)."""
        data = self._get_json("POST", f"/packages/{name_seg(name)}/keys", "keys", ok=(200, 201),
                              content=json.dumps({"public": key.to_dict()["public"]}).encode(),
                              headers={"Content-Type": "application/json", **_approval_headers(approval)})
        return data.get("key") or {}, [k for k in data.get("keys") or [] if isinstance(k, dict)]

    def remove_package_key(self, name: str, keyid: str, approval: tuple | None = None) -> tuple[dict, list[dict]]:
        """Stop a key signing new versions of a package (owners only, approved as for adding one)."""
        data = self._get_json("DELETE", f"/packages/{name_seg(name)}/keys/{seg(keyid)}", "keys",
                              headers=_approval_headers(approval))
        return data.get("key") or {}, [k for k in data.get("keys") or [] if isinstance(k, dict)]


def _approval_headers(approval: tuple | None) -> dict[str, str]:
    """The headers of a key change approved by an active key: its signature and the time it names."""
    if approval is None:
        return {}
    signature, when = approval
    return {"X-Nnpm-Approval": signature.header(), "X-Nnpm-Approval-Time": when}

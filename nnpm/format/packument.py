"""The packument: every published version of one package, as the registry serves it.

    {"name": "resnet18", "latest": "1.0.0",
     "versions": [{"version": "1.0.0", "yanked": false, "yanked_reason": null,
                   "published_at": "2026-11-23T01:00:00Z", "manifest": {...manifest.json...},
                   "publisher": "alice", "signed": {"keyid": "sha256:…", "sig": "…"}}],
     "keys": [{"keyid": "sha256:…", "public": "…", "added_at": "…", "removed_at": null}]}

`publisher` and `signed` appear on versions that have them (`signed`: the publisher's
Ed25519 signature of the manifest, nnpm/format/signing.py); `keys` appears on packages
whose owners registered publisher keys, removed ones included (their old signatures
still verify).

The server builds a `Packument` from its rows and sends `to_json()`; the client parses the
bytes once with `Packument.from_json` and hands `Release` objects to the resolver and the
installer. A release's dependencies and its full manifest are parsed on first use, once:
resolving reads only the dependencies of the versions it tries. Entries whose version is
not PEP 440 are skipped, as pip skips files it cannot parse.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from nnpm.errors import ManifestError, SignatureError
from nnpm.format.fields import canonical_name
from nnpm.format.manifest import Manifest, Signature
from nnpm.format.project import parse_dependencies

if TYPE_CHECKING:
    from nnpm.format.signing import PublicKey


@dataclass(frozen=True)
class Release:
    """One published version of a package: its manifest (parsed on demand) and its yank state."""

    name: str
    version: Version
    manifest_data: dict = field(repr=False)
    yanked: bool = False
    yanked_reason: str | None = None
    published_at: str | None = None
    signature_data: dict | None = field(default=None, repr=False)   # a pipeline's, as the registry computed it
    measured: dict | None = field(default=None, repr=False)   # the registry's self-test, drift and latency figures
    publisher: str | None = None                               # who published it (registries since 0.3)
    signed_data: dict | None = field(default=None, repr=False)   # the publisher signature, parsed when verified

    def __hash__(self) -> int:  # the manifest is a dict; name and version identify a release
        return hash((self.name, self.version))

    @cached_property
    def dependencies(self) -> dict[str, SpecifierSet]:
        """Canonical dependency names to specifiers; ManifestError when the manifest's table is malformed."""
        return parse_dependencies(self.manifest_data.get("dependencies"), file=f"{self.name} {self.version}")

    @cached_property
    def manifest(self) -> Manifest:
        """The full manifest, strictly validated and about this very release; ManifestError otherwise."""
        manifest = Manifest.from_dict(self.manifest_data, file=f"{self.name} {self.version}")
        if manifest.name != self.name or manifest.version != self.version:
            raise ManifestError(f"the manifest given for {self.name} {self.version} is the manifest of "
                                f"{manifest.name} {manifest.version}",
                                hint="the registry is serving the wrong manifest; tell its operator")
        return manifest

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> "Release":
        """A release for a package that did not come from a registry (a folder, an archive, a lock)."""
        release = cls(manifest.name, manifest.version, manifest.to_dict())
        release.__dict__["manifest"] = manifest      # already parsed: keep it
        return release

    @classmethod
    def from_dict(cls, name: str, data: Any) -> "Release | None":
        """One packument entry, or None when it has no PEP 440 version (skipped)."""
        if not isinstance(data, dict):
            return None
        try:
            version = Version(str(data["version"]))
        except (InvalidVersion, KeyError, TypeError, ValueError):
            return None
        manifest = data.get("manifest")
        reason = data.get("yanked_reason")
        published = data.get("published_at")
        signature = data.get("signature")
        measured = data.get("measured")
        publisher = data.get("publisher")
        signed = data.get("signed")
        return cls(name, version, manifest if isinstance(manifest, dict) else {}, bool(data.get("yanked")),
                   reason if isinstance(reason, str) else None, published if isinstance(published, str) else None,
                   signature if isinstance(signature, dict) else None, measured if isinstance(measured, dict) else None,
                   publisher if isinstance(publisher, str) else None,
                   signed if signed is not None else None)   # kept as sent: a malformed one fails verification

    @cached_property
    def signature(self) -> Signature | None:
        """The inputs and outputs: the graph's for a model, the exposed ports for a pipeline (from the registry)."""
        if self.manifest_data.get("signature") is not None:
            return self.manifest.signature
        if self.signature_data is None:
            return None
        try:
            return Signature.from_dict(self.signature_data, file=f"{self.name} {self.version}")
        except ManifestError:
            return None

    def to_dict(self) -> dict:
        """The wire form of one entry."""
        out = {"version": str(self.version), "yanked": self.yanked, "yanked_reason": self.yanked_reason,
               "published_at": self.published_at, "manifest": self.manifest_data}
        if self.signature_data is not None:
            out["signature"] = self.signature_data
        if self.measured is not None:
            out["measured"] = self.measured
        if self.publisher is not None:
            out["publisher"] = self.publisher
        if self.signed_data is not None:
            out["signed"] = self.signed_data
        return out


def latest_version(versions: Iterable[tuple[Version, bool]]) -> Version | None:
    """Newest non-yanked non-prerelease of (version, yanked) pairs; else the newest of any kind; else None."""
    ordered = sorted(versions)
    good = [v for v, yanked in ordered if not yanked and not v.is_prerelease]
    return (good or [v for v, _ in ordered] or [None])[-1]


@dataclass(frozen=True)
class Packument:
    """Every release of one package, PEP 440 ascending (one per version)."""

    name: str
    releases: tuple[Release, ...]
    keys: tuple[dict, ...] = ()     # registered publisher keys as sent, parsed when a signature is verified

    @property
    def latest(self) -> Release | None:
        """The release `nnpm install NAME` would pick without other constraints."""
        top = latest_version((r.version, r.yanked) for r in self.releases)
        return self.release(top) if top is not None else None

    def release(self, version: Version | str) -> Release | None:
        """The release of one version (any PEP 440 spelling), or None."""
        wanted = Version(str(version))
        return next((r for r in self.releases if r.version == wanted), None)

    def publisher_key(self, release: Release) -> "PublicKey | None":
        """The registered key whose signature of `release`'s canonical manifest verifies; None when unsigned.

        SignatureError when the signature is malformed, does not verify, or names a key
        this packument does not list. A removed key still verifies what it signed."""
        from nnpm.format.signing import ManifestSignature, PublicKey

        if release.signed_data is None:
            return None
        what = f"{self.name} {release.version}"
        signature = ManifestSignature.from_dict(release.signed_data)
        keys = {k.keyid: k for k in (PublicKey.from_dict(entry) for entry in self.keys)}
        key = keys.get(signature.keyid)
        if key is None:
            raise SignatureError(f"{what} is signed by key {signature.keyid[:19]}…, which is not registered for "
                                 f"{self.name}", keyid=signature.keyid,
                                 hint="the registry lists no such key; do not install it, and tell its owners")
        signature.verify(key, release.manifest.to_json(), what=what)
        return key

    @classmethod
    def of(cls, name: str, releases: Iterable[Release], keys: Iterable[dict] = ()) -> "Packument":
        """A packument from releases in any order; the first of equal versions wins."""
        seen: dict[Version, Release] = {}
        for release in releases:
            seen.setdefault(release.version, release)
        return cls(name, tuple(sorted(seen.values(), key=lambda r: r.version)), tuple(keys))

    def to_json(self) -> bytes:
        """Canonical bytes (sorted keys, compact): their hash is the ETag."""
        top = self.latest
        doc = {"name": self.name, "latest": str(top.version) if top else None,
               "versions": [r.to_dict() for r in self.releases]}
        if self.keys:
            doc["keys"] = list(self.keys)
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "the registry") -> "Packument":
        """Parse a packument; ManifestError when it is not one at all."""
        if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
            raise ManifestError(f"{source} sent a packument without a list of versions")
        try:
            name = canonical_name(data.get("name"), file=None, key="packument.name")
        except ManifestError:
            raise ManifestError(f"{source} sent a packument whose name is not a package name") from None
        keys = data.get("keys")
        if keys is not None and not isinstance(keys, list):
            raise ManifestError(f"{source} sent a packument whose keys are not a list")
        return cls.of(name, filter(None, (Release.from_dict(name, v) for v in data["versions"])), keys or ())

    @classmethod
    def from_json(cls, raw: bytes, *, source: str = "the registry") -> "Packument":
        """Parse packument bytes."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise ManifestError(f"{source} sent a packument that is not valid JSON") from None
        return cls.from_dict(data, source=source)

"""What a bundle's metadata must say before any of its blobs is used, for `nnpm bundle import` and
`nnpm registry import` alike.

Which root to trust (`choose_root`): this machine's pin for the bundle's registry, else the
one given (`--root`), else the bundle's own first root, said in a note. Then
`check_metadata`: the signed index verified from that root (nnpm/format/tufverify.py) with
every packument's bytes against it; each packument parsed and about its own name; each
bundled version present, its canonical manifest hashing to the sha256 bundle.json names,
its publisher signature verified against the packument's keys; and the blobs the
versions need, every file of every variant, with their sizes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nnpm.errors import IndexTrustError, IntegrityError, ManifestError
from nnpm.format.bundle import BundledPackage, BundleMetadata
from nnpm.format.packument import Packument, Release
from nnpm.format.signing import PublicKey

if TYPE_CHECKING:
    from nnpm.format.manifest import Manifest
    from nnpm.format.tufverify import VerifiedIndex


@dataclass(frozen=True)
class CheckedVersion:
    """One bundled version, verified: its release, manifest (canonical bytes hashed) and signer's key."""

    package: BundledPackage
    release: Release
    manifest: "Manifest"
    key: PublicKey | None


@dataclass
class CheckedBundle:
    """The verified metadata: packuments parsed, versions checked, and what the index said."""

    packuments: dict[str, Packument] = field(default_factory=dict)
    versions: list[CheckedVersion] = field(default_factory=list)
    index: "VerifiedIndex | None" = None

    def blobs(self) -> dict[str, int]:
        """{sha256 hex: size} of every file of every bundled version."""
        out: dict[str, int] = {}
        for v in self.versions:
            for f in v.manifest.files:
                if out.setdefault(f.sha256, f.size) != f.size:
                    raise IntegrityError(f"blob sha256:{f.sha256[:12]}… has two sizes in the bundled manifests")
        return out


def choose_root(meta: BundleMetadata, *, given: bytes | None, pinned: bytes | None) -> tuple[bytes | None, str | None]:
    """(the root to verify from, or None for an unsigned bundle; a note to show, or None).

    IndexTrustError when a root is given or pinned but the bundle carries no signed index."""
    registry = meta.info.registry
    if not meta.signed:
        if given is not None or pinned is not None:
            why = "a root was given with --root" if given is not None else f"this machine pins {registry}'s root"
            raise IndexTrustError(f"the bundle carries no signed index, but {why}", role="root",
                                  hint="export the bundle from the registry whose index is signed")
        return None, (f"note: the bundle carries no signed index ({registry} does not sign one): its packages are "
                      "checked against their manifests and publisher signatures only")
    if pinned is not None:   # this machine's own trust comes first, as it does online
        return pinned, (None if given is None else f"note: verified from this machine's pin for {registry}, "
                        "not from --root")
    if given is not None:
        return given, None
    first = min(meta.roots)
    return meta.roots[first], (f"note: trusting the bundle's own root (version {first}) for {registry}; "
                               "pass --root ROOT.json to check it against a root you hold")


def check_metadata(meta: BundleMetadata, trusted_root: bytes | None) -> CheckedBundle:
    """Verify the index (when `trusted_root`), the packuments and every bundled version; the checked bundle.

    IndexTrustError, SignatureError, IntegrityError or ManifestError, one line each."""
    out = CheckedBundle()
    if trusted_root is not None:
        from nnpm.format.tufverify import verify_index

        out.index = verify_index(trusted_root, meta.roots, meta.roles, meta.packuments)
    elif meta.signed:
        raise IndexTrustError("the bundle's signed index needs a root to be verified from", role="root")
    for name, raw in sorted(meta.packuments.items()):
        packument = Packument.from_json(raw, source=f"the bundle's packuments/{name}.json")
        if packument.name != name:
            raise ManifestError(f"the bundle's packuments/{name}.json is the packument of {packument.name!r}")
        for entry in packument.keys:   # each key's id against its bytes, signed versions or not
            PublicKey.from_dict(entry)
        out.packuments[name] = packument
    for package in sorted(meta.info.packages, key=lambda p: (p.name, p.version)):
        out.versions.append(_checked(out.packuments[package.name], package))
    return out


def _checked(packument: Packument, package: BundledPackage) -> CheckedVersion:
    """One bundled version against its packument: present, manifest hash, variant, publisher signature."""
    what = f"{package.name} {package.version}"
    try:
        release = packument.release(package.version)
    except ValueError:   # InvalidVersion
        release = None
    if release is None or str(release.version) != package.version:
        raise ManifestError(f"the bundle names {what}, which its packument does not hold")
    manifest = release.manifest
    if hashlib.sha256(manifest.to_json()).hexdigest() != package.manifest_sha256:
        raise IntegrityError(f"{what}: the packument's manifest does not hash to the sha256 bundle.json names",
                             hint="the bundle was altered; export it again")
    if package.variant is not None and package.variant not in manifest.variant_names():
        raise ManifestError(f"{what} has no variant {package.variant!r}")
    return CheckedVersion(package, release, manifest, packument.publisher_key(release))

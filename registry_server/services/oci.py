"""The OCI pull API's side of the catalog: every published version and variant as the ModelPack artifact.

The artifact is `nnpm.format.oci.build_artifact` of the stored manifest, the same bytes
`nnpm push` writes to any OCI registry, so a digest is the same wherever the artifact is
pulled from. Nothing is stored for it: a package's artifacts are built from its manifests
and indexed once per state of its rows (`index_of`: tags, image-manifest digests, blob
digests), and each artifact is kept by (manifest sha256, variant) in a bounded LRU.
Yanked versions are served like the others (a tag is an exact pin, and pip too serves a
yanked file to whoever names it). A version with an epoch has no tag and is not served.
Errors are `OciError`s with the distribution spec's codes; routes/oci.py answers them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.version import Version
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from nnpm.errors import ManifestError, NnpmError
from nnpm.format.fields import canonical_name, is_digest
from nnpm.format.limits import MIB
from nnpm.format.manifest import Manifest
from nnpm.format.oci import Artifact, build_artifact, tag_for
from registry_server.db.tables import Package, Release
from registry_server.services import catalog
from registry_server.services.cache import LRU

# Artifacts by (manifest sha256, variant): the image manifest, config and nnpm manifest bytes.
ARTIFACTS: LRU[Artifact] = LRU(max_entries=2048, max_cost=64 * MIB)
# A package's index by (name, (version, manifest sha256) of every row): yanking changes no artifact.
INDEXES: LRU["Index"] = LRU(max_entries=256, max_cost=32 * MIB)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
_STATE = (select(Release.version, Release.manifest_sha256).join(Package, Release.package_id == Package.id)
          .where(Package.name == bindparam("name")))
_MANIFESTS = (select(Release.manifest_sha256, Release.manifest_json).join(Package, Release.package_id == Package.id)
              .where(Package.name == bindparam("name"), Release.manifest_sha256.in_(bindparam("shas", expanding=True))))


class OciError(NnpmError):
    """An answer of the OCI API's error shape: HTTP status, spec code (NAME_UNKNOWN...), message, detail.

    In nnpm's one tree, but answered in the distribution spec's shape (routes/oci.py's handler
    is the most specific one for it)."""

    def __init__(self, status: int, code: str, message: str, detail: object = None) -> None:
        super().__init__(message, status=status)
        self.code, self.detail = code, detail

    def to_wire(self) -> dict:
        """`{"errors": [{"code", "message", "detail"}]}`."""
        return {"errors": [{"code": self.code, "message": self.message, "detail": self.detail}]}


@dataclass(frozen=True)
class Ref:
    """One artifact of a package: a version's variant, its tag, and the manifest it is built from."""

    version: str
    variant: str
    tag: str
    manifest_sha256: str


@dataclass(frozen=True)
class Index:
    """A package's artifacts: by tag, by image-manifest digest; the blobs they name (hex digests)."""

    name: str
    tags: dict[str, Ref]
    manifests: dict[str, Ref]
    small: dict[str, Ref]      # config and nnpm-manifest blobs: generated, by a ref whose artifact holds them
    files: frozenset[str]      # the package files the layers are: in the blob store

    def sorted_tags(self) -> list[str]:
        """Every tag, in lexical (code point) order."""
        return sorted(self.tags)


def repository_name(name: str) -> str:
    """The canonical package name an OCI repository name spells; OciError NAME_UNKNOWN / NAME_INVALID.

    A name with '/' (an OCI namespace) can never be an nnpm package: unknown rather than invalid."""
    if "/" in name:
        raise OciError(404, "NAME_UNKNOWN", f"no repository {name[:200]!r}: nnpm package names have no '/'",
                       {"name": name[:200]})
    try:
        return canonical_name(name, key="name")
    except ManifestError:
        raise OciError(400, "NAME_INVALID", f"{name[:200]!r} is not a package name", {"name": name[:200]}) from None


def parse_digest(ref: str) -> str:
    """'sha256:<64 lowercase hex>' → the hex; OciError DIGEST_INVALID for anything else (only sha256 is served)."""
    algo, _, digest = ref.partition(":")
    if algo != "sha256" or not is_digest(digest):
        raise OciError(400, "DIGEST_INVALID", f"{ref[:100]!r} is not a digest this registry serves",
                       {"digest": ref[:100], "expected": "sha256:<64 lowercase hex digits>"})
    return digest


def _manifests(conn: Connection, name: str, wanted: set[str]) -> dict[str, Manifest]:
    """Parsed manifests by sha256 (catalog's cache; the JSON is read, in one query, only for those it lacks)."""
    found = {sha: m for sha in wanted if (m := catalog.MANIFESTS.get(sha)) is not None}
    missing = sorted(wanted - set(found))
    if missing:
        for sha, text in conn.execute(_MANIFESTS, {"name": name, "shas": missing}).all():
            found.setdefault(sha, catalog.stored_manifest(sha, text))
    return found


def artifact(manifest: Manifest, sha256: str, variant: str) -> Artifact:
    """The artifact of one variant of a stored manifest (kept by the manifest's sha256 and the variant)."""
    key = (sha256, variant)
    cached = ARTIFACTS.get(key)
    if cached is None:
        cached = build_artifact(manifest, variant)
        cost = len(cached.manifest_bytes) + len(cached.config_bytes) + len(cached.nnpm_manifest_bytes)
        ARTIFACTS.put(key, cached, cost)
    return cached


def _build_index(name: str, rows: list[tuple[str, str]], manifests: dict[str, Manifest]) -> tuple[Index, int]:
    tags: dict[str, Ref] = {}
    digests: dict[str, Ref] = {}
    small: dict[str, Ref] = {}
    files: set[str] = set()
    for version, sha in rows:
        manifest = manifests[sha]
        for variant in manifest.variant_names():
            try:
                ref = Ref(version, variant, tag_for(Version(version), variant), sha)
                art = artifact(manifest, sha, variant)
            except ManifestError:  # an epoch, or a tag over 128 characters: no OCI name can reach it
                continue
            tags[ref.tag] = ref
            digests[art.digest] = ref
            small.update(dict.fromkeys(art.small_blobs(), ref))
            files.update(layer.digest for layer in art.layers if not layer.nnpm_manifest)
    cost = 300 * (len(tags) + len(small)) + 80 * len(files)
    return Index(name, tags, digests, small, frozenset(files)), cost


def index_of(conn: Connection, name: str) -> Index:
    """The artifacts of package `name` (canonical); OciError NAME_UNKNOWN when there is no such package."""
    rows = [(r.version, r.manifest_sha256) for r in conn.execute(_STATE, {"name": name}).all()]
    if not rows and conn.execute(select(Package.id).where(Package.name == name)).first() is None:
        raise OciError(404, "NAME_UNKNOWN", f"no package {name!r} on this registry", {"name": name})
    state = (name, tuple(sorted(rows)))
    cached = INDEXES.get(state)
    if cached is None:
        cached, cost = _build_index(name, rows, _manifests(conn, name, {sha for _, sha in rows}))
        INDEXES.put(state, cached, cost)
    return cached


def artifact_of(conn: Connection, name: str, ref: Ref) -> Artifact:
    """The artifact a ref names (rebuilt from its stored manifest when the LRU let it go)."""
    cached = ARTIFACTS.get((ref.manifest_sha256, ref.variant))
    if cached is not None:
        return cached
    manifest = _manifests(conn, name, {ref.manifest_sha256})[ref.manifest_sha256]
    return artifact(manifest, ref.manifest_sha256, ref.variant)


def resolve(conn: Connection, index: Index, reference: str) -> Artifact:
    """The artifact a tag or `sha256:` digest names; OciError MANIFEST_UNKNOWN, TAG_INVALID or DIGEST_INVALID.

    Tags are exact: `1.0.0-int8` as tags/list shows it, not another spelling of the version."""
    if ":" in reference:
        ref = index.manifests.get(parse_digest(reference))
    elif _TAG.match(reference):
        ref = index.tags.get(reference)
    else:
        raise OciError(400, "TAG_INVALID", f"{reference[:130]!r} is not a tag or a digest",
                       {"tag": reference[:130]})
    if ref is None:
        raise OciError(404, "MANIFEST_UNKNOWN", f"{index.name} has no manifest {reference[:130]!r}",
                       {"name": index.name, "reference": reference[:130]})
    return artifact_of(conn, index.name, ref)


def small_blob(conn: Connection, index: Index, digest: str) -> bytes | None:
    """A generated blob's bytes (config, nnpm manifest); None for a package file (in the blob store).

    OciError BLOB_UNKNOWN when no artifact of the package names the digest: blobs are per repository."""
    ref = index.small.get(digest)
    if ref is not None:
        return artifact_of(conn, index.name, ref).small_blobs()[digest]
    if digest in index.files:
        return None
    raise OciError(404, "BLOB_UNKNOWN", f"{index.name} has no blob sha256:{digest}",
                   {"name": index.name, "digest": f"sha256:{digest}"})


def tags_page(index: Index, n: int | None, last: str | None) -> tuple[list[str], bool]:
    """The tags after `last` (lexically), at most `n` of them; and whether more follow (never for n=0: no page)."""
    tags = [t for t in index.sorted_tags() if last is None or t > last]
    if n is None:
        return tags, False
    return tags[:n], 0 < n < len(tags)

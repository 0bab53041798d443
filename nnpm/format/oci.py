"""An nnpm package version as a CNCF ModelPack OCI artifact: one definition, for `nnpm push` and the registry's `/v2/`.

    image manifest   artifactType application/vnd.cncf.model.manifest.v1+json
      config         application/vnd.cncf.model.config.v1+json (the ModelPack schema; closed)
      layers         one per file of the variant, uncompressed, `org.cncf.model.filepath` naming it:
                     graphs and their data `weight.v1.raw`, the README `doc.v1.raw`, test arrays
                     `dataset.v1.raw`, other files `weight.config.v1.raw`; last, nnpm's own
                     manifest.json as `weight.config.v1.raw` marked `org.nnpm.manifest`

A layer's digest is the file's sha256, so the blobs nnpm already stores are the layers. Every
JSON document is written compact with sorted keys and no timestamp: the same version gives
the same bytes, and so the same digest, whoever writes it. Tags are the normalised version
with `+` as `_` (OCI tags cannot hold `+`), and `-VARIANT` for a variant.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.version import InvalidVersion, Version

from nnpm.errors import IntegrityError, ManifestError
from nnpm.format.fields import DIGEST_RE
from nnpm.format.limits import MAX_FILE_SIZE, MAX_FILES

if TYPE_CHECKING:
    from nnpm.format.manifest import Manifest

IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG = "application/vnd.cncf.model.config.v1+json"
WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
DOC = "application/vnd.cncf.model.doc.v1.raw"
DATASET = "application/vnd.cncf.model.dataset.v1.raw"
CODE = "application/vnd.cncf.model.code.v1.raw"
RAW_TYPES = (WEIGHT, WEIGHT_CONFIG, DOC, DATASET, CODE)
FILEPATH = "org.cncf.model.filepath"
TITLE = "org.opencontainers.image.title"
NNPM_MANIFEST = "org.nnpm.manifest"        # the layer holding nnpm's manifest.json
NNPM_VARIANT = "org.nnpm.variant"          # image-manifest annotation: which variant's files the layers are
MANIFEST_PATH = "manifest.json"            # a name no package file may have (nnpm/format/fields.py)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
_PRECISIONS = {"float32", "float64", "float16", "bfloat16", "float8_e4m3", "float8_e5m2", "int8", "int16",
               "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"}


def tag_for(version: Version, variant: str = "reference") -> str:
    """The OCI tag of a version (and variant); ManifestError for an epoch, which no tag can hold."""
    if version.epoch:
        raise ManifestError(f"version {version} has an epoch ('!'), which an OCI tag cannot hold",
                            hint="publish it without an epoch to push it to an OCI registry")
    tag = str(version).replace("+", "_") + ("" if variant == "reference" else f"-{variant}")
    if not _TAG.match(tag):
        raise ManifestError(f"{tag!r} is not a valid OCI tag (at most 128 letters, digits, '.', '_' and '-')")
    return tag


def parse_tag(tag: str) -> tuple[Version, str] | None:
    """(version, variant) of a tag nnpm writes, or None for any other tag ('latest', a digest...)."""
    text, _, variant = tag.partition("-")
    try:
        version = Version(text.replace("_", "+"))
    except InvalidVersion:
        return None
    if version.epoch or tag_for(version, variant or "reference") != tag:   # no tag nnpm writes holds an epoch
        return None
    return version, variant or "reference"


@dataclass(frozen=True)
class Layer:
    """One layer: a file of the package (or nnpm's manifest), by media type, digest (hex), size and path."""

    media_type: str
    digest: str
    size: int
    path: str
    nnpm_manifest: bool = False

    def descriptor(self) -> dict:
        """The layer's OCI descriptor."""
        # The title too: oras and other OCI tools name pulled files by org.opencontainers.image.title.
        annotations = {FILEPATH: self.path, TITLE: self.path} | ({NNPM_MANIFEST: "true"} if self.nnpm_manifest else {})
        return {"mediaType": self.media_type, "digest": f"sha256:{self.digest}", "size": self.size,
                "annotations": annotations}


@dataclass(frozen=True)
class Artifact:
    """A version as an OCI artifact: the image manifest's bytes, the config's, nnpm's manifest's, and the layers."""

    manifest_bytes: bytes
    config_bytes: bytes
    nnpm_manifest_bytes: bytes
    layers: tuple[Layer, ...]

    @property
    def digest(self) -> str:
        """sha256 hex of the image manifest: the artifact's identity."""
        return hashlib.sha256(self.manifest_bytes).hexdigest()

    @property
    def config_digest(self) -> str:
        """sha256 hex of the config blob."""
        return hashlib.sha256(self.config_bytes).hexdigest()

    def small_blobs(self) -> dict[str, bytes]:
        """The blobs that are not package files: the config and nnpm's manifest, by digest."""
        return {self.config_digest: self.config_bytes,
                hashlib.sha256(self.nnpm_manifest_bytes).hexdigest(): self.nnpm_manifest_bytes}


def canonical_json(data: Any) -> bytes:
    """Compact, key-sorted JSON: the same document gives the same bytes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def media_type_of(manifest: "Manifest", path: str, variant: str) -> str:
    """Which ModelPack layer type a package file is."""
    graphs = manifest.graphs.get(variant, {})
    if any(path == e.file or path in e.data for e in graphs.values()):
        return WEIGHT
    project = manifest.project
    if path == project.readme:
        return DOC
    if project.tests is not None and path in (project.tests.inputs, project.tests.outputs):
        return DATASET
    return WEIGHT_CONFIG


def param_size(params: int) -> str | None:
    """ModelPack's paramSize: a count with at most one decimal and a scale letter (11.7M); None for none."""
    if params <= 0:
        return None
    for scale, letter in ((10**15, "Q"), (10**12, "T"), (10**9, "B"), (10**6, "M")):
        if params >= scale:
            return f"{params / scale:.1f}{letter}"
    return f"{params / 1000:.1f}K"


def config_for(manifest: "Manifest", variant: str, layers: list[Layer]) -> dict:
    """The ModelPack config of one variant: descriptor, config (format onnx, precision, size), modelfs."""
    project = manifest.project
    descriptor = {"name": manifest.name, "version": str(manifest.version)}
    if project.license:
        descriptor["licenses"] = [project.license]
    if project.description:
        descriptor["description"] = project.description
    if project.authors:
        descriptor["authors"] = list(project.authors)
    graphs = manifest.graphs.get(variant, {})
    config: dict[str, str] = {"format": "onnx"}
    precisions = sorted({e.precision for e in graphs.values() if e.precision in _PRECISIONS})
    if precisions:
        config["precision"] = ",".join(precisions)
    size = param_size(sum(e.params for e in graphs.values()))
    if size:
        config["paramSize"] = size
    return {"descriptor": descriptor, "config": config,
            "modelfs": {"type": "layers", "diffIds": [f"sha256:{layer.digest}" for layer in layers]}}


def build_artifact(manifest: "Manifest", variant: str = "reference") -> Artifact:
    """The artifact `nnpm push` writes and the registry's /v2/ serves for one version and variant."""
    tag_for(manifest.version, variant)   # refuses what no tag can name, before anything is written
    files = manifest.files_for(variant)
    layers = [Layer(media_type_of(manifest, f.path, variant), f.sha256, f.size, f.path) for f in files]
    nnpm_bytes = manifest.to_json()
    layers.append(Layer(WEIGHT_CONFIG, hashlib.sha256(nnpm_bytes).hexdigest(), len(nnpm_bytes), MANIFEST_PATH, True))
    config_bytes = canonical_json(config_for(manifest, variant, layers))
    image = {"schemaVersion": 2, "mediaType": IMAGE_MANIFEST, "artifactType": ARTIFACT_TYPE,
             "config": {"mediaType": CONFIG, "digest": f"sha256:{hashlib.sha256(config_bytes).hexdigest()}",
                        "size": len(config_bytes)},
             "layers": [layer.descriptor() for layer in layers],
             "annotations": {"org.opencontainers.image.title": manifest.name,
                             "org.opencontainers.image.version": str(manifest.version), NNPM_VARIANT: variant}}
    return Artifact(canonical_json(image), config_bytes, nnpm_bytes, tuple(layers))


@dataclass(frozen=True)
class ParsedArtifact:
    """What an image manifest says: its config descriptor, its layers, and the variant it claims."""

    config_digest: str
    config_size: int
    layers: tuple[Layer, ...]
    variant: str

    @property
    def nnpm_layer(self) -> Layer | None:
        """The layer holding nnpm's manifest, when an nnpm push wrote the artifact."""
        return next((layer for layer in self.layers if layer.nnpm_manifest), None)

    def files(self) -> tuple[Layer, ...]:
        """The package's files (every layer but nnpm's manifest)."""
        return tuple(layer for layer in self.layers if not layer.nnpm_manifest)


def _descriptor(data: Any, where: str) -> tuple[str, int, str, dict]:
    if not isinstance(data, dict):
        raise ManifestError(f"{where} is not a descriptor")
    digest, size, media = data.get("digest"), data.get("size"), data.get("mediaType")
    if not isinstance(digest, str) or not digest.startswith("sha256:") or not DIGEST_RE.match(digest[7:]):
        raise ManifestError(f"{where} has no sha256 digest")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_SIZE or not isinstance(media, str):
        raise ManifestError(f"{where} has no valid size or media type")
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise ManifestError(f"{where} has annotations that are not strings")
    return digest[7:], size, media, annotations


def parse_artifact(raw: bytes) -> ParsedArtifact:
    """Read a ModelPack image manifest; ManifestError naming what is not one."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ManifestError("the OCI manifest is not JSON") from None
    if not isinstance(data, dict) or data.get("schemaVersion") != 2:
        raise ManifestError("not an OCI image manifest (schemaVersion 2)")
    if data.get("artifactType") != ARTIFACT_TYPE:
        raise ManifestError(f"not a ModelPack model (artifactType {str(data.get('artifactType'))[:80]!r})",
                            hint=f"nnpm installs artifacts of type {ARTIFACT_TYPE}")
    config_digest, config_size, config_media, _ = _descriptor(data.get("config"), "the config")
    if config_media != CONFIG:
        raise ManifestError(f"the config's media type is {config_media[:80]!r}, not {CONFIG}")
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ManifestError("the OCI manifest has no layers")
    if len(raw_layers) > MAX_FILES + 1:   # a package's files, and nnpm's manifest
        raise ManifestError(f"the OCI manifest has {len(raw_layers)} layers; a package holds at most {MAX_FILES} files")
    layers = []
    for i, item in enumerate(raw_layers):
        digest, size, media, annotations = _descriptor(item, f"layer {i}")
        if media not in RAW_TYPES:
            raise ManifestError(f"layer {i} is {media[:80]!r}; nnpm reads uncompressed ModelPack layers (.raw)")
        path = annotations.get(FILEPATH)
        if not path:
            raise ManifestError(f"layer {i} names no file ({FILEPATH})")
        layers.append(Layer(media, digest, size, path, annotations.get(NNPM_MANIFEST) == "true"))
    if sum(layer.nnpm_manifest for layer in layers) > 1:
        raise ManifestError(f"the OCI manifest has more than one {NNPM_MANIFEST} layer")
    annotations = data.get("annotations") or {}
    variant = annotations.get(NNPM_VARIANT, "reference") if isinstance(annotations, dict) else "reference"
    return ParsedArtifact(config_digest, config_size, tuple(layers), variant if isinstance(variant, str) else "")


@cache
def _schema() -> dict:
    return json.loads((Path(__file__).parent / "schemas" / "modelpack-config-schema.json").read_text())


def check_config(raw: bytes) -> dict:
    """The ModelPack config, validated against its (closed) JSON schema; ManifestError naming the first fault."""
    import jsonschema

    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ManifestError("the ModelPack config is not JSON") from None
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(_schema()).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise ManifestError(f"the ModelPack config fails its schema at {where}: {error.message[:200]}")
    return data


def check_layers(parsed: ParsedArtifact, manifest: "Manifest") -> None:
    """IntegrityError unless the layers are exactly the files nnpm's manifest lists for the claimed variant."""
    if parsed.variant not in manifest.variant_names():
        raise IntegrityError(f"the artifact claims variant {parsed.variant[:40]!r}, which {manifest.name} does not have")
    want = {(f.path, f.sha256, f.size) for f in manifest.files_for(parsed.variant)}
    have = {(layer.path, layer.digest, layer.size) for layer in parsed.files()}
    if want != have or len(have) != len(parsed.files()):
        extra, missing = sorted(p for p, _, _ in have - want), sorted(p for p, _, _ in want - have)
        raise IntegrityError(f"the artifact's layers do not match the nnpm manifest it carries "
                             f"(extra or changed: {extra[:3]}, missing: {missing[:3]})",
                             hint="push the package again with 'nnpm push'")

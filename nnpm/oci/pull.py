"""Pull a ModelPack artifact into the store, every layer verified, ready for the installer.

An artifact nnpm pushed carries nnpm's manifest as a layer: its files must be exactly the
layers (path, digest, size) of the variant it claims, and each layer is fetched into the
store as any blob is (resumable, sha256-checked before commit). An artifact another tool
pushed (oras, modctl, KitOps) has no such layer: its files are fetched into a folder laid
out by their `org.cncf.model.filepath`, an `nnpm.toml` is written from the ModelPack config
(name, version, licence, the one `.onnx` graph), and the folder is packed and validated as
`nnpm install ./folder` would.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nnpm.errors import ManifestError, SpecError
from nnpm.format.fields import canonical_name, check_relpath, parse_version
from nnpm.format.manifest import Manifest
from nnpm.format.oci import DOC, WEIGHT, ParsedArtifact, check_config, check_layers, parse_artifact
from nnpm.oci.reference import OciRef
from nnpm.oci.transport import OciClient

if TYPE_CHECKING:
    from nnpm.install.fetch import FetchStats
    from nnpm.install.store import Store


@dataclass(frozen=True)
class Pulled:
    """An artifact in the store: nnpm's manifest of it, the variant its layers are, and where it came from."""

    manifest: Manifest
    variant: str
    source: str
    fetched: "FetchStats | None" = None


def read_artifact(client: OciClient, ref: OciRef) -> tuple[ParsedArtifact, str, dict]:
    """(parsed manifest, its digest, the validated ModelPack config) of the artifact `ref` names."""
    if not ref.reference:
        raise SpecError(f"{ref} names no tag or digest", hint=f"e.g. {ref}:1.0.0")
    raw, digest = client.manifest(ref.repository, ref.reference)
    parsed = parse_artifact(raw)
    config = check_config(client.small_blob(ref.repository, parsed.config_digest, parsed.config_size))
    return parsed, digest, config


def pull(ref: OciRef, store: "Store", *, progress: bool | None = None, client: OciClient | None = None) -> Pulled:
    """Fetch an artifact's files into the store, verified, with the nnpm manifest that lists them."""
    client = client or OciClient(ref)
    parsed, digest, config = read_artifact(client, ref)
    source = f"oci://{ref.host}/{ref.repository}@sha256:{digest}"
    layer = parsed.nnpm_layer
    if layer is None:
        return _foreign(client, ref, parsed, config, store, source)
    manifest = Manifest.from_json(client.small_blob(ref.repository, layer.digest, layer.size), file=f"{ref} manifest.json")
    check_layers(parsed, manifest)
    return Pulled(manifest, parsed.variant, source, _fetch(client, ref, parsed, store, progress, manifest.name))


def _fetch(client: OciClient, ref: OciRef, parsed: ParsedArtifact, store: "Store", progress: bool | None,
           label: str) -> "FetchStats":
    """Every file layer into the store, several at once, each verified before it is committed."""
    from nnpm.install.fetch import Wanted, fetch_all

    wanted = [Wanted(f.digest, f.size, f"{label} {f.path}") for f in parsed.files()]
    blobs = client.blobs(ref.repository)
    return fetch_all(lambda: blobs, store, wanted, progress=progress)


def _foreign(client: OciClient, ref: OciRef, parsed: ParsedArtifact, config: dict, store: "Store",
             source: str) -> Pulled:
    """A ModelPack artifact nnpm did not write: its files laid out in a scratch folder by their paths, an
    nnpm.toml from its config, then validated and packed as `nnpm install ./folder` would, into the store."""
    import tempfile

    from nnpm.author.pack import staged
    from nnpm.fsutil import remove_tree

    paths = [check_relpath(layer.path, file=str(ref), key="layers") for layer in parsed.files()]
    if len(set(paths)) != len(paths):
        raise ManifestError(f"{ref}: two layers name the same file")
    toml = _toml_for(ref, parsed, config)
    fetched = _fetch(client, ref, parsed, store, False, ref.repository)
    scratch = store.root / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="nnpm-oci-", dir=scratch))
    try:
        for layer, rel in zip(parsed.files(), paths, strict=True):
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(store.path(layer.digest), folder / rel)
        (folder / "nnpm.toml").write_text(toml, encoding="utf-8")
        with staged(folder, allow_hardlinks=True, scratch=scratch) as built:
            for entry in built.manifest.files:
                store.add_file(built.paths[entry.path], entry.sha256, entry.size)
        return Pulled(built.manifest, "reference", source, fetched)
    finally:
        remove_tree(folder)


def _toml_for(ref: OciRef, parsed: ParsedArtifact, config: dict) -> str:
    """nnpm.toml for a foreign artifact, from its ModelPack descriptor and its layers."""
    descriptor = config.get("descriptor", {})
    where = f"{ref} (ModelPack config)"
    name = canonical_name(descriptor.get("name", ""), file=where, key="descriptor.name")
    version = parse_version(descriptor.get("version", ""), file=where, key="descriptor.version")
    graphs = [layer.path for layer in parsed.files() if layer.media_type == WEIGHT and layer.path.endswith(".onnx")]
    if len(graphs) != 1:
        raise ManifestError(f"{ref} holds {len(graphs)} .onnx weight layers; nnpm reads a ModelPack artifact with one",
                            hint="push the model with 'nnpm push', which records every graph")
    lines = ["[package]", f"name = {json.dumps(name)}", f"version = {json.dumps(str(version))}"]
    if isinstance(descriptor.get("description"), str):
        lines.append(f"description = {json.dumps(descriptor['description'][:500])}")
    docs = [layer.path for layer in parsed.files() if layer.media_type == DOC and layer.path.lower().startswith("readme")]
    if docs:
        lines.append(f"readme = {json.dumps(docs[0])}")
    others = [layer.path for layer in parsed.files() if layer.path not in (graphs[0], *docs[:1])
              and not (layer.media_type == WEIGHT)]
    lines += ["", "[model]", f"file = {json.dumps(graphs[0])}"]
    if others:
        lines += ["", "[files]", f"include = {json.dumps(others)}"]
    return "\n".join(lines) + "\n"

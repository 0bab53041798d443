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
from collections.abc import Iterator
from contextlib import contextmanager
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


class _Blobs:
    """The installer's blob interface (`open_blob`) over one OCI repository."""

    def __init__(self, client: OciClient, repository: str) -> None:
        self.client, self.repository = client, repository

    @contextmanager
    def open_blob(self, digest: str, start: int = 0, if_range: str | None = None) -> Iterator["_Stream"]:
        """The answer for one layer, as nnpm.install.fetch reads answers."""
        with self.client.open_blob(self.repository, digest, start) as resp:
            yield _Stream(resp)


class _Stream:
    def __init__(self, resp) -> None:
        self.status_code = resp.status_code
        self._resp = resp

    def iter_bytes(self) -> Iterator[bytes]:
        return self._resp.iter_content(chunk_size=1 << 20)


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
        return _packed(_foreign(client, ref, parsed, config, store), store, source)
    manifest = Manifest.from_json(client.small_blob(ref.repository, layer.digest, layer.size), file=f"{ref} manifest.json")
    check_layers(parsed, manifest)
    from nnpm.install.fetch import Wanted, fetch_all

    wanted = [Wanted(f.digest, f.size, f"{manifest.name} {f.path}") for f in parsed.files()]
    blobs = _Blobs(client, ref.repository)
    return Pulled(manifest, parsed.variant, source, fetch_all(lambda: blobs, store, wanted, progress=progress))


def _packed(folder: Path, store: "Store", source: str) -> Pulled:
    """A foreign artifact's folder, validated and packed as `nnpm install ./folder` would, into the store."""
    from nnpm.author.pack import staged
    from nnpm.fsutil import remove_tree

    try:
        with staged(folder, allow_hardlinks=True, scratch=store.root / "tmp") as built:
            for entry in built.manifest.files:
                store.add_file(built.paths[entry.path], entry.sha256, entry.size)
        return Pulled(built.manifest, "reference", source)
    finally:
        remove_tree(folder)


def _foreign(client: OciClient, ref: OciRef, parsed: ParsedArtifact, config: dict, store: "Store") -> Path:
    """A ModelPack artifact nnpm did not write, as a package folder under the store's scratch space."""
    import tempfile

    scratch = store.root / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="nnpm-oci-", dir=scratch))
    paths = [check_relpath(layer.path, file=str(ref), key="layers") for layer in parsed.files()]
    if len(set(paths)) != len(paths):
        raise ManifestError(f"{ref}: two layers name the same file")
    for layer, rel in zip(parsed.files(), paths, strict=True):
        dest = folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_fetch_one(client, ref, layer, store), dest)
    (folder / "nnpm.toml").write_text(_toml_for(ref, parsed, config), encoding="utf-8")
    return folder


def _fetch_one(client: OciClient, ref: OciRef, layer, store: "Store") -> Path:
    from nnpm.install.fetch import Wanted, fetch_all

    fetch_all(lambda: _Blobs(client, ref.repository), store, [Wanted(layer.digest, layer.size, layer.path)],
              progress=False)
    return store.path(layer.digest)


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

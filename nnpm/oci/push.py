"""`nnpm push oci://HOST/REPO[:TAG] [DIR|NAME[==VER]]`: a package version as ModelPack artifacts, one per variant.

A folder is packed as publish packs it (tensor-addressed); a name is taken from the nnpm
registry (its blobs fetched into the store first). Each variant's layers go up unless the
repository has them, then its manifest under `tag_for(version, variant)`; an explicit TAG
also names the reference artifact (as `docker tag` would).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nnpm.format.oci import build_artifact, tag_for
from nnpm.oci.reference import OciRef
from nnpm.oci.transport import OciClient

if TYPE_CHECKING:
    from collections.abc import Iterator

    from nnpm.config import Settings
    from nnpm.format.manifest import Manifest


@dataclass
class Pushed:
    """What a push wrote: (tag, manifest digest) per artifact, and the layers uploaded and skipped."""

    name: str
    version: str
    tags: list[tuple[str, str]] = field(default_factory=list)
    uploaded: int = 0
    skipped: int = 0


def push(ref: OciRef, source: str, settings: "Settings", *, split: bool = True) -> Pushed:
    """Push one package version (every variant) to `ref`'s repository."""
    client = OciClient(ref)
    with _package(source, settings, split) as (manifest, paths):
        out = Pushed(manifest.name, str(manifest.version))
        for variant in manifest.variant_names():
            artifact = build_artifact(manifest, variant)
            for layer in artifact.layers:
                had = client.has_blob(ref.repository, layer.digest)
                if not had:
                    data = artifact.nnpm_manifest_bytes if layer.nnpm_manifest else paths[layer.path]
                    client.push_blob(ref.repository, layer.digest, layer.size, data)
                out.uploaded, out.skipped = out.uploaded + (not had), out.skipped + had
            client.push_blob(ref.repository, artifact.config_digest, len(artifact.config_bytes), artifact.config_bytes)
            tags = [tag_for(manifest.version, variant)] + ([ref.tag] if ref.tag and variant == "reference" else [])
            for tag in dict.fromkeys(tags):
                client.push_manifest(ref.repository, tag, artifact.manifest_bytes)
                out.tags.append((tag, artifact.digest))
    return out


@contextmanager
def _package(source: str, settings: "Settings", split: bool) -> "Iterator[tuple[Manifest, dict[str, Path]]]":
    """(manifest, path of every file) of a folder, or of a version on the nnpm registry (fetched into the store)."""
    from nnpm.format.spec import parse_spec

    spec = parse_spec(source)
    if spec.is_path:
        from nnpm.author.pack import staged

        with staged(spec.path, split=split) as built:
            yield built.manifest, built.paths
        return
    yield _from_registry(spec, settings)


def _from_registry(spec, settings: "Settings") -> "tuple[Manifest, dict[str, Path]]":
    from nnpm.client.api import RegistryClient
    from nnpm.errors import NotFoundError
    from nnpm.install.fetch import Wanted, fetch_all
    from nnpm.install.store import Store

    store = Store(settings.store_dir)
    with RegistryClient.for_settings(settings) as client:
        packument = client.packument(spec.name)
        allowed = [r for r in (packument.releases if packument else ()) if spec.allows(r.version) and not r.yanked]
        if not allowed:
            raise NotFoundError(f"{spec.requirement} is not on {client.url}", hint="check the name and version")
        manifest = allowed[-1].manifest
        fetch_all(lambda: client, store, [Wanted(f.sha256, f.size, f"{manifest.name} {f.path}") for f in manifest.files],
                  progress=False)
    return manifest, {f.path: store.path(f.sha256) for f in manifest.files}

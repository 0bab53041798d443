"""An OCI namespace as the package index: `nnpm config set index oci://HOST/NAMESPACE/`.

Package NAME lives in repository NAMESPACE/NAME; its versions are the tags nnpm writes
(`1.0.0`, not `1.0.0-int8`), each read through the nnpm manifest its artifact carries. The
installer uses this object where it would use a RegistryClient: packuments, releases and
blobs, so dependencies of a package pulled from OCI resolve from OCI.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from nnpm.errors import IntegrityError, NotFoundError
from nnpm.format.manifest import Manifest
from nnpm.format.oci import check_layers, parse_artifact, parse_tag
from nnpm.format.packument import Packument, Release
from nnpm.oci.reference import OciRef
from nnpm.oci.transport import OciClient

if TYPE_CHECKING:
    from collections.abc import Iterator


class OciIndex:
    """Packuments and blobs from the repositories of one OCI namespace."""

    def __init__(self, namespace: OciRef) -> None:
        self.namespace = namespace
        self.url = str(namespace).rstrip("/") + "/"
        self.client = OciClient(namespace)
        self._repo_of: dict[str, str] = {}          # blob digest -> a repository that holds it

    def packument(self, name: str) -> Packument | None:
        """Every version of `name` the namespace has a reference tag for (None when it has none)."""
        repository = self.namespace.child(name).repository
        releases = []
        for tag in sorted(self.client.tags(repository)):
            parsed = parse_tag(tag)
            if parsed is None or parsed[1] != "reference":
                continue
            releases.append(Release.from_manifest(self._manifest(repository, tag)))
        if not releases:
            return None
        return Packument.of(name, sorted(releases, key=lambda r: r.version))

    def release(self, name: str, version: str) -> Release:
        """One version (for `install --locked`)."""
        from packaging.version import Version

        from nnpm.format.oci import tag_for

        repository = self.namespace.child(name).repository
        return Release.from_manifest(self._manifest(repository, tag_for(Version(version))))

    def _manifest(self, repository: str, tag: str) -> Manifest:
        raw, _ = self.client.manifest(repository, tag)
        parsed = parse_artifact(raw)
        layer = parsed.nnpm_layer
        if layer is None:
            raise NotFoundError(f"{self.namespace.host}/{repository}:{tag} was not pushed by nnpm (no nnpm manifest)",
                                hint="install it by its oci:// reference instead")
        manifest = Manifest.from_json(self.client.small_blob(repository, layer.digest, layer.size))
        check_layers(parsed, manifest)
        if manifest.name != repository.rsplit("/", 1)[-1]:
            raise IntegrityError(f"{self.namespace.host}/{repository}:{tag} holds package {manifest.name!r}")
        for f in manifest.files:
            self._repo_of.setdefault(f.sha256, repository)
        return manifest

    @contextmanager
    def open_blob(self, digest: str, start: int = 0, if_range: str | None = None) -> "Iterator":
        """A package file, from the repository whose manifest listed it."""
        repository = self._repo_of.get(digest)
        if repository is None:
            raise NotFoundError(f"no package read from {self.url} lists blob sha256:{digest[:12]}…")
        with self.client.open_blob(repository, digest, start) as stream:
            yield stream

    def close(self) -> None:
        """Nothing to close (oras keeps a requests session per client)."""

    def __enter__(self) -> "OciIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

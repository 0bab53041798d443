"""`load(spec)`: find the package a spec names, verify it, and open it as a Model.

A spec (parsed by `nnpm.format.spec`) is
- an installed name, ``digits`` (the version installed in the environment), or with a
  specifier, ``digits==1.0.0`` / ``digits>=1,<2``; a bare name is never a folder;
- a package folder holding nnpm.toml (validated as `nnpm pack` does), or an unpacked
  folder holding manifest.json (every file hashed against it);
- a ``.nnpm`` archive (extracted into a temp folder, verified, removed once loaded).

The session reads the package's own files only; onnxruntime resolves external data next
to the model file, which nnpm's safety rules keep inside the package.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnpm.errors import IntegrityError, ManifestError, NotInstalledError
from nnpm.format.manifest import MANIFEST_NAME, Manifest
from nnpm.format.project import TOML_NAME
from nnpm.format.spec import Spec, parse_spec
from nnpm.runtime.model import Model, open_model

if TYPE_CHECKING:
    import onnxruntime

    from nnpm.install.env import Environment, InstalledPackage
    from nnpm.runtime.pipeline import StepwiseModel


def load(spec: "str | os.PathLike[str]", *, env: "str | Environment | None" = None,
         providers: Sequence[Any] | None = None, session_options: "onnxruntime.SessionOptions | None" = None,
         verify: bool = True, fuse: bool = True, install: bool = False) -> "Model | StepwiseModel":
    """Load a package (installed name[spec], folder or .nnpm file) as a runnable Model.

    `verify` re-checks an installed package's files before loading (folders and archives are
    always checked). `providers` are onnxruntime execution providers (default: CPU only).
    `fuse=False` runs a pipeline's steps as separate sessions (ignored for plain models).
    `install=True` installs a named package the environment lacks first, as `ollama run`
    pulls: inside a project with `nnpm add` (project file, lock and `.nnpm/`), else into
    the environment with `nnpm install`.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"load() takes a name, path or .nnpm file, not {type(spec).__name__}")
    parsed = parse_spec(spec)
    kw = {"providers": providers, "session_options": session_options, "fuse": fuse, "graph": parsed.graph}
    if not parsed.is_path:
        if install:
            return _installing(parsed, env, verify=verify, **kw)
        return _from_env(parsed, env, verify=verify, **kw)
    path = parsed.path
    if path.is_dir():
        if (path / TOML_NAME).is_file():
            return _from_folder(path, env, **kw)
        if (path / MANIFEST_NAME).is_file():
            return _from_unpacked(path, env, **kw)
        raise ManifestError(f"{path} holds neither {TOML_NAME} nor {MANIFEST_NAME}",
                            hint="point at a package folder, a .nnpm file, or an installed name")
    if path.is_file() and path.suffix == ".nnpm":
        return _from_archive(path, env, **kw)
    if not path.exists():
        raise ManifestError(f"no package folder or .nnpm file at {path}",
                            hint="installed packages load by name, e.g. nnpm.load('digits')")
    raise ManifestError(f"{path} is neither a package folder nor a .nnpm archive")


def _env(env: "str | Environment | None") -> "Environment":
    if env is None or isinstance(env, str):
        from nnpm.install.env import open_env

        return open_env(env)
    return env


def _open(pkg: "InstalledPackage", env: Any, *, verify: bool, fuse: bool = True, graph: str | None = None,
          **kw: Any) -> Any:
    """A Model (or Models) for a model package, a fused (or stepwise) one for a pipeline."""
    if pkg.manifest.project.pipeline:
        if graph is not None:
            raise ManifestError(f"{pkg.name} is a pipeline; it has no graph {graph!r} to name")
        from nnpm.runtime.pipeline import load_pipeline

        return load_pipeline(pkg, _env(env), verify=verify, fuse=fuse, **kw)
    return open_model(pkg.manifest, pkg.path, variant=pkg.variant, graph=graph, **kw)


def _from_env(spec: Spec, env: Any, *, verify: bool, **kw: Any) -> Any:
    environment = _env(env)
    pkg = environment.matching(spec)
    if verify:
        pkg.verify()
    return _open(pkg, environment, verify=verify, **kw)


def _installing(spec: Spec, env: Any, *, verify: bool, **kw: Any) -> Any:
    """`_from_env`, after installing the package when the environment lacks it or an allowed version."""
    environment = _env(env)
    try:
        pkg = environment.get(spec.name)
        if spec.allows(pkg.version):
            return _from_env(spec, environment, verify=verify, **kw)
    except NotInstalledError:
        pass
    if environment.project is not None:
        from nnpm.project.sync import add_requirement

        add_requirement(environment.project, spec)
    else:
        from nnpm.config import load_settings
        from nnpm.install.transaction import Installer

        Installer(load_settings(), environment, progress=False).install([spec.requirement])
    return _from_env(spec, environment, verify=verify, **kw)


def _from_folder(folder: Path, env: Any, **kw: Any) -> Any:
    from nnpm.author.pack import build

    built = build(folder, allow_hardlinks=True)   # as `nnpm install ./folder` does
    return _open(_as_package(built.manifest, folder), env, verify=True, **kw)


def _from_unpacked(folder: Path, env: Any, *, manifest: Manifest | None = None, path: Path | None = None,
                   **kw: Any) -> Any:
    """A folder holding the files a manifest lists: an extracted archive (manifest given, already
    verified) or a folder with manifest.json (every file hashed here)."""
    from nnpm.format import onnxinfo

    trusted = manifest is not None
    if manifest is None:
        manifest_path = folder / MANIFEST_NAME
        manifest = Manifest.from_json(manifest_path.read_bytes(), file=str(manifest_path))
        _hash_files(manifest, folder)
    if manifest.project.pipeline:
        return _open(_as_package(manifest, folder), env, verify=True, **kw)
    listed = {f.path for f in manifest.files}
    for entry in manifest.graphs["reference"].values():
        info = onnxinfo.read_model(folder, entry.file, allow_hardlinks=not trusted)
        if info.signature != entry.signature:
            raise IntegrityError(f"{manifest.name} {manifest.version}: the manifest's signature does not match "
                                 f"{entry.file}", hint="pack the package again with 'nnpm pack'")
        missing = [f for f in info.external_files if f not in listed]
        if missing:
            raise IntegrityError(f"{manifest.name}: external data {missing[0]!r} is not in the manifest")
    kw.pop("fuse", None)
    return open_model(manifest, folder, path=path or folder, **kw)


def _hash_files(manifest: Manifest, folder: Path) -> None:
    from nnpm.format.safety import check_file
    from nnpm.hashing import file_digest

    for entry in manifest.files:
        digest, size = file_digest(check_file(folder, entry.path, allow_hardlinks=True))
        if (digest, size) != (entry.sha256, entry.size):
            raise IntegrityError(f"{manifest.name} {manifest.version}: {entry.path} does not match "
                                 "its manifest entry (size or sha256 differs)")


def _from_archive(archive: Path, env: Any, **kw: Any) -> Any:
    import tempfile

    from nnpm.format.archive import extract
    from nnpm.fsutil import remove_tree

    tmp = Path(tempfile.mkdtemp(prefix="nnpm-load-"))
    try:
        dest = tmp / "pkg"
        manifest = extract(archive, dest)   # verifies every member against the manifest
        return _from_unpacked(dest, env, manifest=manifest, path=archive, **kw)
    finally:
        remove_tree(tmp)   # the session holds the weights in memory now


def _as_package(manifest: Manifest, folder: Path) -> "InstalledPackage":
    from nnpm.install.env import InstalledPackage

    return InstalledPackage(manifest.name, manifest.version, Path(folder), manifest)

"""Model: one nnpm package run by onnxruntime, and `load`, which finds the package.

`load(spec)` accepts
- an installed name, ``digits`` (the version installed in the environment),
  or with a specifier, ``digits==1.0.0`` / ``digits>=1,<2``;
- a package folder holding nnpm.toml (validated with `nnpm.pack.build`), or an unpacked
  folder holding manifest.json (every file hashed against it);
- a ``.nnpm`` archive (extracted into a temp folder, verified, removed once loaded).
A string is a path when it contains a path separator, starts with '.' or '~', or ends in
'.nnpm'; write ``./digits`` for a folder that has a package's name.

The session reads the package's own files only; onnxruntime resolves external data next
to the model file, which nnpm's safety rules keep inside the package. onnxruntime is
imported inside the functions that need it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnpm.errors import IntegrityError, InputError, ManifestError, ModelError, NnpmError, NoLabelsError, NotInstalledError, \
    RequirementError
from nnpm.manifest import MANIFEST_NAME, TOML_NAME, Manifest, Signature, canonical_name, parse_specifier

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime

    from nnpm.env import Environment, InstalledPackage

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
_SPEC_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*$")


class Model:
    """A runnable package: ``model(x)``, ``model(a=..., b=...)`` or ``model({"a": ...})``.

    Returns one numpy array when the graph has one output, else a dict by output name.
    Calls may come from several threads at once (onnxruntime sessions are thread-safe).
    """

    def __init__(self, manifest: Manifest, session: "onnxruntime.InferenceSession", *, path: Path,
                 signature: Signature | None = None, labels: Mapping[str, Sequence[str]] | None = None) -> None:
        self.manifest = manifest
        self.session = session
        self.path = Path(path)
        self.signature = signature or manifest.signature
        if self.signature is None:
            raise ManifestError(f"{manifest.name} {manifest.version} has no signature")
        self._labels = {k: list(v) for k, v in (labels or {}).items()}
        self._output_names = [o.name for o in session.get_outputs()]

    @property
    def name(self) -> str:
        """Canonical package name."""
        return self.manifest.name

    @property
    def version(self):
        """Package version (packaging.version.Version)."""
        return self.manifest.version

    def __call__(self, *args: Any, **kwargs: Any) -> "np.ndarray | dict[str, np.ndarray]":
        outputs = self.run(self._feeds(args, kwargs))
        return next(iter(outputs.values())) if len(outputs) == 1 else outputs

    def run(self, feeds: Mapping[str, Any]) -> "dict[str, np.ndarray]":
        """Check and convert the inputs, run once, and return every output by name."""
        from nnpm.inputs import check_inputs

        checked = check_inputs(self.signature, feeds)
        try:
            values = self.session.run(self._output_names, checked)
        except Exception as exc:  # onnxruntime's pybind errors: Fail, InvalidArgument, RuntimeException...
            raise ModelError(f"onnxruntime failed running {self.name} {self.version}: {_first_line(exc)}") from exc
        return dict(zip(self._output_names, values))

    def labels(self, output: str) -> list[str]:
        """The class names declared for one output (one per line of its labels file)."""
        names = [o.name for o in self.signature.outputs]
        if output not in names:
            raise NoLabelsError(f"{self.name} has no output {output!r}", hint="outputs are: " + ", ".join(names))
        if output not in self._labels:
            have = ", ".join(sorted(self._labels)) or "none"
            raise NoLabelsError(f"output {output!r} of {self.name} has no labels",
                                hint=f"outputs with labels: {have}")
        return list(self._labels[output])

    def has_labels(self, output: str) -> bool:
        """True when the package declares a labels file for this output."""
        return output in self._labels

    def _feeds(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        names = [s.name for s in self.signature.inputs]
        if len(args) == 1 and isinstance(args[0], Mapping):
            if kwargs:
                raise InputError("pass the inputs either as one dict or as keywords, not both")
            return dict(args[0])
        if len(args) > len(names):
            raise InputError(f"{self.name} takes {len(names)} input(s) ({', '.join(names)}), "
                             f"got {len(args)} positional", hint="pass inputs by name: model(name=array)")
        feeds = dict(zip(names, args))
        for key, value in kwargs.items():
            if key in feeds:
                raise InputError(f"input {key!r} is given twice (by position and by name)")
            feeds[key] = value
        return feeds

    def __repr__(self) -> str:
        def side(specs):
            return ", ".join(f"{s.name}: {s.dtype} {s.shape_text()}" for s in specs)
        return f"<nnpm.Model {self.name} {self.version} ({side(self.signature.inputs)}) -> " \
               f"({side(self.signature.outputs)})>"


def load(spec: "str | os.PathLike[str]", *, env: "str | Environment | None" = None,
         providers: Sequence[Any] | None = None, session_options: "onnxruntime.SessionOptions | None" = None,
         verify: bool = True, fuse: bool = True) -> Model:
    """Load a package (installed name[spec], folder or .nnpm file) as a runnable Model.

    `verify` re-checks an installed package's files before loading (folders and archives are
    always checked). `providers` are onnxruntime execution providers (default: CPU only).
    `fuse=False` runs a pipeline's steps as separate sessions (ignored for plain models).
    """
    kw = {"providers": providers, "session_options": session_options, "fuse": fuse}
    if not _looks_like_path(spec):
        return _from_env(str(spec), env, verify=verify, **kw)
    path = Path(spec).expanduser()
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


def make_session(model: "Path | bytes", providers: Sequence[Any] | None = None,
                 session_options: "onnxruntime.SessionOptions | None" = None) -> "onnxruntime.InferenceSession":
    """An onnxruntime session on a model file (or serialized bytes), CPU unless providers say otherwise."""
    import onnxruntime as ort

    chosen = check_providers(providers)
    if session_options is None:
        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3  # errors only; warnings are for model authors
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=session_options, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own pybind classes
        what = "the model" if isinstance(model, bytes) else Path(model).name
        raise ModelError(f"onnxruntime cannot load {what}: {_first_line(exc)}") from exc


def check_providers(providers: Sequence[Any] | None) -> list[Any]:
    """The providers to use (names or (name, options) pairs), each offered by this onnxruntime."""
    import onnxruntime as ort

    if providers is None:
        return list(DEFAULT_PROVIDERS)
    if isinstance(providers, str):
        providers = [providers]
    available = ort.get_available_providers()
    chosen = list(providers)
    if not chosen:
        raise RequirementError("no execution provider given", hint="available: " + ", ".join(available))
    for p in chosen:
        name = p[0] if isinstance(p, (tuple, list)) else p
        if name not in available:
            raise RequirementError(
                f"execution provider {name!r} is not available in this onnxruntime {ort.__version__}; "
                f"available: {', '.join(available)}",
                hint="install the onnxruntime build that ships it (e.g. onnxruntime-gpu), or use the CPU")
    return chosen


def _looks_like_path(spec: Any) -> bool:
    if isinstance(spec, os.PathLike):
        return True
    if not isinstance(spec, str):
        raise TypeError(f"load() takes a name, path or .nnpm file, not {type(spec).__name__}")
    return "/" in spec or os.sep in spec or spec.startswith((".", "~")) or spec.endswith(".nnpm")


def _env(env: "str | Environment | None") -> "Environment":
    if env is None or isinstance(env, str):
        from nnpm.env import open_env

        return open_env(env)
    return env


def _from_env(spec: str, env: Any, *, verify: bool, **kw: Any) -> Model:
    match = _SPEC_RE.match(spec)
    if not match:
        raise ManifestError(f"{spec!r} is not a package name, name==version, folder or .nnpm file")
    name = canonical_name(match.group(1), file=None, key=None)
    specifier = parse_specifier(match.group(2), file=None, key=spec) if match.group(2) else None
    exact = None
    if specifier is not None and len(specifier) == 1:
        (only,) = specifier
        exact = only.version if only.operator == "==" and "*" not in only.version else None
    environment = _env(env)
    pkg = environment.get(name, exact)
    if specifier is not None and not specifier.contains(pkg.version, prereleases=True):
        raise NotInstalledError(f"{name} {pkg.version} is installed in environment {environment.name!r}, "
                                f"but {spec!r} was asked for", hint=f"run 'nnpm install \"{name}{specifier}\"'")
    if verify:
        pkg.verify()
    if pkg.manifest.project.pipeline:
        return _pipeline(pkg, environment, verify=verify, **kw)
    return _open(pkg.manifest, pkg.path, path=pkg.path, **kw)


def _from_folder(folder: Path, env: Any, **kw: Any) -> Model:
    from nnpm.pack import build

    built = build(folder, allow_hardlinks=True)   # as `nnpm install ./folder` does
    if built.manifest.project.pipeline:
        return _pipeline(_as_package(built.manifest, folder), _env(env), verify=True, **kw)
    return _open(built.manifest, folder, path=folder, **kw)


def _from_unpacked(folder: Path, env: Any, *, manifest: Manifest | None = None, path: Path | None = None,
                   **kw: Any) -> Model:
    """A folder holding the files a manifest lists: an extracted archive (manifest given, already
    verified) or a folder with manifest.json (every file hashed here)."""
    from nnpm import onnxinfo

    trusted = manifest is not None
    if manifest is None:
        manifest_path = folder / MANIFEST_NAME
        manifest = Manifest.from_json(manifest_path.read_bytes(), file=str(manifest_path))
        _hash_files(manifest, folder)
    if manifest.project.pipeline:
        return _pipeline(_as_package(manifest, folder), _env(env), verify=True, **kw)
    info = onnxinfo.read_model(folder, manifest.project.model.file, allow_hardlinks=not trusted)
    if info.signature != manifest.signature:
        raise IntegrityError(f"{manifest.name} {manifest.version}: the manifest's signature does not match "
                             f"{manifest.project.model.file}", hint="pack the package again with 'nnpm pack'")
    listed = {f.path for f in manifest.files}
    missing = [f for f in info.external_files if f not in listed]
    if missing:
        raise IntegrityError(f"{manifest.name}: external data {missing[0]!r} is not in the manifest")
    return _open(manifest, folder, path=path or folder, **kw)


def _hash_files(manifest: Manifest, folder: Path) -> None:
    from nnpm.hashing import file_digest
    from nnpm.safety import check_file

    for entry in manifest.files:
        digest, size = file_digest(check_file(folder, entry.path, allow_hardlinks=True))
        if (digest, size) != (entry.sha256, entry.size):
            raise IntegrityError(f"{manifest.name} {manifest.version}: {entry.path} does not match "
                                 "its manifest entry (size or sha256 differs)")


def _from_archive(archive: Path, env: Any, **kw: Any) -> Model:
    from nnpm.archive import extract

    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="nnpm-load-"))
    try:
        dest = tmp / "pkg"
        manifest = extract(archive, dest)   # verifies every member against the manifest
        return _from_unpacked(dest, env, manifest=manifest, path=archive, **kw)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)   # the session holds the weights in memory now


def _as_package(manifest: Manifest, folder: Path) -> "InstalledPackage":
    from nnpm.env import InstalledPackage

    return InstalledPackage(manifest.name, manifest.version, Path(folder), manifest)


def _pipeline(pkg: "InstalledPackage", env: "Environment", **kw: Any) -> Model:
    try:
        from nnpm.compose import load_pipeline
    except ImportError as exc:
        if exc.name not in ("nnpm.compose", None):
            raise
        raise NnpmError(f"{pkg.name} {pkg.version} is a pipeline, and this nnpm cannot run pipelines yet",
                        hint="load its steps one by one: " + ", ".join(pkg.manifest.project.pipeline.steps)) \
            from None
    return load_pipeline(pkg, env, **kw)


def _open(manifest: Manifest, folder: Path, *, path: Path, providers: Any = None,
          session_options: Any = None, fuse: bool = True) -> Model:
    _check_requires(manifest)
    session = make_session(Path(folder) / manifest.project.model.file, providers, session_options)
    return Model(manifest, session, path=path, labels=read_labels(manifest, folder))


def read_labels(manifest: Manifest, folder: Path) -> dict[str, list[str]]:
    """Labels per output, read from the files the manifest declares (one name per line)."""
    out = {}
    for output, info in (manifest.project.model.outputs if manifest.project.model else {}).items():
        if info.labels:
            out[output] = (Path(folder) / info.labels).read_text(encoding="utf-8").splitlines()
    return out


def _check_requires(manifest: Manifest) -> None:
    """The install-time runtime check, against the onnxruntime this process actually imports."""
    import onnxruntime as ort
    from packaging.version import Version

    from nnpm.compat import check_runtime

    check_runtime(manifest, Version(ort.__version__))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

"""Model: one package's graph run by onnxruntime, with its signature checked and its labels at hand.

`open_model` makes one from a model package whose files are verified and in place
(`nnpm.runtime.load` finds them); `make_session` is the one place onnxruntime sessions are
made (providers checked, warnings silenced). onnxruntime is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnpm.errors import InputError, ManifestError, ModelError, NoLabelsError, RequirementError
from nnpm.format.manifest import Manifest, Signature

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


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
        self.graph: str | None = None          # which graph of its package, and which variant
        self.variant = "reference"

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
        from nnpm.runtime.inputs import check_inputs

        checked = check_inputs(self.signature, feeds)
        try:
            values = self.session.run(self._output_names, checked)
        except Exception as exc:  # onnxruntime's pybind errors: Fail, InvalidArgument, RuntimeException...
            raise ModelError(f"onnxruntime failed running {self._where(exc)}: {_first_line(exc)}") from exc
        return dict(zip(self._output_names, values))

    def _where(self, exc: BaseException) -> str:
        """What failed, for the error line (a fused pipeline names the step)."""
        return f"{self.name} {self.version}"

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


class Models:
    """The graphs of a package of several, one Model each: ``m.encoder(x)``, ``m["decoder"]``, ``m.names``."""

    def __init__(self, manifest: Manifest, models: dict[str, Model]) -> None:
        self.manifest = manifest
        self._models = dict(models)

    @property
    def names(self) -> list[str]:
        """The graph names, sorted."""
        return list(self._models)

    def __getitem__(self, graph: str) -> Model:
        try:
            return self._models[graph]
        except KeyError:
            raise KeyError(f"{self.manifest.name} has no graph {graph!r}; it has {', '.join(self.names)}") from None

    def __getattr__(self, graph: str) -> Model:
        models = self.__dict__.get("_models", {})
        if graph in models:
            return models[graph]
        raise AttributeError(f"{self.__dict__.get('manifest').name if 'manifest' in self.__dict__ else 'package'} "
                             f"has no graph {graph!r}")

    def __iter__(self):
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __repr__(self) -> str:
        return f"<nnpm.Models {self.manifest.name} {self.manifest.version}: {', '.join(self.names)}>"


def open_model(manifest: Manifest, folder: Path, *, path: Path | None = None, providers: Any = None,
               session_options: Any = None, variant: str = "reference", graph: str | None = None) -> "Model | Models":
    """The Model of one graph (or Models of every graph) of a package whose files are in `folder` (verified)."""
    _check_requires(manifest)
    names = manifest.graph_names()
    if graph is not None and graph not in names:
        raise ManifestError(f"{manifest.name} has no graph {graph!r}", hint="its graphs: " + ", ".join(names))
    if graph is None and len(names) > 1:
        return Models(manifest, {g: open_model(manifest, folder, path=path, providers=providers,
                                               session_options=session_options, variant=variant, graph=g)
                                 for g in names})
    graph = graph or names[0]
    entry = manifest.graph(variant, graph)
    session = make_session(Path(folder) / entry.file, providers, session_options)
    model = Model(manifest, session, path=path or folder, signature=entry.signature,
                  labels=read_labels(manifest, folder, graph))
    model.graph, model.variant = graph, variant
    return model


def read_labels(manifest: Manifest, folder: Path, graph: str | None = None) -> dict[str, list[str]]:
    """Labels per output of one graph (the only one by default), read from the files the manifest declares."""
    from nnpm.format.labels import parse_labels

    out = {}
    section = manifest.project.models.get(graph) if graph else manifest.project.model
    for output, info in (section.outputs if section else {}).items():
        if info.labels:
            out[output] = parse_labels((Path(folder) / info.labels).read_bytes(), path=info.labels)
    return out


def _check_requires(manifest: Manifest) -> None:
    """The install-time runtime check, against the onnxruntime this process actually imports."""
    import onnxruntime as ort
    from packaging.version import Version

    from nnpm.install.compat import check_runtime

    check_runtime(manifest, Version(ort.__version__))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

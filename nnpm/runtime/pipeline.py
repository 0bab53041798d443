"""Load a pipeline package: find its installed steps, fuse them (cached), run as one Model.

The fused file is cached in the environment keyed by the pipeline's and the steps'
digests, so a changed step means a new graph and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnpm.errors import InputError, NoLabelsError, PipelineError
from nnpm.format.manifest import Signature
from nnpm.format.wiring import Port, Wiring, plan, signature
from nnpm.runtime.compose import fuse
from nnpm.runtime.inputs import check_inputs
from nnpm.runtime.model import Model, make_session, open_model, read_labels

if TYPE_CHECKING:
    import onnx

    from nnpm.install.env import Environment, InstalledPackage


def _steps(pkg: "InstalledPackage", env: "Environment", verify: bool) -> dict[str, "InstalledPackage"]:
    """The installed package of every step, checked against the pipeline's specifiers."""
    deps = pkg.manifest.project.dependencies
    out = {}
    for step in pkg.manifest.project.pipeline.steps:
        installed = env.get(step)
        if not deps[step].contains(installed.version, prereleases=True):
            raise PipelineError(f"{pkg.name} needs {step}{deps[step]}, but {step} {installed.version} is installed",
                                hint=f"run 'nnpm install {pkg.name}' to resolve its steps again")
        if verify:
            installed.verify()
        out[step] = installed
    return out


def step_signature(pkg: "InstalledPackage", env: "Environment") -> Signature:
    """A package's signature; for a nested pipeline, the one its wiring exposes."""
    if pkg.manifest.signature is not None:
        return pkg.manifest.signature
    steps = _steps(pkg, env, verify=False)
    sigs = {s: step_signature(p, env) for s, p in steps.items()}
    return signature(plan(pkg.manifest.project.pipeline, sigs), sigs)


def wiring_of(pkg: "InstalledPackage", env: "Environment") -> tuple[Wiring, dict[str, Signature]]:
    """The checked wiring of a pipeline and its steps' signatures."""
    steps = _steps(pkg, env, verify=False)
    sigs = {s: step_signature(p, env) for s, p in steps.items()}
    return plan(pkg.manifest.project.pipeline, sigs), sigs


def _model_proto(pkg: "InstalledPackage", env: "Environment") -> "onnx.ModelProto":
    import onnx

    if pkg.manifest.project.model:
        return onnx.load(str(pkg.path / pkg.manifest.project.model.file))
    return fused_proto(pkg, env)


def fused_proto(pkg: "InstalledPackage", env: "Environment") -> "onnx.ModelProto":
    """One ModelProto for a pipeline (steps that are pipelines are fused recursively)."""
    wiring, _ = wiring_of(pkg, env)
    steps = _steps(pkg, env, verify=True)
    return fuse({s: _model_proto(p, env) for s, p in steps.items()}, wiring, name=pkg.name)


def _cache_key(pkg: "InstalledPackage", env: "Environment") -> str:
    import onnx

    from nnpm._version import __version__

    # A new nnpm or onnx may fuse differently, so their versions are part of the key.
    parts = [__version__, onnx.__version__, pkg.manifest.to_json().decode()]
    for step, p in sorted(_steps(pkg, env, verify=False).items()):
        parts.append(_cache_key(p, env) if p.manifest.project.pipeline else p.manifest.to_json().decode())
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def fused_path(pkg: "InstalledPackage", env: "Environment") -> Path:
    """The cached fused graph of a pipeline, built on first use."""
    import onnx

    from nnpm.fsutil import atomic_path

    path = env.cache_dir() / "fused" / f"{pkg.name}-{pkg.version}-{_cache_key(pkg, env)[:16]}.onnx"
    if path.exists():
        _verify_steps(pkg, env)  # a tampered step must not hide behind a cached graph
        return path
    proto = fused_proto(pkg, env)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


def _verify_steps(pkg: "InstalledPackage", env: "Environment") -> None:
    """Verify every step's files, and the steps of steps that are pipelines themselves."""
    for step in _steps(pkg, env, verify=True).values():
        if step.manifest.project.pipeline:
            _verify_steps(step, env)


def _labels(pkg: "InstalledPackage", env: "Environment", wiring: Wiring) -> dict[str, list[str]]:
    """Labels of exposed outputs, carried over from the step that produces each."""
    steps = _steps(pkg, env, verify=False)
    out = {}
    for exposed, port in wiring.outputs.items():
        step = steps[port.step]
        if step.manifest.project.model:
            labels = read_labels(step.manifest, step.path)
        else:  # a nested pipeline: its own exposed outputs carry its steps' labels
            labels = _labels(step, env, wiring_of(step, env)[0])
        if port.name in labels:
            out[exposed] = labels[port.name]
    return out


def load_pipeline(pkg: "InstalledPackage", env: "Environment", *, providers: Any = None,
                  session_options: Any = None, fuse: bool = True, verify: bool = True) -> "Model | StepwiseModel":
    """A Model for a pipeline: one fused session, or (fuse=False) its steps run in sequence."""
    wiring, sigs = wiring_of(pkg, env)
    sig = signature(wiring, sigs)
    labels = _labels(pkg, env, wiring)
    if not fuse:
        return StepwiseModel(pkg, env, wiring, sig, labels, providers=providers, session_options=session_options)
    session = make_session(fused_path(pkg, env), providers, session_options)
    return Model(pkg.manifest, session, path=pkg.path, signature=sig, labels=labels)


def _open_step(pkg: "InstalledPackage", env: "Environment", **kw: Any) -> "Model":
    """One step of a stepwise pipeline: its own session (a nested pipeline is fused)."""
    if pkg.manifest.project.pipeline:
        return load_pipeline(pkg, env, verify=False, **kw)
    return open_model(pkg.manifest, pkg.path, **kw)


class StepwiseModel:
    """A pipeline run as separate sessions, one step after another (for debugging and benchmarks)."""

    def __init__(self, pkg: "InstalledPackage", env: "Environment", wiring: Wiring, sig: Signature,
                 labels: dict[str, list[str]], **kw: Any) -> None:
        self.manifest, self.path, self.signature, self.wiring = pkg.manifest, pkg.path, sig, wiring
        self._labels = labels
        self.steps = {s: _open_step(p, env, **kw) for s, p in _steps(pkg, env, verify=True).items()}

    name = property(lambda self: self.manifest.name)
    version = property(lambda self: self.manifest.version)

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Run the steps in order, passing tensors along the wiring."""
        values = {port: v for port, v in
                  ((self.wiring.inputs[k], v) for k, v in check_inputs(self.signature, feeds).items())}
        for step in self.wiring.order:
            model = self.steps[step]
            step_feeds = {p.name: values[p] for p in values if p.step == step}
            for src, dst in self.wiring.edges:
                if dst.step == step:
                    step_feeds[dst.name] = values[src]
            outs = model.run(step_feeds)
            values.update({Port(step, k): v for k, v in outs.items()})
        try:
            return {name: values[port] for name, port in self.wiring.outputs.items()}
        except KeyError as exc:
            raise InputError(f"pipeline output {exc} was not produced") from None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        names = [s.name for s in self.signature.inputs]
        feeds = dict(args[0]) if len(args) == 1 and isinstance(args[0], dict) else dict(zip(names, args))
        feeds.update(kwargs)
        outputs = self.run(feeds)
        return next(iter(outputs.values())) if len(outputs) == 1 else outputs

    def labels(self, output: str) -> list[str]:
        """Class names of one exposed output."""
        if output not in self._labels:
            raise NoLabelsError(f"output {output!r} of {self.name} has no labels",
                                hint="outputs with labels: " + (", ".join(sorted(self._labels)) or "none"))
        return list(self._labels[output])

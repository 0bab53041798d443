"""Load a pipeline package: one fused session (nnpm.runtime.fusion), or its steps run one after another."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nnpm.errors import InputError, NoLabelsError
from nnpm.format.manifest import Signature
from nnpm.format.project import step_graph
from nnpm.format.wiring import Port, Wiring, signature
from nnpm.runtime.fusion import fused_path
from nnpm.runtime.inputs import check_inputs
from nnpm.runtime.model import Model, make_session, open_model, read_labels
from nnpm.runtime.steps import installed_steps, wiring_of

if TYPE_CHECKING:
    from nnpm.install.env import Environment, InstalledPackage


def _labels(pkg: "InstalledPackage", env: "Environment", wiring: Wiring) -> dict[str, list[str]]:
    """Labels of exposed outputs, carried over from the step that produces each."""
    steps = installed_steps(pkg, env, verify=False)
    out = {}
    for exposed, port in wiring.outputs.items():
        step = steps[port.step]
        if step.manifest.project.model:
            labels = read_labels(step.manifest, step.path, step_graph(port.step))
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
    return FusedModel(pkg.manifest, session, path=pkg.path, signature=sig, labels=labels, wiring=wiring,
                      step_signatures=sigs)


class FusedModel(Model):
    """A pipeline fused into one session; its inputs are checked against every step that reads them,
    as the stepwise run would, and an error inside the graph names the step it happened in."""

    def __init__(self, *args: Any, wiring: Wiring, step_signatures: dict[str, Signature], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.wiring, self._step_signatures = wiring, step_signatures

    def run(self, feeds: Any) -> dict[str, Any]:
        """Check the inputs against the pipeline's and each step's signature, then run once."""
        from nnpm.runtime.inputs import check_step_inputs

        check_step_inputs(self.wiring.inputs, self._step_signatures, feeds)
        return super().run(feeds)

    def _where(self, exc: BaseException) -> str:
        import re

        found = re.search(r"Name:\s*'([^/']+)/", str(exc))
        where = f"{self.name} {self.version}"
        return f"{where}, step {found.group(1)}" if found and found.group(1) in self.wiring.order else where


def _open_step(pkg: "InstalledPackage", env: "Environment", step: str, **kw: Any) -> "Model":
    """One step of a stepwise pipeline: its own session (a nested pipeline is fused)."""
    if pkg.manifest.project.pipeline:
        return load_pipeline(pkg, env, verify=False, **kw)
    return open_model(pkg.manifest, pkg.path, variant=pkg.variant, graph=step_graph(step), **kw)


class StepwiseModel:
    """A pipeline run as separate sessions, one step after another (for debugging and benchmarks)."""

    def __init__(self, pkg: "InstalledPackage", env: "Environment", wiring: Wiring, sig: Signature,
                 labels: dict[str, list[str]], **kw: Any) -> None:
        self.manifest, self.path, self.signature, self.wiring = pkg.manifest, pkg.path, sig, wiring
        self._labels = labels
        self.steps = {s: _open_step(p, env, s, **kw) for s, p in installed_steps(pkg, env, verify=True).items()}

    name = property(lambda self: self.manifest.name)
    version = property(lambda self: self.manifest.version)

    def __repr__(self) -> str:
        def side(specs):
            return ", ".join(f"{s.name}: {s.dtype} {s.shape_text()}" for s in specs)
        return (f"<nnpm.StepwiseModel {self.name} {self.version} {' -> '.join(self.wiring.order)} "
                f"({side(self.signature.inputs)}) -> ({side(self.signature.outputs)})>")

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

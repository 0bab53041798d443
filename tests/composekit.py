"""Checking fused pipelines in tests: plan and fuse hand-made step graphs (tests/modelkit.py builds
them), and compare the fused graph with the reference, each step in its own plain onnxruntime
session with tensors passed by hand.

- ``sigs_of(models)``, ``section(steps, connect, inputs, outputs)``: what `plan` takes;
- ``session(m)``, ``run_plain(m, feeds)``: one model in plain onnxruntime;
- ``run_steps(models, wiring, feeds)``: the reference;
- ``fuse_and_compare(models, section, feeds, exact=True)``: plan, fuse, check fully, compare;
- ``x(n, width, seed)``: a float32 input; ``assert_names(exc_info, *parts)``: a one-line error naming parts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from nnpm.format.manifest import Signature
from nnpm.format.onnxinfo import signature_of
from nnpm.format.project import PipelineSection
from nnpm.format.wiring import Port, Wiring, plan, signature
from nnpm.runtime.compose import fuse


def sigs_of(models: Mapping[str, onnx.ModelProto]) -> dict[str, Signature]:
    return {s: signature_of(m.graph) for s, m in models.items()}


def section(steps: Sequence[str], connect: dict | None = None, inputs: dict | None = None,
            outputs: dict | None = None) -> PipelineSection:
    return PipelineSection(steps=tuple(steps), connect=dict(connect or {}), inputs=dict(inputs or {}),
                           outputs=dict(outputs or {}))


def session(m: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def run_plain(m: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    s = session(m)
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(names, dict(feeds))))


def run_steps(models: Mapping[str, onnx.ModelProto], wiring: Wiring,
              feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference: each step in its own plain onnxruntime session, tensors passed by hand."""
    values: dict[Port, np.ndarray] = {port: feeds[name] for name, port in wiring.inputs.items()}
    for step in wiring.order:
        step_feeds = {p.name: v for p, v in values.items() if p.step == step}
        for src, dst in wiring.edges:
            if dst.step == step:
                step_feeds[dst.name] = values[src]
        for name, v in run_plain(models[step], step_feeds).items():
            values[Port(step, name)] = v
    return {name: values[port] for name, port in wiring.outputs.items()}


def fuse_and_compare(models: Mapping[str, onnx.ModelProto], sec: PipelineSection,
                     feeds: Mapping[str, np.ndarray], *, exact: bool = True) -> onnx.ModelProto:
    """Plan, fuse, check the fused model fully, and compare it with running the steps in turn."""
    sigs = sigs_of(models)
    wiring = plan(sec, sigs)
    fused = fuse(dict(models), wiring, name="p")
    onnx.checker.check_model(fused, full_check=True)
    onnx.checker.check_model(fused.SerializeToString(), full_check=True)  # and as bytes, like a file
    sig = signature(wiring, sigs)
    assert [i.name for i in fused.graph.input if i.name not in {t.name for t in fused.graph.initializer}] \
        == [s.name for s in sig.inputs]
    assert [o.name for o in fused.graph.output] == [s.name for s in sig.outputs]
    got = run_plain(fused, feeds)
    want = run_steps(models, wiring, feeds)
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)
        if exact:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    return fused


def x(n: int = 3, width: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, width)).astype(np.float32)


def assert_names(exc: pytest.ExceptionInfo, *parts: str) -> None:
    text = str(exc.value)
    for part in parts:
        assert part in text, (part, text)
    assert "\n" not in text

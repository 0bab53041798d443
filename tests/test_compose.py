"""nnpm.runtime.compose: `plan` checks how a pipeline's steps wire together and names both ports
when they do not fit; `fuse` makes one ONNX graph that computes what the steps compute
when run one after another with plain onnxruntime.

Every model here is a few nodes built with onnx.helper; nothing is installed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from nnpm.errors import ManifestError, PipelineError
from nnpm.format.manifest import Signature
from nnpm.format.onnxinfo import signature_of
from nnpm.format.project import PipelineSection, project_from_dict
from nnpm.format.wiring import Port, Wiring, plan, signature
from nnpm.runtime.compose import fuse

F, I64 = TensorProto.FLOAT, TensorProto.INT64


# ---------------------------------------------------------------- helpers

def vi(name: str, dtype: int = F, shape: Sequence | None = ("N", 4)) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, list(shape) if shape is not None else None)


def const(name: str, values, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def model(nodes: list, inputs: list, outputs: list, inits: Sequence = (), *, opset: int = 17,
          ir: int = 8, name: str = "g", check: bool = True) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="nnpm-tests")
    m.ir_version = ir
    if check:
        onnx.checker.check_model(m, full_check=True)
    return m


def unary(op: str, inp: str = "x", out: str = "y", shape: Sequence | None = ("N", 4), dtype: int = F,
          **kw) -> onnx.ModelProto:
    """One elementwise node: out = op(inp)."""
    return model([helper.make_node(op, [inp], [out], name=op.lower(), **kw)],
                 [vi(inp, dtype, shape)], [vi(out, dtype, shape)], check=shape is not None)


def affine(scale: float, shift: float, inp: str = "x", out: str = "y", *, opset: int = 17,
           shape: Sequence = ("N", 4)) -> onnx.ModelProto:
    """out = inp * scale + shift, with the usual clash-prone names inside."""
    return model(
        [helper.make_node("Mul", [inp, "c"], ["t"], name="x"),
         helper.make_node("Add", ["t", "d"], [out], name="t")],
        [vi(inp, shape=shape)], [vi(out, shape=shape)],
        [const("c", scale), const("d", shift)], opset=opset)


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


# ---------------------------------------------------------------- plan: chains

def test_chain_matched_by_order() -> None:
    models = {"a": unary("Relu", "x", "y"), "b": unary("Neg", "inp", "out")}
    wiring = plan(section(["a", "b"]), sigs_of(models))
    assert wiring.order == ("a", "b")
    assert wiring.edges == ((Port("a", "y"), Port("b", "inp")),)
    assert wiring.inputs == {"x": Port("a", "x")}
    assert wiring.outputs == {"out": Port("b", "out")}
    sig = signature(wiring, sigs_of(models))
    assert [(s.name, s.dtype, s.shape) for s in sig.inputs] == [("x", "float32", ("N", 4))]
    assert [(s.name, s.dtype, s.shape) for s in sig.outputs] == [("out", "float32", ("N", 4))]


def test_chain_of_three_by_order_with_several_ports() -> None:
    two_out = model([helper.make_node("Relu", ["x"], ["p"]), helper.make_node("Neg", ["x"], ["q"])],
                    [vi("x")], [vi("p"), vi("q")])
    two_in = model([helper.make_node("Sub", ["u", "v"], ["w"])], [vi("u"), vi("v")], [vi("w")])
    models = {"split": two_out, "sub": two_in, "abs": unary("Abs", "z", "r")}
    wiring = plan(section(["split", "sub", "abs"]), sigs_of(models))
    # Equal counts pair by position, whatever the names.
    assert set(wiring.edges) == {(Port("split", "p"), Port("sub", "u")), (Port("split", "q"), Port("sub", "v")),
                                 (Port("sub", "w"), Port("abs", "z"))}
    assert wiring.outputs == {"r": Port("abs", "r")}
    fuse_and_compare(models, section(["split", "sub", "abs"]), {"x": x()})


def test_chain_matched_by_name_when_counts_differ() -> None:
    # a gives (aux, features); b reads only features: counts differ, so names decide.
    a = model([helper.make_node("Relu", ["x"], ["features"]), helper.make_node("Neg", ["x"], ["aux"])],
              [vi("x")], [vi("aux"), vi("features")])
    b = unary("Sigmoid", "features", "prob")
    models = {"a": a, "b": b}
    wiring = plan(section(["a", "b"]), sigs_of(models))
    assert wiring.edges == ((Port("a", "features"), Port("b", "features")),)
    assert wiring.inputs == {"x": Port("a", "x")}
    assert wiring.outputs == {"prob": Port("b", "prob")}  # a chain exposes the last step's outputs
    fuse_and_compare(models, section(["a", "b"]), {"x": x()})


def test_chain_with_no_matching_names_names_both_steps() -> None:
    a = model([helper.make_node("Relu", ["x"], ["p"]), helper.make_node("Neg", ["x"], ["q"])],
              [vi("x")], [vi("p"), vi("q")])
    models = {"pre": a, "net": unary("Abs", "features", "y")}
    with pytest.raises(PipelineError) as exc:
        plan(section(["pre", "net"]), sigs_of(models))
    assert_names(exc, "pre", "net", "p", "q", "features")
    assert "connect" in exc.value.one_line()


def test_missing_signature_is_an_error() -> None:
    with pytest.raises(PipelineError) as exc:
        plan(section(["a", "ghost"]), {"a": signature_of(unary("Relu").graph)})
    assert_names(exc, "ghost")


# ---------------------------------------------------------------- plan: explicit DAG

def diamond() -> dict[str, onnx.ModelProto]:
    """src splits x in two, left and right transform one half each, cat joins them."""
    src = model([helper.make_node("Relu", ["x"], ["pos"]), helper.make_node("Neg", ["x"], ["neg"])],
                [vi("x")], [vi("pos"), vi("neg")])
    left = unary("Abs", "x", "y")
    right = model([helper.make_node("Mul", ["x", "two"], ["y"], name="x")], [vi("x")], [vi("y")],
                  [const("two", 2.0)])
    cat = model([helper.make_node("Concat", ["a", "b"], ["joined"], axis=1)],
                [vi("a"), vi("b")], [vi("joined", shape=("N", 8))])
    return {"src": src, "left": left, "right": right, "cat": cat}


DIAMOND_CONNECT = {"left.x": "src.pos", "right.x": "src.neg", "cat.a": "left.y", "cat.b": "right.y"}


def test_dag_via_connect_with_exposed_ports() -> None:
    models = diamond()
    # Declared out of order on purpose: the plan sorts producers first.
    sec = section(["cat", "right", "left", "src"], DIAMOND_CONNECT,
                  inputs={"image": "src.x"}, outputs={"result": "cat.joined", "halfway": "right.y"})
    wiring = plan(sec, sigs_of(models))
    assert wiring.order.index("src") == 0 and wiring.order[-1] == "cat"
    assert len(wiring.edges) == 4
    assert wiring.inputs == {"image": Port("src", "x")}
    assert wiring.outputs == {"result": Port("cat", "joined"), "halfway": Port("right", "y")}
    sig = signature(wiring, sigs_of(models))
    assert [(s.name, s.shape) for s in sig.inputs] == [("image", ("N", 4))]
    assert [(s.name, s.shape) for s in sig.outputs] == [("result", ("N", 8)), ("halfway", ("N", 4))]
    fused = fuse_and_compare(models, sec, {"image": x(5)})
    out = run_plain(fused, {"image": x(5)})
    want = np.concatenate([np.abs(np.maximum(x(5), 0)), -2 * x(5)], axis=1)
    np.testing.assert_array_equal(out["result"], want)


def test_dag_default_exposure() -> None:
    models = diamond()
    wiring = plan(section(["src", "left", "right", "cat"], DIAMOND_CONNECT), sigs_of(models))
    # Without tables: open inputs and unconsumed outputs keep their names.
    assert wiring.inputs == {"x": Port("src", "x")}
    assert wiring.outputs == {"joined": Port("cat", "joined")}
    fuse_and_compare(models, section(["src", "left", "right", "cat"], DIAMOND_CONNECT), {"x": x()})


def test_independent_steps_with_equal_port_names_get_qualified_names() -> None:
    # Two branches that both read an "x" and both give a "y": the exposed names say which.
    c = unary("Abs", "x", "y")
    models = {"a": unary("Relu", "x", "y"), "b": unary("Neg", "x", "y"), "c": c}
    sec = section(["a", "b", "c"], {"c.x": "a.y"})
    wiring = plan(sec, sigs_of(models))
    assert wiring.inputs == {"a.x": Port("a", "x"), "b.x": Port("b", "x")}
    assert wiring.outputs == {"b.y": Port("b", "y"), "c.y": Port("c", "y")}
    fuse_and_compare(models, sec, {"a.x": x(seed=1), "b.x": x(seed=2)})


def test_tapped_intermediate_output_is_also_exposed() -> None:
    models = {"a": affine(2.0, 1.0), "b": unary("Relu", "x", "y")}
    sec = section(["a", "b"], {"b.x": "a.y"}, outputs={"mid": "a.y", "final": "b.y"})
    fused = fuse_and_compare(models, sec, {"x": x()})
    assert [o.name for o in fused.graph.output] == ["mid", "final"]


# ---------------------------------------------------------------- plan: clear errors

def test_dtype_mismatch_names_both_ports() -> None:
    models = {"a": unary("Relu", "x", "y"), "b": unary("Neg", "inp", "out", dtype=I64)}
    with pytest.raises(PipelineError) as exc:
        plan(section(["a", "b"]), sigs_of(models))
    assert_names(exc, "a.y", "b.inp", "float32", "int64")
    with pytest.raises(PipelineError) as exc:  # the same through connect
        plan(section(["a", "b"], {"b.inp": "a.y"}), sigs_of(models))
    assert_names(exc, "a.y", "b.inp", "float32", "int64")


def test_rank_mismatch_names_both_ports() -> None:
    models = {"a": unary("Relu", "x", "y", shape=("N", 4)), "b": unary("Neg", "inp", "out", shape=("N", 4, 1))}
    with pytest.raises(PipelineError) as exc:
        plan(section(["a", "b"]), sigs_of(models))
    assert_names(exc, "a.y", "b.inp", "rank 2", "rank 3")


def test_fixed_dim_mismatch_names_both_ports() -> None:
    models = {"a": unary("Relu", "x", "y", shape=("N", 4)), "b": unary("Neg", "inp", "out", shape=("N", 5))}
    with pytest.raises(PipelineError) as exc:
        plan(section(["a", "b"]), sigs_of(models))
    assert_names(exc, "a.y", "b.inp", "[N, 4]", "[N, 5]")


@pytest.mark.parametrize("src_shape, dst_shape", [
    (("N", 4), ("M", 4)),      # symbolic dims of other names may still agree at run time
    (("N", 4), (None, 4)),     # unknown dims fit anything
    ((3, 4), ("N", 4)),        # a fixed dim fits a symbolic one
    (None, ("N", 4)),          # unknown rank fits any rank
])
def test_compatible_shapes_are_accepted(src_shape, dst_shape) -> None:
    models = {"a": unary("Relu", "x", "y", shape=src_shape), "b": unary("Neg", "inp", "out", shape=dst_shape)}
    wiring = plan(section(["a", "b"]), sigs_of(models))
    assert wiring.edges == ((Port("a", "y"), Port("b", "inp")),)


def test_unknown_output_port_is_named() -> None:
    models = {"a": unary("Relu", "x", "y"), "b": unary("Neg", "inp", "out")}
    with pytest.raises(PipelineError) as exc:
        plan(section(["a", "b"], {"b.inp": "a.nope"}), sigs_of(models))
    assert_names(exc, "a.nope")
    assert "y" in exc.value.one_line()  # the hint lists what a has


def test_unknown_input_port_is_named() -> None:
    models = {"a": unary("Relu", "x", "y"), "b": unary("Neg", "inp", "out")}
    with pytest.raises(PipelineError) as exc:
        plan(section(["a", "b"], {"b.nope": "a.y"}), sigs_of(models))
    assert_names(exc, "b.nope")
    assert "inp" in exc.value.one_line()


def test_output_port_used_as_input_is_refused() -> None:
    models = {"a": unary("Relu", "x", "y"), "b": unary("Neg", "inp", "out")}
    with pytest.raises(PipelineError) as exc:
        plan(section(["a", "b"], {"b.inp": "a.x"}), sigs_of(models))  # a.x is an input of a
    assert_names(exc, "a.x")


def test_unknown_step_is_named() -> None:
    models = {"a": unary("Relu", "x", "y"), "b": unary("Neg", "inp", "out")}
    with pytest.raises(PipelineError) as exc:
        plan(section(["a", "b"], {"b.inp": "zzz.y"}), sigs_of(models))
    assert_names(exc, "zzz")
    with pytest.raises(PipelineError) as exc:
        plan(section(["a", "b"], {"zzz.inp": "a.y"}), sigs_of(models))
    assert_names(exc, "zzz")


def test_cycle_is_refused() -> None:
    models = {"a": unary("Relu", "x", "y"), "b": unary("Neg", "inp", "out")}
    with pytest.raises(PipelineError) as exc:
        plan(section(["a", "b"], {"b.inp": "a.y", "a.x": "b.out"}), sigs_of(models))
    assert_names(exc, "cycle", "a", "b")


def test_longer_cycle_is_refused() -> None:
    models = {"a": unary("Relu", "x", "y"), "b": unary("Neg", "x", "y"), "c": unary("Abs", "x", "y")}
    with pytest.raises(PipelineError) as exc:
        plan(section(["a", "b", "c"], {"b.x": "a.y", "c.x": "b.y", "a.x": "c.y"}), sigs_of(models))
    assert_names(exc, "cycle", "a", "b", "c")


def test_step_feeding_itself_is_refused() -> None:
    models = {"a": unary("Relu", "x", "y")}
    with pytest.raises(PipelineError) as exc:
        plan(section(["a"], {"a.x": "a.y"}), sigs_of(models))
    assert_names(exc, "a.y", "a.x")


def test_step_that_is_not_a_dependency_is_refused() -> None:
    data = {"package": {"name": "p", "version": "1.0"},
            "dependencies": {"pre": ">=1"},
            "pipeline": {"steps": ["pre", "Net_Work"]}}
    with pytest.raises(ManifestError) as exc:
        project_from_dict(data)
    assert_names(exc, "net-work", "pipeline.steps", "not a dependency")
    data["dependencies"]["net.work"] = ">=1"  # PEP 503: the same name
    project = project_from_dict(data)
    assert project.pipeline.steps == ("pre", "net-work")


def test_open_input_neither_connected_nor_exposed() -> None:
    two_in = model([helper.make_node("Add", ["inp", "bias"], ["out"])], [vi("inp"), vi("bias")], [vi("out")])
    models = {"a": unary("Relu", "x", "y"), "b": two_in}
    sec = section(["a", "b"], {"b.inp": "a.y"}, inputs={"x": "a.x"})
    with pytest.raises(PipelineError) as exc:
        plan(sec, sigs_of(models))
    assert_names(exc, "b.bias", "neither connected nor exposed")
    # Exposing it fixes the wiring, and the fused graph takes both inputs.
    sec = section(["a", "b"], {"b.inp": "a.y"}, inputs={"x": "a.x", "bias": "b.bias"})
    fuse_and_compare(models, sec, {"x": x(seed=1), "bias": x(seed=2)})


def test_exposing_a_connected_input_is_refused() -> None:
    models = {"a": unary("Relu", "x", "y"), "b": unary("Neg", "inp", "out")}
    sec = section(["a", "b"], {"b.inp": "a.y"}, inputs={"x": "a.x", "extra": "b.inp"})
    with pytest.raises(PipelineError) as exc:
        plan(sec, sigs_of(models))
    assert_names(exc, "b.inp", "a.y")


def test_exposing_one_input_port_twice_is_refused() -> None:
    # Two pipeline inputs cannot both feed a.x; the error must come from nnpm, naming the port.
    models = {"a": unary("Relu", "x", "y")}
    sec = section(["a"], inputs={"p": "a.x", "q": "a.x"})
    with pytest.raises(PipelineError) as exc:
        fuse(models, plan(sec, sigs_of(models)))
    assert_names(exc, "a.x")


def test_exposing_one_output_port_twice_gives_both_names() -> None:
    models = {"a": unary("Relu", "x", "y")}
    fused = fuse_and_compare(models, section(["a"], outputs={"p": "a.y", "q": "a.y"}), {"x": x()})
    assert [o.name for o in fused.graph.output] == ["p", "q"]


def test_fan_out_of_one_output_to_several_steps() -> None:
    models = diamond()
    models["src"] = unary("Relu", "x", "pos")
    connect = {"left.x": "src.pos", "right.x": "src.pos", "cat.a": "left.y", "cat.b": "right.y"}
    fuse_and_compare(models, section(["src", "left", "right", "cat"], connect), {"x": x()})


def test_exposing_an_unknown_port_is_refused() -> None:
    models = {"a": unary("Relu", "x", "y"), "b": unary("Neg", "inp", "out")}
    with pytest.raises(PipelineError) as exc:
        plan(section(["a", "b"], outputs={"z": "b.nope"}), sigs_of(models))
    assert_names(exc, "b.nope")
    with pytest.raises(PipelineError) as exc:
        plan(section(["a", "b"], inputs={"z": "a.nope"}), sigs_of(models))
    assert_names(exc, "a.nope")


# ---------------------------------------------------------------- fuse

def test_fused_chain_checks_runs_and_equals_the_steps() -> None:
    models = {"scale": affine(3.0, -1.0), "relu": unary("Relu", "x", "y"), "shift": affine(0.5, 2.0)}
    fused = fuse_and_compare(models, section(["scale", "relu", "shift"]), {"x": x(7)})
    assert fused.graph.name == "p" and fused.producer_name == "nnpm"
    assert {o.domain or "": o.version for o in fused.opset_import} == {"": 17}
    # Plain names at the edge, step-prefixed names inside.
    assert [i.name for i in fused.graph.input] == ["x"]
    assert [o.name for o in fused.graph.output] == ["y"]
    inner = {n.name for n in fused.graph.node} - {"nnpm/input/x", "nnpm/output/y"}
    assert inner and all(n.split("/")[0] in models for n in inner)


def test_fused_model_keeps_symbolic_batch_dimension() -> None:
    models = {"a": affine(2.0, 0.0), "b": unary("Relu", "x", "y")}
    fused = fuse_and_compare(models, section(["a", "b"]), {"x": x(1)})
    for n in (1, 17):
        assert run_plain(fused, {"x": x(n)})["y"].shape == (n, 4)


def test_name_collisions_between_steps_do_not_clash() -> None:
    # Both steps: input "x", output "y", nodes "x" and "t", initializers "c" and "d", tensor "t".
    models = {"first": affine(2.0, 1.0), "second": affine(-3.0, 0.25)}
    fused = fuse_and_compare(models, section(["first", "second"]), {"x": x()})
    names = [n.name for n in fused.graph.node]
    assert len(names) == len(set(names))
    inits = [t.name for t in fused.graph.initializer]
    assert len(inits) == len(set(inits)) == 4
    out = run_plain(fused, {"x": x()})["y"]
    np.testing.assert_allclose(out, (x() * 2 + 1) * -3 + 0.25, rtol=1e-6)


def test_exposed_names_equal_to_inner_names_do_not_clash() -> None:
    # Exposed as "t" and "c", names the steps use inside too.
    models = {"first": affine(2.0, 1.0), "second": affine(-3.0, 0.25)}
    sec = section(["first", "second"], {"second.x": "first.y"}, inputs={"t": "first.x"}, outputs={"c": "second.y"})
    fuse_and_compare(models, sec, {"t": x()})


def test_exposed_name_equal_to_a_prefixed_inner_name_is_refused_or_works() -> None:
    # "first/t" is what the fused graph calls first's tensor "t" inside: either plan or fuse
    # refuses the name, or the fused graph still computes the right thing (never a raw onnx error).
    models = {"first": affine(2.0, 1.0), "second": affine(-3.0, 0.25)}
    sec = section(["first", "second"], {"second.x": "first.y"}, inputs={"first/t": "first.x"},
                  outputs={"second/c": "second.y"})
    try:
        fuse(models, plan(sec, sigs_of(models)))
    except PipelineError as exc:
        assert "first/t" in str(exc) or "second/c" in str(exc)
        return
    fuse_and_compare(models, sec, {"first/t": x()})


def test_pipeline_input_and_output_with_the_same_name() -> None:
    # An autoencoder-like chain: image -> code -> image. The pipeline cannot expose two ports
    # as "image": either plan says so (naming both), or the exposed names are told apart.
    enc = unary("Relu", "image", "code")
    dec = unary("Neg", "code", "image")
    models = {"enc": enc, "dec": dec}
    try:
        wiring = plan(section(["enc", "dec"]), sigs_of(models))
    except PipelineError as exc:
        assert "enc.image" in str(exc) and "dec.image" in str(exc)
        return
    assert set(wiring.inputs).isdisjoint(wiring.outputs), (wiring.inputs, wiring.outputs)
    fuse_and_compare(models, section(["enc", "dec"]), {next(iter(wiring.inputs)): x()})


def test_steps_with_different_opsets_are_converted_and_agree() -> None:
    # opset 11: Unsqueeze/Squeeze take axes as an attribute (an input from 13 on).
    old = model([helper.make_node("Unsqueeze", ["x"], ["u"], axes=[2]),
                 helper.make_node("Relu", ["u"], ["r"]),
                 helper.make_node("Squeeze", ["r"], ["y"], axes=[2])],
                [vi("x")], [vi("y")], opset=11, ir=6)
    # opset 13: ReduceSum takes axes as an input.
    mid = model([helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1),
                 helper.make_node("Sub", ["x", "s"], ["y"])],
                [vi("x")], [vi("y")], [const("axes", [1], np.int64)], opset=13, ir=7)
    # opset 17: LayerNormalization exists only from 17 on.
    new = model([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-5)],
                [vi("x")], [vi("y")], [const("g", [1, 2, 3, 4]), const("b", [0, 0, 1, 1])], opset=17, ir=8)
    models = {"old": old, "mid": mid, "new": new}
    fused = fuse_and_compare(models, section(["old", "mid", "new"]), {"x": x(6)}, exact=False)
    assert {o.domain or "": o.version for o in fused.opset_import} == {"": 17}
    assert fused.ir_version == 8
    ops = [n.op_type for n in fused.graph.node]
    for op in ("Unsqueeze", "Squeeze"):  # converted: axes is now an input, not an attribute
        node = next(n for n in fused.graph.node if n.op_type == op)
        assert len(node.input) == 2 and not node.attribute
    assert "LayerNormalization" in ops


def test_opset_13_and_17_steps_agree_exactly() -> None:
    models = {"a": affine(1.5, -0.5, opset=13), "b": unary("Relu", "x", "y"), "c": affine(-2.0, 3.0, opset=17)}
    fused = fuse_and_compare(models, section(["a", "b", "c"]), {"x": x(4)})
    assert {o.domain or "": o.version for o in fused.opset_import} == {"": 17}


def ml_model(nodes: list, inputs: list, outputs: list, ml: int) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "ml", inputs, outputs)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", ml)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def test_steps_with_compatible_ml_opsets_fuse() -> None:
    # Scaler and Binarizer are unchanged since ai.onnx.ml 1, so 1 and 3 can share one graph.
    scale = ml_model([helper.make_node("Scaler", ["x"], ["y"], domain="ai.onnx.ml", offset=[0.5], scale=[2.0])],
                     [vi("x")], [vi("y")], ml=1)
    binar = ml_model([helper.make_node("Binarizer", ["x"], ["y"], domain="ai.onnx.ml", threshold=0.0)],
                     [vi("x")], [vi("y")], ml=3)
    fused = fuse_and_compare({"scale": scale, "binar": binar}, section(["scale", "binar"]), {"x": x()})
    assert {o.domain or "": o.version for o in fused.opset_import} == {"": 17, "ai.onnx.ml": 3}


def test_steps_with_incompatible_ml_opsets_are_a_pipeline_error() -> None:
    # LabelEncoder's attributes were renamed in ai.onnx.ml 2, and onnx's version converter only
    # converts the default domain: fusing must say which step cannot move, not crash in the checker.
    old = ml_model([helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml",
                                     classes_strings=["a", "b", "c"], default_string="?")],
                   [vi("x", I64, ("N",))], [vi("y", TensorProto.STRING, ("N",))], ml=1)
    new = ml_model([helper.make_node("LabelEncoder", ["s"], ["z"], domain="ai.onnx.ml",
                                     keys_strings=["a", "b", "c"], values_int64s=[10, 20, 30])],
                   [vi("s", TensorProto.STRING, ("N",))], [vi("z", I64, ("N",))], ml=2)
    models = {"old": old, "new": new}
    with pytest.raises(PipelineError) as exc:
        fuse(models, plan(section(["old", "new"]), sigs_of(models)))
    assert_names(exc, "old", "ai.onnx.ml")


def test_fuse_does_not_change_the_step_models() -> None:
    models = {"a": affine(1.5, -0.5, opset=13), "b": affine(2.0, 1.0)}
    before = {s: m.SerializeToString() for s, m in models.items()}
    fuse_and_compare(models, section(["a", "b"]), {"x": x()})
    assert {s: m.SerializeToString() for s, m in models.items()} == before


def test_step_with_a_subgraph_is_prefixed_inside_it() -> None:
    # An If whose branches read "x" and "c" from the outer scope: prefixing must reach into them.
    then = helper.make_graph([helper.make_node("Mul", ["x", "c"], ["r"])], "then", [], [vi("r")])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["r"])], "else", [], [vi("r")])
    branchy = model([helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
                     helper.make_node("Greater", ["s", "zero"], ["cond"]),
                     helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)],
                    [vi("x")], [vi("y")], [const("c", 10.0), const("zero", 0.0)])
    models = {"one": branchy, "two": branchy}
    for seed in range(4):
        fuse_and_compare(models, section(["one", "two"]), {"x": x(seed=seed)})


def test_integer_and_float_ports_across_steps() -> None:
    # int64 [N, 8, 8] -> float32 [N, 64] -> int64 [N]: the shape of the digits pipeline.
    pre = model([helper.make_node("Cast", ["pixels"], ["f"], to=F),
                 helper.make_node("Reshape", ["f", "shape"], ["features"])],
                [vi("pixels", I64, ("N", 8, 8))], [vi("features", F, ("N", 64))],
                [const("shape", [-1, 64], np.int64)])
    net = model([helper.make_node("ArgMax", ["features"], ["label"], axis=1, keepdims=0)],
                [vi("features", F, ("N", 64))], [vi("label", I64, ("N",))])
    pixels = np.random.default_rng(0).integers(0, 17, (9, 8, 8), dtype=np.int64)
    fuse_and_compare({"pre": pre, "net": net}, section(["pre", "net"]), {"pixels": pixels})


# ---------------------------------------------------------------- property: random elementwise chains

_OPS = ("Add", "Mul", "Relu")


@st.composite
def chains(draw):
    length = draw(st.integers(1, 5))
    width = draw(st.integers(1, 4))
    steps = []
    for i in range(length):
        op = draw(st.sampled_from(_OPS))
        opset = draw(st.sampled_from([13, 14, 17]))
        # Names drawn from a tiny pool, so steps collide on port, node and tensor names.
        inp = draw(st.sampled_from(["x", "y", "t"]))
        out = draw(st.sampled_from(["x", "y", "t", "out"]).filter(lambda n: n != inp))
        consts = draw(st.lists(st.floats(-4, 4, allow_nan=False, width=32), min_size=width, max_size=width))
        steps.append((op, opset, inp, out, np.array(consts, dtype=np.float32)))
    batch = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    return width, steps, batch, seed


def _elementwise(op: str, opset: int, inp: str, out: str, c: np.ndarray, width: int) -> onnx.ModelProto:
    # Every step has a node named "t" and (for Add/Mul) an initializer "k".
    if op == "Relu":
        nodes, inits = [helper.make_node("Relu", [inp], [out], name="t")], []
    else:
        nodes, inits = [helper.make_node(op, [inp, "k"], [out], name="t")], [const("k", c)]
    return model(nodes, [vi(inp, shape=("N", width))], [vi(out, shape=("N", width))], inits, opset=opset,
                 ir=7 if opset < 17 else 8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chains())
def test_random_elementwise_chains_fuse_like_steps(case) -> None:
    width, steps, batch, seed = case
    models = {f"s{i}": _elementwise(op, opset, inp, out, c, width)
              for i, (op, opset, inp, out, c) in enumerate(steps)}
    first_input = steps[0][2]
    # A pipeline whose input and output share a name is its own test (see above).
    assume(steps[-1][3] != first_input)
    feeds = {first_input: np.random.default_rng(seed).uniform(-5, 5, (batch, width)).astype(np.float32)}
    # Elementwise ops run one at a time in both, so the results agree bit for bit.
    fuse_and_compare(models, section(list(models)), feeds, exact=True)

"""nnpm.runtime.compose's `fuse` makes one ONNX graph that computes what the steps compute when run
one after another with plain onnxruntime (tests/test_compose_plan.py checks the wiring plan).

Every model here is a few nodes built with onnx.helper (tests/modelkit.py); nothing is installed.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from composekit import assert_names, fuse_and_compare, run_plain, section, sigs_of, x
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from modelkit import affine, const, model, unary, vi
from onnx import TensorProto, helper

from nnpm.errors import PipelineError
from nnpm.format.wiring import plan
from nnpm.runtime.compose import fuse

F, I64 = TensorProto.FLOAT, TensorProto.INT64


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

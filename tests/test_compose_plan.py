"""nnpm.format.wiring's `plan`: how a pipeline's steps wire together, by order, by name or by an
explicit DAG, and errors that name both ports when they do not fit (tests/test_compose.py fuses).

Every model here is a few nodes built with onnx.helper (tests/modelkit.py); nothing is installed.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from composekit import assert_names, fuse_and_compare, run_plain, section, sigs_of, x
from modelkit import affine, const, model, unary, vi
from onnx import TensorProto, helper

from nnpm.errors import ManifestError, PipelineError
from nnpm.format.onnxinfo import signature_of
from nnpm.format.project import project_from_dict
from nnpm.format.wiring import Port, plan, signature
from nnpm.runtime.compose import fuse

F, I64 = TensorProto.FLOAT, TensorProto.INT64


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

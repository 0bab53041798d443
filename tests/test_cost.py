"""nnpm/format/cost.py: multiply-accumulates from inferred shapes, and the precision that holds most parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnpm.format.cost import dominant_precision, graph_macs

F = TensorProto.FLOAT


def _model(nodes: list, inputs: list, outputs: list, inits: list = (), *, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _vi(name: str, shape: list | None, dtype: int = F) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _w(name: str, shape: tuple, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.random.default_rng(0).standard_normal(shape).astype(dtype), name)


def _conv_and_matmul() -> onnx.ModelProto:
    """A grouped Conv (2 groups) beside a MatMul, both with a symbolic batch dim N."""
    conv = helper.make_node("Conv", ["img", "CW"], ["c"], pads=[1, 1, 1, 1], group=2)
    matmul = helper.make_node("MatMul", ["x", "W"], ["y"])
    return _model([conv, matmul], [_vi("img", ["N", 4, 8, 8]), _vi("x", ["N", 16])],
                  [_vi("c", ["N", 6, 8, 8]), _vi("y", ["N", 8])], [_w("CW", (6, 2, 3, 3)), _w("W", (16, 8))])


CONV_MACS = 6 * 8 * 8 * 2 * 3 * 3   # C_out * spatial * (C_in / group) * kernel, for N = 1
MATMUL_MACS = 16 * 8


def test_conv_with_groups_counts_input_channels_per_group() -> None:
    assert graph_macs(_conv_and_matmul()) == CONV_MACS + MATMUL_MACS


def test_a_symbolic_batch_dim_is_1_unless_the_input_shapes_say_otherwise() -> None:
    model = _conv_and_matmul()
    assert graph_macs(model, {"img": (3, 4, 8, 8), "x": (5, 16)}) == 3 * CONV_MACS + 5 * MATMUL_MACS
    assert graph_macs(model, {"x": (5, 16)}) == CONV_MACS + 5 * MATMUL_MACS
    assert graph_macs(model, {"img": (1, 4, 16, 16)}) == 4 * CONV_MACS + MATMUL_MACS   # other spatial size


def test_batched_matmul_broadcasts_batch_dims() -> None:
    nodes = [helper.make_node("MatMul", ["a", "B"], ["y"]), helper.make_node("MatMul", ["v", "B2"], ["z"])]
    model = _model(nodes, [_vi("a", [2, 1, 3, 4]), _vi("v", [4])], [_vi("y", None), _vi("z", None)],
                   [_w("B", (5, 4, 6)), _w("B2", (4, 6))])
    assert graph_macs(model) == 2 * 5 * 3 * 4 * 6 + 4 * 6


def test_gemm_with_trans_b() -> None:
    gemm = helper.make_node("Gemm", ["a", "B", "C"], ["y"], transB=1)
    model = _model([gemm], [_vi("a", ["M", 4])], [_vi("y", ["M", 3])], [_w("B", (3, 4)), _w("C", (3,))])
    assert graph_macs(model) == 4 * 3
    assert graph_macs(model, {"a": (10, 4)}) == 10 * 4 * 3


def test_conv_transpose_counts_per_input_element() -> None:
    node = helper.make_node("ConvTranspose", ["x", "W"], ["y"], strides=[2, 2])
    model = _model([node], [_vi("x", [1, 2, 4, 4])], [_vi("y", None)], [_w("W", (2, 3, 3, 3))])
    assert graph_macs(model) == 2 * 4 * 4 * 3 * 3 * 3


def test_large_weights_count_by_their_dims_and_small_shape_tensors_by_their_values() -> None:
    shape = numpy_helper.from_array(np.array([-1, 4, 2], np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("MatMul", ["r", "W"], ["y"])]
    model = _model(nodes, [_vi("x", ["N", 8])], [_vi("y", None)], [shape, _w("W", (2, 3000))])
    assert graph_macs(model, {"x": (5, 8)}) == 5 * 4 * 2 * 3000
    assert len(model.graph.initializer[1].raw_data) == 2 * 3000 * 4   # the caller's proto is untouched


def test_an_unknown_shape_gives_none_never_a_guess() -> None:
    reshape = helper.make_node("Reshape", ["x", "shape"], ["r"])   # its target shape is an input's value
    model = _model([reshape, helper.make_node("MatMul", ["r", "W"], ["y"])],
                   [_vi("x", [2, 8]), _vi("shape", [2], TensorProto.INT64)], [_vi("y", None)], [_w("W", (4, 3))])
    assert graph_macs(model) is None
    no_shape = _model([helper.make_node("MatMul", ["x", "W"], ["y"])], [_vi("x", None)], [_vi("y", None)],
                      [_w("W", (4, 3))])
    assert graph_macs(no_shape) is None


def test_a_graph_without_counted_ops_costs_nothing() -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["N", 3])], [_vi("y", ["N", 3])])
    assert graph_macs(model) == 0
    assert dominant_precision(model) is None


def test_if_branches_are_counted_once_each() -> None:
    def branch(name: str, k: int) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node("MatMul", ["x", f"W{k}"], [f"out{k}"])], name, [],
                                 [_vi(f"out{k}", None)], [_w(f"W{k}", (4, k))])

    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch("then", 2), else_branch=branch("else", 5))
    model = _model([node], [_vi("cond", [], TensorProto.BOOL), _vi("x", ["N", 4])], [_vi("y", None)])
    assert graph_macs(model) == 4 * 2 + 4 * 5


def test_external_data_is_never_read(tmp_path: Path) -> None:
    onnx.save(_conv_and_matmul(), tmp_path / "m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    model = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    (tmp_path / "w.bin").unlink()
    assert graph_macs(model) == CONV_MACS + MATMUL_MACS
    assert dominant_precision(model) == "float32"


@pytest.mark.parametrize("weight_type", ["QInt8", "QUInt8"])
def test_dynamic_quantisation_keeps_the_macs_and_changes_the_precision(tmp_path: Path, weight_type: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(_conv_and_matmul(), tmp_path / "q.onnx", weight_type=getattr(QuantType, weight_type))
    quantised = onnx.load(str(tmp_path / "q.onnx"))
    assert {"ConvInteger", "MatMulInteger"} <= {n.op_type for n in quantised.graph.node}
    assert graph_macs(quantised) == CONV_MACS + MATMUL_MACS
    assert dominant_precision(quantised) == weight_type[1:].lower()


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_static_quantisation_counts_through_qdq_and_qlinear_ops(tmp_path: Path, fmt: str) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            self.items = iter([{"img": rng.standard_normal((1, 4, 8, 8), np.float32),
                                "x": rng.standard_normal((1, 16), np.float32)} for _ in range(2)])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    quantize_static(_conv_and_matmul(), tmp_path / "q.onnx", Reader(), quant_format=getattr(QuantFormat, fmt))
    quantised = onnx.load(str(tmp_path / "q.onnx"))
    ops = {n.op_type for n in quantised.graph.node}
    assert ("DequantizeLinear" in ops) if fmt == "QDQ" else ("QLinearConv" in ops and "QLinearMatMul" in ops)
    assert graph_macs(quantised) == CONV_MACS + MATMUL_MACS
    assert dominant_precision(quantised) == "int8"


def test_contrib_fused_ops_are_counted() -> None:
    nodes = [helper.make_node("FusedConv", ["img", "CW"], ["c"], domain="com.microsoft", activation="Relu",
                              pads=[1, 1, 1, 1], group=2),
             helper.make_node("FusedMatMul", ["xt", "W"], ["y"], domain="com.microsoft", transA=1)]
    graph = helper.make_graph(nodes, "g", [_vi("img", ["N", 4, 8, 8]), _vi("xt", [16, "N"])],
                              [_vi("c", None), _vi("y", None)], [_w("CW", (6, 2, 3, 3)), _w("W", (16, 8))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    assert graph_macs(model) == CONV_MACS + MATMUL_MACS


def test_dominant_precision_weighs_every_parameter() -> None:
    half = numpy_helper.from_array(np.zeros((10,), np.float16), "h")
    ints = helper.make_node("Constant", [], ["k"], value_ints=list(range(12)))
    model = _model([helper.make_node("Identity", ["h"], ["y"]), ints], [], [_vi("y", None, TensorProto.FLOAT16),
                                                                          _vi("k", None, TensorProto.INT64)], [half])
    assert dominant_precision(model) == "int64"
    tensor = helper.make_node("Constant", [], ["t"], value=numpy_helper.from_array(np.zeros((3,), np.float16)))
    model.graph.node.append(tensor)
    assert dominant_precision(model) == "float16"   # 13 against 12


def test_float16_conversion_reads_as_float16() -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(_conv_and_matmul(), keep_io_types=True)
    assert dominant_precision(half) == "float16"
    assert graph_macs(half) == CONV_MACS + MATMUL_MACS

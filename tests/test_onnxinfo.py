"""Reading an ONNX graph without running it: signature, opsets, params, external data, and safety."""

from __future__ import annotations

import os

import modelkit as mk
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnpm.errors import ModelError, NnpmError, PackageSafetyError
from nnpm.format import onnxinfo
from nnpm.format.manifest import TensorSpec
from nnpm.format.onnxinfo import read_model

# ---------------------------------------------------------------- signature, opsets, params

def test_signature_has_symbolic_and_fixed_dims(tmp_path):
    mk.save(mk.linear(4, 3), tmp_path / "model.onnx")
    info = read_model(tmp_path, "model.onnx")
    assert info.signature.inputs == (TensorSpec("x", "float32", ("N", 4)),)
    assert info.signature.outputs == (TensorSpec("y", "float32", ("N", 3)),)
    assert info.opsets == {"": mk.OPSET}
    assert info.ir_version == mk.IR_VERSION
    assert info.params == 4 * 3 + 3
    assert info.external_files == ()


def test_signature_of_several_inputs_and_outputs_keeps_order_dtypes_and_unknown_dims(tmp_path):
    mk.save(mk.multi_io(), tmp_path / "model.onnx")
    sig = read_model(tmp_path, "model.onnx").signature
    assert sig.inputs == (
        TensorSpec("tokens", "float32", ("N", "seq", 8)),
        TensorSpec("mask", "int64", ("N", None)),
        TensorSpec("half", "float16", (None, 2)),
    )
    assert sig.outputs == (
        TensorSpec("summed", "float32", ("N", "seq")),
        TensorSpec("mask_out", "int64", ("N", None)),
        TensorSpec("half_out", "float16", (None, 2)),
    )
    assert [t.shape_text() for t in sig.inputs] == ["[N, seq, 8]", "[N, ?]", "[?, 2]"]


@pytest.mark.parametrize("dtype,name", [
    (onnx.TensorProto.FLOAT, "float32"), (onnx.TensorProto.DOUBLE, "float64"),
    (onnx.TensorProto.FLOAT16, "float16"), (onnx.TensorProto.BFLOAT16, "bfloat16"),
    (onnx.TensorProto.INT64, "int64"), (onnx.TensorProto.INT32, "int32"), (onnx.TensorProto.INT8, "int8"),
    (onnx.TensorProto.UINT8, "uint8"), (onnx.TensorProto.BOOL, "bool"), (onnx.TensorProto.STRING, "string"),
])
def test_element_types_use_numpy_names(tmp_path, dtype, name):
    mk.save(mk.identity(dtype, [2]), tmp_path / "model.onnx")
    assert read_model(tmp_path, "model.onnx").signature.inputs == (TensorSpec("x", name, (2,)),)


def test_scalar_input_has_empty_shape(tmp_path):
    mk.save(mk.identity(shape=[]), tmp_path / "model.onnx")
    assert read_model(tmp_path, "model.onnx").signature.inputs[0].shape == ()


def test_initializers_listed_as_inputs_are_not_part_of_the_signature(tmp_path):
    mk.save(mk.initializer_as_input(), tmp_path / "model.onnx")
    info = read_model(tmp_path, "model.onnx")
    assert [t.name for t in info.signature.inputs] == ["x"]
    assert info.params == 4
    assert info.ir_version == 3


def test_a_custom_domain_operator_is_refused_but_an_unused_import_is_recorded(tmp_path):
    mk.save(mk.custom_domain(), tmp_path / "model.onnx")
    with pytest.raises(ModelError, match="'Gadget' from domain 'com.example', which needs a custom-op library"):
        read_model(tmp_path, "model.onnx")
    model = mk.custom_domain()
    model.graph.node[1].op_type, model.graph.node[1].domain = "Relu", ""   # the import stays, unused
    mk.save(model, tmp_path / "model.onnx")
    info = read_model(tmp_path, "model.onnx")
    assert info.opsets == {"": mk.OPSET, "com.example": 2}
    assert info.params == 0


def test_model_in_a_subfolder(tmp_path):
    mk.save(mk.linear(), tmp_path / "net" / "model.onnx")
    assert read_model(tmp_path, "net/model.onnx").params == 15


# ---------------------------------------------------------------- external data

def test_external_data_file_is_listed(tmp_path):
    mk.save(mk.linear(8, 5), tmp_path / "model.onnx", location="weights.bin")
    info = read_model(tmp_path, "model.onnx")
    assert info.external_files == ("weights.bin",)
    assert info.params == 8 * 5 + 5
    assert info.signature.inputs == (TensorSpec("x", "float32", ("N", 8)),)


def test_external_data_in_a_subfolder(tmp_path):
    mk.save(mk.linear(), tmp_path / "model.onnx", location="data/weights.bin")
    assert read_model(tmp_path, "model.onnx").external_files == ("data/weights.bin",)


def test_external_data_next_to_a_model_in_a_subfolder_is_relative_to_the_root(tmp_path):
    mk.save(mk.linear(), tmp_path / "net" / "model.onnx", location="weights.bin")
    assert read_model(tmp_path, "net/model.onnx").external_files == ("net/weights.bin",)


def test_external_data_with_dot_segment_is_normalised(tmp_path):
    mk.save(mk.linear(), tmp_path / "model.onnx", location="weights.bin")
    mk.rewrite_external(tmp_path / "model.onnx", location="./weights.bin")
    assert read_model(tmp_path, "model.onnx").external_files == ("weights.bin",)


@pytest.mark.parametrize("location", [
    "../../etc/passwd", "/etc/passwd", "sub/../../x", "../weights.bin", "sub/../weights.bin",
    "..\\..\\etc\\passwd", "sub\\weights.bin", "C:/weights.bin", "C:weights.bin", "\\\\host\\share\\w.bin",
    "weights.bin\x00.txt",
])
def test_external_data_location_outside_the_package_is_refused(tmp_path, location):
    pkg = tmp_path / "pkg" / "inner"
    mk.save(mk.linear(), pkg / "model.onnx", location="weights.bin")
    (tmp_path / "pkg" / "x").write_bytes(b"\0" * 4096)  # a target that would exist if followed
    mk.rewrite_external(pkg / "model.onnx", location=location)
    with pytest.raises(PackageSafetyError, match="outside the package"):
        read_model(pkg, "model.onnx")


def test_empty_external_data_location_is_refused(tmp_path):
    mk.save(mk.linear(), tmp_path / "model.onnx", location="weights.bin")
    mk.rewrite_external(tmp_path / "model.onnx", location="")
    with pytest.raises(PackageSafetyError):
        read_model(tmp_path, "model.onnx")


@pytest.mark.parametrize("location", [".", "./", "model.onnx/x", "a" * 300],
                         ids=["dot", "dot-slash", "under-a-file", "name-too-long"])
def test_odd_external_data_locations_are_safety_errors(tmp_path, location):
    mk.save(mk.linear(), tmp_path / "model.onnx", location="weights.bin")
    mk.rewrite_external(tmp_path / "model.onnx", location=location)
    with pytest.raises(PackageSafetyError):
        read_model(tmp_path, "model.onnx")


def test_missing_external_data_file_is_refused(tmp_path):
    mk.save(mk.linear(), tmp_path / "model.onnx", location="weights.bin")
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(PackageSafetyError, match="does not exist"):
        read_model(tmp_path, "model.onnx")


def test_external_data_folder_is_refused(tmp_path):
    mk.save(mk.linear(), tmp_path / "model.onnx", location="weights.bin")
    (tmp_path / "data").mkdir()
    mk.rewrite_external(tmp_path / "model.onnx", location="data")
    with pytest.raises(PackageSafetyError, match="not a regular file"):
        read_model(tmp_path, "model.onnx")


@pytest.mark.parametrize("entries", [
    {"offset": "4096"},
    {"offset": "0", "length": "100000"},
    {"offset": "60"},                       # W is 48 bytes, the file 60: W at 60 reads past the end
    {"offset": "-1"},
    {"length": "-5"},
    {"offset": "ten"},
    {"length": "1e3"},
], ids=["offset-past-end", "length-past-end", "offset-plus-size-past-end", "negative-offset",
        "negative-length", "non-integer-offset", "non-integer-length"])
def test_external_data_byte_range_outside_the_file_is_refused(tmp_path, entries):
    mk.save(mk.linear(4, 3), tmp_path / "model.onnx", location="weights.bin")
    assert (tmp_path / "weights.bin").stat().st_size == 4 * 3 * 4 + 3 * 4
    mk.rewrite_external(tmp_path / "model.onnx", **entries)
    with pytest.raises(PackageSafetyError):
        read_model(tmp_path, "model.onnx")


def test_external_data_symlink_is_refused(tmp_path):
    mk.save(mk.linear(), tmp_path / "model.onnx", location="real.bin")
    os.symlink("real.bin", tmp_path / "weights.bin")
    mk.rewrite_external(tmp_path / "model.onnx", location="weights.bin")
    with pytest.raises(PackageSafetyError, match="symbolic link"):
        read_model(tmp_path, "model.onnx")


def test_external_data_hard_link_is_refused(tmp_path):
    mk.save(mk.linear(), tmp_path / "model.onnx", location="weights.bin")
    os.link(tmp_path / "weights.bin", tmp_path / "other-name.bin")
    with pytest.raises(PackageSafetyError, match="hard link"):
        read_model(tmp_path, "model.onnx")


def test_external_data_hard_link_is_read_when_allowed(tmp_path):
    mk.save(mk.linear(), tmp_path / "model.onnx", location="weights.bin")
    os.link(tmp_path / "weights.bin", tmp_path / "other-name.bin")
    assert read_model(tmp_path, "model.onnx", allow_hardlinks=True).external_files == ("weights.bin",)


# ---------------------------------------------------------------- links and odd files

def test_symlinked_model_file_is_refused(tmp_path):
    mk.save(mk.linear(), tmp_path / "real.onnx")
    os.symlink("real.onnx", tmp_path / "model.onnx")
    with pytest.raises(PackageSafetyError, match="symbolic link"):
        read_model(tmp_path, "model.onnx")


def test_symlink_to_a_model_outside_the_package_is_refused(tmp_path):
    mk.save(mk.linear(), tmp_path / "elsewhere.onnx")
    (tmp_path / "pkg").mkdir()
    os.symlink(tmp_path / "elsewhere.onnx", tmp_path / "pkg" / "model.onnx")
    with pytest.raises(PackageSafetyError):
        read_model(tmp_path / "pkg", "model.onnx")


def test_symlinked_folder_on_the_path_is_refused(tmp_path):
    mk.save(mk.linear(), tmp_path / "outside" / "model.onnx")
    (tmp_path / "pkg").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "pkg" / "net")
    with pytest.raises(PackageSafetyError, match="symbolic link"):
        read_model(tmp_path / "pkg", "net/model.onnx")


def test_symlinked_folder_on_the_external_data_path_is_refused(tmp_path):
    mk.save(mk.linear(), tmp_path / "model.onnx", location="real/weights.bin")
    os.symlink("real", tmp_path / "data")
    mk.rewrite_external(tmp_path / "model.onnx", location="data/weights.bin")
    with pytest.raises(PackageSafetyError, match="symbolic link"):
        read_model(tmp_path, "model.onnx")


def test_hard_linked_model_is_refused_unless_allowed(tmp_path):
    mk.save(mk.linear(), tmp_path / "model.onnx")
    os.link(tmp_path / "model.onnx", tmp_path / "copy.onnx")
    with pytest.raises(PackageSafetyError, match="hard link"):
        read_model(tmp_path, "model.onnx")
    assert read_model(tmp_path, "model.onnx", allow_hardlinks=True).params == 15


def test_missing_model_file_is_a_safety_error(tmp_path):
    with pytest.raises(PackageSafetyError, match="does not exist"):
        read_model(tmp_path, "model.onnx")


def test_model_path_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "model.onnx").mkdir()
    with pytest.raises(PackageSafetyError, match="not a regular file"):
        read_model(tmp_path, "model.onnx")


@pytest.mark.parametrize("rel", ["../model.onnx", "/etc/passwd", "a/../../model.onnx"])
def test_model_path_outside_the_root_is_refused(tmp_path, rel):
    mk.save(mk.linear(), tmp_path / "model.onnx")
    (tmp_path / "pkg").mkdir()
    with pytest.raises(PackageSafetyError):
        read_model(tmp_path / "pkg", rel)


# ---------------------------------------------------------------- not ONNX, broken ONNX

def test_random_bytes_are_a_model_error(tmp_path):
    (tmp_path / "model.onnx").write_bytes(os.urandom(4096))
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        read_model(tmp_path, "model.onnx")


@pytest.mark.parametrize("data", [b"", b"\0" * 64, b"ONNX", b"\n\x05hello"], ids=["empty", "zeros", "text",
                                                                                   "no-graph"])
def test_files_without_a_graph_are_model_errors(tmp_path, data):
    (tmp_path / "model.onnx").write_bytes(data)
    with pytest.raises(ModelError):
        read_model(tmp_path, "model.onnx")


def test_first_half_of_a_model_is_a_model_error(tmp_path):
    raw = mk.save(mk.linear(16, 16), tmp_path / "full.onnx").read_bytes()
    (tmp_path / "model.onnx").write_bytes(raw[: len(raw) // 2])
    with pytest.raises((ModelError, PackageSafetyError)):
        read_model(tmp_path, "model.onnx")


def test_every_truncation_of_a_model_fails_cleanly(tmp_path):
    raw = mk.save(mk.multi_io(), tmp_path / "full.onnx").read_bytes()
    for cut in range(0, len(raw)):
        (tmp_path / "model.onnx").write_bytes(raw[:cut])
        try:
            read_model(tmp_path, "model.onnx")
        except (ModelError, PackageSafetyError):
            pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_fail_cleanly(tmp_path, data):
    (tmp_path / "model.onnx").write_bytes(data)
    with pytest.raises(NnpmError):
        read_model(tmp_path, "model.onnx")


def test_graph_failing_the_checker_is_a_model_error(tmp_path):
    mk.save(mk.undefined_input(), tmp_path / "model.onnx")
    with pytest.raises(ModelError, match="fails the ONNX checker"):
        read_model(tmp_path, "model.onnx")


def test_unknown_standard_op_fails_the_checker(tmp_path):
    model = mk.identity()
    model.graph.node[0].op_type = "NoSuchOp"
    mk.save(model, tmp_path / "model.onnx")
    with pytest.raises(ModelError, match="checker"):
        read_model(tmp_path, "model.onnx")


def test_checker_error_is_one_line(tmp_path):
    mk.save(mk.undefined_input(), tmp_path / "model.onnx")
    with pytest.raises(ModelError) as info:
        read_model(tmp_path, "model.onnx")
    assert "\n" not in info.value.one_line()


# ---------------------------------------------------------------- the 2 GB protobuf limit

def test_model_larger_than_proto_limit_is_refused(tmp_path, monkeypatch):
    path = mk.save(mk.linear(), tmp_path / "model.onnx")
    monkeypatch.setattr(onnxinfo, "MAX_PROTO_SIZE", path.stat().st_size - 1)
    with pytest.raises(PackageSafetyError) as info:
        read_model(tmp_path, "model.onnx")
    assert "external data" in info.value.one_line()


def test_model_at_proto_limit_is_read(tmp_path, monkeypatch):
    path = mk.save(mk.linear(), tmp_path / "model.onnx")
    monkeypatch.setattr(onnxinfo, "MAX_PROTO_SIZE", path.stat().st_size)
    assert read_model(tmp_path, "model.onnx").params == 15


def test_proto_limit_counts_the_graph_not_its_external_data(tmp_path, monkeypatch):
    path = mk.save(mk.linear(64, 64), tmp_path / "model.onnx", location="weights.bin")
    assert (tmp_path / "weights.bin").stat().st_size > path.stat().st_size
    monkeypatch.setattr(onnxinfo, "MAX_PROTO_SIZE", path.stat().st_size)
    assert read_model(tmp_path, "model.onnx").external_files == ("weights.bin",)

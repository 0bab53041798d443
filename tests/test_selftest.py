"""nnpm/format/selftest.py: test arrays read safely and checked against the signatures, seeded inputs,
graphs run, outputs compared (tolerances, NaN, shapes), drift from a reference, latency and peak memory.

The packages are written here: a one-graph `y = x @ W + b` (tests/modelkit.py) and a
two-graph package (`enc`: y = x @ W + b, `dec`: Y = X + W), packed with nnpm.author.pack.
"""

from __future__ import annotations

import io
import math
import time
import zipfile
from pathlib import Path

import modelkit
import numpy as np
import pytest

from nnpm.author.pack import build
from nnpm.errors import InputError, ManifestError, ModelError
from nnpm.format import selftest as st


def one_graph(folder: Path, *, labels: bool = False) -> Path:
    """A one-graph package: x [N, 4] → y [N, 3] (float32), optionally with a labels file for y."""
    folder.mkdir(parents=True, exist_ok=True)
    modelkit.save(modelkit.linear(4, 3), folder / "model.onnx")
    toml = '[package]\nname = "lin"\nversion = "1.0.0"\n\n[model]\nfile = "model.onnx"\n'
    if labels:
        (folder / "labels.txt").write_text("a\nb\nc\n", encoding="utf-8")
        toml += '\n[model.outputs.y]\nlabels = "labels.txt"\n'
    (folder / "nnpm.toml").write_text(toml, encoding="utf-8")
    return folder


def two_graphs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    modelkit.save(modelkit.linear(4, 3), folder / "enc.onnx")
    modelkit.save(modelkit.add_constant((1.0, 2.0, 3.0)), folder / "dec.onnx")
    (folder / "nnpm.toml").write_text('[package]\nname = "two"\nversion = "1.0.0"\n\n[models.enc]\nfile = "enc.onnx"\n'
                                      '\n[models.dec]\nfile = "dec.onnx"\n', encoding="utf-8")
    return folder


@pytest.fixture
def lin(tmp_path: Path):
    folder = one_graph(tmp_path / "lin")
    return folder, build(folder).manifest


def savez(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


# -- reading arrays --------------------------------------------------------------------------------

def test_an_npz_file_is_read_into_arrays(tmp_path: Path) -> None:
    path = savez(tmp_path / "a.npz", x=np.ones((2, 3), np.float32), n=np.arange(4))
    arrays = st.load_arrays(path, what="the test inputs")
    assert sorted(arrays) == ["n", "x"] and arrays["x"].dtype == np.float32 and arrays["n"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("case,words", [
    ("random bytes", "not an .npz file"),
    ("npy", "not an .npz file"),
    ("pickled", "pickled or object arrays"),
    ("not an array", "not an array"),
    ("broken zip", "cannot be read"),
])
def test_anything_but_plain_arrays_is_refused_in_one_line(tmp_path: Path, case: str, words: str) -> None:
    path = tmp_path / "t.npz"
    if case == "random bytes":
        path.write_bytes(b"\x00junk" * 100)
    elif case == "npy":
        np.save(tmp_path / "t.npy", np.ones(3))
        (tmp_path / "t.npy").rename(path)
    elif case == "pickled":
        np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    elif case == "not an array":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("x.txt", "hello")
    else:
        buf = io.BytesIO()
        np.savez(buf, x=np.ones(1000))
        path.write_bytes(buf.getvalue()[:200])
    with pytest.raises(ManifestError) as info:
        st.load_arrays(path, what="the test inputs")
    message = info.value.one_line()
    assert words in message and "the test inputs" in message and "\n" not in message, message


# -- keys and checks -------------------------------------------------------------------------------

def test_keys_are_port_names_for_one_graph_and_graph_slash_port_for_several(tmp_path: Path, lin) -> None:
    _, manifest = lin
    assert st.test_keys(manifest) == (["x"], ["y"])
    two = build(two_graphs(tmp_path / "two")).manifest
    assert st.test_keys(two) == (["dec/X", "enc/x"], ["dec/Y", "enc/y"])
    assert st.split_key(two, "enc/x") == ("enc", "x") and st.split_key(manifest, "a/b") == ("model", "a/b")


@pytest.mark.parametrize("inputs,outputs,words", [
    ({}, {"y": np.ones((1, 3), np.float32)}, ["tests/in.npz", "no array 'x'"]),
    ({"x": np.ones((1, 4), np.float32), "z": np.ones(1)}, {"y": np.ones((1, 3), np.float32)}, ["tests/in.npz", "'z'"]),
    ({"x": np.ones((1, 4), np.float32)}, {"y": np.ones((1, 3), np.float32), "w": np.ones(1)}, ["tests/out.npz", "'w'"]),
    ({"x": np.ones((1, 4), np.float64)}, {"y": np.ones((1, 3), np.float32)}, ["'x' is float64", "float32"]),
    ({"x": np.ones((4,), np.float32)}, {"y": np.ones((1, 3), np.float32)}, ["'x' has rank 1", "rank 2"]),
])
def test_test_arrays_must_match_the_ports_exactly(tmp_path: Path, inputs, outputs, words) -> None:
    folder = one_graph(tmp_path / "p")
    (folder / "tests").mkdir()
    savez(folder / "tests/in.npz", x=np.ones((1, 4), np.float32))
    savez(folder / "tests/out.npz", y=np.ones((1, 3), np.float32))
    with open(folder / "nnpm.toml", "a", encoding="utf-8") as fh:
        fh.write('\n[tests]\ninputs = "tests/in.npz"\noutputs = "tests/out.npz"\n')
    manifest = build(folder).manifest
    st.check_test_arrays(manifest, {"x": np.ones((1, 4), np.float32)}, {"y": np.ones((1, 3), np.float32)})
    with pytest.raises(ManifestError) as info:
        st.check_test_arrays(manifest, inputs, outputs)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


# -- seeded inputs ---------------------------------------------------------------------------------

def test_seeded_inputs_follow_the_signature_and_are_reproducible(tmp_path: Path, lin) -> None:
    _, manifest = lin
    first = st.seeded_inputs(manifest)
    assert list(first) == ["x"] and first["x"].shape == (1, 4) and first["x"].dtype == np.float32
    assert np.array_equal(first["x"], st.seeded_inputs(manifest)["x"])
    assert not np.array_equal(first["x"], st.seeded_inputs(manifest, seed=1)["x"])
    mine = np.zeros((5, 4), np.float32)
    assert np.array_equal(st.seeded_inputs(manifest, {"x": mine})["x"], mine)
    with pytest.raises(InputError, match="no input 'nope'"):
        st.seeded_inputs(manifest, {"nope": mine})


@pytest.mark.parametrize("dtype,check", [
    ("int64", lambda a: a.dtype == np.int64 and a.min() >= 0 and a.max() < 4),
    ("bool", lambda a: a.dtype == np.bool_),
    ("float16", lambda a: a.dtype == np.float16),
])
def test_seeded_inputs_of_other_types(tmp_path: Path, dtype: str, check) -> None:
    from onnx import helper

    folder = tmp_path / dtype
    folder.mkdir()
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    modelkit.save(modelkit.identity(elem, ["B", 7]), folder / "model.onnx")
    (folder / "nnpm.toml").write_text('[package]\nname = "i"\nversion = "1.0.0"\n[model]\nfile = "model.onnx"\n')
    arrays = st.seeded_inputs(build(folder).manifest)
    (array,) = arrays.values()
    assert array.shape == (1, 7) and check(array), array


def test_a_string_input_cannot_be_seeded(tmp_path: Path) -> None:
    from onnx import TensorProto

    folder = tmp_path / "s"
    folder.mkdir()
    modelkit.save(modelkit.identity(TensorProto.STRING, [2]), folder / "model.onnx")
    (folder / "nnpm.toml").write_text('[package]\nname = "s"\nversion = "1.0.0"\n[model]\nfile = "model.onnx"\n')
    with pytest.raises(InputError, match="type string"):
        st.seeded_inputs(build(folder).manifest)


# -- running and comparing -------------------------------------------------------------------------

def test_run_variant_and_compare(lin) -> None:
    folder, manifest = lin
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    got = st.run_variant(folder, manifest, "reference", {"x": x})
    assert list(got) == ["y"] and got["y"].shape == (2, 3)
    (ok,) = st.compare(got, {"y": got["y"].copy()}, 1e-4, 1e-5, manifest=manifest)
    assert (ok.graph, ok.output, ok.max_abs, ok.passed) == ("model", "y", 0.0, True)
    off = got["y"].copy()
    off[1, 2] += 0.5
    (bad,) = st.compare(got, {"y": off}, 1e-4, 1e-5, manifest=manifest)
    assert not bad.passed and bad.max_abs == pytest.approx(0.5, rel=1e-3)
    assert bad.to_dict() == {"graph": "model", "output": "y", "max_abs": bad.max_abs, "tolerance_exceeded": True}
    (loose,) = st.compare(got, {"y": off}, 0.0, 0.6)
    assert loose.passed


def test_compare_tolerances_nan_shapes_and_dtypes() -> None:
    want = np.array([1.0, np.nan, 100.0, np.inf], np.float32)
    got = np.array([1.0 + 1e-6, np.nan, 100.009, np.inf], np.float32)
    (check,) = st.compare({"a": got}, {"a": want}, 1e-4, 1e-5)
    assert check.passed and check.max_abs < 0.01
    (nan,) = st.compare({"a": np.array([1.0, 2.0, 3.0, np.inf], np.float32)}, {"a": want}, 1e-4, 1e-5)
    assert not nan.passed and math.isinf(nan.max_abs) and nan.to_dict()["max_abs"] is None
    (shape,) = st.compare({"a": np.ones(3, np.float32)}, {"a": want}, 1e-4, 1e-5)
    assert not shape.passed and "shape" in shape.reason
    (dtype,) = st.compare({"a": want.astype(np.float64)}, {"a": want}, 1e-4, 1e-5)
    assert not dtype.passed and "float64" in dtype.reason
    (missing,) = st.compare({}, {"g/a": want}, 1e-4, 1e-5)
    assert (missing.graph, missing.output, missing.passed) == ("g", "a", False)


# -- drift -----------------------------------------------------------------------------------------

def test_drift_per_output_and_the_worst_of_each(tmp_path: Path, lin) -> None:
    _, manifest = lin
    ref = {"y": np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], np.float32)}
    same = st.drift({"y": ref["y"].copy()}, ref, manifest)
    assert (same["max_abs"], same["rel_l2"], same["argmax_agreement"]) == (0.0, 0.0, 1.0)
    moved = {"y": np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 3.0]], np.float32)}
    d = st.drift(moved, ref, manifest)
    assert d["max_abs"] == 3.0 and d["rel_l2"] == pytest.approx(3.0 / math.sqrt(5.0))
    assert d["argmax_agreement"] == 0.5 and d["outputs"][0]["output"] == "y"
    zero = {"y": np.zeros((2, 3), np.float32)}
    assert st.drift(zero, zero, manifest)["rel_l2"] == 0.0


def test_argmax_agreement_only_for_class_scores(tmp_path: Path) -> None:
    manifest = build(one_graph(tmp_path / "plain")).manifest
    vector = {"y": np.array([1.0, 2.0, 3.0], np.float32)}
    assert st.drift(vector, vector, manifest)["argmax_agreement"] is None       # rank 1, no labels
    column = {"y": np.ones((4, 1), np.float32)}
    assert st.drift(column, column, manifest)["argmax_agreement"] is None       # one column
    labelled = build(one_graph(tmp_path / "labelled", labels=True)).manifest
    cube = {"y": np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)}
    assert st.drift(cube, cube, labelled)["argmax_agreement"] == 1.0            # rank 3 with a labels file


# -- measuring -------------------------------------------------------------------------------------

def test_measure_gives_latency_runs_peak_memory_and_the_outputs(lin) -> None:
    folder, manifest = lin
    inputs = st.seeded_inputs(manifest)
    outputs: dict = {}
    result = st.measure(folder, manifest, "reference", inputs, budget_s=0.2, outputs=outputs)
    assert set(result) == {"latency_ms", "runs", "peak_memory"}
    assert result["latency_ms"] > 0 and 5 <= result["runs"] <= 50
    assert isinstance(result["peak_memory"], int) and result["peak_memory"] >= 0
    assert list(outputs) == ["y"] and outputs["y"].shape == (1, 3)
    quick = st.measure(folder, manifest, "reference", inputs, deadline=time.monotonic() - 1)
    assert quick["runs"] == 1


def test_a_graph_onnxruntime_cannot_load_is_a_model_error(lin) -> None:
    folder, manifest = lin
    (folder / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelError, match="cannot load graph 'model'"):
        st.run_variant(folder, manifest, "reference", st.seeded_inputs(manifest))

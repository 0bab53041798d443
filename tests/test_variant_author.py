"""Author tools for issue 15: `nnpm variant add`, `nnpm test` and the self-test `nnpm init --from` writes."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import numpy as np
import onnx
import pytest
from cli import one_error_line, run_nnpm
from onnx import TensorProto, helper, numpy_helper

from nnpm.author.pack import build
from nnpm.author.variant import add_variant, appended_toml, make_recipe, variant_file
from nnpm.errors import ManifestError

F = TensorProto.FLOAT
TOML = '[package]\nname = "net"\nversion = "1.0.0"\n# the author\'s own comment stays\n\n[model]\nfile = "model.onnx"\n'


def _net(seed: int = 0, width: int = 8) -> onnx.ModelProto:
    """A Conv (img [N, 2, 6, 6]) beside a MatMul (x [N, width]): what the quantisers and the converter work on."""
    rng = np.random.default_rng(seed)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
               for name, shape in (("CW", (4, 2, 3, 3)), ("W", (width, 5)), ("b", (5,)))]
    nodes = [helper.make_node("Conv", ["img", "CW"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["features"]),
             helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["logits"])]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("img", F, ["N", 2, 6, 6]),
                                             helper.make_tensor_value_info("x", F, ["N", width])],
                              [helper.make_tensor_value_info("features", F, ["N", 4, 6, 6]),
                               helper.make_tensor_value_info("logits", F, ["N", 5])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _package(folder: Path, toml: str = TOML, *, external: bool = False, graphs: tuple[str, ...] = ("model",)) -> Path:
    folder.mkdir(parents=True)
    for i, graph in enumerate(graphs):
        file = folder / ("model.onnx" if graph == "model" else f"{graph}.onnx")
        if external:
            # wide enough that the int8 weights pass the 1 KB a tool keeps inside the graph
            onnx.save(_net(i, 512), file, save_as_external_data=True, location=f"{graph}.bin", size_threshold=0)
        else:
            onnx.save(_net(i), file)
    (folder / "nnpm.toml").write_text(toml, encoding="utf-8")
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _nnpm(home: Path, *args: str | Path) -> subprocess.CompletedProcess:
    return run_nnpm(home, *args, check=False)


# -- variant add ---------------------------------------------------------------------------------------

def test_dynamic_int8_writes_the_graph_and_appends_a_table_pack_accepts(tmp_path: Path) -> None:
    folder = _package(tmp_path / "net")
    added = add_variant(folder, quantize="int8")
    assert added.files == {"model": "model_int8.onnx"} and added.data == ()
    text = (folder / "nnpm.toml").read_text()
    assert text.startswith(TOML)   # the author's bytes, then the table
    table = tomllib.loads(text)["variants"]["int8"]
    assert table["precision"] == "int8" and table["derived-from"] == "reference"
    assert table["models"] == {"model": "model_int8.onnx"}
    assert table["transform"]["tool"] == "onnxruntime.quantization.quantize_dynamic"
    assert table["transform"]["parameters"]["weight_type"] == "QInt8"
    manifest = build(folder).manifest
    int8, ref = manifest.graph("int8"), manifest.graph("reference")
    assert (int8.precision, ref.precision) == ("int8", "float32")
    assert int8.macs == ref.macs == 4 * 36 * 2 * 9 + 8 * 5
    assert int8.signature == ref.signature
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []   # no staging left


def test_float16_keeps_float32_inputs_and_outputs(tmp_path: Path) -> None:
    folder = _package(tmp_path / "net")
    added = add_variant(folder, float16=True)
    assert added.recipe.name == "float16" and added.files == {"model": "model_fp16.onnx"}
    manifest = build(folder).manifest
    half = manifest.graph("float16")
    assert half.precision == "float16" and half.signature == manifest.graph("reference").signature
    assert tomllib.loads((folder / "nnpm.toml").read_text())["variants"]["float16"]["transform"]["parameters"] == {
        "keep_io_types": True}


def test_static_quantisation_calibrates_on_a_stack_of_samples(tmp_path: Path) -> None:
    folder = _package(tmp_path / "net")
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "calib.npz", img=rng.standard_normal((4, 1, 2, 6, 6)),   # float64: cast to float32
             x=rng.standard_normal((4, 1, 8)).astype(np.float32))
    added = add_variant(folder, quantize="uint8", calibrate=tmp_path / "calib.npz", name="qdq")
    assert added.files == {"model": "model_qdq.onnx"}
    ops = {n.op_type for n in onnx.load(str(folder / "model_qdq.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    params = tomllib.loads((folder / "nnpm.toml").read_text())["variants"]["qdq"]["transform"]["parameters"]
    assert params["quant_format"] == "QDQ" and params["calibration_samples"] == 4
    assert build(folder).manifest.graph("qdq").macs == 4 * 36 * 2 * 9 + 8 * 5


@pytest.mark.parametrize("options, variant, data", [({"quantize": "int8"}, "int8", "model_int8.onnx.data"),
                                                    ({"float16": True}, "float16", "model_fp16.onnx.data")])
def test_external_data_stays_external_and_belongs_to_the_variant(tmp_path: Path, options: dict, variant: str,
                                                                 data: str) -> None:
    folder = _package(tmp_path / "net", external=True)
    added = add_variant(folder, **options)
    assert added.data == (data,) and (folder / data).is_file()
    manifest = build(folder).manifest
    assert manifest.graph(variant).data == (data,)
    assert data not in {f.path for f in manifest.files_for("reference")}
    assert data in {f.path for f in manifest.files_for(variant)}


def test_every_graph_of_several_gets_its_file(tmp_path: Path) -> None:
    toml = ('[package]\nname = "pair"\nversion = "1.0.0"\n\n[models.encoder]\nfile = "encoder.onnx"\n\n'
            '[models.decoder]\nfile = "decoder.onnx"\n')
    folder = _package(tmp_path / "pair", toml, graphs=("encoder", "decoder"))
    arrays = {f"{g}/{k}": v for g in ("encoder", "decoder")
              for k, v in (("img", np.ones((1, 2, 6, 6), np.float32)), ("x", np.ones((1, 8), np.float32)))}
    np.savez(tmp_path / "calib.npz", **arrays)
    added = add_variant(folder, quantize="int8", calibrate=tmp_path / "calib.npz")
    assert added.files == {"decoder": "decoder_int8.onnx", "encoder": "encoder_int8.onnx"}
    assert set(build(folder).manifest.graphs["int8"]) == {"encoder", "decoder"}


def test_recipes_names_and_the_toml_they_append() -> None:
    assert make_recipe(quantize="uint8").name == "uint8" and make_recipe(float16=True, name="half").name == "half"
    assert variant_file("graphs/enc.onnx", "fp16") == "graphs/enc_fp16.onnx"
    text = appended_toml("[package]\nname = \"x\"", make_recipe(quantize="int8"), {"model": "m_int8.onnx"}, "1.0")
    assert text.startswith('[package]\nname = "x"\n\n[variants.int8]\n')
    assert tomllib.loads(text)["variants"]["int8"]["transform"]["parameters"] == {"weight_type": "QInt8",
                                                                                  "per_channel": False}


@pytest.mark.parametrize("args, words", [
    (("--quantize", "int8"), "variant 'int8' exists already"),
    (("--float16", "--name", "Half"), "is not a variant name"),
    (("--float16", "--name", "reference"), "is not a variant name"),
    ((), "say what the variant is"),
    (("--quantize", "int8", "--float16"), "say what the variant is"),
    (("--float16", "--calibrate", "c.npz"), "--calibrate goes with --quantize"),
    (("--quantize", "int4"), "int8 or uint8"),
    (("--quantize", "uint8", "--calibrate", "CALIB"), "has no array 'x'"),
    (("--quantize", "uint8", "--name", "taken"), "model_taken.onnx exists already"),
])
def test_refusals_are_one_line_and_write_nothing(tmp_path: Path, args: tuple, words: str) -> None:
    folder = _package(tmp_path / "net")
    add_variant(folder, quantize="int8")
    (folder / "model_taken.onnx").write_bytes(b"the author's")
    np.savez(tmp_path / "calib.npz", img=np.ones((1, 2, 6, 6), np.float32))
    before = _snapshot(folder)
    args = tuple(str(tmp_path / "calib.npz") if a == "CALIB" else a for a in args)
    line = one_error_line(_nnpm(tmp_path / "home", "variant", "add", str(folder), *args))
    assert words in line, line
    assert _snapshot(folder) == before


def test_a_pipeline_has_no_graphs_to_vary(tmp_path: Path) -> None:
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "nnpm.toml").write_text('[package]\nname = "pipe"\nversion = "1.0.0"\n\n[dependencies]\n'
                                      'a = "==1"\n\n[pipeline]\nsteps = ["a"]\n')
    with pytest.raises(ManifestError, match="a pipeline has no graphs of its own"):
        add_variant(folder, float16=True)
    assert [p.name for p in folder.iterdir()] == ["nnpm.toml"]


# -- nnpm test -----------------------------------------------------------------------------------------

def _tested(tmp_path: Path) -> Path:
    """`net` with a [tests] written from the reference's own outputs, and an int8 variant."""
    import onnxruntime as ort

    folder = _package(tmp_path / "net", TOML + '\n[tests]\ninputs = "tests/inputs.npz"\noutputs = "tests/outputs.npz"\n')
    rng = np.random.default_rng(0)
    inputs = {"img": rng.standard_normal((2, 2, 6, 6), np.float32), "x": rng.standard_normal((2, 8), np.float32)}
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    outputs = dict(zip(["features", "logits"], session.run(["features", "logits"], inputs)))
    (folder / "tests").mkdir()
    np.savez(folder / "tests" / "inputs.npz", **inputs)
    np.savez(folder / "tests" / "outputs.npz", **outputs)
    add_variant(folder, quantize="int8")
    return folder


def test_nnpm_test_passes_then_fails_when_the_expected_outputs_change(tmp_path: Path) -> None:
    folder, home = _tested(tmp_path), tmp_path / "home"
    passed = _nnpm(home, "test", folder)
    assert passed.returncode == 0, passed.stderr
    lines = passed.stdout.splitlines()
    assert lines[0].startswith("PASS  features  max |diff| ") and lines[0].endswith("(atol 1e-05, rtol 0.0001)")
    assert lines[1].startswith("PASS  logits  ") and "net 1.0.0 (reference): passed" in lines[2]
    variant = _nnpm(home, "test", folder, "--variant", "int8")
    assert variant.returncode == 0 and "PASS  logits  rel L2 " in variant.stdout, variant.stdout
    assert _nnpm(home, "test", folder, "--variant", "int8", "--max-drift", "0").returncode == 1
    expected = dict(np.load(folder / "tests" / "outputs.npz"))
    expected["logits"] = expected["logits"] + 0.01
    np.savez(folder / "tests" / "outputs.npz", **expected)
    failed = _nnpm(home, "test", folder)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "PASS  features" in failed.stdout and "FAIL  logits  max |diff| 1.0e-02" in failed.stdout
    assert "FAILED, 1 of 2 outputs are not within the tolerance" in failed.stdout


def test_nnpm_test_runs_the_installed_variant(tmp_path: Path) -> None:
    folder, home = _tested(tmp_path), tmp_path / "home"
    assert _nnpm(home, "install", "-q", folder, "--variant", "int8").returncode == 0
    installed = _nnpm(home, "test", "net")
    assert installed.returncode == 0 and "net 1.0.0 (int8): passed" in installed.stdout, installed.stdout
    assert "installed as variant 'int8'" in one_error_line(_nnpm(home, "test", "net", "--variant", "reference"))


def test_nnpm_test_without_tests_says_how_to_add_them(tmp_path: Path) -> None:
    folder = _package(tmp_path / "net")
    line = one_error_line(_nnpm(tmp_path / "home", "test", folder))
    assert "has no self-test ([tests] in nnpm.toml)" in line and "nnpm init --from" in line
    assert "to test the folder, run 'nnpm test ./net'" in one_error_line(
        run_nnpm(tmp_path / "home", "test", "net", cwd=tmp_path, check=False))


# -- nnpm init --from writes a self-test -----------------------------------------------------------------

def test_init_writes_a_self_test_that_passes_and_takes_given_inputs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    onnx.save(_net(), tmp_path / "net.onnx")
    image = np.full((3, 2, 6, 6), 0.5, np.float32)
    np.save(tmp_path / "image.npy", image)
    made = _nnpm(home, "init", tmp_path / "pkg", "--from", tmp_path / "net.onnx",
                 "--test-input", f"img={tmp_path / 'image.npy'}")
    assert made.returncode == 0 and "tests/outputs.npz" in made.stdout, made.stdout + made.stderr
    tests = tomllib.loads((tmp_path / "pkg" / "nnpm.toml").read_text())["tests"]
    assert tests == {"inputs": "tests/inputs.npz", "outputs": "tests/outputs.npz", "rtol": 1e-4, "atol": 1e-5}
    inputs = np.load(tmp_path / "pkg" / "tests" / "inputs.npz")
    assert np.array_equal(inputs["img"], image) and inputs["x"].shape == (1, 8)   # given; seeded with N = 1
    assert np.load(tmp_path / "pkg" / "tests" / "outputs.npz")["features"].shape == (3, 4, 6, 6)
    assert _nnpm(home, "test", tmp_path / "pkg").returncode == 0
    assert build(tmp_path / "pkg").manifest.graph().macs == 3 * 4 * 36 * 2 * 9 + 8 * 5   # MACs at the test's shapes
    bad = _nnpm(home, "init", tmp_path / "other", "--from", tmp_path / "net.onnx", "--test-input", f"nope={tmp_path / 'image.npy'}")
    assert "no such input" in one_error_line(bad) and not (tmp_path / "other").exists()


def test_init_of_a_model_it_cannot_seed_writes_no_test_and_says_why(tmp_path: Path) -> None:
    seq = helper.make_tensor_sequence_value_info("items", F, None)
    graph = helper.make_graph([helper.make_node("SequenceLength", ["items"], ["count"])], "g", [seq],
                              [helper.make_tensor_value_info("count", TensorProto.INT64, [])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              tmp_path / "seq.onnx")
    made = _nnpm(tmp_path / "home", "init", tmp_path / "pkg", "--from", tmp_path / "seq.onnx")
    assert made.returncode == 0, made.stderr
    assert "note: no self-test written: input 'items' has no known rank" in made.stdout, made.stdout
    assert "tests" not in tomllib.loads((tmp_path / "pkg" / "nnpm.toml").read_text())
    assert not (tmp_path / "pkg" / "tests").exists()
    assert build(tmp_path / "pkg").manifest.name == "pkg"

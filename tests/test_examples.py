"""The example packages build, check, run, match their README claims and rebuild byte for byte."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from examples import build as builder
from examples import digits, imagenet, resnet18

MODELS = ["resnet18", "digits", "digits-preprocess", "imagenet-preprocess", "topk"]
PIPELINES = {
    "digits-classifier": ["digits-preprocess", "digits"],
    "imagenet-classifier": ["imagenet-preprocess", "resnet18", "topk"],
}
ALLOWED = {
    "package": {"name", "version", "description", "license", "readme", "tags", "authors"},
    "model": {"file", "outputs"},
    "dependencies": None,
    "requires": {"onnxruntime"},
    "pipeline": {"steps"},
    "files": {"include"},
    "tests": {"inputs", "outputs", "rtol", "atol"},
    "variants": None,
}
VARIANTS = {"resnet18": ["reference", "int8", "int8-static"], "digits": ["reference", "float16"]}


@pytest.fixture
def out(examples_dir: Path) -> Path:
    """The examples as `python -m examples.build` made them, once per session (tests/conftest.py)."""
    return examples_dir


def _session(folder: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])


def _manifest(folder: Path) -> dict:
    return tomllib.loads((folder / "nnpm.toml").read_text(encoding="utf-8"))


def _files(outdir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(outdir)): p.read_bytes() for p in sorted(outdir.rglob("*")) if p.is_file()}


def test_folders_and_manifests(out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == sorted(MODELS + list(PIPELINES))
    for name in MODELS + list(PIPELINES):
        data = _manifest(out / name)
        for table, keys in data.items():
            assert table in ALLOWED, (name, table)
            if ALLOWED[table] is not None:
                assert set(keys) <= ALLOWED[table], (name, table, keys)
        assert data["package"]["name"] == name and data["package"]["version"] == "1.0.0"
        assert (out / name / "README.md").is_file()
        for info in data.get("model", {}).get("outputs", {}).values():
            assert (out / name / info["labels"]).is_file()
        assert (out / name / "model.onnx").is_file() == (name in MODELS)
    for name, steps in PIPELINES.items():
        data = _manifest(out / name)
        assert "model" not in data and data["pipeline"]["steps"] == steps
        assert data["dependencies"] == {step: ">=1,<2" for step in steps}


def test_manifests_accepted_by_nnpm(out: Path) -> None:
    from nnpm.format import project

    for folder in out.iterdir():
        assert project.load_project(folder).name == folder.name


@pytest.mark.parametrize("name", MODELS)
def test_model_passes_full_check(out: Path, name: str) -> None:
    model = onnx.load(str(out / name / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8
    expected = {"": 17, "ai.onnx.ml": 3} if name == "digits" else {"": 17}
    assert {o.domain: o.version for o in model.opset_import} == expected
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def test_resnet18(out: Path) -> None:
    folder = out / "resnet18"
    model = onnx.load(str(folder / "model.onnx"))
    assert resnet18.parameter_count(model, trainable_only=True) == 11_689_512  # torchvision's count
    assert resnet18.parameter_count(model) == 11_689_512 + 2 * 4_800  # + BN running mean/var
    assert 44e6 < (folder / "model.onnx").stat().st_size < 48e6
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224), dtype=np.float32)
    (logits,) = _session(folder).run(None, {"input": x})
    assert logits.shape == (1, 1000) and logits.dtype == np.float32
    assert np.isfinite(logits).all()
    labels = (folder / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert labels == [f"class {i}" for i in range(1000)]


def test_digits_accuracy_matches_readme(out: Path) -> None:
    pixels, labels = digits.held_out()
    assert pixels.dtype == np.int64 and pixels.shape == (len(labels), 8, 8)
    assert pixels.min() >= 0 and pixels.max() <= 16
    (features,) = _session(out / "digits-preprocess").run(None, {"pixels": pixels})
    predicted, probabilities = _session(out / "digits").run(["label", "probabilities"], {"features": features})
    accuracy = float((predicted == labels).mean())
    claimed = digits.claimed_accuracy((out / "digits" / "README.md").read_text(encoding="utf-8"))
    assert accuracy == pytest.approx(claimed, abs=5e-5)
    assert accuracy >= 0.9
    assert probabilities.shape == (len(labels), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert (out / "digits" / "labels.txt").read_text().splitlines() == [str(i) for i in range(10)]


def test_imagenet_preprocess(out: Path) -> None:
    session = _session(out / "imagenet-preprocess")
    image = np.random.default_rng(2).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    (pixels,) = session.run(None, {"image": image})
    assert pixels.shape == (1, 3, 224, 224) and pixels.dtype == np.float32
    # A flat colour survives resizing, so the output is exactly the normalised colour.
    flat = np.broadcast_to(np.array([255, 128, 0], dtype=np.uint8), (300, 200, 3)).copy()
    (pixels,) = session.run(None, {"image": flat})
    expected = (np.array([255, 128, 0]) / 255 - imagenet.MEAN) / imagenet.STD
    np.testing.assert_allclose(pixels[0, :, 100, 50], expected, rtol=1e-5)


def test_topk(out: Path) -> None:
    logits = np.random.default_rng(3).standard_normal((4, 1000), dtype=np.float32) * 5
    scores, indices = _session(out / "topk").run(["scores", "indices"], {"logits": logits})
    assert scores.shape == (4, 5) and indices.shape == (4, 5) and indices.dtype == np.int64
    assert (np.diff(scores, axis=1) <= 0).all()
    assert (scores.sum(axis=1) <= 1 + 1e-6).all()
    np.testing.assert_array_equal(indices, np.argsort(-logits, axis=1, kind="stable")[:, :5])
    assert _manifest(out / "topk")["model"]["outputs"] == {"indices": {"labels": "labels.txt"}}


def test_rebuild_is_byte_identical(out: Path, examples_rebuild: Path) -> None:
    # Two fresh processes, so no cached training result or hash seed is shared between the builds.
    first, second = _files(out), _files(examples_rebuild)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []


def test_rebuild_replaces_stale_folder(out: Path, tmp_path: Path) -> None:
    stale = tmp_path / "topk"
    stale.mkdir()
    (stale / "old.txt").write_text("stale")
    lines: list[str] = []
    builder.build(tmp_path, ["topk"], log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("topk 1.0.0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["topk"]  # no temp folders left behind
    assert _files(tmp_path) == {k: v for k, v in _files(out).items() if k.startswith("topk/")}
    with pytest.raises(ValueError):
        builder.build(tmp_path, ["nope"])


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_examples_with_variants_pass_their_self_test_and_every_variant_runs(out: Path, name: str) -> None:
    from nnpm.author.pack import build
    from nnpm.format.selftest import compare, drift, load_arrays, run_variant

    manifest = build(out / name).manifest
    assert manifest.variant_names() == sorted(VARIANTS[name], key=lambda v: (v != "reference", v))
    tests = manifest.project.tests
    inputs = load_arrays(out / name / tests.inputs, what="inputs")
    want = load_arrays(out / name / tests.outputs, what="outputs")
    assert all(check.passed for check in compare(run_variant(out / name, manifest, "reference", inputs), want,
                                                  tests.rtol, tests.atol))
    for variant in manifest.variant_names()[1:]:
        assert manifest.graph(variant).bytes < manifest.graph("reference").bytes
        got = run_variant(out / name, manifest, variant, inputs)
        assert drift(got, want, manifest)["rel_l2"] < 0.2

"""nnpm.load runs package folders and .nnpm archives exactly as plain onnxruntime does,
and refuses bad inputs with errors that name the input, the expected and the given type."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import modelkit
import numpy as np
import onnxruntime as ort
import pytest
from packages import write_package

import nnpm
from examples import digits
from nnpm.errors import InputError, ManifestError, RequirementError
from nnpm.runtime.load import load
from nnpm.runtime.model import Model, NoLabelsError

MODELS = ["resnet18", "digits", "digits-preprocess", "imagenet-preprocess", "topk"]


@pytest.fixture(scope="module")
def archives(examples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from nnpm.author.pack import pack

    outdir = tmp_path_factory.mktemp("archives")
    return {name: pack(examples_dir / name, outdir / f"{name}.nnpm")[1] for name in MODELS}


def sample(name: str) -> dict[str, np.ndarray]:
    """A realistic input for each example model."""
    rng = np.random.default_rng(0)
    pixels, _ = digits.held_out()
    if name == "resnet18":
        return {"input": rng.standard_normal((2, 3, 224, 224), dtype=np.float32)}
    if name == "digits":
        return {"features": rng.standard_normal((7, 64), dtype=np.float32)}
    if name == "digits-preprocess":
        return {"pixels": pixels}
    if name == "imagenet-preprocess":
        return {"image": rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)}
    if name == "topk":
        return {"logits": rng.standard_normal((3, 1000), dtype=np.float32)}
    raise KeyError(name)


def plain_run(folder: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def assert_same(got, want: dict[str, np.ndarray]) -> None:
    got = got if isinstance(got, dict) else {next(iter(want)): got}
    assert list(got) == list(want)
    for key in want:
        assert got[key].dtype == want[key].dtype and np.array_equal(got[key], want[key]), key


@pytest.mark.parametrize("name", MODELS)
def test_folder_output_is_bit_identical_to_plain_onnxruntime(examples_dir: Path, name: str) -> None:
    feeds = sample(name)
    model = load(examples_dir / name)
    assert_same(model(*feeds.values()), plain_run(examples_dir / name, feeds))
    assert_same(model(feeds), plain_run(examples_dir / name, feeds))


@pytest.mark.parametrize("name", MODELS)
def test_archive_output_is_bit_identical_and_temp_folder_is_removed(
        examples_dir: Path, archives: dict[str, Path], name: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model = nnpm.load(str(archives[name]))
    assert list(tmp_path.iterdir()) == []
    assert model.path == archives[name] and model.name == name
    feeds = sample(name)
    assert_same(model(**feeds), plain_run(examples_dir / name, feeds))


def test_external_data_is_read_next_to_the_model(small_package, tmp_path: Path) -> None:
    from nnpm.author.pack import pack

    folder = small_package(external_data=True)
    x = np.ones((2, 3), np.float32)
    assert np.array_equal(load(folder)(x), x + np.array([1, 2, 3], np.float32))
    archive = pack(folder, tmp_path / "tiny.nnpm")[1]
    assert np.array_equal(load(archive)(X=x), x + np.array([1, 2, 3], np.float32))


def test_model_attributes_and_repr(examples_dir: Path) -> None:
    model = load(examples_dir / "digits")
    assert isinstance(model, nnpm.Model) and isinstance(model, Model)
    assert model.name == "digits" and str(model.version) == "1.0.0" and model.path == examples_dir / "digits"
    assert [s.name for s in model.signature.inputs] == ["features"]
    assert [s.name for s in model.signature.outputs] == ["label", "probabilities"]
    assert model.manifest.name == "digits" and isinstance(model.session, ort.InferenceSession)
    assert repr(model) == ("<nnpm.Model digits 1.0.0 (features: float32 [N, 64]) -> "
                           "(label: int64 [N], probabilities: float32 [N, 10])>")


def test_several_outputs_come_back_as_a_dict_by_name(examples_dir: Path) -> None:
    out = load(examples_dir / "digits")(sample("digits")["features"])
    assert set(out) == {"label", "probabilities"} and out["probabilities"].shape == (7, 10)


def test_held_out_digits_reach_the_readme_accuracy(examples_dir: Path) -> None:
    pre, clf = load(examples_dir / "digits-preprocess"), load(examples_dir / "digits")
    pixels, truth = digits.held_out()
    predicted = clf(pre(pixels))["label"]
    correct = int((predicted == truth).sum())
    readme = (examples_dir / "digits" / "README.md").read_text(encoding="utf-8")
    assert round(correct / len(truth), 4) == digits.claimed_accuracy(readme)
    assert digits.format_accuracy(correct, len(truth)) in readme


def test_labels_come_from_the_declared_file(examples_dir: Path) -> None:
    topk = load(examples_dir / "topk")
    labels = topk.labels("indices")
    assert labels[0] == "class 0" and len(labels) == 1000
    assert load(examples_dir / "digits").labels("probabilities") == [str(i) for i in range(10)]


def test_labels_of_an_output_without_labels_is_a_clear_key_error(examples_dir: Path) -> None:
    topk = load(examples_dir / "topk")
    with pytest.raises(NoLabelsError, match="'scores' of topk has no labels") as info:
        topk.labels("scores")
    assert isinstance(info.value, KeyError) and "indices" in info.value.hint
    with pytest.raises(KeyError, match="no output 'nope'"):
        topk.labels("nope")


# ---- inputs are checked before onnxruntime sees them ---------------------------------

def test_wrong_dtype_names_input_expected_and_given(examples_dir: Path) -> None:
    pre = load(examples_dir / "digits-preprocess")
    with pytest.raises(InputError) as info:
        pre(np.zeros((2, 8, 8), np.float32))
    assert str(info.value).startswith("input 'pixels': expected int64 [N, 8, 8], got float32 [2, 8, 8]")
    assert "astype(np.int64)" in info.value.hint


def test_float64_to_float32_is_refused_with_a_hint_to_cast(examples_dir: Path) -> None:
    clf = load(examples_dir / "digits")
    with pytest.raises(InputError, match=r"expected float32 \[N, 64\], got float64 \[1, 64\]") as info:
        clf(np.zeros((1, 64)))
    assert "astype(np.float32)" in info.value.hint


def test_safe_casts_are_made(examples_dir: Path) -> None:
    pre, clf = load(examples_dir / "digits-preprocess"), load(examples_dir / "digits")
    pixels, _ = digits.held_out()
    assert np.array_equal(pre(pixels.astype(np.int32)), pre(pixels))
    features = sample("digits")["features"].astype(np.float16)
    assert_same(clf(features), plain_run(examples_dir / "digits", {"features": features.astype(np.float32)}))


def test_python_lists_convert_to_the_declared_dtype(examples_dir: Path) -> None:
    pre = load(examples_dir / "digits-preprocess")
    pixels, _ = digits.held_out()
    assert np.array_equal(pre(pixels[:2].tolist()), pre(pixels[:2]))
    with pytest.raises(InputError, match="do not all fit int64"):
        pre([[[0.5] * 8] * 8])
    with pytest.raises(InputError, match="got string"):
        pre([[["a"] * 8] * 8])


def test_wrong_rank(examples_dir: Path) -> None:
    with pytest.raises(InputError, match=r"input 'pixels': expected int64 \[N, 8, 8\], got int64 \[2, 64\] "
                                         r"\(rank 2, expected rank 3\)"):
        load(examples_dir / "digits-preprocess")(np.zeros((2, 64), np.int64))


def test_wrong_fixed_dimension(examples_dir: Path) -> None:
    with pytest.raises(InputError, match=r"expected float32 \[N, 64\], got float32 \[2, 63\] "
                                         r"\(dimension 1 is 63, expected 64\)"):
        load(examples_dir / "digits")(np.zeros((2, 63), np.float32))


def test_missing_and_unknown_inputs(examples_dir: Path) -> None:
    clf = load(examples_dir / "digits")
    with pytest.raises(InputError, match=r"missing input 'features' \(float32 \[N, 64\]\)"):
        clf({})
    with pytest.raises(InputError, match="unknown input 'pixels'; the model takes 'features'"):
        clf(pixels=np.zeros((1, 64), np.float32))
    with pytest.raises(InputError, match="takes 1 input"):
        clf(np.zeros((1, 64), np.float32), np.zeros((1, 64), np.float32))


@pytest.fixture(scope="module")
def adder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-input package: sum = a + b, both [N, 3] float32."""
    return write_package(tmp_path_factory.mktemp("adder"), "adder", "0.1.0", bare=True, model=modelkit.adder())


def test_several_inputs_by_keyword_position_or_dict(adder: Path) -> None:
    model = load(adder)
    a, b = np.ones((2, 3), np.float32), np.full((2, 3), 2, np.float32)
    for out in (model(a=a, b=b), model(a, b), model({"a": a, "b": b}), model(a, b=b)):
        assert np.array_equal(out, a + b)
    with pytest.raises(InputError, match="given twice"):
        model(a, a=a)


def test_inconsistent_symbolic_dimension(adder: Path) -> None:
    model = load(adder)
    with pytest.raises(InputError, match=r"input 'b': expected float32 \[N, 3\], got float32 \[3, 3\] "
                                         r"\(dimension 0 \(N\) is 3, but N is 2 in input 'a'\)"):
        model(a=np.zeros((2, 3), np.float32), b=np.zeros((3, 3), np.float32))


def test_unavailable_provider_names_the_available_ones(examples_dir: Path) -> None:
    with pytest.raises(RequirementError, match="'NoSuchExecutionProvider' is not available") as info:
        load(examples_dir / "digits", providers=["NoSuchExecutionProvider"])
    assert "CPUExecutionProvider" in str(info.value)


def test_available_providers_are_accepted(examples_dir: Path) -> None:
    model = load(examples_dir / "digits", providers=[("CPUExecutionProvider", {})])
    assert model.session.get_providers() == ["CPUExecutionProvider"]


def test_missing_path_and_non_package_folder(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no package folder or .nnpm file"):
        load(tmp_path / "nope")
    with pytest.raises(ManifestError, match="neither nnpm.toml nor manifest.json"):
        load(tmp_path)


def test_unpacked_folder_with_manifest_json_is_hashed(examples_dir: Path, tmp_path: Path) -> None:
    import shutil

    from nnpm.author.pack import build
    from nnpm.errors import IntegrityError

    folder = tmp_path / "digits"
    shutil.copytree(examples_dir / "digits", folder)
    (folder / "nnpm.toml").unlink()
    (folder / "manifest.json").write_bytes(build(examples_dir / "digits").manifest.to_json())
    feeds = sample("digits")
    assert_same(load(folder)(feeds), plain_run(examples_dir / "digits", feeds))
    labels = folder / "labels.txt"
    labels.write_text(labels.read_text().replace("7", "x"))
    with pytest.raises(IntegrityError, match="labels.txt does not match"):
        load(folder)


def test_one_model_is_safe_to_call_from_many_threads(examples_dir: Path) -> None:
    model = load(examples_dir / "digits")
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((5, 64), dtype=np.float32) for _ in range(20)]
    serial = [model(x) for x in batches]
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            results[i] = [model(x) for x in batches]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got in results.values():
        for g, s in zip(got, serial):
            assert all(np.array_equal(g[k], s[k]) for k in s)
    assert len(results) == 8


def test_pipeline_folder_is_delegated_to_the_pipeline_loader(examples_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from nnpm.runtime import pipeline

    calls = []
    monkeypatch.setattr(pipeline, "load_pipeline", lambda pkg, env, **kw: calls.append((pkg, env, kw)) or "fused")
    folder = examples_dir / "digits-classifier"
    assert load(folder, env="somewhere", providers=["CPUExecutionProvider"]) == "fused"
    (pkg, env, kw), = calls
    assert pkg.name == "digits-classifier" and pkg.path == folder
    assert pkg.manifest.project.pipeline.steps == ("digits-preprocess", "digits")
    assert env.name == "somewhere"
    assert kw == {"providers": ["CPUExecutionProvider"], "session_options": None, "fuse": True, "verify": True}


def test_cli_preview_shows_top_k_labels_and_label_names(examples_dir: Path) -> None:
    from nnpm.cli.run import describe_output

    topk = load(examples_dir / "topk")
    logits = np.zeros((1, 1000), np.float32)
    logits[0, [7, 3]] = [5.0, 4.0]
    out = topk(logits)
    assert describe_output(topk, "indices", out["indices"], 5)[1].startswith("  [0] class 7, class 3, class ")
    clf = load(examples_dir / "digits")
    features = load(examples_dir / "digits-preprocess")(digits.held_out()[0][:2])
    lines = describe_output(clf, "probabilities", clf(features)["probabilities"], 3)
    assert lines[0] == "probabilities  shape [2, 10]  float32" and len(lines) == 3
    assert all(len(line.split(", ")) == 3 for line in lines[1:])

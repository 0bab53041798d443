"""Pipeline packages from the examples, installed into a temporary NNPM_HOME: nnpm.load fuses
them into one graph that computes what the steps compute, caches that graph per environment,
`nnpm compose` writes it, and a tampered step is caught even behind a cached graph."""

from __future__ import annotations

import inspect
import os
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cli import run_nnpm
from onnx import numpy_helper
from packages import write_package

import nnpm
from examples import digits
from examples.common import dump_toml
from nnpm.errors import IntegrityError, NnpmError

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ["digits", "digits-preprocess", "digits-classifier"]
IMAGENET = ["imagenet-preprocess", "resnet18", "topk", "imagenet-classifier"]


# ---------------------------------------------------------------- fixtures and helpers

def install(home: Path, folders: list[Path]) -> None:
    from nnpm.config import load_settings
    from nnpm.install.transaction import Installer

    assert os.environ["NNPM_HOME"] == str(home)
    Installer(load_settings(), progress=False).install([str(f) for f in folders])


@pytest.fixture(scope="module")
def home(examples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One NNPM_HOME with every example installed, for the tests that only read it."""
    path = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NNPM_HOME", str(path))
        mp.delenv("NNPM_ENV", raising=False)
        install(path, [examples_dir / n for n in DIGITS + IMAGENET])
        yield path


@pytest.fixture
def own_home(examples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh NNPM_HOME with the digits packages, for tests that change things."""
    path = tmp_path / "home"
    monkeypatch.setenv("NNPM_HOME", str(path))
    monkeypatch.delenv("NNPM_ENV", raising=False)
    install(path, [examples_dir / n for n in DIGITS])
    return path


def env():
    from nnpm.install.env import open_env

    return open_env()


def stepwise(name: str):
    """The pipeline run step by step (fuse=False), through nnpm.load when it passes fuse on."""
    if "fuse" in inspect.signature(nnpm.load).parameters:
        return nnpm.load(name, fuse=False)
    from nnpm.runtime.pipeline import load_pipeline

    e = env()
    return load_pipeline(e.get(name), e, fuse=False)


def plain_session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def step_file(name: str) -> Path:
    pkg = env().get(name)
    return pkg.path / pkg.manifest.project.model.file


def fused_files(home: Path) -> list[Path]:
    """The cached fused graphs: one folder per graph (with links to its steps' data), its model.onnx inside."""
    folder = home / "envs" / "default" / "cache" / "fused"
    return sorted(folder.glob("*/model.onnx")) if folder.is_dir() else []


def replace_file(path: Path, data: bytes) -> None:
    """Write new bytes to an installed file without touching the store blob it is linked to."""
    path.unlink()
    path.write_bytes(data)


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    replace_file(path, bytes(data))


def image(seed: int = 0, shape: tuple[int, int, int] = (300, 200, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ---------------------------------------------------------------- digits-classifier

def test_digits_classifier_reaches_readme_accuracy_and_equals_stepwise(home: Path) -> None:
    model = nnpm.load("digits-classifier")
    assert isinstance(model, nnpm.Model)  # one fused onnxruntime session
    assert [s.name for s in model.signature.inputs] == ["pixels"]
    assert [s.name for s in model.signature.outputs] == ["label", "probabilities"]
    pixels, labels = digits.held_out()
    out = model(pixels)
    accuracy = float((out["label"] == labels).mean())
    readme = (env().get("digits").path / "README.md").read_text(encoding="utf-8")
    assert accuracy == pytest.approx(digits.claimed_accuracy(readme), abs=5e-5)
    assert accuracy >= 0.9
    assert model.labels("probabilities") == [str(i) for i in range(10)]  # carried over from digits

    steps = stepwise("digits-classifier")
    slow = steps(pixels)
    assert list(slow) == list(out)
    for name in out:
        assert out[name].dtype == slow[name].dtype
        np.testing.assert_array_equal(out[name], slow[name], err_msg=name)  # bit for bit


def test_digits_classifier_equals_plain_steps(home: Path) -> None:
    pixels, _ = digits.held_out()
    (features,) = plain_session(step_file("digits-preprocess")).run(None, {"pixels": pixels})
    label, probabilities = plain_session(step_file("digits")).run(["label", "probabilities"], {"features": features})
    out = nnpm.load("digits-classifier")(pixels)
    np.testing.assert_array_equal(out["label"], label)
    np.testing.assert_array_equal(out["probabilities"], probabilities)


# ---------------------------------------------------------------- imagenet-classifier

def test_imagenet_classifier_fused_equals_plain_steps(home: Path) -> None:
    model = nnpm.load("imagenet-classifier")
    img = image(0)
    out = model(img)
    assert set(out) == {"scores", "indices"}
    (pixels,) = plain_session(step_file("imagenet-preprocess")).run(None, {"image": img})
    (logits,) = plain_session(step_file("resnet18")).run(None, {"input": pixels})
    scores, indices = plain_session(step_file("topk")).run(["scores", "indices"], {"logits": logits})
    assert out["scores"].shape == (1, 5) and out["indices"].dtype == np.int64
    np.testing.assert_allclose(out["scores"], scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["indices"], indices)
    assert model.labels("indices")[:2] == ["class 0", "class 1"]
    # Another image size runs through the same fused graph (H and W are symbolic).
    other = image(1, (128, 511, 3))
    (pixels,) = plain_session(step_file("imagenet-preprocess")).run(None, {"image": other})
    (logits,) = plain_session(step_file("resnet18")).run(None, {"input": pixels})
    _, indices = plain_session(step_file("topk")).run(["scores", "indices"], {"logits": logits})
    np.testing.assert_array_equal(model(other)["indices"], indices)


def test_imagenet_classifier_stepwise_agrees(home: Path) -> None:
    img = image(2)
    fused = nnpm.load("imagenet-classifier")(img)
    slow = stepwise("imagenet-classifier")(img)
    np.testing.assert_allclose(fused["scores"], slow["scores"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(fused["indices"], slow["indices"])


def test_pipeline_folder_loads_like_the_installed_pipeline(home: Path, examples_dir: Path) -> None:
    pixels, _ = digits.held_out()
    from_folder = nnpm.load(examples_dir / "digits-classifier")(pixels)
    installed = nnpm.load("digits-classifier")(pixels)
    for name in installed:
        np.testing.assert_array_equal(from_folder[name], installed[name], err_msg=name)


# ---------------------------------------------------------------- the fused-graph cache

def test_fused_graph_is_cached_and_reused(home: Path) -> None:
    from nnpm.runtime.pipeline import fused_path

    nnpm.load("imagenet-classifier")
    e = env()
    path = fused_path(e.get("imagenet-classifier"), e)
    assert path.is_file() and path.parent.parent.parent == e.cache_dir()
    before = path.stat().st_mtime_ns, path.stat().st_ino
    files = fused_files(home)
    assert path in files
    nnpm.load("imagenet-classifier")
    assert fused_path(e.get("imagenet-classifier"), e) == path
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    assert fused_files(home) == files


def _changed_preprocess(examples_dir: Path, tmp_path: Path, version: str, factor: float) -> Path:
    """digits-preprocess with another version and its scale multiplied by factor."""
    folder = tmp_path / "changed" / "digits-preprocess"
    shutil.copytree(examples_dir / "digits-preprocess", folder)
    data = tomllib.loads((folder / "nnpm.toml").read_text(encoding="utf-8"))
    data["package"]["version"] = version
    (folder / "nnpm.toml").write_text(dump_toml(data), encoding="utf-8")
    m = onnx.load(str(folder / "model.onnx"))
    for init in m.graph.initializer:
        if init.name == "scale":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), "scale"))
    onnx.save(m, str(folder / "model.onnx"))
    return folder


def test_changed_step_makes_a_new_fused_graph(own_home: Path, examples_dir: Path, tmp_path: Path) -> None:
    pixels, _ = digits.held_out()
    first = nnpm.load("digits-classifier")(pixels)
    (old,) = fused_files(own_home)
    old_stat = old.stat().st_mtime_ns

    install(own_home, [_changed_preprocess(examples_dir, tmp_path, "1.0.1", 4.0)])
    assert str(env().get("digits-preprocess").version) == "1.0.1"
    second = nnpm.load("digits-classifier")(pixels)
    files = fused_files(own_home)
    assert len(files) == 2 and old in files
    assert old.stat().st_mtime_ns == old_stat
    assert not np.array_equal(first["probabilities"], second["probabilities"])  # the new step is used
    slow = stepwise("digits-classifier")(pixels)
    np.testing.assert_array_equal(second["probabilities"], slow["probabilities"])
    np.testing.assert_array_equal(second["label"], slow["label"])


# ---------------------------------------------------------------- nnpm compose

def test_cli_compose_writes_a_checked_runnable_graph(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "fused.onnx"
    result = run_nnpm(home, "compose", "imagenet-classifier", "-o", str(out), cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    onnx.checker.check_model(str(out), full_check=True)
    # no temp file left: the graph, and beside it the tensor files of resnet18 (published tensor-addressed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused.data", "fused.onnx"]
    assert all(p.name.startswith("sha256-") for p in (tmp_path / "fused.data").rglob("*") if p.is_file())
    session = plain_session(out)
    assert [i.name for i in session.get_inputs()] == ["image"]
    img = image(3)
    scores, indices = session.run(["scores", "indices"], {"image": img})
    want = nnpm.load("imagenet-classifier")(img)
    np.testing.assert_allclose(scores, want["scores"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(indices, want["indices"])


def test_cli_compose_of_a_model_package_is_a_one_line_error(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "fused.onnx"
    result = run_nnpm(home, "compose", "digits", "-o", str(out), cwd=ROOT, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and "digits" in lines[0] and "pipeline" in lines[0]
    assert not out.exists()


def test_cli_compose_of_a_missing_package_is_a_one_line_error(home: Path, tmp_path: Path) -> None:
    result = run_nnpm(home, "compose", "no-such-pipeline", "-o", str(tmp_path / "f.onnx"), cwd=ROOT, check=False)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "no-such-pipeline" in result.stderr


# ---------------------------------------------------------------- tampering

def test_tampered_step_is_detected_even_with_a_cached_graph(own_home: Path) -> None:
    pixels, _ = digits.held_out()
    nnpm.load("digits-classifier")(pixels)
    assert fused_files(own_home)  # the cached graph exists now
    flip_byte(step_file("digits-preprocess"))  # same size, other sha256
    with pytest.raises(IntegrityError) as exc:
        nnpm.load("digits-classifier")
    assert "digits-preprocess" in str(exc.value) and "model.onnx" in str(exc.value)
    with pytest.raises(IntegrityError):
        stepwise("digits-classifier")
    result = run_nnpm(own_home, "compose", "digits-classifier", "-o", str(own_home / "f.onnx"), cwd=ROOT, check=False)
    assert result.returncode == 1 and "digits-preprocess" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_tampered_step_readme_is_detected(own_home: Path) -> None:
    nnpm.load("digits-classifier")
    readme = env().get("digits").path / "README.md"
    replace_file(readme, readme.read_bytes() + b"\nextra\n")  # other size
    with pytest.raises(IntegrityError) as exc:
        nnpm.load("digits-classifier")
    assert "digits" in str(exc.value) and "README.md" in str(exc.value)


def _outer_pipeline(tmp_path: Path) -> Path:
    """A pipeline whose only step is the digits-classifier pipeline."""
    return write_package(tmp_path / "digits-app", "digits-app", bare=True,
                         dependencies={"digits-classifier": ">=1,<2"}, pipeline=["digits-classifier"])


def test_nested_pipeline_fuses_like_its_step(own_home: Path, tmp_path: Path) -> None:
    install(own_home, [_outer_pipeline(tmp_path)])
    pixels, _ = digits.held_out()
    outer = nnpm.load("digits-app")
    assert [s.name for s in outer.signature.outputs] == ["label", "probabilities"]
    got, want = outer(pixels), nnpm.load("digits-classifier")(pixels)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert len(fused_files(own_home)) == 2  # one per pipeline
    slow = stepwise("digits-app")(pixels)
    for name in want:
        np.testing.assert_array_equal(slow[name], want[name], err_msg=name)


def test_nested_pipeline_keeps_the_inner_labels(own_home: Path, tmp_path: Path) -> None:
    install(own_home, [_outer_pipeline(tmp_path)])
    assert nnpm.load("digits-classifier").labels("probabilities") == [str(i) for i in range(10)]
    assert nnpm.load("digits-app").labels("probabilities") == [str(i) for i in range(10)]


def test_tampered_inner_step_of_a_nested_pipeline_is_detected(own_home: Path, tmp_path: Path) -> None:
    install(own_home, [_outer_pipeline(tmp_path)])
    nnpm.load("digits-app")  # caches the fused graph
    flip_byte(step_file("digits-preprocess"))  # a step of the step
    with pytest.raises(IntegrityError) as exc:
        nnpm.load("digits-app")
    assert "digits-preprocess" in str(exc.value)


def test_damaged_cached_graph_is_not_run_silently(own_home: Path) -> None:
    pixels, _ = digits.held_out()
    want = nnpm.load("digits-classifier")(pixels)
    (cached,) = fused_files(own_home)
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])  # e.g. a disk filled up
    try:
        got = nnpm.load("digits-classifier")(pixels)
    except NnpmError:
        return  # a clear nnpm error is acceptable
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)

"""Installed packages load by name, import from nnpm.models, refuse tampered files, and run from the CLI."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from cli import run_nnpm

import nnpm
import nnpm.models
from examples import digits
from nnpm.errors import IntegrityError, NotInstalledError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["digits", "digits-preprocess"]


@pytest.fixture
def home(examples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh NNPM_HOME whose default environment holds digits and digits-preprocess."""
    from nnpm.config import load_settings
    from nnpm.install.transaction import Installer

    home = tmp_path / "home"
    monkeypatch.setenv("NNPM_HOME", str(home))
    monkeypatch.delenv("NNPM_ENV", raising=False)
    Installer(load_settings(), progress=False).install([str(examples_dir / p) for p in PACKAGES])
    nnpm.models._clear_cache()
    yield home
    nnpm.models._clear_cache()


def installed_path(name: str) -> Path:
    from nnpm.install.env import open_env

    return open_env().get(name).path


def test_import_from_nnpm_models_loads_the_installed_package(home: Path, examples_dir: Path) -> None:
    from nnpm.models import digits_preprocess

    assert isinstance(digits_preprocess, nnpm.Model) and digits_preprocess.name == "digits-preprocess"
    assert digits_preprocess.path == installed_path("digits-preprocess")
    pixels, _ = digits.held_out()
    expected = nnpm.load(examples_dir / "digits-preprocess")(pixels)
    assert np.array_equal(digits_preprocess(pixels), expected)


def test_import_is_cached_per_env_and_name(home: Path) -> None:
    from nnpm.models import digits as first
    from nnpm.models import digits as second

    assert first is second


def test_import_of_an_uninstalled_name_is_an_import_error_saying_how_to_install(home: Path) -> None:
    with pytest.raises(ImportError, match="run 'nnpm install resnet18'") as info:
        from nnpm.models import resnet18  # noqa: F401
    assert type(info.value) is ImportError


def test_dunders_do_not_load_and_dir_lists_installed(home: Path) -> None:
    assert not hasattr(nnpm.models, "__wrapped__")
    assert not hasattr(nnpm.models, "_private")
    assert {"digits", "digits_preprocess"} <= set(dir(nnpm.models))
    assert nnpm.models._cache == {}


def test_load_by_name_version_and_specifier(home: Path) -> None:
    assert nnpm.load("digits").version == nnpm.load("digits==1.0.0").version
    assert nnpm.load("Digits>=1,<2").name == "digits"
    with pytest.raises(NotInstalledError, match="digits==2.0 is not installed"):
        nnpm.load("digits==2.0")
    with pytest.raises(NotInstalledError, match="but 'digits>=2' was asked for"):
        nnpm.load("digits>=2")
    with pytest.raises(NotInstalledError) as info:
        nnpm.load("resnet18")
    assert info.value.one_line() == ("resnet18 is not installed in environment 'default' "
                                     "(run 'nnpm install resnet18')")


def test_other_env_is_empty(home: Path) -> None:
    with pytest.raises(NotInstalledError, match="environment 'other'"):
        nnpm.load("digits", env="other")


def _tamper(path: Path) -> None:
    """Flip one byte in the middle, keeping the size."""
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_installed_file_is_detected_at_load(home: Path) -> None:
    model = installed_path("digits") / "model.onnx"
    size = model.stat().st_size
    _tamper(model)
    assert model.stat().st_size == size
    with pytest.raises(IntegrityError, match="model.onnx was changed after install"):
        nnpm.load("digits")
    with pytest.raises(IntegrityError):
        from nnpm.models import digits as _  # noqa: F401


def test_tampered_labels_are_detected_too(home: Path) -> None:
    _tamper(installed_path("digits") / "labels.txt")
    with pytest.raises(IntegrityError, match="labels.txt"):
        nnpm.load("digits")


@pytest.fixture
def features(home: Path, tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Five held-out digits, preprocessed, saved as .npy; and their true labels."""
    pixels, truth = digits.held_out()
    path = tmp_path / "features.npy"
    np.save(path, nnpm.load("digits-preprocess")(pixels[:5]))
    return path, truth[:5]


def test_cli_run_prints_outputs_and_predicted_labels(home: Path, features: tuple[Path, np.ndarray]) -> None:
    path, truth = features
    result = run_nnpm(home, "run", "digits", "--input", f"features={path}", "--top", "2", cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "label  shape [5]  int64" in lines
    assert "probabilities  shape [5, 10]  float32" in lines
    predicted = nnpm.load("digits")(np.load(path))["label"]
    assert f"  {np.array2string(predicted)}" in lines
    rows = [line for line in lines if re.match(r"^  \[\d+\] ", line)]
    assert [row.split()[1] for row in rows] == [str(v) for v in predicted] and (predicted == truth).sum() >= 4
    assert all(len(row.split(", ")) == 2 for row in rows)


def test_cli_run_accepts_a_bare_file_for_a_one_input_model(home: Path, features: tuple[Path, np.ndarray]) -> None:
    result = run_nnpm(home, "run", "digits", "-i", str(features[0]), cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert "probabilities  shape [5, 10]  float32" in result.stdout


def test_cli_run_output_writes_npy_files(home: Path, features: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = features
    result = run_nnpm(home, "run", "digits", "--input", f"features={path}", "--output", str(tmp_path / "out"),
                      cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    expected = nnpm.load("digits")(np.load(path))
    for name in ("label", "probabilities"):
        saved = np.load(tmp_path / "out" / f"{name}.npy")
        assert saved.dtype == expected[name].dtype and np.array_equal(saved, expected[name])
        assert f"wrote {tmp_path / 'out' / name}.npy" in result.stdout


def test_cli_run_bad_input_is_one_line_error(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 64)))
    result = run_nnpm(home, "run", "digits", "--input", f"features={bad}", cwd=ROOT, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: input 'features': expected float32 [N, 64], got float64 [2, 64] (float64 does not cast safely "
        "to float32) (cast it yourself, e.g. x.astype(np.float32), if the loss is acceptable)"]
    unknown = run_nnpm(home, "run", "digits", "--input", f"pixels={bad}", cwd=ROOT, check=False)
    assert unknown.returncode == 1 and "no input 'pixels'" in unknown.stderr
    missing = run_nnpm(home, "run", "resnet18", "--input", str(bad), cwd=ROOT, check=False)
    assert missing.returncode == 1 and "nnpm install resnet18" in missing.stderr

"""The registry checks a pipeline's wiring at publish, against the newest matching steps it holds
(in process, tests/inprocess.py, on both backends); `nnpm pack` checks it against installed steps."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli import run_nnpm
from packages import write_package


def _pipeline(tmp_path: Path, name: str, steps: list[str], connect: dict[str, str] | None = None) -> Path:
    """A pipeline package 1.0.0 of `steps` (each >=1,<2), wired by `connect`."""
    return write_package(tmp_path / name, name, bare=True, dependencies={s: ">=1,<2" for s in steps},
                         pipeline=steps, connect=connect)


@pytest.fixture(scope="module")
def with_steps(shared_api, examples_dir):
    """(registry, token): one app per module holding digits-preprocess and digits, the steps of digits-classifier."""
    token = shared_api.add_user("alice")
    for step in ("digits-preprocess", "digits"):
        assert shared_api.publish(examples_dir / step, token).status_code == 201
    return shared_api, token


def test_pipeline_with_good_wiring_is_published(with_steps, examples_dir):
    api, token = with_steps
    resp = api.publish(examples_dir / "digits-classifier", token)
    assert resp.status_code == 201, resp.text


def test_pipeline_before_its_steps_is_422_naming_the_step(api, examples_dir):
    token = api.add_user("alice")
    resp = api.publish(examples_dir / "digits-classifier", token)
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"] == "invalid_pipeline"
    assert "digits-preprocess" in body["detail"] and "no published version" in body["detail"]
    assert api.client().get("/api/v1/packages/digits-classifier").status_code == 404


def test_pipeline_dtype_mismatch_is_422_naming_both_ports(with_steps, tmp_path):
    api, token = with_steps
    # digits.label is int64; digits-preprocess.pixels wants int64 [N, 8, 8]: rank differs.
    bad = _pipeline(tmp_path, "backwards", ["digits", "digits-preprocess"],
                    {"digits-preprocess.pixels": "digits.label", "digits.features": "digits-preprocess.features"})
    resp = api.publish(bad, token)
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert "cycle" in detail or ("digits.label" in detail and "digits-preprocess.pixels" in detail)
    bad2 = _pipeline(tmp_path, "wrong-dtype", ["digits", "digits-preprocess"],
                     {"digits-preprocess.pixels": "digits.probabilities"})
    resp = api.publish(bad2, token)
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert "digits.probabilities" in detail and "digits-preprocess.pixels" in detail and "float32" in detail


def test_pack_refuses_bad_wiring_against_installed_steps_and_writes_nothing(examples_dir, tmp_path):
    home = tmp_path / "home"
    run_nnpm(home, "install", "-q", str(examples_dir / "digits"), str(examples_dir / "digits-preprocess"))
    bad = _pipeline(tmp_path, "unknown-port", ["digits-preprocess", "digits"],
                    {"digits.features": "digits-preprocess.nope"})
    proc = run_nnpm(home, "pack", str(bad), check=False)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "digits-preprocess.nope" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (bad / "dist").exists()
    good = tmp_path / "good"
    shutil.copytree(examples_dir / "digits-classifier", good)
    proc = run_nnpm(home, "pack", str(good), check=False)
    assert proc.returncode == 0 and "checked against the installed steps" in proc.stdout

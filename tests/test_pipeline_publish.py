"""The registry checks a pipeline's wiring at publish, against the newest matching steps it holds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def _pipeline(tmp_path: Path, name: str, steps: list[str], connect: dict[str, str] | None = None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    lines = ["[package]", f'name = "{name}"', 'version = "1.0.0"', "", "[dependencies]"]
    lines += [f'{s} = ">=1,<2"' for s in steps]
    lines += ["", "[pipeline]", "steps = [" + ", ".join(f'"{s}"' for s in steps) + "]"]
    if connect:
        lines += ["", "[pipeline.connect]"] + [f'"{k}" = "{v}"' for k, v in connect.items()]
    (folder / "nnpm.toml").write_text("\n".join(lines) + "\n")
    return folder


def test_pipeline_with_good_wiring_is_published(registry, examples_dir, tmp_path):
    token = registry.add_user("alice")
    for step in ("digits-preprocess", "digits"):
        assert registry.publish(examples_dir / step, token).status_code == 201
    resp = registry.publish(examples_dir / "digits-classifier", token)
    assert resp.status_code == 201, resp.text


def test_pipeline_before_its_steps_is_422_naming_the_step(registry, examples_dir):
    token = registry.add_user("alice")
    resp = registry.publish(examples_dir / "digits-classifier", token)
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"] == "invalid_pipeline"
    assert "digits-preprocess" in body["detail"] and "no published version" in body["detail"]
    assert registry.client().get("/api/v1/packages/digits-classifier").status_code == 404


def test_pipeline_dtype_mismatch_is_422_naming_both_ports(registry, examples_dir, tmp_path):
    token = registry.add_user("alice")
    for step in ("digits-preprocess", "digits"):
        registry.publish(examples_dir / step, token)
    # digits.label is int64; digits-preprocess.pixels wants int64 [N, 8, 8]: rank differs.
    bad = _pipeline(tmp_path, "backwards", ["digits", "digits-preprocess"],
                    {"digits-preprocess.pixels": "digits.label", "digits.features": "digits-preprocess.features"})
    resp = registry.publish(bad, token)
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert "cycle" in detail or ("digits.label" in detail and "digits-preprocess.pixels" in detail)
    bad2 = _pipeline(tmp_path, "wrong-dtype", ["digits", "digits-preprocess"],
                     {"digits-preprocess.pixels": "digits.probabilities"})
    resp = registry.publish(bad2, token)
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert "digits.probabilities" in detail and "digits-preprocess.pixels" in detail and "float32" in detail


def test_pack_refuses_bad_wiring_against_installed_steps_and_writes_nothing(examples_dir, tmp_path):
    home = tmp_path / "home"
    env = {"NNPM_HOME": str(home), "PATH": "/usr/bin:/bin"}
    nnpm = [sys.executable, "-m", "nnpm"]
    subprocess.run([*nnpm, "install", "-q", str(examples_dir / "digits"), str(examples_dir / "digits-preprocess")],
                   env=env, check=True, capture_output=True)
    bad = _pipeline(tmp_path, "unknown-port", ["digits-preprocess", "digits"], {"digits.features": "digits-preprocess.nope"})
    proc = subprocess.run([*nnpm, "pack", str(bad)], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "digits-preprocess.nope" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (bad / "dist").exists()
    good = tmp_path / "good"
    shutil.copytree(examples_dir / "digits-classifier", good)
    proc = subprocess.run([*nnpm, "pack", str(good)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and "checked against the installed steps" in proc.stdout

"""Pipelines whose steps keep their weights as external data fuse on installed packages (issue 14, item 1).

Installed files are hard links into the store, which onnx.load refuses for external data;
nnpm checks each location itself and links the verified files beside the fused graph.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from cli import run_nnpm
from onnx import TensorProto, helper, numpy_helper

from nnpm import errors as E
from nnpm.install.env import open_env
from nnpm.runtime.load import load


def _nnpm(home: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    """The one CLI runner (tests/cli.py), without its exit-0 check: these tests look at failures too."""
    return run_nnpm(home, *args, check=False, **kw)


D = 160   # W is D×D float32 = 100 KiB: over the 64 KiB at which pack gives a tensor its own file
W = np.linspace(-2, 2, D * D, dtype=np.float32).reshape(D, D)
B = np.linspace(0, 1, D, dtype=np.float32)


def _step(folder: Path, name: str, op: str, weight: np.ndarray, *, external: bool, location: str = "weights.bin",
          io: tuple[str, str] = ("x", "y")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    graph = helper.make_graph([helper.make_node(op, [io[0], "W"], [io[1]])], name,
                              [helper.make_tensor_value_info(io[0], TensorProto.FLOAT, ["N", D])],
                              [helper.make_tensor_value_info(io[1], TensorProto.FLOAT, ["N", D])],
                              [numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if external:
        (folder / location).parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, folder / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                  location=location, size_threshold=0)
    else:
        onnx.save(model, folder / "model.onnx")
    (folder / "nnpm.toml").write_text(f'[package]\nname = "{name}"\nversion = "1.0.0"\n\n[model]\nfile = "model.onnx"\n')
    return folder


def _pipeline(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nnpm.toml").write_text('[package]\nname = "ext-pipe"\nversion = "1.0.0"\n\n'
                                      '[dependencies]\next-matmul = "==1.0.0"\next-add = "==1.0.0"\n\n'
                                      '[pipeline]\nsteps = ["ext-matmul", "ext-add"]\n')
    return folder


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("NNPM_HOME", str(home))
    monkeypatch.delenv("NNPM_ENV", raising=False)
    steps = [_step(tmp_path / "a", "ext-matmul", "MatMul", W, external=True, location="data/weights.bin"),
             _step(tmp_path / "b", "ext-add", "Add", B, external=True, io=("y", "z")), _pipeline(tmp_path / "p")]
    proc = _nnpm(home, "install", "-q", *map(str, steps))
    assert proc.returncode == 0, proc.stderr
    return home


def test_fused_equals_stepwise_and_numpy(home: Path) -> None:
    x = np.random.default_rng(0).standard_normal((3, D)).astype(np.float32)
    fused, stepwise = load("ext-pipe"), load("ext-pipe", fuse=False)
    assert np.array_equal(fused(x=x), stepwise(x=x))
    np.testing.assert_allclose(fused(x=x), x @ W + B, rtol=1e-5, atol=1e-5)


def test_the_cached_graph_links_the_verified_files_instead_of_copying(home: Path) -> None:
    load("ext-pipe")
    (folder,) = (home / "envs" / "default" / "cache" / "fused").iterdir()
    (installed,) = (open_env().get("ext-matmul").path / "weights").iterdir()   # W, named by its sha256
    linked = folder / "ext-matmul" / "weights" / installed.name
    assert os.path.samefile(linked, installed)
    again = load("ext-pipe")   # cached: the same folder
    assert len(list((home / "envs" / "default" / "cache" / "fused").iterdir())) == 1 and again is not None


def test_compose_writes_a_graph_with_its_own_copy_of_the_data(home: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    out = tmp_path / "out" / "fused.onnx"
    out.parent.mkdir()
    proc = _nnpm(home, "compose", "ext-pipe", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    (installed,) = (open_env().get("ext-matmul").path / "weights").iterdir()
    data = out.parent / "fused.data" / "ext-matmul" / "weights" / installed.name
    assert data.is_file() and data.stat().st_nlink == 1      # a copy: editing it cannot touch the store
    x = np.ones((2, D), np.float32)
    got = ort.InferenceSession(str(out)).run(None, {"x": x})[0]
    assert np.array_equal(got, load("ext-pipe")(x=x))


def test_run_on_the_pipeline_works_from_the_cli(home: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((1, D), np.float32))
    proc = _nnpm(home, "run", "ext-pipe", "--input", str(tmp_path / "x.npy"))
    assert proc.returncode == 0, proc.stderr
    assert f"z  shape [1, {D}]  float32" in proc.stdout


def test_a_step_whose_external_data_escapes_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry that lied (a graph pointing outside its package) is caught before onnx or onnxruntime read it."""
    import json

    from nnpm.fsutil import atomic_write

    home = tmp_path / "home2"
    monkeypatch.setenv("NNPM_HOME", str(home))
    steps = [_step(tmp_path / "a", "ext-matmul", "MatMul", W, external=True),
             _step(tmp_path / "b", "ext-add", "Add", B, external=False, io=("y", "z")), _pipeline(tmp_path / "p")]
    assert _nnpm(home, "install", "-q", *map(str, steps)).returncode == 0
    pkg = open_env().get("ext-matmul")
    model = onnx.load(str(pkg.path / "model.onnx"), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../../../../secret.bin"
    raw = model.SerializeToString()
    # What a hostile registry would have served: a manifest and files that agree with each other.
    model_file = pkg.path / "model.onnx"
    os.unlink(model_file)
    model_file.write_bytes(raw)
    manifest_path = pkg.path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    import hashlib

    for f in manifest["files"]:
        if f["path"] == "model.onnx":
            f["size"], f["sha256"] = len(raw), hashlib.sha256(raw).hexdigest()
    graph = manifest["graphs"]["reference"]["model"]
    graph["bytes"] = len(raw) + sum(f["size"] for f in manifest["files"] if f["path"] in graph["data"])
    from nnpm.format.manifest import Manifest

    canonical = Manifest.from_dict(manifest).to_json()
    atomic_write(manifest_path, canonical)
    lock_path = home / "envs" / "default" / "nnpm.lock"
    lock = json.loads(lock_path.read_text())
    lock["packages"]["ext-matmul"]["manifest_sha256"] = hashlib.sha256(canonical).hexdigest()
    (pkg.path.parent / "stat.json").unlink()
    atomic_write(lock_path, json.dumps(lock).encode())
    with pytest.raises(E.PackageSafetyError, match="points outside the package folder"):
        load("ext-pipe")

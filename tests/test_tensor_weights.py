"""Tensor-addressed weights (nnpm/author/split.py): each large tensor a file named by its sha256.

A fine-tune that changes two tensors publishes and installs only those; a split model runs
bit-identical to its source; packing is reproducible; a file named by a digest it does not
have is refused at pack, publish and install; a split model still fuses into a pipeline.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from cli import child_env, one_error_line, run_nnpm
from onnx import numpy_helper
from packages import write_package
from registry_proc import Registry, close_all, start_registry

import nnpm
from nnpm.author.pack import build, pack
from nnpm.client.api import RegistryClient
from nnpm.format.archive import write_archive
from nnpm.format.manifest import FileEntry

pytestmark = pytest.mark.registry_backends("sqlite-dir")

_PUT = re.compile(r'"PUT /api/v1/blobs/sha256(?::|%3A)([0-9a-f]{64})')
_GET = re.compile(r'"GET /api/v1/blobs/sha256(?::|%3A)([0-9a-f]{64})')
_TENSOR_FILE = re.compile(r"^weights/sha256-[0-9a-f]{64}\Z")


def reference_only(src: Path, dest: Path, version: str = "1.0.0") -> Path:
    """resnet18 without its variants and self-test: one graph, its labels and README."""
    dest.mkdir(parents=True)
    for name in ("model.onnx", "labels.txt", "README.md"):
        shutil.copy(src / name, dest / name)
    toml = (src / "nnpm.toml").read_text().split("\n[tests]")[0]
    (dest / "nnpm.toml").write_text(toml.replace('version = "1.0.0"', f'version = "{version}"'))
    return dest


def fine_tune(folder: Path, version: str) -> Path:
    """The same package with new fc.weight and fc.bias: what re-training a classification head changes."""
    out = reference_only(folder, folder.parent / f"ft-{version}", version)
    model = onnx.load(str(out / "model.onnx"))
    rng = np.random.default_rng(7)
    for init in model.graph.initializer:
        if init.name in ("fc.weight", "fc.bias"):
            init.CopyFrom(numpy_helper.from_array(rng.standard_normal(tuple(init.dims)).astype(np.float32), init.name))
    onnx.save(model, str(out / "model.onnx"))
    return out


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory, registry_backend) -> Registry:
    started: list[Registry] = []
    try:
        reg = start_registry(tmp_path_factory, started, backend=registry_backend)
        reg.token = reg.add_user("alice")
        yield reg
    finally:
        close_all(started)


def sizes_of(manifest_json: dict) -> dict[str, int]:
    return {f["sha256"]: f["size"] for f in manifest_json["files"]}


def test_a_fine_tune_publishes_and_installs_only_the_tensors_that_changed(reg, examples_dir: Path,
                                                                           tmp_path: Path) -> None:
    v1 = reference_only(examples_dir / "resnet18", tmp_path / "v1")
    v2 = fine_tune(v1, "1.1.0")
    home = tmp_path / "home"
    env = {"NNPM_TOKEN": reg.token}
    out1 = run_nnpm(home, "publish", "--no-progress", v1, registry=reg.url, env=env).stdout
    log_mark = len(reg.log_text())
    out2 = run_nnpm(home, "publish", "--no-progress", v2, registry=reg.url, env=env).stdout
    with RegistryClient(reg.url) as client:
        m1 = client.release("resnet18", "1.0.0").manifest
        m2 = client.release("resnet18", "1.1.0").manifest
    first = sum(f.size for f in m1.files)
    second_sizes = {f.sha256: f.size for f in m2.files}
    put = set(_PUT.findall(reg.log_text()[log_mark:]))
    uploaded = sum(second_sizes[d] for d in put)
    assert "published resnet18 1.0.0" in out1 and "published resnet18 1.1.0" in out2
    assert re.search(r"\(2 files, .* uploaded, \d+ skipped: .* the registry had\)", out2), out2
    assert uploaded <= 0.05 * first, (uploaded, first)              # fc.weight and the small graph file
    changed = {f.path for f in m2.files} - {f.path for f in m1.files}
    assert len(changed) == 1 and all(_TENSOR_FILE.match(p) for p in changed)   # fc.weight's file: fc.bias is small

    run_nnpm(home, "install", "-q", "resnet18==1.0.0", registry=reg.url)
    log_mark = len(reg.log_text())
    out = run_nnpm(home, "install", "-q", "--env", "tuned", "resnet18==1.1.0", registry=reg.url).stdout
    fetched = sum(second_sizes[d] for d in set(_GET.findall(reg.log_text()[log_mark:])))
    assert fetched <= 0.05 * first, (fetched, first)
    assert re.search(r"2 blobs fetched \(.*\), \d+ already in the store \(.* not fetched\)", out), out
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    code = ("import nnpm, numpy as np, sys; x = np.load(sys.argv[1]); "
            "a = nnpm.load('resnet18', env='tuned')(x); b = nnpm.load(sys.argv[2])(x); "
            "print(all(np.array_equal(a[k], b[k]) for k in a) if isinstance(a, dict) else np.array_equal(a, b))")
    np.save(tmp_path / "x.npy", x)
    assert python(home, code, tmp_path / "x.npy", v2) == "True"     # the installed fine-tune runs as its folder


def python(home: Path, code: str, *args: object) -> str:
    """stdout of `python -c CODE ARGS` with NNPM_HOME=home (a process of its own: its own environment)."""
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env={**child_env(), "NNPM_HOME": str(home)}, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _outputs(model, x) -> list:
    out = model(x)
    return [out[k] for k in sorted(out)] if isinstance(out, dict) else [out]


def test_a_split_model_runs_bit_identical_to_its_source(examples_dir: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(examples_dir / "resnet18", tmp_path / "resnet18")
    _, archive, _ = pack(folder)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert sum(bool(_TENSOR_FILE.match(n)) for n in names) > 20 and "model.onnx" in names
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    source = _outputs(nnpm.load(folder), x)
    split = _outputs(nnpm.load(archive), x)
    assert all(np.array_equal(a, b) for a, b in zip(source, split, strict=True))


def test_one_big_external_data_file_is_re_split_and_runs_the_same(tmp_path: Path) -> None:
    """torch's exporter writes every tensor into one data file at offsets; pack re-splits it."""
    rng = np.random.default_rng(2)
    w1, w2 = (rng.standard_normal((256, 256)).astype(np.float32) for _ in range(2))
    small = rng.standard_normal((256,)).astype(np.float32)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["X", "w1"], ["h"]), onnx.helper.make_node("Add", ["h", "b"], ["h2"]),
         onnx.helper.make_node("MatMul", ["h2", "w2"], ["Y"])], "g",
        [onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, ["N", 256])],
        [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, ["N", 256])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(small, "b"), numpy_helper.from_array(w2, "w2")])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder = write_package(tmp_path / "exported", "exported", "1.0.0", model=model)
    onnx.save(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx.data", size_threshold=0)
    assert (folder / "model.onnx.data").stat().st_size > 2 * w1.nbytes
    _, archive, _ = pack(folder)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "model.onnx.data" not in names
    assert sorted(n for n in names if _TENSOR_FILE.match(n)) == sorted(
        f"weights/sha256-{hashlib.sha256(w.tobytes()).hexdigest()}" for w in (w1, w2))   # b stays in the graph
    x = rng.standard_normal((3, 256)).astype(np.float32)
    assert np.array_equal(_outputs(nnpm.load(archive), x)[0], _outputs(nnpm.load(folder), x)[0])
    _, kept, _ = pack(folder, tmp_path / "kept.nnpm", split=False)
    with tarfile.open(kept) as tar:
        assert "model.onnx.data" in tar.getnames()             # --no-split-tensors: the author's layout


def test_packing_is_reproducible_and_the_layout_does_not_change_the_names(tmp_path: Path) -> None:
    weights = np.arange(40_000, dtype=np.float32)
    inline = write_package(tmp_path / "inline", "same", "1.0.0", weights)
    external = write_package(tmp_path / "external", "same", "1.0.0", weights, external_data=True)
    _, a, _ = pack(inline, tmp_path / "a.nnpm")
    _, b, _ = pack(inline, tmp_path / "b.nnpm")
    _, c, _ = pack(external, tmp_path / "c.nnpm")
    assert a.read_bytes() == b.read_bytes() == c.read_bytes()


def _lying_folder(tmp_path: Path) -> Path:
    """A package whose graph keeps a tensor in weights/sha256-<digest of other bytes>."""
    weights = np.arange(40_000, dtype=np.float32)
    folder = write_package(tmp_path / "liar", "liar", "1.0.0", weights)
    model = onnx.load(str(folder / "model.onnx"))
    wrong = hashlib.sha256(b"something else").hexdigest()
    (folder / "weights").mkdir()
    onnx.save(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location=f"weights/sha256-{wrong}", size_threshold=0)
    return folder


def test_a_digest_named_file_whose_bytes_differ_is_refused_at_pack(tmp_path: Path) -> None:
    folder = _lying_folder(tmp_path)
    home = tmp_path / "home"
    line = one_error_line(run_nnpm(home, "pack", folder, check=False))
    assert "does not hold the bytes its name says" in line
    line = one_error_line(run_nnpm(home, "pack", "--no-split-tensors", folder, check=False))
    assert "named by a digest its bytes do not have" in line
    assert not (folder / "dist").exists()


def _lying_manifest(tmp_path: Path):
    """A valid small package's manifest, plus a file named by a digest that is not its own."""
    folder = write_package(tmp_path / "honest", "honest", "1.0.0")
    built = build(folder)
    extra = tmp_path / "extra.bin"
    extra.write_bytes(b"abc")
    entry = FileEntry(f"weights/sha256-{hashlib.sha256(b'not abc').hexdigest()}", 3, hashlib.sha256(b"abc").hexdigest())
    return built.manifest.with_files([*built.manifest.files, entry]), {**built.paths, entry.path: extra}


def test_a_digest_named_file_whose_bytes_differ_is_refused_at_publish(reg, tmp_path: Path) -> None:
    manifest, paths = _lying_manifest(tmp_path)
    with reg.client(reg.token) as c:
        for f in manifest.files:
            data = paths[f.path].read_bytes()
            assert c.put(f"/api/v1/blobs/sha256:{f.sha256}", content=data).status_code in (200, 201)
        r = c.put(f"/api/v1/packages/{manifest.name}/{manifest.version}", content=manifest.to_json(),
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_manifest", r.text
    assert "named by a digest its bytes do not have" in r.json()["detail"]
    with reg.client() as c:
        assert c.get(f"/api/v1/packages/{manifest.name}").status_code == 404


def test_a_digest_named_file_whose_bytes_differ_is_refused_at_install(tmp_path: Path) -> None:
    manifest, paths = _lying_manifest(tmp_path)
    archive = tmp_path / "liar-1.0.0.nnpm"
    write_archive(manifest, paths, archive)
    home = tmp_path / "home"
    line = one_error_line(run_nnpm(home, "install", archive, check=False))
    assert "named by a digest its bytes do not have" in line
    assert not (home / "envs" / "default" / "pkgs").exists() or not any((home / "envs" / "default" / "pkgs").iterdir())


def test_a_split_model_fuses_into_a_pipeline(examples_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    steps = [examples_dir / n for n in ("imagenet-preprocess", "resnet18", "topk", "imagenet-classifier")]
    run_nnpm(home, "install", "-q", *steps)
    lock = json.loads((home / "envs" / "default" / "nnpm.lock").read_text())
    assert any(_TENSOR_FILE.match(f["path"]) for f in lock["packages"]["resnet18"]["files"])
    code = ("import nnpm, numpy as np; x = np.random.default_rng(3).integers(0, 255, (224, 224, 3)).astype(np.uint8); "
            "f = nnpm.load('imagenet-classifier'); s = nnpm.load('imagenet-classifier', fuse=False); "
            "a, b = f(x), s(x); print(sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a))")
    assert python(home, code) == "True"

"""`nnpm install` and friends against a real registry holding the example packages."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from importlib import metadata
from pathlib import Path

import pytest
from cli import one_error_line, run_nnpm
from hostile_server import assert_store_clean
from packages import write_package
from registry_proc import Registry, close_all, free_port, start_registry

from nnpm.author.publish import publish
from nnpm.client.api import RegistryClient
from nnpm.format.manifest import Manifest
from nnpm.install.env import LOCK_NAME
from nnpm.install.store import Store

# The subject is the client: the registry's answers are the same on both backends, and how the
# postgres-s3 backend gives them (S3 streaming, Range and If-Range) is checked in test_registry_api_blobs.py,
# test_registry_api_publish.py and test_s3_registry.py.
pytestmark = pytest.mark.registry_backends("sqlite-dir")

EXAMPLES = ["resnet18", "digits", "imagenet-preprocess", "topk", "imagenet-classifier"]
_BLOB_GET = re.compile(r'"GET /api/v1/blobs/sha256(?::|%3A)([0-9a-f]{64})')


@pytest.fixture(scope="module")
def published(examples_dir: Path, tmp_path_factory: pytest.TempPathFactory, registry_backend) -> Registry:
    """One registry for the module: the examples, digits 2.0.0 and a package needing onnxruntime>=99."""
    base = tmp_path_factory.mktemp("install-registry")
    started: list[Registry] = []
    try:
        reg = start_registry(tmp_path_factory, started, backend=registry_backend)
        token = reg.add_user("alice")
        digits2 = base / "digits-2"
        shutil.copytree(examples_dir / "digits", digits2)
        toml = digits2 / "nnpm.toml"
        toml.write_text(toml.read_text().replace('version = "1.0.0"', 'version = "2.0.0"'))
        future = write_package(base / "future-runtime", "future-runtime", "1.0.0",
                                     extra_toml='\n[requires]\nonnxruntime = ">=99"\n')
        with RegistryClient(reg.url, token=token) as client:
            for folder in [examples_dir / n for n in EXAMPLES] + [digits2, future]:
                publish(folder, client, progress=False)
        yield reg
    finally:
        close_all(started)


def lock_of(home: Path, env: str = "default") -> dict:
    return json.loads((home / "envs" / env / LOCK_NAME).read_bytes())


def listed(home: Path, env: str = "default") -> dict[str, str]:
    data = json.loads(run_nnpm(home, "list", "--json", "--env", env).stdout)
    assert data["env"] == env
    return {p["name"]: p["version"] for p in data["packages"]}


def blob_gets(reg: Registry) -> list[str]:
    """Digests of every blob GET the server logged (uvicorn's access log), in order."""
    return _BLOB_GET.findall(reg.log_path.read_text(errors="replace"))


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_install_resnet18_then_list_shows_it(published, tmp_path, examples_dir):
    home = tmp_path / "home"
    proc = run_nnpm(home, "install", "-q", "resnet18", registry=published.url)
    assert "installed resnet18 1.0.0" in proc.stdout
    table = run_nnpm(home, "list").stdout
    assert re.search(r"resnet18\s+1\.0\.0", table), table
    data = json.loads(run_nnpm(home, "list", "--json").stdout)
    assert data["packages"] == [{"name": "resnet18", "version": "1.0.0", "variant": "reference",
                                 "source": published.url, "requested": True, "size": data["packages"][0]["size"]}]
    assert data["packages"][0]["size"] > 46_000_000
    folder = home / "envs" / "default" / "pkgs" / "resnet18-1.0.0" / "files"
    for name in ("labels.txt", "README.md"):
        assert (folder / name).read_bytes() == (examples_dir / "resnet18" / name).read_bytes()
    # Published tensor-addressed: the graph keeps its small tensors, each large one is a file named by its sha256.
    weights = sorted((folder / "weights").iterdir())
    assert weights and all(hashlib.sha256(w.read_bytes()).hexdigest() == w.name.removeprefix("sha256-") for w in weights)
    assert (folder / "model.onnx").stat().st_size < 1_000_000
    # The reference's files (graph, its weights, labels, README, the self-test's two) and the manifest: no int8 graph.
    assert assert_store_clean(home / "store") == 6 + len(weights)


def test_info_shows_signature_params_and_files(published, tmp_path):
    home = tmp_path / "home"
    text = run_nnpm(home, "info", "resnet18", registry=published.url).stdout
    for piece in ("resnet18 1.0.0", "input", "float32", "[N, 3, 224, 224]", "logits", "[N, 1000]",
                  "params: 11,699,112", "model.onnx", "labels.txt", "installed: no", "versions: 1.0.0"):
        assert piece in text, (piece, text)
    data = json.loads(run_nnpm(home, "info", "resnet18", "--json", registry=published.url).stdout)
    manifest = data["manifest"]
    assert manifest["params"] == 11_699_112
    assert [i["name"] for i in manifest["signature"]["inputs"]] == ["input"]
    paths = {f["path"] for f in manifest["files"]}
    assert {p for p in paths if not p.startswith("weights/")} == {
        "model.onnx", "labels.txt", "README.md", "model_int8.onnx", "model_int8-static.onnx", "tests/inputs.npz",
        "tests/outputs.npz"}
    assert all(re.fullmatch(r"weights/sha256-[0-9a-f]{64}", p) for p in paths if p.startswith("weights/"))


@pytest.mark.parametrize("spec, version", [("digits>=1,<2", "1.0.0"), ("digits==1.0.0", "1.0.0"),
                                           ("digits", "2.0.0")])
def test_install_with_a_specifier(published, tmp_path, spec, version):
    home = tmp_path / "home"
    proc = run_nnpm(home, "install", "-q", spec, registry=published.url)
    assert f"installed digits {version}" in proc.stdout
    assert listed(home) == {"digits": version}


def test_pipeline_pulls_its_steps_and_uninstall_takes_only_unneeded_deps(published, tmp_path):
    home = tmp_path / "home"
    run_nnpm(home, "install", "-q", "imagenet-classifier", "digits==1.0.0", registry=published.url)
    assert listed(home) == {"imagenet-classifier": "1.0.0", "imagenet-preprocess": "1.0.0",
                            "resnet18": "1.0.0", "topk": "1.0.0", "digits": "1.0.0"}
    requested = {n: p["requested"] for n, p in lock_of(home)["packages"].items()}
    assert requested == {"imagenet-classifier": True, "digits": True, "imagenet-preprocess": False,
                         "resnet18": False, "topk": False}

    line = one_error_line(run_nnpm(home, "uninstall", "resnet18", check=False))
    assert "imagenet-classifier" in line
    assert "resnet18" in listed(home)

    proc = run_nnpm(home, "uninstall", "imagenet-classifier")
    for name in ("imagenet-classifier", "imagenet-preprocess", "resnet18", "topk"):
        assert f"removed {name} 1.0.0" in proc.stdout
    assert listed(home) == {"digits": "1.0.0"}
    assert sorted(p.name for p in (home / "envs" / "default" / "pkgs").iterdir()) == ["digits-1.0.0"]


def test_uninstall_keeps_a_dependency_the_user_asked_for(published, tmp_path):
    home = tmp_path / "home"
    run_nnpm(home, "install", "-q", "resnet18", "imagenet-classifier", registry=published.url)
    run_nnpm(home, "uninstall", "imagenet-classifier")
    assert listed(home) == {"resnet18": "1.0.0"}


def test_locked_install_reproduces_the_lock_exactly_and_offline(published, tmp_path):
    home = tmp_path / "home"
    run_nnpm(home, "install", "-q", "imagenet-classifier", "digits==1.0.0", registry=published.url)
    original = (home / "envs" / "default" / LOCK_NAME).read_bytes()
    lock_file = tmp_path / "copy.lock"
    lock_file.write_bytes(original)

    # A fresh machine (empty store) with the registry up.
    fresh = tmp_path / "fresh"
    run_nnpm(fresh, "install", "-q", "--locked", "--lock", str(lock_file), registry=published.url)
    assert (fresh / "envs" / "default" / LOCK_NAME).read_bytes() == original

    # The same machine, another environment, no registry at all: the store has every blob.
    offline = closed_port_url()
    run_nnpm(home, "install", "-q", "--locked", "--lock", str(lock_file), "--env", "copy", registry=offline)
    assert (home / "envs" / "copy" / LOCK_NAME).read_bytes() == original
    assert listed(home, "copy") == listed(home)
    verify = run_nnpm(home, "cache", "verify", registry=offline)
    assert "verified" in verify.stdout

    # Without the blobs and without the registry, it fails in one line and changes nothing.
    empty = tmp_path / "empty"
    one_error_line(run_nnpm(empty, "install", "-q", "--locked", "--lock", str(lock_file), registry=offline,
                            check=False))
    assert not (empty / "envs" / "default" / LOCK_NAME).exists()


def test_unmet_runtime_requirement_is_refused_and_nothing_installed(published, tmp_path):
    home = tmp_path / "home"
    run_nnpm(home, "install", "-q", "digits==1.0.0", registry=published.url)
    before = (home / "envs" / "default" / LOCK_NAME).read_bytes()
    blobs_before = {d for d, _ in Store(home / "store").blobs()}
    line = one_error_line(run_nnpm(home, "install", "-q", "future-runtime", registry=published.url, check=False))
    assert "future-runtime" in line and ">=99" in line
    assert metadata.version("onnxruntime") in line, "the installed version is named"
    assert (home / "envs" / "default" / LOCK_NAME).read_bytes() == before
    assert {d for d, _ in Store(home / "store").blobs()} == blobs_before, "nothing was downloaded"
    assert not list((home / "envs" / "default" / "pkgs").glob("future-runtime*"))


def test_search_finds_by_name_and_says_when_nothing_matches(published, tmp_path):
    home = tmp_path / "home"
    out = run_nnpm(home, "search", "resnet", registry=published.url).stdout
    assert re.search(r"resnet18\s+1\.0\.0", out), out
    assert "digits" not in out
    assert "no packages match" in run_nnpm(home, "search", "no-such-thing-xyz", registry=published.url).stdout


def test_unknown_package_is_one_error_line(published, tmp_path):
    home = tmp_path / "home"
    line = one_error_line(run_nnpm(home, "install", "-q", "no-such-package", registry=published.url, check=False))
    assert "no-such-package" in line


def test_second_environment_links_from_the_store_without_downloading(published, tmp_path):
    home = tmp_path / "home"
    start = len(blob_gets(published))
    run_nnpm(home, "install", "-q", "resnet18", registry=published.url)
    first = blob_gets(published)[start:]
    client = RegistryClient(published.url)
    manifest = client.version("resnet18", "1.0.0")["manifest"]
    reference = Manifest.from_dict(manifest).files_for("reference")   # the int8 graphs are never fetched
    digests = {f.sha256 for f in reference}
    assert set(first) == digests, "the access log counts the first install's downloads"

    mark = len(blob_gets(published))
    proc = run_nnpm(home, "install", "--env", "second", "resnet18", registry=published.url)
    assert "0 blobs fetched" in proc.stdout
    assert blob_gets(published)[mark:] == [], "the second environment downloaded nothing"

    store = Store(home / "store")
    for env in ("default", "second"):
        folder = home / "envs" / env / "pkgs" / "resnet18-1.0.0" / "files"
        for f in reference:
            st = (folder / f.path).stat()
            assert st.st_ino == store.path(f.sha256).stat().st_ino
            assert st.st_nlink >= 3     # the store and both environments


def test_an_interrupted_download_resumes_against_the_real_registry(published, tmp_path, examples_dir):
    home = tmp_path / "home"
    with RegistryClient(published.url) as client:
        files = Manifest.from_dict(client.version("resnet18", "1.0.0")["manifest"]).files_for("reference")
    biggest = max(files, key=lambda f: f.size)             # a tensor of a few MB
    with published.client() as http:
        model = http.get(f"/api/v1/blobs/sha256:{biggest.sha256}").content
    digest = hashlib.sha256(model).hexdigest()
    assert digest == biggest.sha256 and len(model) > 2_000_000
    Store(home / "store").partial_path(digest).write_bytes(model[:len(model) // 2])
    mark = len(published.log_path.read_text(errors="replace"))
    run_nnpm(home, "install", "-q", "resnet18", registry=published.url)
    log = published.log_path.read_text(errors="replace")[mark:]
    answers = re.findall(r'"GET /api/v1/blobs/sha256(?::|%3A)' + digest + r' HTTP/1\.1" (\d{3})', log)
    assert answers == ["206"], "the registry was asked for the missing tail only"
    assert Store(home / "store").path(digest).read_bytes() == model
    assert assert_store_clean(home / "store") == len(files) + 1      # the reference's files and the manifest

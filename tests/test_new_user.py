"""What a new user hit in the first hour (issue 14): one test per item on the client side."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from cli import run_nnpm
from onnx import TensorProto, helper, numpy_helper

from nnpm import errors as E
from nnpm.author.pack import build
from nnpm.format.onnxinfo import read_model

# The client is the subject: the registry behind it runs on one backend (its own tests cover both).
pytestmark = pytest.mark.registry_backends("sqlite-dir")


def _nnpm(home: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    """The one CLI runner (tests/cli.py), without its exit-0 check: these tests look at failures too."""
    return run_nnpm(home, *args, check=False, **kw)


def _save(model: onnx.ModelProto, folder: Path, toml: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    (folder / "nnpm.toml").write_text(f'[package]\nname = "{folder.name}"\nversion = "1.0.0"\n\n'
                                      f'[model]\nfile = "model.onnx"\n{toml}')
    return folder


def _model(nodes, inputs, outputs, inits=(), opsets=None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in (opsets or {"": 17}).items()],
                             ir_version=8)


# -- 2. negative dimensions ---------------------------------------------------------------------------

def test_a_negative_or_zero_dimension_means_any_size(tmp_path: Path) -> None:
    from nnpm.runtime.load import load

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3])
    x.type.tensor_type.shape.dim[0].dim_value = -1          # what PaddlePaddle writes
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [0, 3])
    folder = _save(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [y]), tmp_path / "neg")
    info = read_model(folder, "model.onnx")
    assert info.signature.inputs[0].shape == (None, 3) and info.signature.outputs[0].shape == (None, 3)
    model = load(folder)
    assert model(np.ones((5, 3), np.float32)).shape == (5, 3)
    with pytest.raises(E.InputError, match="dimension 1 is 4, expected 3"):
        model(np.ones((5, 4), np.float32))


# -- 4. run -o with outputs that are not numbers -------------------------------------------------------

def test_run_saves_string_and_map_outputs(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, target = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[target]
    clf = LogisticRegression(max_iter=500).fit(features, labels)
    model = to_onnx(clf, features[:1].astype(np.float32), target_opset={"": 17, "ai.onnx.ml": 3})
    folder = _save(model, tmp_path / "iris")
    np.save(tmp_path / "x.npy", features[:4].astype(np.float32))
    out = tmp_path / "out"
    proc = _nnpm(tmp_path / "home", "run", str(folder), "--input", str(tmp_path / "x.npy"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    saved = {p.name for p in out.iterdir()}
    assert saved == {"output_label.npy", "output_probability.json"}, saved
    assert list(np.load(out / "output_label.npy", allow_pickle=False)) == list(clf.predict(features[:4]))
    probabilities = json.loads((out / "output_probability.json").read_text())
    assert len(probabilities) == 4 and set(probabilities[0]) == {"setosa", "versicolor", "virginica"}
    printed = _nnpm(tmp_path / "home", "run", str(folder), "--input", str(tmp_path / "x.npy"))
    assert printed.returncode == 0 and "setosa" in printed.stdout


# -- 5. a pipeline's interface ---------------------------------------------------------------------------

def _pipeline_packages(tmp_path: Path) -> list[Path]:
    scale = _save(_model([helper.make_node("Mul", ["x", "w"], ["y"])],
                         [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                         [numpy_helper.from_array(np.array([1, 2, 3], np.float32), "w")]), tmp_path / "zz-scale")
    shift = _save(_model([helper.make_node("Add", ["y", "b"], ["z"])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", 3])],
                         [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["M", 3])],
                         [numpy_helper.from_array(np.array([1, 1, 1], np.float32), "b")]), tmp_path / "aa-shift")
    pipe = tmp_path / "pipe"
    pipe.mkdir()
    (pipe / "nnpm.toml").write_text('[package]\nname = "pipe"\nversion = "1.0.0"\n\n[dependencies]\n'
                                    'aa-shift = "==1.0.0"\nzz-scale = "==1.0.0"\n\n'
                                    '[pipeline]\nsteps = ["zz-scale", "aa-shift"]\n')
    return [scale, shift, pipe]


def test_info_of_a_pipeline_shows_its_interface_and_steps_in_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _nnpm(home, "install", "-q", *map(str, _pipeline_packages(tmp_path))).returncode == 0
    out = _nnpm(home, "info", "pipe").stdout
    assert "input" in out and "x" in out and "output" in out and "z" in out
    assert "deps: zz-scale==1.0.0, aa-shift==1.0.0" in out
    assert "pipeline: zz-scale -> aa-shift" in out


def test_a_fused_pipeline_refuses_what_the_stepwise_one_refuses(tmp_path: Path, monkeypatch) -> None:
    from nnpm.runtime.load import load

    home = tmp_path / "home"
    monkeypatch.setenv("NNPM_HOME", str(home))
    assert _nnpm(home, "install", "-q", *map(str, _pipeline_packages(tmp_path))).returncode == 0
    fused, stepwise = load("pipe"), load("pipe", fuse=False)
    good = np.ones((2, 3), np.float32)
    assert np.array_equal(fused(x=good), stepwise(x=good))
    assert "StepwiseModel pipe 1.0.0 zz-scale -> aa-shift" in repr(stepwise)
    for model in (fused, stepwise):
        with pytest.raises(E.InputError):
            model(x=np.ones((2, 4), np.float32))


def test_an_error_inside_a_fused_graph_names_the_step() -> None:
    from nnpm.format.wiring import Port
    from nnpm.runtime.pipeline import FusedModel

    class Wiring:
        order = ("resnet18", "topk")

    model = FusedModel.__new__(FusedModel)
    model.manifest, model.wiring = type("M", (), {"name": "clf", "version": "1.0"})(), Wiring()
    err = RuntimeError("Non-zero status code returned while running Gemm node. Name:'resnet18/fc/Gemm' Status")
    assert model._where(err) == "clf 1.0, step resnet18"
    assert Port("a", "b").step == "a"


# -- 7. offline and upgrade semantics -------------------------------------------------------------------

class _Counting(httpx.BaseTransport):
    """A transport that refuses every request (the network is off) and counts them."""

    def __init__(self) -> None:
        self.requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        raise httpx.ConnectError("the network is off", request=request)


def _installer(home: Path, client=None):
    from nnpm.config import Settings
    from nnpm.install.env import open_env
    from nnpm.install.transaction import Installer

    settings = Settings(home=home, env="default", registry="http://registry.test", token=None)
    return Installer(settings, open_env("default", settings), client, progress=False)


def test_a_satisfied_requirement_needs_no_network(tmp_path: Path, small_package) -> None:
    from nnpm.client.api import RegistryClient

    home = tmp_path / "home"
    _installer(home).install([str(small_package("tiny", "1.0.0"))])
    off = _Counting()
    client = RegistryClient("http://registry.test", transport=off)
    result = _installer(home, client).install(["tiny", "tiny>=1"])
    assert result.satisfied and result.unchanged == [("tiny", "1.0.0")] and off.requests == 0
    with pytest.raises(E.RegistryError, match="cannot reach"):
        _installer(home, client).install(["tiny>=2"])


def test_upgrade_prints_from_and_to_and_a_yanked_pin_warns(tmp_path: Path, registry, small_package) -> None:
    token = registry.add_user("alice")
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        assert registry.publish(small_package("tiny", version, weights=(float(version[2]),) * 3), token).status_code == 201
    with registry.client(token) as c:
        assert c.post("/api/v1/packages/tiny/1.2.0/yank", json={"reason": "wrong weights"}).status_code == 200
    home = tmp_path / "home"
    assert _nnpm(home, "install", "-q", "tiny==1.0.0", registry=registry.url).returncode == 0
    same = _nnpm(home, "install", "tiny", registry=registry.url)
    assert "already satisfied: tiny 1.0.0" in same.stdout
    up = _nnpm(home, "install", "-U", "tiny", registry=registry.url)
    assert up.returncode == 0 and "upgraded tiny 1.0.0 -> 1.1.0" in up.stdout, up.stdout + up.stderr
    pinned = _nnpm(home, "install", "tiny==1.2.0", registry=registry.url)
    assert pinned.returncode == 0 and "warning: tiny 1.2.0 is yanked: wrong weights" in pinned.stderr
    outdated = _nnpm(home, "outdated", "--json", registry=registry.url)
    assert json.loads(outdated.stdout)["outdated"] == []       # the newest good one is 1.1.0, not the yanked 1.2.0


def test_info_of_an_installed_package_works_with_the_registry_down(tmp_path: Path, small_package) -> None:
    home = tmp_path / "home"
    assert _nnpm(home, "install", "-q", str(small_package("tiny", "1.0.0"))).returncode == 0
    proc = _nnpm(home, "info", "tiny", registry="http://127.0.0.1:9")
    assert proc.returncode == 0, proc.stderr
    assert "tiny" in proc.stdout and "not reachable" in proc.stdout


# -- 8. the commands a registry user reaches for -----------------------------------------------------------

def test_version_whoami_logout_and_config(tmp_path: Path, registry) -> None:
    home = tmp_path / "home"
    assert _nnpm(home, "--version").stdout.strip().startswith("nnpm ")
    token = registry.add_user("alice")
    assert _nnpm(home, "login", "--registry", registry.url, "--token-stdin", stdin=token + "\n").returncode == 0
    assert _nnpm(home, "whoami").stdout.startswith("alice on ")
    assert _nnpm(home, "logout").returncode == 0
    assert _nnpm(home, "whoami").returncode == 1
    assert _nnpm(home, "config", "get", "registry").stdout.strip() == registry.url   # reading needs no token
    assert _nnpm(home, "config", "set", "registry", "http://127.0.0.1:9/").returncode == 0
    assert _nnpm(home, "config", "get", "registry").stdout.strip() == "http://127.0.0.1:9"
    assert _nnpm(home, "config", "get", "colour").returncode == 1


def test_environment_commands_say_what_is_wrong(tmp_path: Path, small_package) -> None:
    home = tmp_path / "home"
    bad = _nnpm(home, "env", "create", "has space")
    assert bad.returncode == 1 and "letters, digits" in bad.stderr
    assert _nnpm(home, "env", "create", "ok-name_2").returncode == 0
    missing = _nnpm(home, "list", "--env", "nosuch")
    assert missing.returncode == 1 and "no environment named 'nosuch'" in missing.stderr
    asked = _nnpm(home, "env", "remove", "ok-name_2", stdin="")
    assert asked.returncode == 1 and "--yes" in asked.stderr and (home / "envs" / "ok-name_2").is_dir()
    assert _nnpm(home, "env", "remove", "ok-name_2", "--yes").returncode == 0
    assert not (home / "envs" / "ok-name_2").exists()


# -- 9. papercuts ------------------------------------------------------------------------------------------

def test_params_count_constant_nodes(tmp_path: Path) -> None:
    weights = numpy_helper.from_array(np.ones((4, 5), np.float32), "c")
    folder = _save(_model([helper.make_node("Constant", [], ["w"], value=weights),
                           helper.make_node("MatMul", ["x", "w"], ["y"])],
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])]), tmp_path / "const")
    assert read_model(folder, "model.onnx").params == 20


def test_init_names_the_package_after_its_folder_and_keeps_a_model_in_place(tmp_path: Path, small_package) -> None:
    source = small_package("src", "1.0.0") / "model.onnx"
    home = tmp_path / "home"
    assert _nnpm(home, "init", str(tmp_path / "my-model"), "--from", str(source)).returncode == 0
    assert build(tmp_path / "my-model").manifest.name == "my-model"
    assert (tmp_path / "my-model" / "README.md").read_text().startswith("# my-model")
    inplace = tmp_path / "inplace"
    inplace.mkdir()
    (inplace / "net.onnx").write_bytes(source.read_bytes())
    assert _nnpm(home, "init", ".", "--from", "net.onnx", cwd=inplace).returncode == 0
    assert sorted(p.name for p in inplace.iterdir()) == ["README.md", "net.onnx", "nnpm.toml", "tests"]
    manifest = build(inplace).manifest
    assert manifest.name == "inplace" and manifest.project.model.file == "net.onnx"


def test_plural_grammar(tmp_path: Path, small_package) -> None:
    from nnpm.cli.output import plural

    assert (plural(1, "file"), plural(0, "file"), plural(2, "blob")) == ("1 file", "0 files", "2 blobs")
    out = _nnpm(tmp_path / "home", "install", str(small_package("tiny", "1.0.0"))).stdout
    assert "1 files" not in out and "1 blobs" not in out


def test_owner_remove_and_tokens_from_the_cli(tmp_path: Path, registry, small_package) -> None:
    alice, bob = registry.add_user("alice"), registry.add_user("bob")
    assert registry.publish(small_package("shared", "1.0.0"), alice).status_code == 201
    home = tmp_path / "home"
    env = {"NNPM_TOKEN": alice}
    assert "alice, bob" in _nnpm(home, "owner", "add", "shared", "bob", registry=registry.url, env=env).stdout
    removed = _nnpm(home, "owner", "remove", "shared", "bob", registry=registry.url, env=env)
    assert removed.returncode == 0 and removed.stdout.strip() == "owners of shared: alice"
    last = _nnpm(home, "owner", "remove", "shared", "alice", registry=registry.url, env=env)
    assert last.returncode == 1 and "last owner" in last.stderr
    listing = json.loads(_nnpm(home, "token", "list", "--json", registry=registry.url, env=env).stdout)["tokens"]
    (mine,) = listing
    assert mine["current"] and alice not in json.dumps(listing) and alice.startswith(mine["prefix"])
    assert _nnpm(home, "token", "revoke", str(mine["id"]), registry=registry.url, env=env).returncode == 0
    gone = _nnpm(home, "whoami", registry=registry.url, env=env)
    assert gone.returncode == 1 and "not valid" in gone.stderr
    assert _nnpm(home, "whoami", registry=registry.url, env={"NNPM_TOKEN": bob}).stdout.startswith("bob")


def test_pack_check_writes_nothing_and_search_says_how_many_more(tmp_path: Path, registry, small_package) -> None:
    folder = small_package("checked", "1.0.0")
    proc = _nnpm(tmp_path / "home", "pack", "--check", str(folder))
    assert proc.returncode == 0 and "checked: nothing written" in proc.stdout and not (folder / "dist").exists()
    token = registry.add_user("alice")
    for i in range(3):
        assert registry.publish(small_package(f"findme-{i}", "1.0.0", description="findme net"), token).status_code == 201
    cut = _nnpm(tmp_path / "home", "search", "findme", "--limit", "2", registry=registry.url)
    assert cut.returncode == 0 and "... 1 more (nnpm search --limit 3 shows them)" in cut.stdout
    data = json.loads(_nnpm(tmp_path / "home", "search", "findme", "--json", registry=registry.url).stdout)
    assert data["total"] == 3 and sorted(r["name"] for r in data["results"]) == ["findme-0", "findme-1", "findme-2"]

"""nnpm and a real OCI registry (the CNCF distribution server, tests/ociregistry.py), end to end.

`nnpm push` writes ModelPack artifacts that oras-py, an independent client, pulls back byte
for byte; `nnpm install oci://...` installs them (by tag, by digest, a variant's tag, a
pipeline whose steps resolve from `nnpm config set index oci://HOST/NS/`) and they run as
the package folder does. An artifact oras-py pushed by hand (no nnpm manifest) installs
too. What is refused: tests/test_oci_refusals.py. Each test has its own NNPM_HOME.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from cli import one_error_line, run_nnpm
from ocikit import EXAMPLES, TITLE, Oras, listed, modelpack, push, run_installed
from packages import write_package

from nnpm.format.oci import ARTIFACT_TYPE, CONFIG, DOC, FILEPATH, WEIGHT, WEIGHT_CONFIG, check_config


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"



# -- push, pull back with oras-py, install, run ----------------------------------------------------------
def round_trip(reg, oras_: Oras, home: Path, folder: Path, repo: str, tmp_path: Path) -> str:
    """Push `folder`, pull it with oras-py, compare with the pack byte for byte; the manifest's digest."""
    from nnpm.author.pack import pack

    [(name, version, host, tag, digest)] = push(home, f"oci://{reg.host}/{repo}", folder)
    assert (host, tag) == (f"{reg.host}/{repo}", "1.0.0")
    raw = oras_.raw_manifest(repo, "1.0.0")
    assert hashlib.sha256(raw).hexdigest() == digest
    manifest = json.loads(raw)
    assert manifest["artifactType"] == ARTIFACT_TYPE and manifest["config"]["mediaType"] == CONFIG
    config = check_config(oras_.blob(repo, manifest["config"]["digest"]))
    assert config["descriptor"]["name"] == name and config["descriptor"]["version"] == version
    assert config["config"]["format"] == "onnx"
    assert config["modelfs"]["diffIds"] == [layer["digest"] for layer in manifest["layers"]]
    out = tmp_path / "oras-pull"
    oras_.client.pull(target=f"{reg.host}/{repo}:1.0.0", outdir=str(out))
    # oras-py names a file by its layer's org.opencontainers.image.title, else by its digest
    pulled = {layer["annotations"][FILEPATH]: (out / layer["annotations"].get(TITLE, layer["digest"])).read_bytes()
              for layer in manifest["layers"]}
    built, archive, manifest_json = pack(folder, tmp_path / "dist" / f"{repo}.nnpm")
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert pulled == members
    assert pulled["manifest.json"] == manifest_json.read_bytes()
    kinds = {"model.onnx": WEIGHT, "README.md": DOC, "manifest.json": WEIGHT_CONFIG}
    for layer in manifest["layers"]:
        path = layer["annotations"][FILEPATH]
        assert layer["mediaType"] == (WEIGHT if path.startswith("weights/") else kinds[path]), path
    assert {p for p in pulled if p != "manifest.json"} == {f.path for f in built.manifest.files}
    return digest


def assert_runs_as_the_folder(home: Path, name: str, folder: Path, n: int, tmp_path: Path, monkeypatch) -> None:
    import nnpm

    monkeypatch.setenv("NNPM_HOME", str(tmp_path / "folder-home"))
    x = np.random.default_rng(0).standard_normal((2, n)).astype(np.float32)
    want = nnpm.load(folder).run({"X": x})
    got = run_installed(home, name, {"X": x}, tmp_path / "run")
    assert list(got) == list(want) == ["Y"]
    np.testing.assert_array_equal(got["Y"], want["Y"])


def test_a_single_graph_package_round_trips(oci_registry, oras_: Oras, home: Path, tmp_path: Path,
                                            monkeypatch) -> None:
    folder = write_package(tmp_path / "src", "single", "1.0.0", (1.0, 2.0, 3.0))
    digest = round_trip(oci_registry, oras_, home, folder, "single", tmp_path)
    run_nnpm(home, "install", f"oci://{oci_registry.host}/single:1.0.0")
    [pkg] = listed(home)
    assert (pkg["name"], pkg["version"], pkg["variant"]) == ("single", "1.0.0", "reference")
    assert pkg["source"] == f"oci://{oci_registry.host}/single@sha256:{digest}"
    assert_runs_as_the_folder(home, "single", folder, 3, tmp_path, monkeypatch)


def test_external_data_is_split_round_trips_and_installs_by_digest(oci_registry, oras_: Oras, home: Path,
                                                                  tmp_path: Path, monkeypatch) -> None:
    weights = np.arange(40_000, dtype=np.float32)  # 160 kB: over the split threshold, one tensor file
    folder = write_package(tmp_path / "src", "external", "1.0.0", weights, external_data=True)
    digest = round_trip(oci_registry, oras_, home, folder, "external", tmp_path)
    layers = json.loads(oras_.raw_manifest("external", "1.0.0"))["layers"]
    assert [layer["size"] for layer in layers if layer["annotations"][FILEPATH].startswith("weights/")] == [160_000]
    run_nnpm(home, "install", f"oci://{oci_registry.host}/external@sha256:{digest}")
    [pkg] = listed(home)
    assert (pkg["name"], pkg["source"]) == ("external", f"oci://{oci_registry.host}/external@sha256:{digest}")
    assert_runs_as_the_folder(home, "external", folder, 40_000, tmp_path, monkeypatch)


def test_a_foreign_modelpack_artifact_installs_and_runs(oci_registry, oras_: Oras, home: Path, tmp_path: Path,
                                                       monkeypatch) -> None:
    src = write_package(tmp_path / "src", "foreign", "1.0.0", (5.0, 6.0))
    files = [("model.onnx", WEIGHT, (src / "model.onnx").read_bytes()),
             ("README.md", DOC, b"# foreign\n\nPushed by oras-py, not nnpm.\n")]
    manifest = modelpack(oras_, "other/foreign", files, {"name": "foreign", "version": "2.1", "licenses": ["MIT"]})
    digest = oras_.put_manifest("other/foreign", "v2.1", manifest)
    check_config(oras_.blob("other/foreign", manifest["config"]["digest"]))
    run_nnpm(home, "install", f"oci://{oci_registry.host}/other/foreign:v2.1")
    [pkg] = listed(home)
    assert (pkg["name"], pkg["version"]) == ("foreign", "2.1")
    assert pkg["source"] == f"oci://{oci_registry.host}/other/foreign@sha256:{digest}"
    assert_runs_as_the_folder(home, "foreign", src, 2, tmp_path, monkeypatch)




@pytest.fixture(scope="module")
def pushed_examples(oci_registry, examples_dir: Path, tmp_path_factory) -> dict[str, list]:
    """imagenet-preprocess, resnet18, topk and imagenet-classifier pushed to oci://HOST/ns/NAME."""
    home = tmp_path_factory.mktemp("pusher") / "home"
    return {name: push(home, f"oci://{oci_registry.host}/ns/{name}", examples_dir / name) for name in EXAMPLES}


def test_variants_are_tags(oci_registry, pushed_examples, home: Path) -> None:
    import oras.client

    tags = ["1.0.0", "1.0.0-int8", "1.0.0-int8-static"]
    assert sorted(line[3] for line in pushed_examples["resnet18"]) == tags
    where = f"{oci_registry.host}/ns/resnet18"
    assert {line[:3] for line in pushed_examples["resnet18"]} == {("resnet18", "1.0.0", where)}
    assert len({line[4] for line in pushed_examples["resnet18"]}) == 3   # three artifacts
    client = oras.client.OrasClient(hostname=oci_registry.host, insecure=True)
    client.session.trust_env = False
    assert sorted(client.get_tags(f"{oci_registry.host}/ns/resnet18")) == tags
    run_nnpm(home, "install", f"oci://{oci_registry.host}/ns/resnet18:1.0.0-int8")
    [pkg] = listed(home)
    assert (pkg["name"], pkg["version"], pkg["variant"]) == ("resnet18", "1.0.0", "int8")
    digest = dict((line[3], line[4]) for line in pushed_examples["resnet18"])["1.0.0-int8"]
    assert pkg["source"] == f"oci://{oci_registry.host}/ns/resnet18@sha256:{digest}"


def test_a_pipeline_resolves_its_steps_from_the_oci_index(oci_registry, pushed_examples, examples_dir: Path,
                                                          home: Path, tmp_path: Path, monkeypatch) -> None:
    import nnpm

    index = f"oci://{oci_registry.host}/ns/"   # no nnpm registry is configured: the steps can only come from here
    run_nnpm(home, "config", "set", "index", index)
    run_nnpm(home, "install", f"{index}imagenet-classifier:1.0.0")
    [(_, _, _, _, digest)] = pushed_examples["imagenet-classifier"]
    assert {p["name"]: (p["requested"], p["source"]) for p in listed(home)} == {
        "imagenet-classifier": (True, f"{index}imagenet-classifier@sha256:{digest}"),
        "imagenet-preprocess": (False, index), "resnet18": (False, index), "topk": (False, index)}
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    out = run_installed(home, "imagenet-classifier", {"image": image}, tmp_path / "run")
    monkeypatch.setenv("NNPM_HOME", str(tmp_path / "folder-home"))
    (pixels,) = nnpm.load(examples_dir / "imagenet-preprocess").run({"image": image}).values()
    (logits,) = nnpm.load(examples_dir / "resnet18").run({"input": pixels}).values()
    want = nnpm.load(examples_dir / "topk").run({"logits": logits})
    assert set(out) == {"scores", "indices"}
    np.testing.assert_array_equal(out["indices"], want["indices"])
    np.testing.assert_allclose(out["scores"], want["scores"], rtol=1e-5, atol=1e-5)


@pytest.mark.registry_backends("sqlite-dir")
def test_a_version_on_the_nnpm_registry_is_pushed_by_name(oci_registry, registry, small_package, home: Path,
                                                          tmp_path: Path) -> None:
    """`nnpm push oci://… NAME==VER` copies a published version: the artifact is the one its folder gives."""
    from nnpm.author.publish import publish
    from nnpm.client.api import RegistryClient

    folder = small_package("mirrored", "1.0.0", weights=tuple(float(i) for i in range(20_000)))
    with RegistryClient(registry.url, token=registry.add_user("alice")) as client:
        publish(folder, client, progress=False)
    by_name = push(home, f"oci://{oci_registry.host}/from-registry", "mirrored==1.0.0", registry=registry.url)
    by_folder = push(tmp_path / "other", f"oci://{oci_registry.host}/from-folder", folder)
    assert [(n, v, t, d) for n, v, _, t, d in by_name] == [(n, v, t, d) for n, v, _, t, d in by_folder]
    run_nnpm(tmp_path / "installer", "install", f"oci://{oci_registry.host}/from-registry:1.0.0")
    line = one_error_line(run_nnpm(home, "push", f"oci://{oci_registry.host}/x", "mirrored==9", registry=registry.url,
                                   check=False))
    assert "mirrored==9 is not on" in line


"""nnpm and a real OCI registry (the CNCF distribution server, tests/ociregistry.py), end to end.

`nnpm push` writes ModelPack artifacts that oras-py, an independent client, pulls back byte
for byte; `nnpm install oci://...` installs them (by tag, by digest, a variant's tag, a
pipeline whose steps resolve from `nnpm config set index oci://HOST/NS/`) and they run as
the package folder does. An artifact oras-py pushed by hand (no nnpm manifest) installs
too. Bad input is one `error:` line with nothing installed: a tag with '+', an epoch, layers
that are not the files nnpm's manifest lists, a layer of the wrong size, a config off the
ModelPack schema, a registry that wants credentials. Each test has its own NNPM_HOME.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from cli import ROOT, child_env, one_error_line, run_nnpm
from packages import write_package

from nnpm.format.oci import ARTIFACT_TYPE, CONFIG, DOC, FILEPATH, IMAGE_MANIFEST, WEIGHT, WEIGHT_CONFIG, check_config

PUSHED = re.compile(r"^pushed (\S+) (\S+) to oci://(\S+):(\S+) \(sha256:([0-9a-f]{64})\)$", re.M)
TITLE = "org.opencontainers.image.title"
EXAMPLES = ("imagenet-preprocess", "resnet18", "topk", "imagenet-classifier")
# `nnpm push/install` against the htpasswd registry takes ~1.5 s; oras-py's own retries (up to 131 s of
# sleeps, an auth error included) are off in nnpm's transport, and this bound would catch them coming back.
AUTH_TIMEOUT = 30


# -- oras-py as the independent client -----------------------------------------------------------------
class Oras:
    """oras-py on one test registry: manifests and blobs read and written by hand."""

    def __init__(self, reg, scratch: Path) -> None:
        import oras.client

        self.reg, self.scratch = reg, scratch
        self.client = oras.client.OrasClient(hostname=reg.host, insecure=True,
                                             auth_backend="basic" if reg.username else "token")
        self.client.session.trust_env = False  # no proxy for 127.0.0.1
        if reg.username:
            self.client.auth.set_basic_auth(reg.username, reg.password)

    def raw_manifest(self, repo: str, ref: str) -> bytes:
        resp = self.client.do_request(f"{self.reg.url}/v2/{repo}/manifests/{ref}", headers={"Accept": IMAGE_MANIFEST})
        assert resp.status_code == 200, resp.text
        return resp.content

    def blob(self, repo: str, digest: str) -> bytes:
        resp = self.client.get_blob(f"{self.reg.host}/{repo}", digest)
        assert resp.status_code == 200, resp.text
        return resp.content

    def put_blob(self, repo: str, data: bytes, media_type: str, path: str | None = None) -> dict:
        """Upload `data`; its descriptor (annotated with `path` as the ModelPack filepath)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        file = self.scratch / digest.replace(":", "-")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        layer = {"mediaType": media_type, "digest": digest, "size": len(data)}
        resp = self.client.upload_blob(str(file), f"{self.reg.host}/{repo}", layer)
        assert resp.status_code in (200, 201, 202), resp.text
        return layer | ({"annotations": {FILEPATH: path}} if path else {})

    def put_manifest(self, repo: str, tag: str, manifest: dict) -> str:
        """PUT an image manifest as it is (artifactType included, which oras-py's push leaves out); its digest."""
        raw = json.dumps(manifest, indent=2).encode()
        resp = self.client.do_request(f"{self.reg.url}/v2/{repo}/manifests/{tag}", "PUT", data=raw,
                                      headers={"Content-Type": IMAGE_MANIFEST})
        assert resp.status_code == 201, resp.text
        return hashlib.sha256(raw).hexdigest()


def modelpack(oras_: Oras, repo: str, files: list[tuple[str, str, bytes]], descriptor: dict, **config_extra) -> dict:
    """A ModelPack image manifest as another tool writes it: (path, media type, bytes) layers and a config."""
    layers = [oras_.put_blob(repo, data, media, path) for path, media, data in files]
    config = {"descriptor": descriptor, "config": {"format": "onnx"},
              "modelfs": {"type": "layers", "diffIds": [layer["digest"] for layer in layers]}} | config_extra
    config_layer = oras_.put_blob(repo, json.dumps(config).encode(), CONFIG)
    return {"schemaVersion": 2, "mediaType": IMAGE_MANIFEST, "artifactType": ARTIFACT_TYPE,
            "config": config_layer, "layers": layers}


# -- nnpm in a subprocess ------------------------------------------------------------------------------
def push(home: Path, target: str, source: Path, **kw) -> list[tuple[str, str, str, str, str]]:
    """`nnpm push`; its `pushed NAME VER to oci://HOST/REPO:TAG (sha256:HEX)` lines, parsed."""
    return PUSHED.findall(run_nnpm(home, "push", target, source, **kw).stdout)


def listed(home: Path) -> list[dict]:
    return json.loads(run_nnpm(home, "list", "--json").stdout)["packages"]


def run_installed(home: Path, name: str, feeds: dict[str, np.ndarray], scratch: Path) -> dict[str, np.ndarray]:
    """`nnpm.load(name).run(feeds)` in a Python of its own with NNPM_HOME=home: the outputs."""
    scratch.mkdir(parents=True, exist_ok=True)
    np.savez(scratch / "in.npz", **feeds)
    code = ("import sys, numpy as np, nnpm\nfeeds = dict(np.load(sys.argv[2]))\n"
            "np.savez(sys.argv[3], **nnpm.load(sys.argv[1]).run(feeds))\n")
    env = {k: v for k, v in child_env(NNPM_HOME=str(home)).items() if not k.startswith("NNPM_") or k == "NNPM_HOME"}
    proc = subprocess.run([sys.executable, "-c", code, name, str(scratch / "in.npz"), str(scratch / "out.npz")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return dict(np.load(scratch / "out.npz"))


def assert_refused(home: Path, *args: str, says: str, **kw) -> str:
    """One `error:` line naming `says`, and nothing installed."""
    line = one_error_line(run_nnpm(home, *args, check=False, **kw))
    assert says in line, line
    assert listed(home) == []
    return line


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def oras_(oci_registry, tmp_path: Path) -> Oras:
    return Oras(oci_registry, tmp_path / "blobs")


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


# -- refused, in one line, with nothing installed ----------------------------------------------------------
def test_a_tag_with_plus_is_refused(oci_registry, home: Path, small_package) -> None:
    target = f"oci://{oci_registry.host}/x:1.0.0+local"
    assert "1.0.0_local" in assert_refused(home, "install", target, says="'+'")
    assert_refused(home, "push", target, small_package("x"), says="'+'")


def test_a_version_with_an_epoch_is_not_pushed(oci_registry, oras_: Oras, home: Path, small_package) -> None:
    folder = small_package("epoch", "1!2.0")
    assert_refused(home, "push", f"oci://{oci_registry.host}/epoch", folder, says="epoch")
    resp = oras_.client.do_request(f"{oci_registry.url}/v2/epoch/tags/list")
    assert resp.status_code == 404, resp.text  # nothing reached the registry


@pytest.fixture(scope="module")
def tampered(oci_registry, tmp_path_factory) -> tuple[Oras, dict]:
    """`nnpm push` of `tampered` 1.0.0 (model.onnx, README.md, labels.txt), and its image manifest."""
    tmp = tmp_path_factory.mktemp("tampered")
    folder = write_package(tmp / "src", "tampered", "1.0.0", labels=["a", "b", "c"])
    push(tmp / "home", f"oci://{oci_registry.host}/tampered", folder)
    oras_ = Oras(oci_registry, tmp / "blobs")
    return oras_, json.loads(oras_.raw_manifest("tampered", "1.0.0"))


def _layer(manifest: dict, path: str) -> dict:
    return next(layer for layer in manifest["layers"] if layer["annotations"][FILEPATH] == path)


def _drop(manifest: dict) -> None:
    manifest["layers"].remove(_layer(manifest, "labels.txt"))


def _swap(manifest: dict) -> None:
    """labels.txt names the README's blob: it exists and its bytes match its digest, but not the file listed."""
    readme = _layer(manifest, "README.md")
    _layer(manifest, "labels.txt").update(digest=readme["digest"], size=readme["size"])


def _resize(manifest: dict) -> None:
    _layer(manifest, "labels.txt")["size"] += 1


@pytest.mark.parametrize("change", [_drop, _swap, _resize], ids=["dropped", "other-blob", "wrong-size"])
def test_layers_other_than_the_nnpm_manifest_lists_are_refused(oci_registry, tampered, home: Path, change) -> None:
    oras_, manifest = tampered
    manifest = json.loads(json.dumps(manifest))
    change(manifest)
    assert _layer(manifest, "manifest.json")["annotations"]["org.nnpm.manifest"] == "true"  # kept
    tag = f"changed-{change.__name__[1:]}"
    oras_.put_manifest("tampered", tag, manifest)
    line = assert_refused(home, "install", f"oci://{oci_registry.host}/tampered:{tag}", says="do not match the nnpm")
    assert "labels.txt" in line, line


def test_a_foreign_layer_of_the_wrong_size_is_refused(oci_registry, oras_: Oras, home: Path, tmp_path: Path) -> None:
    src = write_package(tmp_path / "src", "sized", "1.0.0")
    manifest = modelpack(oras_, "sized", [("model.onnx", WEIGHT, (src / "model.onnx").read_bytes())],
                         {"name": "sized", "version": "1.0.0"})
    manifest["layers"][0]["size"] -= 1   # the digest is right; the registry serves one byte more than named
    oras_.put_manifest("sized", "1.0.0", manifest)
    line = assert_refused(home, "install", f"oci://{oci_registry.host}/sized:1.0.0", says="model.onnx")
    assert "bytes" in line, line


def test_a_config_off_the_modelpack_schema_is_refused(oci_registry, oras_: Oras, home: Path, tmp_path: Path) -> None:
    src = write_package(tmp_path / "src", "schema", "1.0.0")
    manifest = modelpack(oras_, "schema", [("model.onnx", WEIGHT, (src / "model.onnx").read_bytes())],
                         {"name": "schema", "version": "1.0.0"}, nnpm={"extra": True})
    oras_.put_manifest("schema", "1.0.0", manifest)
    assert_refused(home, "install", f"oci://{oci_registry.host}/schema:1.0.0", says="schema")


# -- credentials -------------------------------------------------------------------------------------------
def test_docker_config_names_the_credentials(oci_registry_auth, tmp_path: Path, monkeypatch) -> None:
    """The credentials nnpm's client holds for a host come from $DOCKER_CONFIG/config.json, as docker's do."""
    from nnpm.oci.reference import parse_ref
    from nnpm.oci.transport import OciClient

    monkeypatch.setenv("HOME", str(tmp_path / "no-home"))
    monkeypatch.setenv("DOCKER_CONFIG", str(oci_registry_auth.docker_config(tmp_path / "docker")))
    for name in ("NNPM_OCI_USERNAME", "NNPM_OCI_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    client = OciClient(parse_ref(f"oci://{oci_registry_auth.host}/private:1.0.0"))
    user = f"{oci_registry_auth.username}:{oci_registry_auth.password}"
    assert getattr(client._reg.auth, "_basic_auth", None) == base64.b64encode(user.encode()).decode()


def test_push_and_install_with_docker_config_credentials(oci_registry_auth, home: Path, tmp_path: Path,
                                                        small_package) -> None:
    env = {"DOCKER_CONFIG": str(oci_registry_auth.docker_config(tmp_path / "docker")), "HOME": str(tmp_path)}
    target = f"oci://{oci_registry_auth.host}/private"
    [(_, _, _, tag, _)] = push(home, target, small_package("private"), env=env, timeout=AUTH_TIMEOUT)
    run_nnpm(home, "install", f"{target}:{tag}", env=env, timeout=AUTH_TIMEOUT)
    assert [p["name"] for p in listed(home)] == ["private"]


def test_without_credentials_one_line_names_the_registry_and_the_login(oci_registry_auth, home: Path,
                                                                     tmp_path: Path) -> None:
    oras_ = Oras(oci_registry_auth, tmp_path / "blobs")   # pushed by oras-py with the credentials
    src = write_package(tmp_path / "src", "locked", "1.0.0")
    manifest = modelpack(oras_, "locked", [("model.onnx", WEIGHT, (src / "model.onnx").read_bytes())],
                         {"name": "locked", "version": "1.0.0"})
    oras_.put_manifest("locked", "1.0.0", manifest)
    env = {"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "empty")}
    proc = run_nnpm(home, "install", f"oci://{oci_registry_auth.host}/locked:1.0.0", env=env, check=False,
                    timeout=AUTH_TIMEOUT)
    line = one_error_line(proc)
    assert oci_registry_auth.host in line and "login" in line, line
    assert listed(home) == []


# -- the examples: variants as tags, a pipeline from an OCI index -----------------------------------------------
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


@pytest.mark.parametrize("path", ["../escape.onnx", "/etc/model.onnx", "a/../../b.onnx", "nnpm.toml"])
def test_a_foreign_layer_path_outside_the_package_is_refused(oci_registry, oras_: Oras, home: Path, tmp_path: Path,
                                                             path: str) -> None:
    src = write_package(tmp_path / "src", "escaper", "1.0.0")
    repo = f"escaper{abs(hash(path)) % 1000}"
    manifest = modelpack(oras_, repo, [(path, WEIGHT, (src / "model.onnx").read_bytes())],
                         {"name": "escaper", "version": "1.0.0"})
    oras_.put_manifest(repo, "1.0.0", manifest)
    assert_refused(home, "install", f"oci://{oci_registry.host}/{repo}:1.0.0", says="")
    assert not (tmp_path / "escape.onnx").exists() and not (home.parent / "escape.onnx").exists()


class _HostileOci:
    """An OCI registry that lies in ways docker-registry never would (the only fake here)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/v2/huge/manifests/"):   # a manifest without end
                    self.send_response(200)
                    self.send_header("Content-Type", IMAGE_MANIFEST)
                    self.end_headers()
                    try:
                        for _ in range(10_000):
                            self.wfile.write(b" " * 65536)
                    except OSError:
                        pass
                    return
                if self.path.startswith("/v2/loop/tags/list"):     # pages that point at themselves
                    body = json.dumps({"name": "loop", "tags": ["1.0.0"]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Link", '</v2/loop/tags/list?n=1000&last=1.0.0>; rel="next"')
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200 if self.path == "/v2/" else 404)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_registry_that_sends_without_end_or_pages_forever_is_refused(home: Path) -> None:
    hostile = _HostileOci()
    try:
        line = assert_refused(home, "install", f"oci://{hostile.host}/huge:1.0.0", says="over the")
        assert "manifest" in line, line
        run_nnpm(home, "config", "set", "index", f"oci://{hostile.host}/")
        line = assert_refused(home, "install", "loop", says="pages")
        assert hostile.host in line, line
    finally:
        hostile.close()

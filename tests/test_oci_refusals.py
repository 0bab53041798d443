"""What nnpm refuses from OCI registries: one `error:` line each, with nothing installed.

A tag with '+', an epoch, layers that are not the files nnpm's manifest lists, a layer of the
wrong size, a config off the ModelPack schema, layer paths that leave the package, a
registry that wants credentials (and one that gets them from the Docker config), and a
registry that sends without end or pages forever.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cli import one_error_line, run_nnpm
from ocikit import AUTH_TIMEOUT, Oras, assert_refused, listed, modelpack, push
from packages import write_package

from nnpm.format.oci import FILEPATH, IMAGE_MANIFEST, WEIGHT


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"



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


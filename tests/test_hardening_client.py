"""What an attacker and a clumsy user found on the client side (issue 13), one test per class of fault."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from cli import one_error_line, run_nnpm

from nnpm import errors as E
from nnpm.author.pack import build
from nnpm.format.fields import canonical_name
from nnpm.format.manifest import Manifest
from nnpm.install.env import open_env
from nnpm.install.store import Store

# The client is the subject: the registry behind it runs on one backend (its own tests cover both).
pytestmark = pytest.mark.registry_backends("sqlite-dir")


def _nnpm(home: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    """The one CLI runner (tests/cli.py), without its exit-0 check: these tests look at failures too."""
    return run_nnpm(home, *args, check=False, **kw)


URL = "http://registry.test"


def _settings(home: Path, registry: str | None = None):
    from nnpm.config import Settings

    return Settings(home=home, env="default", registry=registry, token=None)


def _fake_registry(packuments: dict[str, dict], blobs: dict[str, bytes]):
    """A RegistryClient over a MockTransport answering packuments and blobs (a registry we cannot make lie)."""
    from nnpm.client.api import RegistryClient

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/api/v1/packages/"):
            name = path.rsplit("/", 1)[1]
            if name in packuments:
                return httpx.Response(200, json=packuments[name])
            return httpx.Response(404, json={"error": "not_found", "detail": f"no package {name}"})
        if path.startswith("/api/v1/blobs/sha256:"):
            data = blobs[path.rsplit(":", 1)[1]]
            return httpx.Response(200, content=data, headers={"Content-Length": str(len(data))})
        return httpx.Response(404)

    return RegistryClient(URL, transport=httpx.MockTransport(handler))


def _served(manifest_dict: dict, name: str, version: str) -> dict:
    return {"name": name, "versions": [{"version": version, "yanked": False, "manifest": manifest_dict}]}


# -- 1. store poisoning through reserved names -------------------------------------------------------

@pytest.mark.parametrize("reserved", ["manifest.json", ".stat.json", "stat.json", "nnpm.lock", "nnpm.toml",
                                      ".nnpm/x"])
def test_a_reserved_file_name_is_refused_in_every_manifest(small_package, reserved: str) -> None:
    manifest = build(small_package("tiny", "1.0.0")).manifest.to_dict()
    manifest["files"] = sorted([*manifest["files"], {"path": reserved, "size": 1, "sha256": "0" * 64}],
                               key=lambda f: f["path"])
    with pytest.raises(E.ManifestError, match="nnpm keeps for itself"):
        Manifest.from_dict(manifest)


def test_pack_refuses_an_include_with_a_reserved_name(small_package) -> None:
    folder = small_package("tiny", "1.0.0", extra_toml='\n[files]\ninclude = ["manifest.json"]\n')
    (folder / "manifest.json").write_text("{}")
    with pytest.raises(E.ManifestError, match="nnpm keeps for itself"):
        build(folder)


def test_install_from_a_registry_offering_a_reserved_name_installs_nothing(tmp_path: Path, small_package) -> None:
    from nnpm.install.transaction import Installer

    home = tmp_path / "home"
    victim = build(small_package("victim", "1.0.0", weights=(7.0, 8.0, 9.0)))
    installer = Installer(_settings(home), open_env("default", _settings(home)), progress=False)
    installer.install([str(victim.paths["model.onnx"].parent)])
    store = Store(home / "store")
    model = victim.manifest.file("model.onnx")
    attack = build(small_package("attack", "1.0.0")).manifest.to_dict()
    attack["files"] = sorted([*attack["files"], {"path": "manifest.json", "size": model.size,
                                                 "sha256": model.sha256}], key=lambda f: f["path"])
    client = _fake_registry({"attack": _served(attack, "attack", "1.0.0")}, {})
    installer = Installer(_settings(home, URL), open_env("default", _settings(home)), client, progress=False)
    with pytest.raises(E.ManifestError, match="nnpm keeps for itself"):
        installer.install(["attack"])
    assert store.verify() == [] and list(open_env("default", _settings(home)).lock().packages) == ["victim"]


def test_nnpm_never_writes_its_records_through_a_link(tmp_path: Path, small_package) -> None:
    home = tmp_path / "home"
    folder = small_package("tiny", "1.0.0")
    assert _nnpm(home, "install", "-q", str(folder)).returncode == 0
    pkg = open_env("default", _settings(home)).get("tiny")
    assert pkg.path.name == "files" and (pkg.path / "model.onnx").stat().st_nlink == 2   # linked from the store
    for record in ("manifest.json", "stat.json"):
        assert (pkg.path.parent / record).stat().st_nlink == 1
    assert _nnpm(home, "install", "-q", "--force", str(folder)).returncode == 0
    assert Store(home / "store").verify() == []


# -- 2. a lock file that is not there ----------------------------------------------------------------

def test_locked_install_of_a_missing_lock_is_an_error_and_uninstalls_nothing(tmp_path: Path, small_package) -> None:
    home = tmp_path / "home"
    assert _nnpm(home, "install", "-q", str(small_package("tiny", "1.0.0"))).returncode == 0
    line = one_error_line(_nnpm(home, "install", "--locked", "--lock", str(tmp_path / "MISSING.lock")))
    assert "MISSING.lock" in line
    line = one_error_line(_nnpm(home, "install", "--locked", "--lock", str(tmp_path)))
    assert "is a folder" in line
    assert list(open_env("default", _settings(home)).lock().packages) == ["tiny"]


# -- 3. text from packages and registries is printed literally ----------------------------------------

def test_markup_and_lower_case_dims_print_literally(tmp_path: Path, small_package) -> None:
    import onnx
    from onnx import TensorProto, helper

    home = tmp_path / "home"
    folder = small_package("marked", "1.0.0", description="[/] [link=http://evil.example]click[/link] [bold]x")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence"])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              folder / "model.onnx")
    assert _nnpm(home, "install", "-q", str(folder)).returncode == 0
    proc = _nnpm(home, "info", "marked")
    assert proc.returncode == 0, proc.stderr
    assert "[/] [link=http://evil.example]click[/link] [bold]x" in proc.stdout
    assert "[batch, sequence]" in proc.stdout


def test_control_characters_from_a_registry_never_reach_the_terminal(capsys: pytest.CaptureFixture) -> None:
    from nnpm.cli.output import literal, say

    say("name \x1b[31mred\x1b[0m \x07 \u202eevil")
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b[31mred" in out and "\\u202e" in out
    assert literal("tab\tand\nnewline") == "tab\tand\nnewline"


@pytest.mark.parametrize("key,value", [("description", "ok \x1b[31mred"), ("tags", ["ok", "bell\x07"]),
                                       ("authors", ["nul\x00"])])
def test_control_characters_are_refused_in_package_text(small_package, key: str, value) -> None:
    manifest = build(small_package("tiny", "1.0.0")).manifest.to_dict()
    manifest["package"][key] = value
    with pytest.raises(E.ManifestError, match=f"package.{key}: contains the control character"):
        Manifest.from_dict(manifest)


def test_control_characters_are_refused_in_output_names_and_labels(small_package) -> None:
    folder = small_package("tiny", "1.0.0", extra_toml='\n[model.outputs.Y]\nlabels = "labels.txt"\n')
    (folder / "labels.txt").write_bytes(b"cat\ndog\x1b[2J\n")
    with pytest.raises(E.ManifestError, match="labels.txt: line 2: contains the control character U\\+001B"):
        build(folder)
    manifest = build(small_package("tiny", "1.0.1")).manifest.to_dict()
    manifest["model"]["outputs"] = {"Y\x1b": {}}
    with pytest.raises(E.ManifestError, match="control character"):
        Manifest.from_dict(manifest)


# -- 9, 10. the client checks what a registry returns ------------------------------------------------

def test_a_manifest_for_another_package_or_version_is_refused(tmp_path: Path, small_package) -> None:
    from nnpm.install.transaction import Installer

    home = tmp_path / "home"
    built = build(small_package("other", "2.0.0"))
    blobs = {f.sha256: built.paths[f.path].read_bytes() for f in built.manifest.files}
    for served_as in (("wanted", "1.0.0"), ("other", "1.0.0")):
        client = _fake_registry({served_as[0]: _served(built.manifest.to_dict(), *served_as)}, blobs)
        installer = Installer(_settings(home, URL), open_env("default", _settings(home)), client, progress=False)
        with pytest.raises(E.ManifestError, match="is the manifest of other 2.0.0"):
            installer.install([served_as[0]])
    assert not open_env("default", _settings(home)).lock().packages


@pytest.mark.parametrize("manifest", ["a string", 12, ["a", "list"], {"format": 1}])
def test_hostile_manifest_shapes_are_one_clear_error(tmp_path: Path, manifest) -> None:
    from nnpm.install.transaction import Installer

    home = tmp_path / "home"
    client = _fake_registry({"odd": {"name": "odd", "versions": [{"version": "1.0", "manifest": manifest}]}}, {})
    installer = Installer(_settings(home, URL), open_env("default", _settings(home)), client, progress=False)
    with pytest.raises(E.NnpmError):
        installer.install(["odd"])


# -- 11. look-alike names ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["reſnet-18", "ımagenet", "i̇magenet", "ｒｅｓｎｅｔ", "resnet\u200b18"])
def test_non_ascii_look_alike_names_are_refused(name: str) -> None:
    with pytest.raises(E.ManifestError, match="invalid package name"):
        canonical_name(name)


# -- 12 and the gaps: repairs that repair, links and locks ----------------------------------------------

def test_the_suggested_repair_repairs(tmp_path: Path, small_package) -> None:
    home = tmp_path / "home"
    folder = small_package("tiny", "1.0.0", weights=tuple(float(i) for i in range(64)))
    assert _nnpm(home, "install", "-q", str(folder)).returncode == 0
    installed = open_env("default", _settings(home)).get("tiny").path / "model.onnx"
    os.chmod(installed, 0o644)
    data = bytearray(installed.read_bytes())
    data[-10] ^= 0xFF
    installed.write_bytes(bytes(data))         # the hard link: the store's blob changes too
    line = one_error_line(_nnpm(home, "run", "tiny", "--input", str(tmp_path / "missing.npy")))
    assert "nnpm install --force tiny==1.0.0" in line
    verify = _nnpm(home, "cache", "verify")
    assert verify.returncode == 1 and "tiny 1.0.0" in verify.stderr and "--force" in verify.stderr
    assert _nnpm(home, "install", "-q", "--force", str(folder)).returncode == 0
    ok = _nnpm(home, "cache", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_a_package_folder_replaced_by_a_link_is_refused_at_load(tmp_path: Path, small_package) -> None:
    import shutil

    from nnpm.runtime.load import load

    home = tmp_path / "home"
    assert _nnpm(home, "install", "-q", str(small_package("tiny", "1.0.0"))).returncode == 0
    files = open_env("default", _settings(home)).get("tiny").path
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(files, elsewhere)
    shutil.rmtree(files)
    files.symlink_to(elsewhere)
    with pytest.raises(E.IntegrityError, match="not the folder nnpm installed"):
        load("tiny", env=open_env("default", _settings(home)))


@pytest.mark.parametrize("edit", ["version", "file digest"])
def test_a_hand_edited_lock_is_refused_naming_the_package(tmp_path: Path, small_package, edit: str) -> None:
    home = tmp_path / "home"
    assert _nnpm(home, "install", "-q", str(small_package("tiny", "1.0.0"))).returncode == 0
    lock_path = home / "envs" / "default" / "nnpm.lock"
    data = json.loads(lock_path.read_text())
    entry = data["packages"]["tiny"]
    if edit == "version":
        entry["version"] = "9.9.9"
    else:
        entry["files"][0]["sha256"] = "f" * 64
    copy = tmp_path / "edited.lock"
    copy.write_text(json.dumps(data))
    line = one_error_line(_nnpm(home, "install", "--locked", "--lock", str(copy)))
    assert "tiny" in line


def test_a_token_on_the_command_line_draws_a_warning(tmp_path: Path, registry) -> None:
    token = registry.add_user("alice")
    proc = _nnpm(tmp_path / "home", "whoami", "--registry", registry.url, "--token", token)
    assert proc.returncode == 0 and proc.stdout.startswith("alice")
    assert "warning: a token on the command line" in proc.stderr and token not in proc.stderr
    proc = _nnpm(tmp_path / "home", "login", "--registry", registry.url, "--token-stdin", stdin=token + "\n")
    assert proc.returncode == 0 and "warning" not in proc.stderr and token not in proc.stderr + proc.stdout
    failed = _nnpm(tmp_path / "home", "whoami", "--registry", registry.url, "--token", "wrong")
    one_error_line(failed)   # a failure is one line: the warning is not added to it


def test_publish_rides_out_a_busy_registry_a_timed_out_upload_and_a_collected_blob(small_package) -> None:
    """429 with Retry-After, 408 for an upload, then a 404 naming a blob its gc took: publish still lands."""
    from nnpm.author.publish import upload
    from nnpm.client.api import RegistryClient

    built = build(small_package("tiny", "1.0.0", readme=None))
    stored: set[str] = set()
    script = {"blob_put": [408], "manifest_put": [429, 404]}
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        seen.append(f"{method} {path.rsplit('/', 1)[-1][:14]}")
        if path == "/api/v1/blobs/missing":   # asked in one request, as the registry answers it
            asked = json.loads(request.read())["digests"]
            return httpx.Response(200, json={"missing": [d for d in asked if d.removeprefix("sha256:") not in stored]})
        if path.startswith("/api/v1/blobs/"):
            digest = path.rsplit(":", 1)[1]
            if method == "HEAD":
                return httpx.Response(200 if digest in stored else 404,
                                      headers={"Content-Length": str(built.manifest.files[0].size)} if digest in stored else {})
            request.read()
            if script["blob_put"]:
                return httpx.Response(script["blob_put"].pop(0), json={"error": "registry_error", "detail": "too slow"})
            stored.add(digest)
            return httpx.Response(201, json={})
        if script["manifest_put"]:
            status = script["manifest_put"].pop(0)
            if status == 404:
                stored.clear()   # the registry's gc removed what was uploaded
                return httpx.Response(404, json={"error": "not_found", "detail": "is being removed as unused"})
            return httpx.Response(429, json={"error": "busy", "detail": "queue full"}, headers={"Retry-After": "0.5"})
        return httpx.Response(201, json={})

    waits: list[float] = []
    with RegistryClient(URL, token="t", transport=httpx.MockTransport(handler)) as client:
        result = upload(built.manifest, built.paths, client, progress=False, sleep=waits.append)
    assert result.created and waits == [0.5]
    assert len([s for s in seen if s.startswith("PUT sha256")]) == 3   # 408, then sent, then again after the gc


def test_a_labels_file_with_control_characters_is_refused_at_publish(tmp_path: Path, small_package) -> None:
    """The registry reads every labels file at publish (a client other than nnpm pack could send one)."""
    from starlette.testclient import TestClient

    from nnpm.format.manifest import FileEntry
    from registry_server.app import create_app
    from registry_server.services.auth import add_user
    from registry_server.settings import ServerSettings

    folder = small_package("labelled", "1.0.0", extra_toml='\n[model.outputs.Y]\nlabels = "labels.txt"\n')
    (folder / "labels.txt").write_text("cat\ndog\nbird\n")
    built = build(folder)
    evil = b"cat\n\x1b]8;;http://evil.example\x07dog\n"
    (folder / "labels.txt").write_bytes(evil)
    import hashlib

    entry = FileEntry("labels.txt", len(evil), hashlib.sha256(evil).hexdigest())
    manifest = built.manifest.with_files([f for f in built.manifest.files if f.path != "labels.txt"] + [entry])
    settings = ServerSettings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as http:
        headers = {"Authorization": f"Bearer {add_user(settings.database_url, 'alice')}"}
        for f in manifest.files:
            http.put(f"/api/v1/blobs/sha256:{f.sha256}", content=(folder / f.path).read_bytes(), headers=headers)
        r = http.put("/api/v1/packages/labelled/1.0.0", content=manifest.to_json(), headers=headers)
    assert r.status_code == 400 and "labels.txt: line 2: contains the control character U+001B" in r.json()["detail"]

"""Registry hardening (issue 13), the publish side: the validator's scratch space, READMEs rendered
once at publish, stored manifests parsed once, custom-op domains refused.

The app in memory (create_app behind Starlette's TestClient) where only answers matter; real
servers (tests/registry_proc.py) where the stored state or a second file system does.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sqlite3
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from nnpm.author.pack import build
from nnpm.format.manifest import FileEntry, Manifest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.registry_backends("sqlite-dir")


def in_process(tmp_path: Path, **settings) -> TestClient:
    """The registry app in memory over a fresh data folder (use it as a context manager)."""
    from registry_server.app import create_app
    from registry_server.settings import ServerSettings

    return TestClient(create_app(ServerSettings(data_dir=tmp_path / "data", **settings)), base_url="http://reg.test")


def publish_in_process(client: TestClient, user: str, manifest: Manifest, paths: dict[str, Path]) -> httpx.Response:
    """Upload every file of `manifest` (from `paths`) as `user`, then PUT the manifest; the manifest's answer."""
    from registry_server.services.auth import add_user

    auth = {"Authorization": f"Bearer {add_user(client.app.state.settings.database_url, user)}"}
    for f in manifest.files:
        r = client.put(f"/api/v1/blobs/sha256:{f.sha256}", content=paths[f.path].read_bytes(), headers=auth)
        assert r.status_code in (200, 201), r.text
    return client.put(f"/api/v1/packages/{manifest.name}/{manifest.version}", content=manifest.to_json(), headers=auth)


def blob_path(data_dir: Path, digest: str) -> Path:
    return data_dir / "blobs" / "sha256" / digest[:2] / digest


# -- the validator's scratch folder ----------------------------------------------------------------

def test_the_validator_links_each_blob_and_gives_the_worker_only_the_graph_and_its_data(
        tmp_path: Path, small_package, monkeypatch: pytest.MonkeyPatch) -> None:
    from registry_server.services import validate
    from registry_server.settings import ServerSettings
    from registry_server.storage.directory import DirBlobStore

    settings = ServerSettings(data_dir=tmp_path / "data")
    store = DirBlobStore(settings.blobs_dir, settings.tmp_dir)
    built = build(small_package("dup", external_data=True))
    weights = built.manifest.file("weights.bin")
    aliases = [FileEntry(f"copies/w{i}.bin", weights.size, weights.sha256) for i in range(7)]
    manifest = built.manifest.with_files([*built.manifest.files, *aliases])

    async def upload() -> None:
        async def body(data: bytes):
            yield data
        for f in built.manifest.files:
            await store.put(f.sha256, body(built.paths[f.path].read_bytes()), size=f.size)

    asyncio.run(upload())
    seen: dict[str, os.stat_result] = {}
    real_worker = validate.run_worker

    def look_then_run(root: Path, model_file: str, **limits) -> dict:
        seen.update({p.relative_to(root).as_posix(): p.stat() for p in root.rglob("*") if p.is_file()})
        return real_worker(root, model_file, **limits)

    monkeypatch.setattr(validate, "run_worker", look_then_run)
    validate.check_model(manifest, store, settings)
    assert set(seen) == {"model.onnx", "weights.bin", *(a.path for a in aliases)}  # no README
    by_path = {f.path: f.sha256 for f in manifest.files}
    for path, st in seen.items():  # every name is the stored blob itself: nothing was copied
        assert st.st_ino == blob_path(settings.data_dir, by_path[path]).stat().st_ino, path
    assert list(settings.tmp_dir.glob("validate-*")) == []


def test_the_scratch_space_a_publish_may_copy_is_bounded(registry_factory, small_package, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a second file system (/dev/shm) so that blobs cannot be hard-linked")
    elsewhere = Path(tempfile.mkdtemp(prefix="nnpm-blobs-", dir=shm))
    try:
        monkeypatch.setenv("NNPM_REGISTRY_VALIDATE_SCRATCH", "100")  # the graph alone is larger
        reg = registry_factory(storage_url=f"file://{elsewhere}")
        r = reg.publish(small_package("big", external_data=True), reg.add_user("big"))
        assert r.status_code == 413 and r.json()["error"] == "too_large", r.text
        assert "scratch space" in r.json()["detail"] and "--validate-scratch" in r.json()["hint"]
        assert list((reg.data_dir / "tmp").glob("validate-*")) == []
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


# -- READMEs ---------------------------------------------------------------------------------------

HOSTILE_README = "# Hello\n\n<script>alert(1)</script>\n\n[click](javascript:alert(1))\n\n*fine*\n"


def test_a_readme_is_rendered_once_at_publish_and_its_card_needs_no_blob(registry_factory, small_package) -> None:
    reg = registry_factory()
    built = build(small_package("once", readme=HOSTILE_README))
    assert reg.publish(built.paths["README.md"].parent, reg.add_user("once")).status_code == 201
    (stored,) = reg.query("SELECT readme_html FROM versions")
    assert "<h1>Hello</h1>" in stored[0] and "&lt;script&gt;" in stored[0]
    blob_path(reg.data_dir, built.manifest.file("README.md").sha256).unlink()  # a view would need it to render
    page = httpx.get(reg.url + "/packages/once").text
    assert "<h1>Hello</h1>" in page and "<em>fine</em>" in page
    assert "<script>alert" not in page and 'href="javascript:' not in page and "&lt;script&gt;" in page


def test_a_readme_slower_to_render_than_allowed_is_kept_as_escaped_text(registry_factory, small_package,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNPM_REGISTRY_README_TIMEOUT", "0.001")  # no subprocess starts that fast
    reg = registry_factory()
    assert reg.publish(small_package("slowdown", readme=HOSTILE_README), reg.add_user("slow")).status_code == 201
    page = httpx.get(reg.url + "/packages/slowdown").text
    assert '<pre class="readme-plain"># Hello' in page and "<h1>Hello</h1>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page


def test_a_version_without_stored_html_shows_its_readme_as_text_never_rendered_on_view(
        registry_factory, small_package) -> None:
    reg = registry_factory()
    assert reg.publish(small_package("older", readme=HOSTILE_README), reg.add_user("old")).status_code == 201
    with sqlite3.connect(reg.data_dir / "registry.db") as db:  # as a version published before 0002 is
        db.execute("UPDATE versions SET readme_html = NULL")
    page = httpx.get(reg.url + "/packages/older").text
    assert '<pre class="readme-plain"># Hello' in page and "<h1>Hello</h1>" not in page
    assert "<script>alert" not in page


# -- stored manifests are parsed once --------------------------------------------------------------

def test_a_stored_manifest_is_parsed_once_however_often_its_card_and_packument_are_read(
        tmp_path: Path, small_package, monkeypatch: pytest.MonkeyPatch) -> None:
    built = build(small_package("parsed-once", weights=(4.0, 2.0)))
    parse = Manifest.from_dict.__func__
    calls: list[str] = []

    def counting(cls, data, **kwargs):
        calls.append(kwargs.get("file") or "")
        return parse(cls, data, **kwargs)

    with in_process(tmp_path) as client:
        assert publish_in_process(client, "p", built.manifest, built.paths).status_code == 201
        monkeypatch.setattr(Manifest, "from_dict", classmethod(counting))
        for _ in range(5):
            assert client.get("/packages/parsed-once").status_code == 200
            assert client.get("/packages/parsed-once/1.0.0").status_code == 200
            assert client.get("/api/v1/packages/parsed-once").status_code == 200
    assert len(calls) <= 1, calls


# -- custom operators ------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["node", "opset import", "subgraph node"])
def test_a_model_that_needs_a_custom_op_library_is_refused_at_publish(tmp_path: Path, small_package,
                                                                      where: str) -> None:
    import onnx
    from onnx import TensorProto, helper

    folder = small_package("customop", weights=(1.0, 2.0, 3.0))
    built = build(folder)
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3])
    w = helper.make_tensor("W", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    if where == "node":
        nodes = [helper.make_node("FancyAdd", ["X", "W"], ["Y"], domain="com.example")]
    elif where == "opset import":
        nodes = [helper.make_node("Add", ["X", "W"], ["Y"])]
    else:
        inner = helper.make_graph([helper.make_node("FancyAdd", ["X", "W"], ["Z"], domain="com.example")], "branch",
                                  [], [helper.make_tensor_value_info("Z", TensorProto.FLOAT, ["N", 3])])
        nodes = [helper.make_node("Constant", [], ["C"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
                 helper.make_node("If", ["C"], ["Y"], then_branch=inner, else_branch=inner)]
    model = helper.make_model(helper.make_graph(nodes, "custom", [x], [y], [w]), ir_version=8,
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save_model(model, folder / "model.onnx")
    data = (folder / "model.onnx").read_bytes()
    entry = FileEntry("model.onnx", len(data), hashlib.sha256(data).hexdigest())
    manifest = replace(built.manifest.with_files([f for f in built.manifest.files if f.path != "model.onnx"] + [entry]),
                       opsets={"": 17, "com.example": 1}, graph_table={})   # judged by the worker alone
    with in_process(tmp_path) as client:
        r = publish_in_process(client, "c", manifest, built.paths)
    if where == "opset import":   # imported but unused: onnxruntime runs it without any library
        assert r.status_code == 201, r.text
        return
    assert r.status_code == 422 and r.json()["error"] == "invalid_model", r.text
    assert "com.example" in r.json()["detail"] and "custom-op" in r.json()["detail"]

"""The registry's JSON API, driven with raw httpx calls exactly as docs/protocol.md describes.

Every test using `registry`, `shared_registry` or `registry_factory` runs on both backends
of tests/conftest.py (`sqlite-dir`, `postgres-s3`); what a test checks behind the server's
back (rows, stored blobs, scratch files) it reads through `Registry.query` and friends.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from nnpm import errors as E
from nnpm.format.manifest import Manifest

EXAMPLE_ORDER = ["resnet18", "digits", "digits-preprocess", "imagenet-preprocess", "topk",
                 "digits-classifier", "imagenet-classifier"]
ROOT = Path(__file__).resolve().parents[1]


# -- helpers -----------------------------------------------------------------------------------------

def built(folder: Path):
    from nnpm.author.pack import build

    return build(folder)


def upload_blobs(reg, token: str, b) -> None:
    """PUT every file of a built package."""
    with reg.client(token) as c:
        for f in b.manifest.files:
            r = c.put(f"/api/v1/blobs/sha256:{f.sha256}", content=b.paths[f.path].read_bytes())
            assert r.status_code in (200, 201), r.text


def put_blob(reg, token: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    with reg.client(token) as c:
        r = c.put(f"/api/v1/blobs/sha256:{digest}", content=data)
    assert r.status_code in (200, 201), r.text
    return digest


def put_manifest(reg, token: str | None, name: str, version: str, body: bytes | dict) -> httpx.Response:
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    with reg.client(token) as c:
        return c.put(f"/api/v1/packages/{name}/{version}", content=body,
                     headers={"Content-Type": "application/json"})


def assert_error(r: httpx.Response, status: int, code: str, *words: str) -> dict:
    """The one error shape: status, JSON {"error", "detail", "hint", "fields"}, X-Error-Code; detail mentions `words`."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "detail", "hint", "fields"}, body
    assert isinstance(body["fields"], dict) and (body["hint"] is None or isinstance(body["hint"], str)), body
    assert body["error"] == code and r.headers["x-error-code"] == code, body
    for w in words:
        assert w.lower() in body["detail"].lower(), (w, body)
    return body


def assert_nothing_published(reg, name: str) -> None:
    with reg.client() as c:
        assert c.get(f"/api/v1/packages/{name}").status_code == 404
    assert reg.query("SELECT count(*) FROM versions v JOIN packages p ON p.id = v.package_id "
                     "WHERE p.name = :name", name=name) == [(0,)]


def tmp_entries(reg) -> list[str]:
    """What is left in the server's scratch folder (uploads in flight, worker folders): must be nothing."""
    tmp = reg.data_dir / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []


# -- the happy path ------------------------------------------------------------------------------------

def test_publish_every_example_then_read_and_download_it_back(registry, examples_dir: Path) -> None:
    token = registry.add_user("alice")
    with registry.client(token) as c:
        for name in EXAMPLE_ORDER:
            b = built(examples_dir / name)
            for f in b.manifest.files:  # protocol step 2: HEAD, upload only what is missing
                head = c.head(f"/api/v1/blobs/sha256:{f.sha256}")
                if head.status_code == 404:
                    with open(b.paths[f.path], "rb") as fh:
                        up = c.put(f"/api/v1/blobs/sha256:{f.sha256}", content=fh,
                                   headers={"Content-Length": str(f.size)})
                    assert up.status_code == 201, up.text
                else:
                    assert head.status_code == 200 and int(head.headers["content-length"]) == f.size
            r = c.put(f"/api/v1/packages/{name}/1.0.0", content=b.manifest.to_json())
            assert r.status_code == 201, r.text
            assert r.json()["manifest"] == json.loads(b.manifest.to_json())

        for name in EXAMPLE_ORDER:
            b = built(examples_dir / name)
            doc = c.get(f"/api/v1/packages/{name}").json()
            assert doc["name"] == name and doc["latest"] == "1.0.0"
            (v,) = doc["versions"]
            assert v["version"] == "1.0.0" and v["yanked"] is False and v["yanked_reason"] is None
            assert v["published_at"].endswith("Z")
            assert Manifest.from_dict(v["manifest"]) == b.manifest
            one = c.get(f"/api/v1/packages/{name}/1.0.0").json()
            assert set(one) == {"name", "version", "yanked", "yanked_reason", "published_at", "manifest"}
            assert one["manifest"] == v["manifest"]
            for f in b.manifest.files:
                h = hashlib.sha256()
                size = 0
                with c.stream("GET", f"/api/v1/blobs/sha256:{f.sha256}") as resp:
                    assert resp.status_code == 200
                    assert resp.headers["etag"] == f'"sha256:{f.sha256}"'
                    assert resp.headers["cache-control"] == "public, max-age=31536000, immutable"
                    assert resp.headers["accept-ranges"] == "bytes"
                    assert int(resp.headers["content-length"]) == f.size
                    for chunk in resp.iter_bytes():
                        h.update(chunk)
                        size += len(chunk)
                assert (h.hexdigest(), size) == (f.sha256, f.size)
        assert c.get("/api/v1/packages/imagenet-classifier").json()["versions"][0]["manifest"]["pipeline"][
            "steps"] == ["imagenet-preprocess", "resnet18", "topk"]
        assert c.get("/api/v1/packages/resnet18/owners").json() == {"owners": ["alice"]}
    assert tmp_entries(registry) == []


def test_health_whoami_and_names_in_any_pep503_spelling(registry, small_package) -> None:
    token = registry.add_user("alice")
    with registry.client(token) as c:
        health = c.get("/api/v1/health").json()
        assert health["status"] == "ok" and health["version"]
        assert c.get("/api/v1/whoami").json() == {"user": "alice"}
    assert registry.publish(small_package("My_Model", "1.0"), token).status_code == 201
    with registry.client() as c:
        assert c.get("/api/v1/packages/my.model").json()["name"] == "my-model"
        one = c.get("/api/v1/packages/MY_MODEL/1.0.0").json()  # 1.0 and 1.0.0 are the same version
        assert one["name"] == "my-model" and one["version"] == "1.0"
        assert_error(c.get("/api/v1/packages/my-model/2.0"), 404, "not_found", "2.0")
        assert_error(c.get("/api/v1/packages/nope"), 404, "not_found", "nope")
        assert_error(c.get("/api/v1/packages/my-model/not-a-version"), 400, "invalid_manifest", "version")


def test_ready_checks_the_database_and_the_blob_store(registry) -> None:
    with registry.client() as c:
        resp = c.get("/api/v1/ready")
        assert resp.status_code == 200 and resp.json()["status"] == "ready"
        if registry.backend != "sqlite-dir":
            return
        blobs = registry.data_dir / "blobs"
        blobs.rename(registry.data_dir / "blobs-away")
        try:
            resp = c.get("/api/v1/ready")
            assert resp.status_code == 503
            assert resp.json()["error"] == "registry_error" and "blob store" in resp.json()["detail"]
            assert c.get("/api/v1/health").status_code == 200  # alive, just not ready
        finally:
            (registry.data_dir / "blobs-away").rename(blobs)
        assert c.get("/api/v1/ready").status_code == 200


def test_openapi_document_and_docs_page(shared_registry) -> None:
    with shared_registry.client() as c:
        paths = c.get("/openapi.json").json()["paths"]
        assert "/api/v1/packages/{name}/{version}" in paths and "/api/v1/blobs/{ref}" in paths
        assert "swagger" in c.get("/docs").text.lower()


# -- auth and ownership --------------------------------------------------------------------------------

def test_writes_without_a_token_are_401(registry, small_package) -> None:
    b = built(small_package("tiny"))
    f = b.manifest.files[0]
    with registry.client() as c:
        calls = [c.put(f"/api/v1/blobs/sha256:{f.sha256}", content=b.paths[f.path].read_bytes()),
                 c.put("/api/v1/packages/tiny/1.0.0", content=b.manifest.to_json()),
                 c.post("/api/v1/packages/tiny/1.0.0/yank", json={"reason": "x"}),
                 c.delete("/api/v1/packages/tiny/1.0.0/yank"),
                 c.put("/api/v1/packages/tiny/owners/alice"),
                 c.get("/api/v1/whoami")]
    for r in calls:
        assert_error(r, 401, "unauthorized", "token")
        assert r.headers["www-authenticate"] == "Bearer"
    secret = "nnpm_not-a-real-token-1234567890"
    with registry.client(secret) as c:
        r = c.get("/api/v1/whoami")
    assert_error(r, 401, "unauthorized")
    assert secret not in r.text and secret not in registry.log_path.read_text()
    with registry.client() as c:
        assert c.head(f"/api/v1/blobs/sha256:{f.sha256}").status_code == 404
    assert_nothing_published(registry, "tiny")


def test_another_users_package_is_403_until_an_owner_adds_them(registry, small_package) -> None:
    alice, bob = registry.add_user("alice"), registry.add_user("bob")
    assert registry.publish(small_package("tiny", "1.0.0"), alice).status_code == 201
    r = registry.publish(small_package("tiny", "1.1.0", weights=(4.0, 5.0, 6.0)), bob)
    assert_error(r, 403, "forbidden", "bob", "owner")
    with registry.client(bob) as c:
        assert_error(c.post("/api/v1/packages/tiny/1.0.0/yank", json={"reason": "mine"}), 403, "forbidden")
        assert_error(c.put("/api/v1/packages/tiny/owners/bob"), 403, "forbidden")
    with registry.client(alice) as c:
        assert_error(c.put("/api/v1/packages/tiny/owners/carol"), 404, "not_found", "carol")
        assert c.put("/api/v1/packages/tiny/owners/bob").json() == {"owners": ["alice", "bob"]}
        assert c.put("/api/v1/packages/tiny/owners/bob").json() == {"owners": ["alice", "bob"]}
        assert_error(c.put("/api/v1/packages/nope/owners/bob"), 404, "not_found", "nope")
    assert registry.publish(small_package("tiny", "1.1.0", weights=(4.0, 5.0, 6.0)), bob).status_code == 201
    with registry.client() as c:
        assert c.get("/api/v1/packages/tiny/owners").json() == {"owners": ["alice", "bob"]}
        assert [v["version"] for v in c.get("/api/v1/packages/tiny").json()["versions"]] == ["1.0.0", "1.1.0"]


# -- immutability ----------------------------------------------------------------------------------------

def test_publish_same_version_other_bytes_is_409_identical_retry_is_200(registry, small_package) -> None:
    token = registry.add_user("alice")
    folder = small_package("tiny", "1.0.0")
    original = built(folder).manifest
    assert registry.publish(folder, token).status_code == 201
    again = registry.publish(folder, token)
    assert again.status_code == 200 and again.json()["version"] == "1.0.0"
    pretty = json.dumps(json.loads(original.to_json()), indent=4).encode()  # same canonical bytes
    assert put_manifest(registry, token, "tiny", "1.0.0", pretty).status_code == 200
    changed = small_package("tiny", "1.0.0", description="another description")  # same folder, rewritten
    assert_error(registry.publish(changed, token), 409, "conflict", "tiny", "1.0.0")
    other_weights = small_package("tiny", "1.0.0", weights=(9.0, 9.0, 9.0))
    assert_error(registry.publish(other_weights, token), 409, "conflict")
    with registry.client() as c:
        (v,) = c.get("/api/v1/packages/tiny").json()["versions"]
    assert Manifest.from_dict(v["manifest"]) == original


@pytest.mark.parametrize("same_bytes", [True, False], ids=["identical", "different"])
def test_two_clients_publishing_one_version_at_once_make_one_row(registry, small_package, same_bytes) -> None:
    alice = registry.add_user("alice")
    first = built(small_package("race", "1.0.0"))
    second = first if same_bytes else built(small_package("race", "1.0.0", description="the other one"))
    upload_blobs(registry, alice, first)
    upload_blobs(registry, alice, second)
    barrier = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def go(b) -> None:
        body = b.manifest.to_json()
        with registry.client(alice) as c:
            barrier.wait()
            answers.append(c.put("/api/v1/packages/race/1.0.0", content=body))

    threads = [threading.Thread(target=go, args=(b,)) for b in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(r.status_code for r in answers)
    assert statuses == ([200, 201] if same_bytes else [201, 409]), [r.text for r in answers]
    for table in ("versions", "packages", "owners"):
        assert registry.query(f"SELECT count(*) FROM {table}") == [(1,)], table


# -- blobs ---------------------------------------------------------------------------------------------

def test_blob_range_requests_etag_and_head(registry) -> None:
    token = registry.add_user("alice")
    data = os.urandom(300_000)
    digest = put_blob(registry, token, data)
    url = f"/api/v1/blobs/sha256:{digest}"
    with registry.client(token) as c:
        again = c.put(url, content=data)
        assert again.status_code == 200 and again.json() == {"digest": f"sha256:{digest}", "size": len(data)}
        head = c.head(url)
        assert head.status_code == 200 and head.headers["content-length"] == str(len(data)) and not head.content
        for header, (first, last) in {"bytes=1000-": (1000, len(data) - 1), "bytes=10-19": (10, 19),
                                      "bytes=-100": (len(data) - 100, len(data) - 1),
                                      "bytes=299990-999999999": (299990, len(data) - 1)}.items():
            r = c.get(url, headers={"Range": header})
            assert r.status_code == 206, header
            assert r.content == data[first:last + 1]
            assert r.headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
            assert r.headers["content-length"] == str(last - first + 1)
        r = c.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert_error(r, 416, "registry_error")
        assert r.headers["content-range"] == f"bytes */{len(data)}"
        assert c.get(url, headers={"Range": "bytes=5-2"}).content == data  # invalid range: ignored
        assert c.get(url, headers={"Range": "bytes=0-1", "If-Range": '"sha256:other"'}).status_code == 200
        etag = c.get(url).headers["etag"]
        assert c.get(url, headers={"If-None-Match": etag}).status_code == 304
        missing = "0" * 64
        assert c.head(f"/api/v1/blobs/sha256:{missing}").status_code == 404
        assert_error(c.get(f"/api/v1/blobs/sha256:{missing}"), 404, "not_found")


def test_blob_that_does_not_match_its_digest_is_refused_and_not_stored(registry) -> None:
    token = registry.add_user("alice")
    data = b"hello, model"
    wrong = hashlib.sha256(b"something else").hexdigest()
    with registry.client(token) as c:
        assert_error(c.put(f"/api/v1/blobs/sha256:{wrong}", content=data), 400, "integrity_error", "hash")
        assert c.head(f"/api/v1/blobs/sha256:{wrong}").status_code == 404
        # a body without Content-Length (chunked) is refused: the size must be known up front
        r = c.put(f"/api/v1/blobs/sha256:{hashlib.sha256(data).hexdigest()}", content=iter([data]))
        assert_error(r, 411, "registry_error", "content-length")
    assert registry.stored_blobs() == set() and registry.uploads_in_flight() == []
    assert tmp_entries(registry) == []


@pytest.mark.parametrize("ref", ["sha256:abc", "sha256:" + "A" * 64, "md5:" + "0" * 64, "0" * 64,
                                 "sha256:" + "0" * 63 + "g", "sha256:" + "0" * 65])
def test_malformed_digest_is_400(shared_registry, ref: str) -> None:
    token = shared_registry.add_user("alice")
    with shared_registry.client(token) as c:
        for r in (c.get(f"/api/v1/blobs/{ref}"), c.put(f"/api/v1/blobs/{ref}", content=b"x")):
            assert_error(r, 400, "invalid_manifest", "digest")
        assert c.head(f"/api/v1/blobs/{ref}").status_code == 400


def test_bodies_over_the_limits_are_413(registry_factory, small_package) -> None:
    reg = registry_factory(max_blob_size=1024, max_manifest_size=4096)
    token = reg.add_user("alice")
    big = os.urandom(2048)
    with reg.client(token) as c:
        r = c.put(f"/api/v1/blobs/sha256:{hashlib.sha256(big).hexdigest()}", content=big)
        assert_error(r, 413, "too_large", "1024")
        assert c.head(f"/api/v1/blobs/sha256:{hashlib.sha256(big).hexdigest()}").status_code == 404
        manifest = json.loads(built(small_package("tiny")).manifest.to_json())
        manifest["package"]["description"] = "x" * 5000
        assert_error(c.put("/api/v1/packages/tiny/1.0.0", content=json.dumps(manifest)), 413, "too_large", "4096")
        chunks = iter([b"{" + b" " * 3000, b" " * 3000 + b"}"])  # chunked: counted while reading
        assert_error(c.put("/api/v1/packages/tiny/1.0.0", content=chunks), 413, "too_large")
    assert_nothing_published(reg, "tiny")
    assert tmp_entries(reg) == []


# -- manifests that must be refused ---------------------------------------------------------------------

def _manifest(b) -> dict:
    return json.loads(b.manifest.to_json())


def _external_escape(tmp_path: Path) -> tuple[bytes, dict]:
    """A model whose weights live 'outside' the package (location ../weights.bin) and its manifest."""
    import onnx
    from onnx import TensorProto, helper

    from nnpm.format.onnxinfo import signature_of

    w = helper.make_tensor("W", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    graph = helper.make_graph([helper.make_node("Add", ["X", "W"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    init = model.graph.initializer[0]
    init.ClearField("float_data")
    init.data_location = TensorProto.EXTERNAL
    for k, v in {"location": "../weights.bin", "offset": "0", "length": "12"}.items():
        init.external_data.add(key=k, value=v)
    data = model.SerializeToString()
    manifest = {"format": 1, "package": {"name": "escape", "version": "1.0.0"},
                "model": {"file": "model.onnx"}, "signature": signature_of(model.graph).to_dict(),
                "opsets": {"": 17}, "ir_version": 8, "params": 3,
                "files": [{"path": "model.onnx", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]}
    assert onnx.load_from_string(data).graph.initializer[0].external_data[0].value == "../weights.bin"
    return data, manifest


def _case_unknown_key(m: dict) -> None:
    m["package"]["colour"] = "blue"


def _case_invalid_version(m: dict) -> None:
    m["package"]["version"] = "one point oh"


def _case_invalid_name(m: dict) -> None:
    m["package"]["name"] = "bad name!"


def _case_dotdot_path(m: dict) -> None:
    m["files"][0]["path"] = "../" + m["files"][0]["path"]


def _case_signature_differs(m: dict) -> None:
    m["signature"]["inputs"][0]["dtype"] = "int64"


def _case_params_differ(m: dict) -> None:
    m["params"] += 1


def _case_opsets_differ(m: dict) -> None:
    m["opsets"] = {"": 13}


def _case_format(m: dict) -> None:
    m["format"] = 99


def _case_no_signature(m: dict) -> None:
    m["signature"] = None


BAD_MANIFESTS = {  # case → (status, code, words the detail must contain)
    "unknown_key": (_case_unknown_key, 400, "invalid_manifest", ["colour"]),
    "invalid_version": (_case_invalid_version, 400, "invalid_manifest", ["version"]),
    "invalid_name": (_case_invalid_name, 400, "invalid_manifest", ["name"]),
    "dotdot_path": (_case_dotdot_path, 400, "invalid_manifest", [".."]),
    "signature_differs": (_case_signature_differs, 422, "invalid_manifest", ["signature.inputs"]),
    "params_differ": (_case_params_differ, 422, "invalid_manifest", ["params"]),
    "opsets_differ": (_case_opsets_differ, 422, "invalid_manifest", ["opsets"]),
    "unknown_format": (_case_format, 400, "invalid_manifest", ["format"]),
    "no_signature": (_case_no_signature, 400, "invalid_manifest", ["signature"]),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_invalid_manifest_is_refused_and_nothing_stored(shared_registry, small_package, case: str) -> None:
    mutate, status, code, words = BAD_MANIFESTS[case]
    token = shared_registry.add_user("alice")
    name = f"bad-{case.replace('_', '-')}"
    b = built(small_package(name))
    upload_blobs(shared_registry, token, b)
    m = _manifest(b)
    mutate(m)
    assert_error(put_manifest(shared_registry, token, name, "1.0.0", m), status, code, *words)
    assert_nothing_published(shared_registry, name)


def test_manifest_for_another_name_or_version_than_the_url_is_400(shared_registry, small_package) -> None:
    token = shared_registry.add_user("alice")
    b = built(small_package("url-match"))
    upload_blobs(shared_registry, token, b)
    assert_error(put_manifest(shared_registry, token, "url-other", "1.0.0", _manifest(b)), 400,
                 "invalid_manifest", "url-match")
    assert_error(put_manifest(shared_registry, token, "url-match", "2.0.0", _manifest(b)), 400,
                 "invalid_manifest", "version")
    assert_nothing_published(shared_registry, "url-match")
    assert_nothing_published(shared_registry, "url-other")


def test_manifest_naming_a_missing_blob_is_404_naming_the_file(shared_registry, small_package) -> None:
    token = shared_registry.add_user("alice")
    b = built(small_package("missing-blob", readme="# a README no other test uploads\n"))
    readme = b.manifest.file("README.md")
    for f in b.manifest.files:
        if f.path != "README.md":
            put_blob(shared_registry, token, b.paths[f.path].read_bytes())
    assert_error(put_manifest(shared_registry, token, "missing-blob", "1.0.0", _manifest(b)), 404, "not_found",
                 "README.md", readme.sha256)
    m = _manifest(b)
    for f in m["files"]:
        if f["path"] == "README.md":
            f["size"] += 1  # the blob exists, but the manifest lies about its size
    put_blob(shared_registry, token, b.paths["README.md"].read_bytes())
    assert_error(put_manifest(shared_registry, token, "missing-blob", "1.0.0", m), 400, "integrity_error",
                 "README.md")
    assert_nothing_published(shared_registry, "missing-blob")


def test_random_bytes_as_model_onnx_is_422(shared_registry, small_package) -> None:
    token = shared_registry.add_user("alice")
    b = built(small_package("random-model"))
    upload_blobs(shared_registry, token, b)
    junk = os.urandom(4096)
    m = _manifest(b)
    for f in m["files"]:
        if f["path"] == "model.onnx":
            f.update(size=len(junk), sha256=put_blob(shared_registry, token, junk))
    assert_error(put_manifest(shared_registry, token, "random-model", "1.0.0", m), 422, "invalid_model",
                 "model.onnx")
    assert_nothing_published(shared_registry, "random-model")


def test_external_data_outside_the_package_is_422(shared_registry, tmp_path: Path) -> None:
    token = shared_registry.add_user("alice")
    data, m = _external_escape(tmp_path)
    put_blob(shared_registry, token, data)
    assert_error(put_manifest(shared_registry, token, "escape", "1.0.0", m), 422, "unsafe_package",
                 "../weights.bin", "outside")
    assert_nothing_published(shared_registry, "escape")


def test_external_data_inside_the_package_is_accepted(shared_registry, small_package) -> None:
    token = shared_registry.add_user("alice")
    folder = small_package("external-ok", external_data=True)
    assert (folder / "weights.bin").is_file()
    r = shared_registry.publish(folder, token)
    assert r.status_code == 201, r.text
    assert [f["path"] for f in r.json()["manifest"]["files"]] == ["README.md", "model.onnx", "weights.bin"]


def test_manifest_leaving_out_an_external_data_file_is_422(shared_registry, small_package) -> None:
    token = shared_registry.add_user("alice")
    b = built(small_package("external-unlisted", external_data=True))
    upload_blobs(shared_registry, token, b)
    m = _manifest(b)
    m["files"] = [f for f in m["files"] if f["path"] != "weights.bin"]
    assert_error(put_manifest(shared_registry, token, "external-unlisted", "1.0.0", m), 422, "unsafe_package",
                 "weights.bin")
    assert_nothing_published(shared_registry, "external-unlisted")


def test_package_files_named_like_modules_are_never_imported_by_the_worker(shared_registry, small_package,
                                                                          tmp_path: Path) -> None:
    token = shared_registry.add_user("alice")
    marker = tmp_path / "imported"
    folder = small_package("module-names", extra_toml='[files]\ninclude = ["onnx.py", "nnpm/__init__.py"]\n')
    (folder / "nnpm").mkdir()
    for rel in ("onnx.py", "nnpm/__init__.py"):
        (folder / rel).write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    r = shared_registry.publish(folder, token)
    assert r.status_code == 201, r.text
    assert not marker.exists()


@pytest.mark.parametrize("path", ["/api/v1/packages/a%2Fb/1.0.0", "/api/v1/packages/%2E%2E/1.0.0",
                                  "/api/v1/packages/..%2F..%2Fetc/1.0.0", "/api/v1/packages/a%5Cb/1.0.0",
                                  "/api/v1/packages/-bad-/1.0.0", "/api/v1/packages/a%20b/1.0.0"])
def test_name_with_slash_dotdot_or_spaces_is_400(shared_registry, path: str) -> None:
    token = shared_registry.add_user("alice")
    with shared_registry.client(token) as c:
        for method in ("GET", "PUT"):
            r = c.request(method, httpx.URL(shared_registry.url + path), content=b"{}")
            assert_error(r, 400, "invalid_manifest", "name")


def test_deeply_nested_json_is_400_not_500(shared_registry) -> None:
    token = shared_registry.add_user("alice")
    for body in (b"[" * 100_000, b"[" * 50_000 + b"]" * 50_000, b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
                 b"[" * 900 + b"]" * 900):
        r = put_manifest(shared_registry, token, "deep", "1.0.0", body)
        assert_error(r, 400, "invalid_manifest", "nested")
    for body in (b"not json", b"\xff\xfe\x00", b"[]", b"{}", b"1" * 5000, b'{"format": 1e999999}'):
        assert_error(put_manifest(shared_registry, token, "deep", "1.0.0", body), 400, "invalid_manifest")
    assert_nothing_published(shared_registry, "deep")
    with shared_registry.client() as c:
        assert c.get("/api/v1/health").status_code == 200


def test_numbers_past_pythons_int_digit_limit_are_400(shared_registry) -> None:
    token = shared_registry.add_user("alice")
    huge = "1.post" + "9" * 5000
    with shared_registry.client(token) as c:
        assert_error(c.get(f"/api/v1/packages/tiny/{huge}"), 400, "invalid_manifest", "version")
        assert_error(c.put(f"/api/v1/packages/tiny/{huge}", content=b"{}"), 400, "invalid_manifest", "version")
    body = {"format": 1, "package": {"name": "digits-limit", "version": huge}}
    assert_error(put_manifest(shared_registry, token, "digits-limit", "1.0.0", body), 400, "invalid_manifest")
    assert_nothing_published(shared_registry, "digits-limit")


def test_huge_json_is_413(shared_registry) -> None:
    token = shared_registry.add_user("alice")
    huge = json.dumps({"format": 1, "files": [{"path": f"f{i}", "size": 1, "sha256": "0" * 64}
                                              for i in range(60_000)]}).encode()
    assert len(huge) > 4 * 1024 * 1024
    assert_error(put_manifest(shared_registry, token, "huge", "1.0.0", huge), 413, "too_large")
    assert_nothing_published(shared_registry, "huge")


# -- yank, packument cache, search -------------------------------------------------------------------------

def test_yank_unyank_and_latest(registry, small_package) -> None:
    token = registry.add_user("alice")
    for version in ("1.0.0", "1.1.0", "2.0.0rc1"):
        assert registry.publish(small_package("tiny", version), token).status_code == 201
    with registry.client(token) as c:
        assert c.get("/api/v1/packages/tiny").json()["latest"] == "1.1.0"  # pre-releases are not latest
        r = c.post("/api/v1/packages/tiny/1.1.0/yank", json={"reason": "wrong weights"})
        assert r.status_code == 200
        assert (r.json()["yanked"], r.json()["yanked_reason"], r.json()["version"]) == (True, "wrong weights", "1.1.0")
        doc = c.get("/api/v1/packages/tiny").json()
        assert doc["latest"] == "1.0.0"
        assert [(v["version"], v["yanked"]) for v in doc["versions"]] == [
            ("1.0.0", False), ("1.1.0", True), ("2.0.0rc1", False)]
        r = c.delete("/api/v1/packages/tiny/1.1.0/yank")
        assert (r.json()["yanked"], r.json()["yanked_reason"]) == (False, None)
        assert c.get("/api/v1/packages/tiny").json()["latest"] == "1.1.0"
        assert c.post("/api/v1/packages/tiny/1.0.0/yank").json()["yanked"] is True  # the reason is optional
        assert_error(c.post("/api/v1/packages/tiny/9.9.9/yank", json={}), 404, "not_found", "9.9.9")
        assert_error(c.post("/api/v1/packages/tiny/1.0.0/yank", json={"reason": 5}), 400, "invalid_manifest")
        # yanked versions stay downloadable: yanking never deletes
        assert c.get("/api/v1/packages/tiny/1.0.0").json()["yanked"] is True


def test_packument_etag_gives_304_and_changes_on_publish_and_yank(registry, small_package) -> None:
    token = registry.add_user("alice")
    registry.publish(small_package("tiny", "1.0.0"), token)
    with registry.client(token) as c:
        r = c.get("/api/v1/packages/tiny")
        etag = r.headers["etag"]
        assert etag.startswith('"') and r.headers["content-type"].startswith("application/json")
        not_modified = c.get("/api/v1/packages/tiny", headers={"If-None-Match": etag})
        assert not_modified.status_code == 304 and not_modified.headers["etag"] == etag and not not_modified.content
        assert c.get("/api/v1/packages/tiny", headers={"If-None-Match": '"other"'}).status_code == 200
        c.post("/api/v1/packages/tiny/1.0.0/yank", json={"reason": "x"})
        yanked = c.get("/api/v1/packages/tiny", headers={"If-None-Match": etag})
        assert yanked.status_code == 200 and yanked.headers["etag"] != etag
    registry.publish(small_package("tiny", "1.1.0"), token)
    with registry.client() as c:
        assert c.get("/api/v1/packages/tiny", headers={"If-None-Match": yanked.headers["etag"]}).status_code == 200


def test_search_by_name_description_and_tag_case_insensitive(registry, small_package) -> None:
    token = registry.add_user("alice")
    registry.publish(small_package("alpha-net", description="Classifies Cats", tags=("vision",)), token)
    registry.publish(small_package("beta", description="Speech to text", tags=("audio", "asr")), token)
    registry.publish(small_package("alpha-net", "2.0.0", description="Classifies Cats and dogs",
                                   tags=("vision",)), token)

    def names(q: str, **params) -> list[str]:
        with registry.client() as c:
            return [r["name"] for r in c.get("/api/v1/search", params={"q": q, **params}).json()["results"]]

    assert names("ALPHA") == ["alpha-net"]
    assert names("alpha_net") == ["alpha-net"]
    assert names("cats") == ["alpha-net"]
    assert names("Audio") == ["beta"]
    assert names("") == ["alpha-net", "beta"]
    assert names("", limit=1) == ["alpha-net"]
    assert names("%") == [] and names("a%t") == []  # LIKE wildcards are matched literally
    assert names("alpha net") == ["alpha-net"]
    assert names("nothing-like-this") == []
    with registry.client() as c:
        (hit,) = c.get("/api/v1/search", params={"q": "dogs"}).json()["results"]
        assert hit == {"name": "alpha-net", "version": "2.0.0", "description": "Classifies Cats and dogs",
                       "tags": ["vision"]}
        assert_error(c.get("/api/v1/search", params={"limit": "lots"}), 400, "invalid_manifest", "limit")


# -- the error map and the CLI ------------------------------------------------------------------------------

def test_every_nnpm_error_class_has_a_4xx_status() -> None:
    for cls in E.all_error_classes():
        exc = cls.__new__(cls)
        Exception.__init__(exc, "x")
        status = exc.response_status()
        assert 400 <= status < 500 or cls is E.RegistryError, (cls, status)
    assert E.ForbiddenError("x").response_status() == 403 and E.UnauthenticatedError("x").response_status() == 401
    assert E.ModelError("x").response_status() == 422 and E.ManifestError("x").response_status() == 400
    assert E.ManifestError("x", status=422).response_status() == 422


def test_cli_user_add_prints_a_token_on_the_last_line_and_serve_runs(tmp_path: Path) -> None:
    from conftest import free_port

    data = tmp_path / "reg"
    env = {**os.environ, "NNPM_HOME": str(tmp_path / "home")}
    nnpm = [sys.executable, "-c", "from nnpm.cli import main; main()"]
    out = subprocess.run([*nnpm, "registry", "user", "add", "alice", "--data", str(data)], env=env,
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    token = out.strip().splitlines()[-1]
    assert token.startswith("nnpm_") and " " not in token
    assert token not in (data / "registry.db").read_bytes().decode("latin-1")
    bad = subprocess.run([*nnpm, "registry", "user", "add", "no spaces", "--data", str(data)], env=env,
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "invalid user name" in bad.stderr
    port = free_port()
    proc = subprocess.Popen([*nnpm, "registry", "serve", "--data", str(data), "--port", str(port)], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == f"nnpm registry serving on http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
                break
            except httpx.TransportError:
                import time

                time.sleep(0.05)
        assert r.json() == {"user": "alice"}
    finally:
        proc.terminate()
        proc.wait(10)

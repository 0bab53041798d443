"""The registry's JSON API in process (tests/inprocess.py): publishing, auth and ownership, immutability.

Driven with raw httpx calls exactly as docs/protocol.md describes. Every test runs on both
backends (`sqlite-dir`, `postgres-s3`); what a test checks behind the app's back (rows,
stored blobs, scratch files) it reads through tests/protocol.py's `RegistryHandle`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import httpx
import pytest
from protocol import assert_error, assert_nothing_published, built, put_manifest, tmp_entries, upload_blobs

from nnpm.format.manifest import Manifest

EXAMPLE_ORDER = ["resnet18", "digits", "digits-preprocess", "imagenet-preprocess", "topk",
                 "digits-classifier", "imagenet-classifier"]


# -- the happy path ------------------------------------------------------------------------------------

def test_publish_every_example_then_read_and_download_it_back(api, examples_dir: Path) -> None:
    token = api.add_user("alice")
    with api.client(token) as c:
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
            pipeline = b.manifest.project.pipeline is not None   # a pipeline carries its interface, a model what
            assert set(one) == {"name", "version", "yanked", "yanked_reason", "published_at", "manifest",
                                "publisher"} | ({"signature"} if pipeline else {"measured"})   # measured at publish
            assert one["publisher"] == v["publisher"] == "alice" and "signed" not in one   # unsigned
            assert ("measured" in v) is not pipeline
            assert one["manifest"] == v["manifest"]
            assert ("signature" in v and v["signature"]["inputs"]) if pipeline else "signature" not in v
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
    assert tmp_entries(api) == []


def test_health_whoami_and_names_in_any_pep503_spelling(api, small_package) -> None:
    token = api.add_user("alice")
    with api.client(token) as c:
        health = c.get("/api/v1/health").json()
        assert health["status"] == "ok" and health["version"]
        assert c.get("/api/v1/whoami").json() == {"user": "alice"}
    assert api.publish(small_package("My_Model", "1.0"), token).status_code == 201
    with api.client() as c:
        assert c.get("/api/v1/packages/my.model").json()["name"] == "my-model"
        one = c.get("/api/v1/packages/MY_MODEL/1.0.0").json()  # 1.0 and 1.0.0 are the same version
        assert one["name"] == "my-model" and one["version"] == "1.0"
        assert_error(c.get("/api/v1/packages/my-model/2.0"), 404, "not_found", "2.0")
        assert_error(c.get("/api/v1/packages/nope"), 404, "not_found", "nope")
        assert_error(c.get("/api/v1/packages/my-model/not-a-version"), 400, "invalid_manifest", "version")


def test_ready_checks_the_database_and_the_blob_store(api) -> None:
    with api.client() as c:
        resp = c.get("/api/v1/ready")
        assert resp.status_code == 200 and resp.json()["status"] == "ready"
        if api.backend != "sqlite-dir":
            return
        blobs = api.data_dir / "blobs"
        blobs.rename(api.data_dir / "blobs-away")
        try:
            resp = c.get("/api/v1/ready")
            assert resp.status_code == 503
            assert resp.json()["error"] == "registry_error" and "blob store" in resp.json()["detail"]
            assert c.get("/api/v1/health").status_code == 200  # alive, just not ready
        finally:
            (api.data_dir / "blobs-away").rename(blobs)
        assert c.get("/api/v1/ready").status_code == 200


def test_openapi_document_and_docs_page(shared_api) -> None:
    with shared_api.client() as c:
        paths = c.get("/openapi.json").json()["paths"]
        assert "/api/v1/packages/{name}/{version}" in paths and "/api/v1/blobs/{ref}" in paths
        assert "swagger" in c.get("/docs").text.lower()


# -- auth and ownership --------------------------------------------------------------------------------

def test_writes_without_a_token_are_401(api, small_package, capfd: pytest.CaptureFixture) -> None:
    b = built(small_package("tiny"))
    f = b.manifest.files[0]
    with api.client() as c:
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
    with api.client(secret) as c:
        r = c.get("/api/v1/whoami")
    assert_error(r, 401, "unauthorized")
    out, err = capfd.readouterr()  # the app runs in this process: its log, and anything it printed
    assert secret not in r.text and secret not in api.log_text() + out + err
    with api.client() as c:
        assert c.head(f"/api/v1/blobs/sha256:{f.sha256}").status_code == 404
    assert_nothing_published(api, "tiny")


def test_another_users_package_is_403_until_an_owner_adds_them(api, small_package) -> None:
    alice, bob = api.add_user("alice"), api.add_user("bob")
    assert api.publish(small_package("tiny", "1.0.0"), alice).status_code == 201
    r = api.publish(small_package("tiny", "1.1.0", weights=(4.0, 5.0, 6.0)), bob)
    assert_error(r, 403, "forbidden", "bob", "owner")
    with api.client(bob) as c:
        assert_error(c.post("/api/v1/packages/tiny/1.0.0/yank", json={"reason": "mine"}), 403, "forbidden")
        assert_error(c.put("/api/v1/packages/tiny/owners/bob"), 403, "forbidden")
    with api.client(alice) as c:
        assert_error(c.put("/api/v1/packages/tiny/owners/carol"), 404, "not_found", "carol")
        assert c.put("/api/v1/packages/tiny/owners/bob").json() == {"owners": ["alice", "bob"]}
        assert c.put("/api/v1/packages/tiny/owners/bob").json() == {"owners": ["alice", "bob"]}
        assert_error(c.put("/api/v1/packages/nope/owners/bob"), 404, "not_found", "nope")
    assert api.publish(small_package("tiny", "1.1.0", weights=(4.0, 5.0, 6.0)), bob).status_code == 201
    with api.client() as c:
        assert c.get("/api/v1/packages/tiny/owners").json() == {"owners": ["alice", "bob"]}
        assert [v["version"] for v in c.get("/api/v1/packages/tiny").json()["versions"]] == ["1.0.0", "1.1.0"]


# -- immutability ----------------------------------------------------------------------------------------

def test_publish_same_version_other_bytes_is_409_identical_retry_is_200(api, small_package) -> None:
    token = api.add_user("alice")
    folder = small_package("tiny", "1.0.0")
    original = built(folder).manifest
    assert api.publish(folder, token).status_code == 201
    again = api.publish(folder, token)
    assert again.status_code == 200 and again.json()["version"] == "1.0.0"
    pretty = json.dumps(json.loads(original.to_json()), indent=4).encode()  # same canonical bytes
    assert put_manifest(api, token, "tiny", "1.0.0", pretty).status_code == 200
    changed = small_package("tiny", "1.0.0", description="another description")  # same folder, rewritten
    assert_error(api.publish(changed, token), 409, "conflict", "tiny", "1.0.0")
    other_weights = small_package("tiny", "1.0.0", weights=(9.0, 9.0, 9.0))
    assert_error(api.publish(other_weights, token), 409, "conflict")
    with api.client() as c:
        (v,) = c.get("/api/v1/packages/tiny").json()["versions"]
    assert Manifest.from_dict(v["manifest"]) == original


@pytest.mark.parametrize("same_bytes", [True, False], ids=["identical", "different"])
def test_two_clients_publishing_one_version_at_once_make_one_row(api, small_package, same_bytes) -> None:
    alice = api.add_user("alice")
    first = built(small_package("race", "1.0.0"))
    second = first if same_bytes else built(small_package("race", "1.0.0", description="the other one"))
    upload_blobs(api, alice, first)
    upload_blobs(api, alice, second)
    barrier = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def go(b) -> None:
        body = b.manifest.to_json()
        with api.client(alice) as c:
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
        assert api.query(f"SELECT count(*) FROM {table}") == [(1,)], table


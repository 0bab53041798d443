"""The registry's blob API in process (tests/inprocess.py): Range, ETag, HEAD, digests and size limits.

Every test runs on both backends (`sqlite-dir`, `postgres-s3`).
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from protocol import assert_error, assert_nothing_published, built, put_blob, tmp_entries


def test_blob_range_requests_etag_and_head(api) -> None:
    token = api.add_user("alice")
    data = os.urandom(300_000)
    digest = put_blob(api, token, data)
    url = f"/api/v1/blobs/sha256:{digest}"
    with api.client(token) as c:
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
        resumed = c.get(url, headers={"Range": "bytes=10-", "If-Range": f'"sha256:{digest}"'})  # a resumed download
        assert resumed.status_code == 206 and resumed.content == data[10:]
        etag = c.get(url).headers["etag"]
        assert c.get(url, headers={"If-None-Match": etag}).status_code == 304
        missing = "0" * 64
        assert c.head(f"/api/v1/blobs/sha256:{missing}").status_code == 404
        assert_error(c.get(f"/api/v1/blobs/sha256:{missing}"), 404, "not_found")


def test_blob_that_does_not_match_its_digest_is_refused_and_not_stored(api) -> None:
    token = api.add_user("alice")
    data = b"hello, model"
    wrong = hashlib.sha256(b"something else").hexdigest()
    with api.client(token) as c:
        assert_error(c.put(f"/api/v1/blobs/sha256:{wrong}", content=data), 400, "integrity_error", "hash")
        assert c.head(f"/api/v1/blobs/sha256:{wrong}").status_code == 404
        # a body without Content-Length (chunked) is refused: the size must be known up front
        r = c.put(f"/api/v1/blobs/sha256:{hashlib.sha256(data).hexdigest()}", content=iter([data]))
        assert_error(r, 411, "registry_error", "content-length")
    assert api.stored_blobs() == set() and api.uploads_in_flight() == []
    assert tmp_entries(api) == []


@pytest.mark.parametrize("ref", ["sha256:abc", "sha256:" + "A" * 64, "md5:" + "0" * 64, "0" * 64,
                                 "sha256:" + "0" * 63 + "g", "sha256:" + "0" * 65])
def test_malformed_digest_is_400(shared_api, ref: str) -> None:
    token = shared_api.add_user("alice")
    with shared_api.client(token) as c:
        for r in (c.get(f"/api/v1/blobs/{ref}"), c.put(f"/api/v1/blobs/{ref}", content=b"x")):
            assert_error(r, 400, "invalid_manifest", "digest")
        assert c.head(f"/api/v1/blobs/{ref}").status_code == 400


def test_bodies_over_the_limits_are_413(api_factory, small_package) -> None:
    reg = api_factory(max_blob_size=1024, max_manifest_size=4096)
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


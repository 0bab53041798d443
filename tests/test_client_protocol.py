"""The registry client's protocol calls, through injected transports: the packument cache, blobs (Range,
streamed uploads that check their bytes) and the other calls' paths and bodies."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import pytest

from nnpm import errors as E
from nnpm.client.api import RegistryClient
from nnpm.format.packument import Packument
from nnpm.hashing import CHUNK

URL = "http://registry.test"
TOKEN = "nnpm_s3cr3t-token-value"
DIGEST = "ab" * 32



def _client(handler, **kw) -> RegistryClient:
    """A client of a registry without a signed index (404 on /tuf/, as one without keys answers)."""
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404) if request.url.path.startswith("/tuf/") else handler(request)

    return RegistryClient(URL, token=TOKEN, transport=httpx.MockTransport(answer), **kw)



# -- packument cache ---------------------------------------------------------------------------

def test_packument_etag_cache_revalidates_and_serves_304(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    body = {"name": "resnet18", "latest": "1.0.0", "versions": [{"version": "1.0.0"}]}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304, headers={"ETag": '"v1"'})
        return httpx.Response(200, json=body, headers={"ETag": '"v1"'})

    with _client(handler, cache_dir=tmp_path) as c:
        first, second = c.packument("ResNet18"), c.packument("resnet18")
    assert first == second == Packument.from_dict(body)
    assert [str(r.version) for r in second.releases] == ["1.0.0"]
    assert "if-none-match" not in seen[0].headers
    assert seen[1].headers["if-none-match"] == '"v1"'
    assert seen[0].url.path == "/api/v1/packages/resnet18"
    assert list(tmp_path.rglob("resnet18.json"))


def test_packument_404_is_none_and_drops_the_cache(tmp_path: Path) -> None:
    state = {"exists": True}

    def handler(request: httpx.Request) -> httpx.Response:
        if state["exists"]:
            return httpx.Response(200, json={"name": "x", "versions": []}, headers={"ETag": '"e"'})
        return httpx.Response(404, json={"error": "not_found", "detail": "no package x"})

    with _client(handler, cache_dir=tmp_path) as c:
        assert c.packument("x") is not None
        state["exists"] = False
        assert c.packument("x") is None
    assert not list(tmp_path.rglob("x.json"))


def test_304_without_cache_is_registry_error() -> None:
    with _client(lambda r: httpx.Response(304)) as c:
        with pytest.raises(E.RegistryError, match="304"):
            c.packument("x")


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    with _client(lambda r: httpx.Response(200, json={"name": "x", "versions": []}, headers={"ETag": '"e"'}),
                 cache_dir=tmp_path) as c:
        c.packument("x")
        next(tmp_path.rglob("x.json")).write_text("{not json")
        assert c.packument("x") == Packument("x", ())


def test_invalid_name_never_reaches_the_server() -> None:
    with _client(lambda r: pytest.fail("request sent")) as c:
        with pytest.raises(E.ManifestError):
            c.packument("../etc/passwd")


# -- blobs --------------------------------------------------------------------------------------

def test_has_blob_returns_size_or_none() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "HEAD"
        if request.url.path.endswith(DIGEST):
            return httpx.Response(200, headers={"Content-Length": "1234"})
        return httpx.Response(404, headers={"X-Error-Code": "not_found"})

    with _client(handler) as c:
        assert c.has_blob(DIGEST) == 1234
        assert c.has_blob("sha256:" + "cd" * 32) is None
        with pytest.raises(E.IntegrityError):
            c.has_blob("not-a-digest")


def test_open_blob_sends_range_and_if_range() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if "range" in request.headers:
            return httpx.Response(206, content=b"world", headers={"Content-Range": "bytes 6-10/11"})
        return httpx.Response(200, content=b"hello world")

    with _client(handler) as c:
        with c.open_blob(DIGEST) as resp:
            assert resp.status_code == 200 and resp.read() == b"hello world"
        with c.open_blob(DIGEST, start=6, if_range='"sha256:x"') as resp:
            assert resp.status_code == 206 and b"".join(resp.iter_bytes()) == b"world"
    assert "range" not in seen[0].headers
    assert seen[1].headers["range"] == "bytes=6-" and seen[1].headers["if-range"] == '"sha256:x"'
    assert seen[1].url.path == f"/api/v1/blobs/sha256:{DIGEST}"


def test_open_blob_416_raises_with_status() -> None:
    with _client(lambda r: httpx.Response(416, json={"error": "registry_error", "detail": "range"})) as c:
        with pytest.raises(E.RegistryError) as info:
            with c.open_blob(DIGEST, start=99):
                pass
    assert info.value.status == 416


def test_broken_stream_while_reading_blob_is_registry_error() -> None:
    class Broken(httpx.SyncByteStream):
        def __iter__(self):
            yield b"abc"
            raise httpx.ReadError("connection reset")

    with _client(lambda r: httpx.Response(200, stream=Broken())) as c:
        with pytest.raises(E.RegistryError, match="cannot reach"):
            with c.open_blob(DIGEST) as resp:
                for _ in resp.iter_bytes():
                    pass


class _ChunkReader(httpx.BaseTransport):
    """A server that reads the request body chunk by chunk, as a socket would."""

    def __init__(self) -> None:
        self.chunks: list[int] = []
        self.headers: httpx.Headers | None = None
        self.received = hashlib.sha256()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert not isinstance(request.stream, httpx.ByteStream), "body was buffered as bytes"
        self.headers = request.headers
        for chunk in request.stream:
            self.chunks.append(len(chunk))
            self.received.update(chunk)
        return httpx.Response(201)


def test_upload_streams_in_chunks_with_content_length(tmp_path: Path) -> None:
    data = bytes(range(256)) * (CHUNK * 3 // 256 + 7)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    transport, progress = _ChunkReader(), []
    with RegistryClient(URL, token=TOKEN, transport=transport) as c:
        assert c.upload_blob(digest, len(data), path, on_progress=progress.append) == 201
    assert len(transport.chunks) >= 4 and max(transport.chunks) <= CHUNK
    assert transport.received.hexdigest() == digest and sum(progress) == len(data)
    assert transport.headers["content-length"] == str(len(data))
    assert "transfer-encoding" not in transport.headers


def test_upload_of_changed_bytes_is_refused_before_the_last_chunk() -> None:
    data = b"a" * (CHUNK * 2 + 10)
    digest = hashlib.sha256(data).hexdigest()
    transport = _ChunkReader()
    with RegistryClient(URL, token=TOKEN, transport=transport) as c:
        with pytest.raises(E.IntegrityError):
            c.upload_blob(digest, len(data), io.BytesIO(data[:-1] + b"b"))
    assert sum(transport.chunks) < len(data)


def test_upload_of_empty_blob() -> None:
    transport = _ChunkReader()
    with RegistryClient(URL, token=TOKEN, transport=transport) as c:
        assert c.upload_blob(hashlib.sha256(b"").hexdigest(), 0, io.BytesIO(b"")) == 201
    assert transport.headers["content-length"] == "0"


def test_upload_rejected_by_server_maps_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(413, json={"error": "too_large", "detail": "blob over the 1 GB limit"})

    data = b"xyz"
    with _client(handler) as c:
        with pytest.raises(E.TooLargeError, match="1 GB"):
            c.upload_blob(hashlib.sha256(data).hexdigest(), 3, io.BytesIO(data))


# -- the rest of the protocol -------------------------------------------------------------------

def test_calls_use_the_protocol_paths_and_bodies() -> None:
    seen: list[tuple[str, str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url).removeprefix(URL), request.content))
        path = request.url.path
        if path.endswith("/whoami"):
            return httpx.Response(200, json={"user": "alice"})
        if "/owners" in path:
            return httpx.Response(200, json={"owners": ["alice", "bob"]})
        if path.endswith("/search"):
            return httpx.Response(200, json={"results": [{"name": "resnet18"}, "junk"]})
        return httpx.Response(200, json={"name": "resnet18", "version": "1.0.0", "yanked": True})

    with _client(handler) as c:
        assert c.whoami() == "alice"
        assert c.yank("ResNet18", "1.0", "broken weights")["yanked"] is True
        c.unyank("resnet18", "1.0.0")
        assert c.owners("resnet18") == ["alice", "bob"]
        assert c.add_owner("resnet18", "bob") == ["alice", "bob"]
        assert c.search("image net", limit=5) == ([{"name": "resnet18"}], 1)   # no total sent: the results shown
        assert c.remove_owner("resnet18", "bob") == ["alice", "bob"]
    assert seen[0][:2] == ("GET", "/api/v1/whoami")
    assert seen[1] == ("POST", "/api/v1/packages/resnet18/1.0/yank", b'{"reason": "broken weights"}')
    assert seen[2][:2] == ("DELETE", "/api/v1/packages/resnet18/1.0.0/yank")
    assert seen[4][:2] == ("PUT", "/api/v1/packages/resnet18/owners/bob")
    assert seen[5][:2] == ("GET", "/api/v1/search?q=image+net&limit=5")
    assert seen[6][:2] == ("DELETE", "/api/v1/packages/resnet18/owners/bob")


def test_put_manifest_returns_status_and_sends_canonical_json() -> None:
    from nnpm.format.manifest import FileEntry, Manifest
    from nnpm.format.project import project_from_dict

    project = project_from_dict({"package": {"name": "p", "version": "1.0"},
                                 "pipeline": {"steps": ["a"]}, "dependencies": {"a": ">=1"}})
    manifest = Manifest(project=project, files=(FileEntry("README.md", 1, "0" * 64),))
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        assert request.url.path == "/api/v1/packages/p/1.0"
        return httpx.Response(201 if len(bodies) == 1 else 200, json={})

    with _client(handler) as c:
        assert c.put_manifest(manifest) == 201
        assert c.put_manifest(manifest) == 200
    assert bodies[0] == manifest.to_json()


def test_a_registry_answering_tuf_paths_with_other_json_is_used_unpinned(tmp_path: Path) -> None:
    body = {"name": "x", "versions": []}
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=body))
    with RegistryClient(URL, transport=transport, cache_dir=tmp_path / "cache") as c:
        assert c.packument("x") == Packument("x", ())
        assert c.trusted_index() is None
    assert not list((tmp_path / "trust").rglob("root.json"))

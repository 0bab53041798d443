"""The registry client against odd and hostile servers, through injected transports."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import httpx
import pytest

from nnpm import errors as E
from nnpm.client.api import RegistryClient
from nnpm.client.httperrors import (
    LOCAL_CODES,
    REQUEST_ERRORS,
    SERVER_CODES,
    STATUS_CLASSES,
    error_for_request_error,
    error_for_response,
)
from nnpm.format.packument import Packument
from nnpm.hashing import CHUNK

URL = "http://registry.test"
TOKEN = "nnpm_s3cr3t-token-value"
DIGEST = "ab" * 32


def _client(handler, **kw) -> RegistryClient:
    return RegistryClient(URL, token=TOKEN, transport=httpx.MockTransport(handler), **kw)


def _subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _subclasses(sub)
    return out


def _error(status: int, code: str | None, detail: str):
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"detail": detail} | ({"error": code} if code else {})
        return httpx.Response(status, json=body, headers={"X-Error-Code": code} if code else {})
    return handler


# -- the error map --------------------------------------------------------------------------

def test_every_nnpm_error_code_is_classified_as_server_or_local() -> None:
    codes = {cls.code for cls in _subclasses(E.NnpmError)} | {E.NnpmError.code}
    assert SERVER_CODES | LOCAL_CODES == codes
    assert not SERVER_CODES & LOCAL_CODES


@pytest.mark.parametrize("cls", sorted(_subclasses(E.NnpmError) | {E.NnpmError}, key=lambda c: c.code))
def test_every_error_code_maps_back_as_intended(cls: type[E.NnpmError]) -> None:
    err = error_for_response(418, httpx.Headers({"X-Error-Code": cls.code}),
                             json.dumps({"error": cls.code, "detail": "it went wrong"}).encode(), URL)
    if cls.code in SERVER_CODES:
        assert type(err) is E.error_for_code(cls.code)   # AuthError's code names its 401 leaf
        assert isinstance(err, cls) or issubclass(cls, E.AuthError)
        assert err.message == "it went wrong"
    else:  # a server cannot claim a client-side state; the status decides
        assert type(err) is E.RegistryError
    assert err.status == 418


def test_every_httpx_request_error_is_mapped_explicitly() -> None:
    for cls in _subclasses(httpx.RequestError) | {httpx.RequestError}:
        assert cls in REQUEST_ERRORS, f"{cls.__name__} has no entry in nnpm.client.httperrors.REQUEST_ERRORS"
        err = error_for_request_error(cls("boom"), URL)
        assert type(err) is E.RegistryError
        assert URL in err.message and err.hint


@pytest.mark.parametrize("status,cls", [(401, E.UnauthenticatedError), (403, E.ForbiddenError),
                                        (404, E.NotFoundError), (409, E.ConflictError), (413, E.TooLargeError),
                                        (429, E.BusyError), (400, E.RegistryError),
                                        (418, E.RegistryError), (502, E.RegistryError)])
def test_status_decides_when_there_is_no_code(status: int, cls: type) -> None:
    err = error_for_response(status, httpx.Headers(), b"", URL)
    assert type(err) is cls and err.status == status
    assert STATUS_CLASSES.get(status, E.RegistryError) is cls


def test_error_code_from_header_when_body_is_empty() -> None:
    err = error_for_response(400, httpx.Headers({"X-Error-Code": "integrity_error"}), b"", URL)
    assert isinstance(err, E.IntegrityError)


# -- error answers ----------------------------------------------------------------------------

def test_error_json_raises_the_named_class_with_detail() -> None:
    with _client(_error(409, "conflict", "resnet18 1.0.0 exists with other content")) as c:
        with pytest.raises(E.ConflictError, match="exists with other content") as info:
            c.version("resnet18", "1.0.0")
    assert info.value.status == 409


def test_manifest_error_from_server_is_a_manifest_error() -> None:
    with _client(_error(400, "invalid_manifest", "files[0].sha256: must be hex")) as c:
        with pytest.raises(E.ManifestError, match="must be hex"):
            c.whoami()


@pytest.mark.parametrize("code", ["forbidden", "unauthorized"])  # "unauthorized": a server before 403 had a code
def test_403_is_forbidden_with_owner_hint(code: str) -> None:
    with _client(_error(403, code, "alice does not own resnet18")) as c:
        with pytest.raises(E.ForbiddenError) as info:
            c.yank("resnet18", "1.0.0", "broken")
    assert info.value.status == 403 and "owner" in info.value.hint


def test_500_with_html_is_registry_error_with_status() -> None:
    html = "<html><body><h1>Internal Server Error</h1>" + "x" * 10_000 + "</body></html>"
    with _client(lambda r: httpx.Response(500, text=html, headers={"Content-Type": "text/html"})) as c:
        with pytest.raises(E.RegistryError) as info:
            c.health()
    assert type(info.value) is E.RegistryError and info.value.status == 500
    assert "500" in info.value.message and "<html>" not in info.value.message


def test_odd_error_bodies_do_not_break_the_mapping() -> None:
    for body in (b"[1, 2]", b"{", json.dumps({"error": 5, "detail": {"x": 1}}).encode(), b"\xff\xfe"):
        with _client(lambda r, body=body: httpx.Response(404, content=body)) as c:
            with pytest.raises(E.NotFoundError):
                c.version("x", "1")


def test_detail_is_one_short_line() -> None:
    with _client(_error(409, "conflict", "line one\nline two\x1b[31m" + "y" * 5000)) as c:
        with pytest.raises(E.ConflictError) as info:
            c.version("x", "1")
    assert "\n" not in info.value.message and "\x1b" not in info.value.message
    assert len(info.value.message) <= 300


def test_token_echoed_by_server_is_redacted() -> None:
    with _client(_error(401, "unauthorized", f"token {TOKEN} is unknown")) as c:
        with pytest.raises(E.AuthError) as info:
            c.whoami()
    assert TOKEN not in str(info.value) and TOKEN not in info.value.one_line()


def test_malformed_json_answer_is_registry_error() -> None:
    with _client(lambda r: httpx.Response(200, content=b"<html>surprise</html>")) as c:
        with pytest.raises(E.RegistryError, match="malformed JSON"):
            c.version("x", "1")


def test_oversized_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nnpm.client.api.MAX_JSON", 1000)
    with _client(lambda r: httpx.Response(200, content=b"[" + b"1," * 2000 + b"1]")) as c:
        with pytest.raises(E.RegistryError, match="more than 1000 bytes"):
            c.health()


# -- transport errors --------------------------------------------------------------------------

@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout,
                                 httpx.RemoteProtocolError, httpx.ReadError])
def test_transport_error_names_the_url_not_the_token(exc: type[httpx.RequestError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc(f"failed for Bearer {TOKEN}", request=request)

    with _client(handler) as c:
        with pytest.raises(E.RegistryError) as info:
            c.whoami()
    assert info.value.message.startswith(f"cannot reach the registry at {URL}")
    assert TOKEN not in info.value.one_line() and info.value.hint


def test_real_connection_refused_is_registry_error() -> None:
    with RegistryClient("http://127.0.0.1:9", token=TOKEN, timeout=2) as c:
        with pytest.raises(E.RegistryError, match="cannot reach the registry at http://127.0.0.1:9") as info:
            c.packument("resnet18")
    assert TOKEN not in info.value.one_line()


def test_token_never_in_repr() -> None:
    c = _client(lambda r: httpx.Response(200))
    assert TOKEN not in repr(c) and TOKEN not in repr(vars(c))


def test_invalid_registry_url_is_config_error() -> None:
    with pytest.raises(E.ConfigError):
        RegistryClient("ftp://x")


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
        assert c.search("image net", limit=5) == [{"name": "resnet18"}]
    assert seen[0][:2] == ("GET", "/api/v1/whoami")
    assert seen[1] == ("POST", "/api/v1/packages/resnet18/1.0/yank", b'{"reason": "broken weights"}')
    assert seen[2][:2] == ("DELETE", "/api/v1/packages/resnet18/1.0.0/yank")
    assert seen[4][:2] == ("PUT", "/api/v1/packages/resnet18/owners/bob")
    assert seen[5][:2] == ("GET", "/api/v1/search?q=image+net&limit=5")


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

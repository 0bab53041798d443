"""`POST /api/v1/blobs/missing` (which blobs the registry lacks, in one request) and `RegistryClient.missing_blobs`.

The answers are checked in process (tests/inprocess.py); the client method and a body that is
refused before it is read against a real server (tests/registry_proc.py). Every test runs on
both backends (`sqlite-dir`, `postgres-s3`), except the fallback, which needs a registry
without the endpoint (an httpx.MockTransport).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from urllib.parse import urlsplit

import httpx
import pytest
from protocol import assert_error, put_blob, tmp_entries

from nnpm import errors as E
from nnpm.client import api as client_api
from nnpm.client.api import RegistryClient
from nnpm.format.limits import MAX_FILES
from registry_server.routes.blobs import _MISSING_BODY_BYTES

URL = "/api/v1/blobs/missing"
HEX = hashlib.sha256(b"never uploaded").hexdigest()


def _ref(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _ask(c: httpx.Client, body) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) or hasattr(body, "__next__") else json.dumps(body)
    return c.post(URL, content=content, headers={"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def asker(shared_api) -> str:
    """A token on the shared in-process registry (asking needs one)."""
    return shared_api.add_user("asker")


def _assert_nothing_stored(reg) -> None:
    assert reg.stored_blobs() == set() and reg.uploads_in_flight() == []
    assert tmp_entries(reg) == []


def test_the_answer_names_the_blobs_not_stored_in_order_each_once(api) -> None:
    token = api.add_user("alice")
    stored = [put_blob(api, token, os.urandom(1000)), put_blob(api, token, b"")]
    a, b = _ref(b"first missing"), _ref(b"second missing")
    asked = [a, f"sha256:{stored[0]}", b, a, f"sha256:{stored[1]}", b, f"sha256:{stored[0]}"]
    with api.client() as c:  # unlike HEAD, a token: one request may check MAX_FILES blobs
        assert_error(_ask(c, {"digests": asked}), 401, "unauthorized")
    with api.client(token) as c:
        r = _ask(c, {"digests": asked})
        assert r.status_code == 200 and r.json() == {"missing": [a, b]}
        assert _ask(c, {"digests": [b, a]}).json() == {"missing": [b, a]}
        assert _ask(c, {"digests": [f"sha256:{d}" for d in stored]}).json() == {"missing": []}
        assert _ask(c, {"digests": [], "other": "ignored"}).json() == {"missing": []}
        assert c.head(f"/api/v1/blobs/{a}").status_code == 404  # asking stores nothing
    assert api.stored_blobs() == set(stored)


def test_all_missing_and_the_empty_list(shared_api, asker) -> None:
    refs = [_ref(str(i).encode()) for i in range(50)]
    with shared_api.client(asker) as c:
        assert _ask(c, {"digests": refs}).json() == {"missing": refs}
        assert _ask(c, {"digests": []}).json() == {"missing": []}
        assert _ask(c, ' {"digests" :\n [ ] } ').json() == {"missing": []}
    _assert_nothing_stored(shared_api)


@pytest.mark.registry_backends("sqlite-dir")   # parsing the body is the same on every backend
@pytest.mark.parametrize(("body", "key", "word"), [
    (b"{not json", None, "json"),
    (b"\xff\xfe", None, "json"),
    (b"[" * 100_000, None, "json"),
    ([f"sha256:{HEX}"], None, "digests"),
    ({"digest": [f"sha256:{HEX}"]}, None, "digests"),
    ("null", None, "digests"),
    ({"digests": f"sha256:{HEX}"}, "digests", "list"),
    ({"digests": {"a": f"sha256:{HEX}"}}, "digests", "list"),
    ({"digests": None}, "digests", "list"),
    ({"digests": [f"sha256:{HEX}", 7]}, "digests[1]", "string"),
    ({"digests": [[f"sha256:{HEX}"]]}, "digests[0]", "string"),
    ({"digests": [HEX]}, "digests[0]", "digest"),
    ({"digests": ["sha256:" + HEX.upper()]}, "digests[0]", "digest"),
    ({"digests": [f"sha256:{HEX}", "md5:" + "0" * 64]}, "digests[1]", "digest"),
    ({"digests": ["sha256:" + HEX[:-1]]}, "digests[0]", "digest"),
    ({"digests": [f"sha256:{HEX}0"]}, "digests[0]", "digest"),
    ({"digests": ["sha256:" + HEX[:-1] + "g"]}, "digests[0]", "digest"),
])
def test_a_malformed_body_is_400_and_stores_nothing(shared_api, asker, body, key: str | None, word: str) -> None:
    with shared_api.client(asker) as c:
        err = assert_error(_ask(c, body), 400, "invalid_manifest", word)
    assert err["fields"].get("key") == key and err["hint"]
    _assert_nothing_stored(shared_api)


def test_at_most_max_files_entries(shared_api, asker) -> None:
    ref = f"sha256:{HEX}"
    with shared_api.client(asker) as c:
        assert _ask(c, {"digests": [ref] * MAX_FILES}).json() == {"missing": [ref]}
        err = assert_error(_ask(c, {"digests": [ref] * (MAX_FILES + 1)}), 400, "invalid_manifest", str(MAX_FILES))
        assert err["fields"]["key"] == "digests"
    _assert_nothing_stored(shared_api)


def test_a_body_over_the_cap_is_413(shared_api, asker) -> None:
    ref = f"sha256:{HEX}"
    padded = json.dumps({"digests": [ref]}).encode()
    padded = padded[:-1] + b" " * (_MISSING_BODY_BYTES - len(padded)) + b"}"
    with shared_api.client(asker) as c:
        assert _ask(c, padded).json() == {"missing": [ref]}  # exactly at the cap: read
        assert_error(_ask(c, padded + b" "), 413, "too_large", str(_MISSING_BODY_BYTES))
        chunks = iter([b'{"digests": [', b" " * _MISSING_BODY_BYTES, b"]}"])  # chunked: counted while reading
        assert_error(_ask(c, chunks), 413, "too_large", str(_MISSING_BODY_BYTES))
    _assert_nothing_stored(shared_api)


def test_the_endpoint_is_in_the_openapi_document(shared_api, asker) -> None:
    with shared_api.client(asker) as c:
        op = c.get("/openapi.json").json()["paths"][URL]["post"]
    assert op["summary"] and set(op["responses"]) >= {"200", "400", "413"}
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["digests"]["maxItems"] == MAX_FILES


def _raw_answer(url: str, request: bytes) -> tuple[bytes, dict]:
    """Send `request` on a socket and read one answer: (status line, JSON body)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536) or b"\r\n\r\n"
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(v) for k, _, v in (ln.partition(b":") for ln in lines[1:]) if k.lower() == b"content-length")
        while len(body) < length and (chunk := s.recv(65536)):
            body += chunk
    return lines[0], json.loads(body)


def test_an_oversized_body_is_refused_before_it_is_read(shared_registry) -> None:
    # 100 MB declared, a few bytes sent: the answer comes without waiting for the rest
    token = shared_registry.add_user("dave").encode()
    status, body = _raw_answer(shared_registry.url, b"POST /api/v1/blobs/missing HTTP/1.1\r\nHost: registry\r\n"
                               b"Authorization: Bearer " + token + b"\r\n"
                               b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
                               b'{"digests": [')
    assert status.startswith(b"HTTP/1.1 413") and body["error"] == "too_large", (status, body)
    assert set(body) == {"error", "detail", "hint", "fields"}


def test_the_client_asks_a_real_registry(shared_registry, monkeypatch: pytest.MonkeyPatch) -> None:
    token = shared_registry.add_user("carol")
    stored = put_blob(shared_registry, token, os.urandom(5000))
    refs = [_ref(f"client {i}".encode()) for i in range(7)]
    with RegistryClient(shared_registry.url, token=token) as client:
        assert client.missing_blobs([]) == []
        asked = [refs[0], f"sha256:{stored}", refs[1], refs[0], *refs[2:]]
        assert client.missing_blobs(asked) == refs
        assert client.missing_blobs([f"sha256:{stored}"]) == []
        assert client.missing_blobs([HEX, stored]) == [HEX]  # bare hex, as has_blob takes: answered as given
        monkeypatch.setattr(client_api, "MAX_FILES", 3)  # more than one request's worth: sent in batches
        assert client.missing_blobs([*refs[::-1], f"sha256:{stored}"]) == refs[::-1]
        assert client.has_blob(refs[0]) is None and client.has_blob(stored) == 5000
        with pytest.raises(E.IntegrityError):
            client.missing_blobs([refs[0], "sha256:nope"])


@pytest.mark.parametrize("status", [404, 405])
def test_the_client_returns_none_from_a_registry_without_the_endpoint(status: int) -> None:
    seen: list[tuple[str, str, dict]] = []

    def old_registry(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, json.loads(request.content)))
        return httpx.Response(status, json={"error": "not_found", "detail": "no such endpoint", "hint": None,
                                            "fields": {}}, headers={"X-Error-Code": "not_found"})

    with RegistryClient("http://registry.test", transport=httpx.MockTransport(old_registry)) as client:
        assert client.missing_blobs([f"sha256:{HEX}", f"sha256:{HEX}"]) is None
    assert seen == [("POST", URL, {"digests": [f"sha256:{HEX}"]})]


@pytest.mark.parametrize("answer", [{"missing": [_ref(b"never asked")]}, {"missing": f"sha256:{HEX}"},
                                    {"missing": [7]}, {}, [f"sha256:{HEX}"]])
def test_the_client_refuses_a_malformed_answer(answer) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    with RegistryClient("http://registry.test", transport=transport) as client, pytest.raises(E.RegistryError):
        client.missing_blobs([f"sha256:{HEX}"])

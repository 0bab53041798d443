"""Registry hardening (issue 13), the HTTP side: reads stay fast under a publish storm, half-sent
headers and stalled uploads are cut off, security headers, no redirect built from Host, no
server path in an answer.

Real servers (tests/registry_proc.py) where a real connection matters; the app in memory
(create_app behind Starlette's TestClient) where only the answer does. New options are set
through their NNPM_REGISTRY_* variables, which the servers inherit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import socket
import threading
import time
import warnings
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from nnpm.author.pack import build

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.registry_backends("sqlite-dir")


def in_process(tmp_path: Path, **settings) -> TestClient:
    """The registry app in memory over a fresh data folder (use it as a context manager)."""
    from registry_server.app import create_app
    from registry_server.settings import ServerSettings

    return TestClient(create_app(ServerSettings(data_dir=tmp_path / "data", **settings)), base_url="http://reg.test")


def token_for(client: TestClient, name: str) -> str:
    from registry_server.services.auth import add_user

    return add_user(client.app.state.settings.database_url, name)


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection (or `limit` seconds pass); and how long it took."""
    start, data = time.monotonic(), b""
    sock.settimeout(limit)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data, time.monotonic() - start


# -- a publish storm -------------------------------------------------------------------------------

def test_health_and_blob_downloads_answer_within_a_second_while_80_publishes_are_in_flight(
        registry_factory, small_package, monkeypatch) -> None:
    # Two workers (the default), each re-reading a real graph in a subprocess, and 78 waiting:
    # 80 publishes in flight at once, and the 4 sent beyond them are told to come back.
    monkeypatch.setenv("NNPM_REGISTRY_PUBLISH_QUEUE", "78")
    reg = registry_factory()
    token = reg.add_user("storm")
    built = build(small_package("storm"))
    with reg.client(token) as c:
        for f in built.manifest.files:
            assert c.put(f"/api/v1/blobs/sha256:{f.sha256}", content=built.paths[f.path].read_bytes()).status_code == 201
    blob = built.manifest.file("model.onnx").sha256
    template = json.loads(built.manifest.to_json())
    answers: list[httpx.Response] = []
    publisher = httpx.Client(base_url=reg.url, headers={"Authorization": f"Bearer {token}"}, timeout=120,
                             limits=httpx.Limits(max_connections=100))

    def publish(i: int) -> None:
        doc = {**template, "package": {**template["package"], "name": f"storm-{i}"}}
        try:
            answers.append(publisher.put(f"/api/v1/packages/storm-{i}/1.0.0", content=json.dumps(doc).encode()))
        except httpx.TransportError:  # still waiting when the server is killed below
            pass

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(84)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # every publish has arrived; the admitted ones wait for the workers
    slowest, in_flight = 0.0, []
    with httpx.Client(base_url=reg.url, timeout=30) as probe:
        for _ in range(3):
            in_flight.append(84 - len(answers))
            for path in ("/api/v1/health", f"/api/v1/blobs/sha256:{blob}"):
                start = time.monotonic()
                assert probe.get(path).status_code == 200
                slowest = max(slowest, time.monotonic() - start)
    refused = [r for r in answers if r.status_code == 429]
    reg.kill()  # the publishes still queued need not finish
    for t in threads:
        t.join(60)
    publisher.close()
    assert slowest < 1.0, f"a read took {slowest:.1f} s while {in_flight[0]} publishes were in flight"
    assert min(in_flight) >= 70, f"only {min(in_flight)} publishes were in flight during the reads"
    assert refused and {r.status_code for r in answers} <= {201, 429}
    for busy in refused:
        assert busy.json()["error"] == "busy" and int(busy.headers["retry-after"]) >= 1


# -- connections that stall ------------------------------------------------------------------------

def test_a_connection_whose_request_headers_never_end_is_closed(registry_factory, monkeypatch) -> None:
    monkeypatch.setenv("NNPM_REGISTRY_HEADER_TIMEOUT", "1")
    reg = registry_factory()
    with socket.create_connection(("127.0.0.1", reg.port)) as half, socket.create_connection(("127.0.0.1", reg.port)) \
            as silent:
        half.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and never the blank line
        answer, took = read_until_closed(half, 10)
        assert answer.startswith(b"HTTP/1.1 408") and took < 5, (answer, took)
        assert read_until_closed(silent, 10)[0] == b""  # nothing sent at all: closed as well
    assert httpx.get(reg.url + "/api/v1/health").status_code == 200  # whole requests are served as ever


def test_a_stalled_upload_ends_with_408_and_stores_nothing(registry_factory, monkeypatch) -> None:
    monkeypatch.setenv("NNPM_REGISTRY_BODY_TIMEOUT", "1")
    reg = registry_factory()
    token = reg.add_user("slow")
    digest = hashlib.sha256(b"x" * 5000).hexdigest()
    for path in (f"/api/v1/blobs/sha256:{digest}", "/api/v1/packages/slow/1.0.0"):
        with socket.create_connection(("127.0.0.1", reg.port)) as s:
            s.sendall(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                      f"Content-Length: 5000\r\n\r\n".encode() + b"x" * 100)  # then nothing more
            answer, took = read_until_closed(s, 10)
        assert answer.startswith(b"HTTP/1.1 408") and took < 5, (path, answer, took)
        assert b"nothing was stored" in answer
    assert digest not in reg.stored_blobs() and reg.uploads_in_flight() == []
    with reg.client(token) as c:
        assert c.get("/api/v1/packages/slow").status_code == 404


# -- what every answer carries ---------------------------------------------------------------------

def test_pages_blobs_api_and_docs_carry_security_headers(tmp_path: Path) -> None:
    with in_process(tmp_path) as client:
        token = token_for(client, "h")
        data = b"<html><script>alert(1)</script></html>"
        digest = hashlib.sha256(data).hexdigest()
        assert client.put(f"/api/v1/blobs/sha256:{digest}", content=data,
                          headers={"Authorization": f"Bearer {token}"}).status_code == 201
        html = {"accept": "text/html"}
        answers = {"page": client.get("/", headers=html), "not found page": client.get("/packages/nope", headers=html),
                   "api": client.get("/api/v1/health"), "blob": client.get(f"/api/v1/blobs/sha256:{digest}"),
                   "api error": client.get("/api/v1/packages/nope"), "docs": client.get("/docs")}
    for what, r in answers.items():
        assert r.headers["x-content-type-options"] == "nosniff", what
        assert r.headers["x-frame-options"] == "DENY", what
        assert r.headers["referrer-policy"] == "no-referrer", what
        csp = dict((part.strip() + " ").split(" ", 1) for part in r.headers["content-security-policy"].split(";"))
        csp = {k: v.strip() for k, v in csp.items()}
        assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'", what
        if what in ("page", "not found page"):
            assert "script-src" not in csp and csp["style-src"] == "'self'", what
        elif what == "docs":
            inline = re.findall(r"<script>(.*?)</script>", r.text, re.S)
            assert inline and all("'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
                                  in csp["script-src"] for s in inline)
            assert "unsafe-inline" not in csp["script-src"]
        else:
            assert "sandbox" in r.headers["content-security-policy"], what


def test_no_redirect_is_built_from_the_host_header(tmp_path: Path) -> None:
    evil = {"host": "evil.example", "accept": "text/html"}
    with in_process(tmp_path) as client:
        for path in ("/api/v1/health/", "/api/v1/search/", "/packages/", "/static"):
            r = client.get(path, headers=evil, follow_redirects=False)
            assert "evil.example" not in r.headers.get("location", ""), (path, r.headers.get("location"))
        r = client.get("/packages/My_Model/1.0", headers=evil, follow_redirects=False)
        assert r.status_code == 301 and r.headers["location"] == "/packages/my-model/1.0"


def test_readiness_names_no_server_path(tmp_path: Path) -> None:
    with in_process(tmp_path) as client:
        assert client.get("/api/v1/ready").status_code == 200
        shutil.rmtree(tmp_path / "data" / "blobs")
        r = client.get("/api/v1/ready")
    assert r.status_code == 503 and "blob store" in r.json()["detail"]
    assert str(tmp_path) not in r.text and "/data/blobs" not in r.text


def test_a_worker_error_names_no_server_path(tmp_path: Path, small_package) -> None:
    built = build(small_package("leaky", external_data=True))
    unlisted = replace(built.manifest.with_files([f for f in built.manifest.files if f.path != "weights.bin"]),
                       graph_table={})   # no graphs table naming weights.bin: only the worker can tell
    with in_process(tmp_path) as client:
        auth = {"Authorization": f"Bearer {token_for(client, 'leaky')}"}
        for f in unlisted.files:
            client.put(f"/api/v1/blobs/sha256:{f.sha256}", content=built.paths[f.path].read_bytes(), headers=auth)
        r = client.put("/api/v1/packages/leaky/1.0.0", content=unlisted.to_json(), headers=auth)
    assert r.status_code == 422 and "weights.bin" in r.json()["detail"], r.text
    assert str(tmp_path) not in r.text and "validate-" not in r.text and "/tmp" not in r.text, r.text

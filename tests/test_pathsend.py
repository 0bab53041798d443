"""Whole blobs sent with sendfile by a real registry process (registry_server/pathsend.py).

`python -m registry_server` offers ASGI's pathsend to every request; a whole-blob GET of the
folder store answers with it. Checked on one keep-alive connection: the bytes and headers of
two whole GETs, then HEAD, Range, a 304 and a small JSON answer after them (h11's framing
stays right around a body it never saw). A client that hangs up in the middle of a 24 MiB
body costs the server nothing: the next client gets the whole blob and the log shows no
error. Forty clients that stop reading grow the server by less than 12 MB (streamed, each
held a chunk: the test fails with pathsend turned off). The in-process tier (tests/inprocess.py) has no pathsend: there the same answer is
streamed, which tests/test_registry_api_blobs.py checks.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time

import httpx
import pytest
from protocol import put_blob

pytestmark = pytest.mark.registry_backends("sqlite-dir")   # sendfile is the folder store's


def test_whole_blobs_then_other_answers_on_one_connection(shared_registry) -> None:
    reg = shared_registry
    token = reg.add_user("alice")
    big, small = os.urandom(5 * 1024 * 1024 + 17), b"tiny"
    digests = [put_blob(reg, token, data) for data in (big, small)]
    with httpx.Client(base_url=reg.url, timeout=30) as c:
        for digest, data in zip(digests * 2, [big, small] * 2):
            r = c.get(f"/api/v1/blobs/sha256:{digest}")
            assert r.status_code == 200 and r.content == data
            assert r.headers["content-length"] == str(len(data))
            assert r.headers["etag"] == f'"sha256:{digest}"'
            assert r.headers["x-content-type-options"] == "nosniff"   # the middleware's headers still come
        url = f"/api/v1/blobs/sha256:{digests[0]}"
        assert c.head(url).headers["content-length"] == str(len(big))
        part = c.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == big[100:200]
        assert c.get(url, headers={"If-None-Match": f'"sha256:{digests[0]}"'}).status_code == 304
        assert c.get("/api/v1/health").json()["status"] == "ok"
        named = c.get(url, params={"filename": "w.bin"})
        assert named.content == big and "w.bin" in named.headers["content-disposition"]
    assert "Exception in ASGI application" not in reg.log_text()


def test_a_client_that_hangs_up_mid_body_costs_nothing(shared_registry) -> None:
    reg = shared_registry
    token = reg.add_user("alice")
    data = os.urandom(24 * 1024 * 1024)
    digest = put_blob(reg, token, data)
    host, port = reg.url.removeprefix("http://").split(":")
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(f"GET /api/v1/blobs/sha256:{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            got = s.recv(65536)
            assert got.startswith(b"HTTP/1.1 200")
    with httpx.Client(base_url=reg.url, timeout=30) as c:
        r = c.get(f"/api/v1/blobs/sha256:{digest}")
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == digest
    assert "Exception in ASGI application" not in reg.log_text()
    assert "Traceback" not in reg.log_text()


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_clients_that_stop_reading_hold_no_body_in_the_server(shared_registry) -> None:
    # Streamed, each stalled download would keep a 1 MiB chunk (and the socket's overflow) in the
    # server; sent with sendfile, the bytes wait in the file, not in the process.
    reg = shared_registry
    token = reg.add_user("alice")
    digest = put_blob(reg, token, os.urandom(24 * 1024 * 1024))
    host, port = reg.url.removeprefix("http://").split(":")
    with httpx.Client(base_url=reg.url, timeout=30) as c:   # the route warmed up once
        assert c.get(f"/api/v1/blobs/sha256:{digest}").status_code == 200
    before = _rss(reg.proc.pid)
    stalled = []
    try:
        for _ in range(40):
            s = socket.create_connection((host, int(port)), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET /api/v1/blobs/sha256:{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            stalled.append(s)
        assert all(s.recv(16).startswith(b"HTTP/1.1 200") for s in stalled)
        peak = 0
        for _ in range(20):   # a second for the server to fill whatever it would buffer
            peak = max(peak, _rss(reg.proc.pid))
            time.sleep(0.05)
        grown = peak - before
    finally:
        for s in stalled:
            s.close()
    assert grown < 12 * 1024 * 1024, f"the server grew {grown / 1e6:.1f} MB for 40 stalled downloads"

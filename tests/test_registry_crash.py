"""Crashes: kill -9 during an upload leaves nothing half-stored; a dying worker is a clean 422.

The kill -9 test runs on both backends of tests/registry_proc.py: on `sqlite-dir` the upload in
flight is a `tmp/upload-*.part` file, on `postgres-s3` an unfinished multipart upload in the
bucket. The worker tests run on `sqlite-dir`: the worker reads its scratch folder, whatever the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

MIB = 1024 * 1024
BIG_CHUNKS = 200  # 200 MiB


def big_chunks(base: bytes, count: int, pause: threading.Event | None = None,
               halfway: threading.Event | None = None) -> Iterator[bytes]:
    """`count` distinct 1 MiB chunks; after a quarter of them, signal `halfway` and wait for `pause`."""
    for i in range(count):
        if halfway is not None and i == count // 4:
            halfway.set()
            assert pause is not None
            pause.wait(30)
        yield i.to_bytes(8, "big") + base[8:]


def versions_missing_blobs(reg) -> list[str]:
    """Every (version, file) whose blob is not in the store: must always be empty."""
    have = reg.stored_blobs()
    missing = []
    for version, manifest in reg.query("SELECT version, manifest_json FROM versions"):
        missing += [f"{version}:{f['path']}" for f in json.loads(manifest)["files"] if f["sha256"] not in have]
    return missing


def upload_reached_the_store(reg) -> bool:
    """Part of the upload is in the store, unfinished: over 10 MiB in a temp file, or an open multipart upload."""
    if reg.backend == "sqlite-dir":
        return any(p.stat().st_size > 10 * MIB for p in (reg.data_dir / "tmp").glob("upload-*.part"))
    return bool(reg.uploads_in_flight())


def kill_mid_upload(registry, token: str, base: bytes, url: str, size: int) -> None:
    """PUT BIG_CHUNKS chunks of `base` to `url`; once part of it is in the store, SIGKILL the server."""
    halfway, resume = threading.Event(), threading.Event()
    outcome: list[object] = []

    def upload() -> None:
        try:
            with registry.client(token) as c:
                outcome.append(c.put(url, content=big_chunks(base, BIG_CHUNKS, resume, halfway),
                                     headers={"Content-Length": str(size)}))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=upload)
    thread.start()
    assert halfway.wait(60)
    deadline = time.monotonic() + 30
    while not upload_reached_the_store(registry):
        assert time.monotonic() < deadline, "the upload never reached the store"
        time.sleep(0.05)
    registry.kill()
    resume.set()
    thread.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.HTTPError), outcome


def test_kill_9_during_a_large_upload_then_restart(registry, small_package) -> None:
    token = registry.add_user("alice")
    assert registry.publish(small_package("before-crash"), token).status_code == 201
    base = os.urandom(MIB)
    h = hashlib.sha256()
    for chunk in big_chunks(base, BIG_CHUNKS):
        h.update(chunk)
    digest, size = h.hexdigest(), BIG_CHUNKS * MIB
    url = f"/api/v1/blobs/sha256:{digest}"

    kill_mid_upload(registry, token, base, url, size)

    (leftover,) = registry.uploads_in_flight()  # invisible: a temp file, or an unfinished multipart upload
    registry.start()
    with registry.client(token) as c:
        assert c.head(url).status_code == 404
        assert c.get(url).status_code == 404
        assert c.get(url, headers={"Range": "bytes=0-"}).status_code == 404
        assert digest not in registry.stored_blobs()
        assert versions_missing_blobs(registry) == []
        assert c.get("/api/v1/packages/before-crash").json()["latest"] == "1.0.0"

        retry = c.put(url, content=big_chunks(base, BIG_CHUNKS), headers={"Content-Length": str(size)})
        assert retry.status_code == 201, retry.text
        head = c.head(url)
        assert head.status_code == 200 and int(head.headers["content-length"]) == size
        tail = c.get(url, headers={"Range": f"bytes={size - 16}-"})
        assert tail.status_code == 206 and tail.content == base[-16:]
    assert digest in registry.stored_blobs()
    assert versions_missing_blobs(registry) == []
    if registry.backend != "sqlite-dir":
        # A fresh unfinished upload is left alone at start-up (it may be another replica's, live);
        # the sweep of stale ones is tested in test_storage_contract.py, since S3 dates them itself.
        assert registry.uploads_in_flight() == [leftover]
        return

    # The crashed upload's temp file is never served; once stale, a restart sweeps it away.
    old = time.time() - 2 * 3600
    os.utime(leftover, (old, old))
    registry.restart()
    assert not Path(leftover).exists()
    assert versions_missing_blobs(registry) == []


@pytest.mark.registry_backends("sqlite-dir")  # the worker's limits, not the backend, are the subject here
def test_worker_timeout_is_422_and_the_server_stays_up(registry_factory, small_package,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # A warm worker reads a tiny model in a millisecond: it is told to hang instead (the server passes the
    # variable on to the workers it starts).
    monkeypatch.setenv("NNPM_TEST_VALIDATE_FAULT", "hang")
    reg = registry_factory(validate_timeout=2)
    token = reg.add_user("alice")
    r = reg.publish(small_package("slow"), token)
    assert r.status_code == 422 and r.json()["error"] == "invalid_model", r.text
    assert "longer than" in r.json()["detail"]
    with reg.client() as c:
        assert c.get("/api/v1/health").json()["status"] == "ok"
        assert c.get("/api/v1/packages/slow").status_code == 404
    assert [p.name for p in (reg.data_dir / "tmp").iterdir()] == []  # the worker's scratch folder is gone
    assert reg.proc.poll() is None


@pytest.mark.registry_backends("sqlite-dir")  # the worker's limits, not the backend, are the subject here
def test_worker_over_its_memory_limit_is_422_and_the_server_stays_up(registry_factory, small_package) -> None:
    reg = registry_factory(validate_memory=48 * MIB)
    token = reg.add_user("alice")
    r = reg.publish(small_package("hungry"), token)
    assert r.status_code == 422 and r.json()["error"] == "invalid_model", r.text
    assert "limit" in r.json()["detail"] or "memory" in r.json()["detail"]
    with reg.client() as c:
        assert c.get("/api/v1/health").json()["status"] == "ok"
        assert c.get("/api/v1/packages/hungry").status_code == 404
    assert reg.proc.poll() is None

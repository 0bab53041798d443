"""`nnpm registry serve` passes its limits through to the server it runs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from conftest import free_port


def test_serve_honours_max_blob_size(tmp_path: Path) -> None:
    env = {**os.environ, "NNPM_HOME": str(tmp_path / "home")}
    data = tmp_path / "data"
    token = subprocess.run([sys.executable, "-m", "nnpm", "registry", "user", "add", "alice", "--data", str(data)],
                           env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nnpm", "registry", "serve", "--data", str(data),
                             "--port", str(port), "--max-blob-size", "100"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        for _ in range(150):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        headers = {"Authorization": f"Bearer {token}"}
        small, big = b"x" * 100, b"y" * 101
        for body, status in ((small, 201), (big, 413)):
            digest = hashlib.sha256(body).hexdigest()
            resp = httpx.put(f"{url}/blobs/sha256:{digest}", content=body, headers=headers)
            assert resp.status_code == status, resp.text
        assert resp.json()["error"] == "too_large"
    finally:
        proc.terminate()
        proc.wait(timeout=10)

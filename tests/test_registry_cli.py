"""`nnpm registry user add` and `nnpm registry serve`: the real CLI, a real port, the limits passed through."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import httpx
from cli import nnpm_command, run_nnpm
from registry_proc import free_port


def test_cli_user_add_prints_a_token_on_the_last_line_and_serve_runs(tmp_path: Path) -> None:
    data, home = tmp_path / "reg", tmp_path / "home"
    out = run_nnpm(home, "registry", "user", "add", "alice", "--data", str(data)).stdout
    token = out.strip().splitlines()[-1]
    assert token.startswith("nnpm_") and " " not in token
    assert token not in (data / "registry.db").read_bytes().decode("latin-1")
    bad = run_nnpm(home, "registry", "user", "add", "no spaces", "--data", str(data), check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "invalid user name" in bad.stderr
    port = free_port()
    argv, env = nnpm_command(home, "registry", "serve", "--data", str(data), "--port", str(port))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == f"nnpm registry serving on http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert r.json() == {"user": "alice"}
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_honours_max_blob_size(tmp_path: Path) -> None:
    data, home = tmp_path / "data", tmp_path / "home"
    token = run_nnpm(home, "registry", "user", "add", "alice", "--data", str(data)).stdout.strip().splitlines()[-1]
    port = free_port()
    argv, env = nnpm_command(home, "registry", "serve", "--data", str(data), "--port", str(port),
                             "--max-blob-size", "100")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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

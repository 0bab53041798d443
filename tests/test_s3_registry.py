"""A real registry over S3 (moto as the stand-in server, boto3 as the real client).

Server A streams blobs from the bucket; server B shares A's database and bucket and
answers blob downloads with a 307 to a presigned URL (--redirect-downloads). Packages
go in with the real `nnpm publish` and come out with the real `nnpm install`.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cli import ROOT, child_env, one_error_line, run_nnpm
from hostile_server import assert_store_clean
from packages import write_package
from registry_proc import Registry, run_server_once
from s3server import S3Bucket, S3Server

from nnpm.client.api import RegistryClient
from nnpm.errors import RegistryError
from nnpm.install.store import Store

PREFIX = "nnpm/reg"
MIB = 1024 * 1024
_BLOB_GET = r'"GET /api/v1/blobs/sha256(?::|%3A)([0-9a-f]{64}) HTTP/1\.1" (\d{3})'

RUN_MODELS = """
import sys, numpy as np, nnpm
for name in sys.argv[1:]:
    m = nnpm.load(name)
    feeds = {s.name: np.zeros([d if isinstance(d, int) else 1 for d in s.shape],
                              dtype=np.int64 if "int64" in s.dtype else np.float32)
             for s in m.signature.inputs}
    out = m.run(feeds)
    print(name, {k: list(v.shape) for k, v in out.items()})
"""


def s3_registry(base: Path, bucket: S3Bucket, *extra: str) -> Registry:
    """A registry subprocess whose blobs live in `bucket` under PREFIX; credentials come from the environment."""
    base.mkdir(parents=True, exist_ok=True)
    reg = Registry(base / "data", base / "server.log",
                   ["--storage-url", bucket.storage_url(PREFIX), "--s3-endpoint", bucket.endpoint, *extra])
    reg.start()
    return reg


class World:
    """Server A (streams), server B (redirects; same database, same bucket), a token and the bucket."""

    def __init__(self, a: Registry, b: Registry, bucket: S3Bucket, token: str) -> None:
        self.a, self.b, self.bucket, self.token = a, b, bucket, token

    def key(self, digest: str) -> str:
        return f"{PREFIX}/blobs/sha256/{digest[:2]}/{digest}"

    def publish(self, folder: Path, home: Path) -> None:
        """The real `nnpm publish`, to server A."""
        run_nnpm(home, "publish", str(folder), "--token", self.token, "--no-progress", registry=self.a.url)


@pytest.fixture(scope="module")
def world(s3_server: S3Server, examples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """digits and resnet18 published with `nnpm publish` to A; B started over A's database and bucket."""
    bucket = s3_server.new_bucket()
    base = tmp_path_factory.mktemp("s3-registry")
    started: list[Registry] = []
    try:
        a = s3_registry(base / "a", bucket)
        started.append(a)
        token = a.add_user("alice")
        w = World(a, a, bucket, token)
        for name in ("digits", "resnet18"):
            w.publish(examples_dir / name, base / "publisher")
        w.b = s3_registry(base / "b", bucket, "--database-url", a.database_url, "--redirect-downloads")
        started.append(w.b)
        yield w
    finally:
        for reg in started:
            reg.stop()
        bucket.remove()


def manifest_files(reg: Registry, name: str) -> dict[str, tuple[str, int]]:
    """path → (sha256, size) of a published version's files, as an install of its reference fetches them."""
    from nnpm.format.manifest import Manifest

    manifest = Manifest.from_dict(httpx.get(f"{reg.url}/api/v1/packages/{name}/1.0.0").json()["manifest"])
    return {f.path: (f.sha256, f.size) for f in manifest.files_for("reference")}


def blob_answers(reg: Registry, since: int = 0) -> list[tuple[str, str]]:
    """(digest, status) of every blob GET in the server's access log after offset `since`."""
    return re.findall(_BLOB_GET, reg.log_path.read_text(errors="replace")[since:])


def log_mark(reg: Registry) -> int:
    return len(reg.log_path.read_text(errors="replace"))


def run_models(home: Path, *names: str) -> str:
    proc = subprocess.run([sys.executable, "-c", RUN_MODELS, *names], capture_output=True, text=True, check=False,
                          env=child_env(NNPM_HOME=str(home)), cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# -- publish and install -------------------------------------------------------------------------

def test_published_blobs_live_in_the_bucket_not_the_data_folder(world: World) -> None:
    for name in ("digits", "resnet18"):
        for path, (digest, size) in manifest_files(world.a, name).items():
            head = world.bucket.client.head_object(Bucket=world.bucket.name, Key=world.key(digest))
            assert head["ContentLength"] == size, path
    assert not any(p.is_file() for p in (world.a.data_dir / "blobs").rglob("*"))
    assert world.bucket.open_uploads() == []


def test_install_streamed_from_s3_then_load_and_run(world: World, tmp_path: Path) -> None:
    home = tmp_path / "home"
    mark = log_mark(world.a)
    run_nnpm(home, "install", "-q", "digits", "resnet18", registry=world.a.url)
    out = run_models(home, "digits", "resnet18")
    assert "digits {'label': [1], 'probabilities': [1, 10]}" in out and "resnet18 {'logits': [1, 1000]}" in out
    answers = blob_answers(world.a, mark)
    assert answers and {status for _, status in answers} == {"200"}
    wanted = {d for name in ("digits", "resnet18") for d, _ in manifest_files(world.a, name).values()}
    assert {d for d, _ in answers} == wanted
    assert all(Store(home / "store").path(d).is_file() for d in wanted)
    assert_store_clean(home / "store")


def test_install_through_redirects_then_load_and_run(world: World, tmp_path: Path) -> None:
    home = tmp_path / "home"
    mark = log_mark(world.b)
    run_nnpm(home, "install", "-q", "digits", "resnet18", registry=world.b.url)
    out = run_models(home, "digits", "resnet18")
    assert "digits {'label': [1], 'probabilities': [1, 10]}" in out and "resnet18 {'logits': [1, 1000]}" in out
    answers = blob_answers(world.b, mark)
    assert answers and {status for _, status in answers} == {"307"}, "B never streams a blob itself"
    assert all(Store(home / "store").path(d).is_file() for d, _ in answers)
    assert_store_clean(home / "store")


def test_redirect_answer_points_at_the_store_and_head_stays_local(world: World) -> None:
    digest, size = manifest_files(world.b, "digits")["model.onnx"]
    r = httpx.get(f"{world.b.url}/api/v1/blobs/sha256:{digest}")
    assert r.status_code == 307 and r.headers["cache-control"] == "no-store"
    location = r.headers["location"]
    assert location.startswith(f"{world.bucket.endpoint}/{world.bucket.name}/{world.key(digest)}?")
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location
    head = httpx.head(f"{world.b.url}/api/v1/blobs/sha256:{digest}")
    assert head.status_code == 200 and int(head.headers["content-length"]) == size
    etag = head.headers["etag"]
    assert httpx.get(f"{world.b.url}/api/v1/blobs/sha256:{digest}", headers={"If-None-Match": etag}).status_code == 304
    assert httpx.get(f"{world.b.url}/api/v1/blobs/sha256:{'0' * 64}").status_code == 404
    body = httpx.get(location).content
    assert len(body) == size and hashlib.sha256(body).hexdigest() == digest


# -- Range and resume ----------------------------------------------------------------------------

def test_range_through_the_streaming_registry(world: World) -> None:
    digest, size = manifest_files(world.a, "resnet18")["model.onnx"]
    url = f"{world.a.url}/api/v1/blobs/sha256:{digest}"
    whole = world.bucket.client.get_object(Bucket=world.bucket.name, Key=world.key(digest))["Body"].read()
    r = httpx.get(url, headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == whole[1000:2000]
    assert r.headers["content-range"] == f"bytes 1000-1999/{size}"
    r = httpx.get(url, headers={"Range": f"bytes={size - 10}-"})
    assert r.status_code == 206 and r.content == whole[-10:]
    r = httpx.get(url, headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == whole[-5:]
    r = httpx.get(url, headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"


def test_ranged_open_blob_through_a_redirect(world: World) -> None:
    digest, size = manifest_files(world.b, "resnet18")["model.onnx"]
    with RegistryClient(world.b.url, token=world.token) as client:
        with client.open_blob(digest, start=size - 1000, if_range=f'"sha256:{digest}"') as resp:
            assert resp.status_code == 206
            assert str(resp.url).startswith(world.bucket.endpoint)
            assert resp.headers["content-range"] == f"bytes {size - 1000}-{size - 1}/{size}"
            tail = resp.read()
    whole = world.bucket.client.get_object(Bucket=world.bucket.name, Key=world.key(digest))["Body"].read()
    assert tail == whole[-1000:]


def test_interrupted_download_resumes_through_a_redirect(world: World, tmp_path: Path) -> None:
    home = tmp_path / "home"
    digest, _ = max(manifest_files(world.b, "resnet18").values(), key=lambda f: f[1])   # the largest tensor file
    whole = world.bucket.client.get_object(Bucket=world.bucket.name, Key=world.key(digest))["Body"].read()
    assert len(whole) > 2_000_000
    Store(home / "store").partial_path(digest).write_bytes(whole[:len(whole) // 2])
    mark = log_mark(world.b)
    run_nnpm(home, "install", "-q", "resnet18", registry=world.b.url)
    assert [s for d, s in blob_answers(world.b, mark) if d == digest] == ["307"]
    assert Store(home / "store").path(digest).read_bytes() == whole


# -- a store that lies ---------------------------------------------------------------------------

def test_tampered_object_is_refused_by_the_client_behind_a_redirect(world: World, tmp_path: Path) -> None:
    folder = write_package(tmp_path / "pkg", "tampered", "1.0.0", weights=(4.0, 5.0, 6.0, 7.0))
    world.publish(folder, tmp_path / "publisher")
    digest, _ = manifest_files(world.a, "tampered")["model.onnx"]
    original = world.bucket.client.get_object(Bucket=world.bucket.name, Key=world.key(digest))["Body"].read()
    evil = original[:-8] + bytes(b ^ 0xFF for b in original[-8:])  # same size, other bytes
    world.bucket.client.put_object(Bucket=world.bucket.name, Key=world.key(digest), Body=evil)
    try:
        for reg in (world.b, world.a):  # through the redirect, and streamed by the registry
            home = tmp_path / f"home-{reg.port}"
            line = one_error_line(run_nnpm(home, "install", "-q", "tampered", registry=reg.url, check=False))
            assert "is corrupt" in line and "sha256" in line, line
            assert not Store(home / "store").path(digest).exists()
            assert_store_clean(home / "store")
            assert not list((home / "envs").glob("*/pkgs/tampered-*"))
            assert not list((home / "envs").glob("*/nnpm.lock"))
    finally:
        world.bucket.client.put_object(Bucket=world.bucket.name, Key=world.key(digest), Body=original)


# -- crashes -------------------------------------------------------------------------------------

def test_kill_9_mid_upload_leaves_nothing_and_a_retry_succeeds(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    reg = s3_registry(tmp_path, s3_bucket)
    try:
        token = reg.add_user("alice")
        block = hashlib.sha256(b"big").digest() * (MIB // 32)
        n_blocks = 200
        h = hashlib.sha256()
        for _ in range(n_blocks):
            h.update(block)
        digest, size = h.hexdigest(), n_blocks * MIB
        url = f"/api/v1/blobs/sha256:{digest}"
        headers = {"Content-Length": str(size)}

        def half_then_kill() -> Iterator[bytes]:
            for _ in range(n_blocks // 2):
                yield block
            deadline = time.monotonic() + 10
            while not s3_bucket.open_uploads() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert s3_bucket.open_uploads(), "the server was uploading parts to S3"
            reg.kill()
            yield block

        with reg.client(token) as c, pytest.raises(httpx.TransportError):
            c.put(url, content=half_then_kill(), headers=headers)
        reg.start()
        with reg.client(token) as c:
            assert c.head(url).status_code == 404
            assert not [k for k in s3_bucket.keys() if digest in k]
            pid = reg.proc.pid
            before = _rss_kib(pid, "VmRSS")
            assert c.put(url, content=(block for _ in range(n_blocks)), headers=headers).status_code == 201
            grew_mib = (_rss_kib(pid, "VmHWM") - before) / 1024
            assert grew_mib < 100, f"the server's memory grew by {grew_mib:.0f} MiB for a 200 MiB upload"
            head = c.head(url)
            assert head.status_code == 200 and int(head.headers["content-length"]) == size
            got = hashlib.sha256()
            with c.stream("GET", url) as r:
                for chunk in r.iter_bytes():
                    got.update(chunk)
            assert got.hexdigest() == digest
        assert [k for k in s3_bucket.keys() if digest in k] == [f"{PREFIX}/blobs/sha256/{digest[:2]}/{digest}"]
    finally:
        reg.stop()


def _rss_kib(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


# -- the client's side of a redirect -------------------------------------------------------------

STORE_URL = ("http://store.example:9000/bkt/nnpm/reg/blobs/sha256/ab/ab?X-Amz-Algorithm=AWS4-HMAC-SHA256"
             "&X-Amz-Credential=AKID%2F20261123%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261123T000000Z"
             "&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "f" * 64)


def _redirecting(seen: list[httpx.Request], store_status: int = 206, location: str = STORE_URL):
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "registry.example":
            return httpx.Response(307, headers={"Location": location})
        if store_status >= 400:
            return httpx.Response(store_status, content=b"<Error><Code>AccessDenied</Code></Error>")
        return httpx.Response(store_status, content=b"tail", headers={"Content-Range": "bytes 6-9/10"})

    return httpx.MockTransport(handler)


def test_redirected_blob_get_resends_range_but_not_the_token_nor_if_range() -> None:
    seen: list[httpx.Request] = []
    digest = "ab" * 32
    with RegistryClient("http://registry.example", token="nnpm_secret", transport=_redirecting(seen)) as client:
        with client.open_blob(digest, start=6, if_range=f'"sha256:{digest}"') as resp:
            assert resp.status_code == 206 and resp.read() == b"tail"
    to_registry, to_store = seen
    assert to_registry.headers["authorization"] == "Bearer nnpm_secret"
    assert to_registry.headers["range"] == "bytes=6-" and to_registry.headers["if-range"] == f'"sha256:{digest}"'
    assert str(to_store.url) == STORE_URL, "the presigned URL is used byte for byte"
    assert to_store.headers["range"] == "bytes=6-"
    assert "authorization" not in to_store.headers and "if-range" not in to_store.headers
    assert to_store.headers["user-agent"].startswith("nnpm/")


def test_token_is_not_sent_on_a_same_origin_redirect_either() -> None:
    seen: list[httpx.Request] = []
    same = "http://registry.example/bucket/key?X-Amz-Signature=abc"

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.startswith("/api/"):
            return httpx.Response(302, headers={"Location": same})
        return httpx.Response(200, content=b"0123456789")

    with RegistryClient("http://registry.example", token="nnpm_secret",
                        transport=httpx.MockTransport(handler)) as client:
        with client.open_blob("cd" * 32) as resp:
            assert resp.read() == b"0123456789"
    assert "authorization" not in seen[1].headers and "range" not in seen[1].headers


def test_store_refusal_is_a_retryable_registry_error_without_the_signature() -> None:
    seen: list[httpx.Request] = []
    with RegistryClient("http://registry.example", token="nnpm_secret",
                        transport=_redirecting(seen, store_status=403)) as client:
        with pytest.raises(RegistryError) as info, client.open_blob("ab" * 32):
            pass
    err = info.value
    assert err.status is None  # fetch retries, asking the registry for a fresh URL
    assert "store.example:9000" in err.message and "403" in err.message
    assert "Signature" not in str(err) and "nnpm_secret" not in str(err)


def test_endless_redirects_are_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": f"http://elsewhere.example/{len(str(request.url))}"})

    with RegistryClient("http://registry.example", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(RegistryError, match="redirected more than"), client.open_blob("ab" * 32):
            pass


# -- configuration -------------------------------------------------------------------------------

def test_bad_storage_settings_stop_the_server_with_one_line(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    data = ["--data", str(tmp_path / "data"), "--port", "9"]
    proc = run_server_once(*data, "--redirect-downloads")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        ("error: --redirect-downloads needs an s3:// storage URL "
         "(blobs in a folder are always served by the registry itself)")]
    proc = run_nnpm(tmp_path / "home", "registry", "serve", *data, "--storage-url", "s3://no-such-bucket-anywhere",
                    "--s3-endpoint", s3_bucket.endpoint, cwd=ROOT, check=False, timeout=60)
    line = one_error_line(proc)
    assert "no-such-bucket-anywhere" in line and "testing" not in line

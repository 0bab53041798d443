"""One contract for every blob store: the folder store and the S3 store pass the same tests.

Each backend comes with two probes the contract needs: `leftovers()` (what a failed or
abandoned upload left behind: temp files, open multipart uploads, stray objects) and
`copies(digest)` (how many stored copies of a blob exist).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
from s3server import S3Bucket

from nnpm.errors import ConfigError, IntegrityError, NotFoundError
from registry_server.settings import ServerSettings
from registry_server.storage import parse_storage_url, storage_from_settings
from registry_server.storage.base import BlobStore
from registry_server.storage.directory import DirBlobStore

MIB = 1024 * 1024
PREFIX = "reg/one"


@dataclass
class Backend:
    """A store under test and its probes."""

    name: str
    store: BlobStore
    leftovers: Callable[[], list]
    copies: Callable[[str], int]


def _dir_backend(tmp_path: Path) -> Backend:
    store = DirBlobStore(tmp_path / "blobs", tmp_path / "tmp")
    return Backend("dir", store, leftovers=lambda: sorted(p.name for p in (tmp_path / "tmp").iterdir()),
                   copies=lambda d: sum(1 for p in (tmp_path / "blobs").rglob(d) if p.is_file()))


def _s3_backend(bucket: S3Bucket) -> Backend:
    from registry_server.storage.s3 import S3BlobStore

    store = S3BlobStore(bucket.name, PREFIX, endpoint_url=bucket.endpoint)

    def leftovers() -> list:
        blobs = {store.key(d) for d in _stored_digests(bucket)}
        return bucket.open_uploads() + sorted(set(bucket.keys()) - blobs)

    return Backend("s3", store, leftovers=leftovers,
                   copies=lambda d: sum(1 for k in bucket.keys() if k.endswith("/" + d)))


def _stored_digests(bucket: S3Bucket) -> list[str]:
    """Digests of objects at well-formed blob keys (PREFIX/blobs/sha256/ab/<digest>)."""
    out = []
    for key in bucket.keys():
        parts = key.split("/")
        if "/".join(parts[:-3]) == PREFIX + "/blobs" and parts[-3] == "sha256" and parts[-2] == parts[-1][:2]:
            out.append(parts[-1])
    return out


@pytest.fixture(params=["dir", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each blob store in turn (the S3 one on a fresh bucket of the stand-in server)."""
    if request.param == "dir":
        return _dir_backend(tmp_path)
    return _s3_backend(request.getfixturevalue("s3_bucket"))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _chunks(data: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    step = 64 * 1024 if len(data) > 1024 * 1024 else 1000
    for i in range(0, len(data), step):
        if fail_after is not None and i >= fail_after:
            raise ConnectionResetError("the client went away")
        yield data[i:i + step]


def put(store: BlobStore, data: bytes, *, digest: str | None = None, size: int | None = None,
        fail_after: int | None = None) -> bool:
    """store.put of `data`, announced as `digest` and `size` (its own by default)."""
    return anyio.run(lambda: store.put(digest or sha(data), _chunks(data, fail_after=fail_after),
                                       size=len(data) if size is None else size))


def blob(n: int, seed: bytes = b"x") -> bytes:
    """n pseudo-random bytes (fast: a repeated random MiB, so large blobs cost no time)."""
    block = hashlib.sha256(seed).digest() * (MIB // 32) if n > MIB else os.urandom(n)
    return (block * (n // len(block) + 1))[:n]


# -- the contract -------------------------------------------------------------------------------

def test_put_then_size_exists_and_read_back(backend: Backend) -> None:
    data = blob(300_000)
    d = sha(data)
    assert backend.store.size(d) is None and not backend.store.exists(d)
    assert put(backend.store, data) is True
    assert backend.store.size(d) == len(data) and backend.store.exists(d)
    assert b"".join(backend.store.open_range(d)) == data
    assert backend.store.read(d, 10) == data[:10]
    assert backend.store.read(d, 10**9) == data
    assert backend.copies(d) == 1 and backend.leftovers() == []


def test_open_range_whole_offset_length_and_past_end(backend: Backend) -> None:
    data = blob(100_000)
    d = sha(data)
    put(backend.store, data)
    s = backend.store
    assert b"".join(s.open_range(d, 0)) == data
    assert b"".join(s.open_range(d, 12_345)) == data[12_345:]
    assert b"".join(s.open_range(d, 10, 20)) == data[10:30]
    assert b"".join(s.open_range(d, 99_990, 1000)) == data[99_990:]  # length past the end: up to the end
    assert b"".join(s.open_range(d, 100_000)) == b""                  # offset at the end
    assert b"".join(s.open_range(d, 200_000, 5)) == b""               # offset past the end
    assert b"".join(s.open_range(d, 5, 0)) == b""
    chunks = list(s.open_range(d, 0, None, chunk_size=4096))
    assert b"".join(chunks) == data and max(map(len, chunks)) <= 4096


def test_absent_blob_is_none_and_not_found(backend: Backend, tmp_path: Path) -> None:
    d = sha(b"never stored")
    assert backend.store.size(d) is None and not backend.store.exists(d)
    with pytest.raises(NotFoundError):
        backend.store.open_range(d)  # raised at once, before any streaming
    with pytest.raises(NotFoundError):
        backend.store.open_range(d, 0, 0)
    with pytest.raises(NotFoundError):
        backend.store.materialize(d, tmp_path / "out" / "x.bin")
    assert not (tmp_path / "out" / "x.bin").exists()


def test_empty_blob(backend: Backend) -> None:
    d = sha(b"")
    assert put(backend.store, b"") is True
    assert backend.store.size(d) == 0
    assert b"".join(backend.store.open_range(d)) == b""


def test_put_of_an_existing_blob_returns_false(backend: Backend) -> None:
    data = blob(5000)
    assert put(backend.store, data) is True
    assert put(backend.store, data) is False
    assert backend.copies(sha(data)) == 1 and backend.leftovers() == []


@pytest.mark.parametrize("n", [5000, 20 * MIB], ids=["small", "multipart"])
def test_wrong_bytes_store_nothing(backend: Backend, n: int) -> None:
    data = blob(n, b"a")
    claimed = sha(blob(n, b"b"))
    with pytest.raises(IntegrityError, match="hash"):
        put(backend.store, data, digest=claimed)
    assert not backend.store.exists(claimed) and not backend.store.exists(sha(data))
    assert backend.leftovers() == []


@pytest.mark.parametrize("n", [5000, 20 * MIB], ids=["small", "multipart"])
@pytest.mark.parametrize("delta", [-1, +1], ids=["short", "long"])
def test_wrong_size_stores_nothing(backend: Backend, n: int, delta: int) -> None:
    data = blob(n, b"c")
    with pytest.raises(IntegrityError, match="bytes"):
        put(backend.store, data, size=n + delta)
    assert not backend.store.exists(sha(data))
    assert backend.leftovers() == []


@pytest.mark.parametrize("n", [5000, 20 * MIB], ids=["small", "multipart"])
def test_client_gone_mid_upload_stores_nothing(backend: Backend, n: int) -> None:
    data = blob(n, b"d")
    with pytest.raises(ConnectionResetError):
        put(backend.store, data, fail_after=n // 2 + 1)
    assert not backend.store.exists(sha(data))
    assert backend.leftovers() == []


def test_multipart_sized_blob_round_trips(backend: Backend) -> None:
    data = blob(20 * MIB + 123, b"e")
    d = sha(data)
    assert put(backend.store, data) is True
    assert backend.store.size(d) == len(data)
    assert hashlib.sha256(b"".join(backend.store.open_range(d))).hexdigest() == d
    assert b"".join(backend.store.open_range(d, 9 * MIB, 10)) == data[9 * MIB:9 * MIB + 10]
    assert backend.copies(d) == 1 and backend.leftovers() == []


@pytest.mark.parametrize("link", [True, False])
def test_materialize_makes_a_local_file(backend: Backend, tmp_path: Path, link: bool) -> None:
    data = blob(12 * MIB, b"f")
    d = sha(data)
    put(backend.store, data)
    dest = tmp_path / "work" / "sub" / "model.onnx"
    backend.store.materialize(d, dest, link=link)
    assert dest.read_bytes() == data


def test_concurrent_puts_of_one_blob_both_succeed_with_one_copy(backend: Backend) -> None:
    data = blob(10 * MIB, b"g")
    d = sha(data)
    results: list[bool] = []

    async def both() -> None:
        async def one() -> None:
            results.append(await backend.store.put(d, _chunks(data), size=len(data)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            tg.start_soon(one)

    anyio.run(both)
    assert len(results) == 2 and any(results)  # each stored it or found it stored
    assert b"".join(backend.store.open_range(d)) == data
    assert backend.copies(d) == 1 and backend.leftovers() == []


def test_download_url_is_none_or_serves_the_bytes_with_range(backend: Backend) -> None:
    data = blob(50_000, b"h")
    d = sha(data)
    put(backend.store, data)
    url = backend.store.download_url(d)
    if backend.name == "dir":
        assert url is None
        return
    assert httpx.get(url).content == data
    r = httpx.get(url, headers={"Range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == data[1000:]


def test_sweep_drops_only_idle_leftovers(backend: Backend, tmp_path: Path) -> None:
    """What a server killed mid-upload leaves is never served, and goes once idle long enough."""
    d = sha(b"half")
    if backend.name == "dir":
        old = tmp_path / "tmp" / "upload-old.part"
        new = tmp_path / "tmp" / "upload-new.part"
        old.write_bytes(b"ha")
        new.write_bytes(b"ha")
        os.utime(old, (time.time() - 7200, time.time() - 7200))
    else:
        s = backend.store
        up = s.client.create_multipart_upload(Bucket=s.bucket, Key=s.key(d))
        s.client.upload_part(Bucket=s.bucket, Key=s.key(d), UploadId=up["UploadId"], PartNumber=1, Body=b"ha")
    assert not backend.store.exists(d)
    assert backend.store.sweep(3600) == (1 if backend.name == "dir" else 0)  # the live one stays
    assert len(backend.leftovers()) == 1
    if backend.name == "s3":
        time.sleep(1.1)  # part times have a resolution of one second
    assert backend.store.sweep(0) == 1
    assert backend.leftovers() == []


# -- picking a store from the settings -----------------------------------------------------------

def test_storage_url_picks_the_store(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    from registry_server.storage.s3 import S3BlobStore

    default = storage_from_settings(ServerSettings(data_dir=tmp_path / "data"))
    assert isinstance(default, DirBlobStore) and default.root == tmp_path / "data" / "blobs" / "sha256"
    elsewhere = storage_from_settings(ServerSettings(data_dir=tmp_path / "data", storage_url=f"file://{tmp_path}/b"))
    assert isinstance(elsewhere, DirBlobStore) and elsewhere.root == tmp_path / "b" / "blobs" / "sha256"
    s3 = storage_from_settings(ServerSettings(data_dir=tmp_path / "data", storage_url=s3_bucket.storage_url("a/b/"),
                                        s3_endpoint=s3_bucket.endpoint, redirect_downloads=True))
    assert isinstance(s3, S3BlobStore) and (s3.bucket, s3.prefix) == (s3_bucket.name, "a/b")
    assert s3.key("ab" + "0" * 62) == "a/b/blobs/sha256/ab/ab" + "0" * 62
    s3.check()
    with pytest.raises(ConfigError, match="bucket"):
        storage_from_settings(ServerSettings(data_dir=tmp_path, storage_url="s3://no-such-bucket-here",
                                       s3_endpoint=s3_bucket.endpoint)).check()


@pytest.mark.parametrize("url, match", [
    ("ftp://host/x", "neither"), ("s3://", "bucket"), ("file://host/x", "local"), ("s3:bucket", "bucket"),
])
def test_bad_storage_urls_are_config_errors(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_storage_url(url)


def test_redirects_and_endpoint_need_s3(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="redirect"):
        storage_from_settings(ServerSettings(data_dir=tmp_path, redirect_downloads=True))
    with pytest.raises(ConfigError, match="s3-endpoint"):
        storage_from_settings(ServerSettings(data_dir=tmp_path, s3_endpoint="http://127.0.0.1:9"))

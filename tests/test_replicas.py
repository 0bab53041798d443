"""Two registry replicas on two ports sharing one PostgreSQL database and one S3 bucket.

This is the deployment of docs/deploy.md ("Several replicas behind nginx"), minus nginx:
clients are spread over both replicas, so a version committed through one must be
complete and readable through the other, and a replica killed mid-upload must cost no
more than that upload. The database and bucket are the `postgres-s3` backend of
tests/registry_proc.py (fresh ones per test); `registry_factory(replica_of=a)` starts the
second server over the first one's database and bucket.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cli import run_nnpm
from concurrency import at_once
from packages import write_package, write_unique_package
from registry_proc import Registry

from nnpm.author.pack import build
from nnpm.author.publish import publish, upload
from nnpm.client.api import RegistryClient
from nnpm.errors import RegistryError
from nnpm.format.manifest import Manifest

pytestmark = pytest.mark.registry_backends("postgres-s3")

MIB = 1024 * 1024
NAME = "replicated"
CONTESTED = "2.0.0"


@pytest.fixture
def replicas(registry_factory) -> tuple[Registry, Registry]:
    """Replica A on a fresh database and bucket, and replica B over the same two."""
    a = registry_factory()
    return a, registry_factory(replica_of=a)


def versions_in_database(reg: Registry, name: str) -> dict[str, tuple[int, str]]:
    """version → (rows, manifest sha256s), read from PostgreSQL itself."""
    rows = reg.query("SELECT v.version, count(*), string_agg(v.manifest_sha256, ',') FROM versions v "
                     "JOIN packages p ON p.id = v.package_id WHERE p.name = :name GROUP BY v.version", name=name)
    return {version: (count, digests) for version, count, digests in rows}


def blob_sha256(reg: Registry, digest: str) -> tuple[str, int]:
    """(sha256, size) of a blob as downloaded from `reg`, streamed."""
    h, size = hashlib.sha256(), 0
    with reg.client() as c, c.stream("GET", f"/api/v1/blobs/sha256:{digest}") as r:
        assert r.status_code == 200, (reg.url, digest)
        for chunk in r.iter_bytes():
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


# -- 20 clients, two replicas ----------------------------------------------------------------------

def twenty_publishers(tmp_path: Path) -> tuple[list, list]:
    """(distinct, contested): what 20 clients publish, as built packages.

    12 clients publish distinct versions (half of them with a model.onnx of their own, the
    others all with one and the same blob); 6 publish CONTESTED with identical bytes; 2 publish
    CONTESTED with bytes of their own.
    """
    def package(version: str, weights=(1.0, 2.0, 3.0), description: str = "shared") -> object:
        return build(write_unique_package(tmp_path, NAME, version, weights, description=description))

    distinct = [package(f"1.{i}.0", (float(i), 1.0, 2.0) if i % 2 else (1.0, 2.0, 3.0)) for i in range(12)]
    same = package(CONTESTED)
    others = [package(CONTESTED, (9.0, 9.0, 9.0), "other one"), package(CONTESTED, description="other two")]
    return distinct, [same] * 6 + others


def publish_at_once(replicas: tuple[Registry, Registry], token: str, clients: list) -> list[int]:
    """Client i publishes clients[i] through replica i % 2, all released together; each one's status."""
    def publisher(i: int, built):
        def run() -> int:
            with RegistryClient(replicas[i % 2].url, token=token) as client:
                try:
                    return 201 if upload(built.manifest, built.paths, client, progress=False).created else 200
                except RegistryError as exc:
                    return exc.status or 0
        return run

    return at_once(*[publisher(i, built) for i, built in enumerate(clients)])


def assert_whole_through_both(replicas: tuple[Registry, Registry], expected: dict[str, Manifest]) -> None:
    """Every version in `expected` is listed, whole and readable through either replica, with one packument."""
    digests = {f.sha256: f.size for m in expected.values() for f in m.files}
    etags = set()
    for reg in replicas:
        with reg.client() as c:
            r = c.get(f"/api/v1/packages/{NAME}")
            assert r.status_code == 200
            etags.add(r.headers["etag"])
            listed = {v["version"]: Manifest.from_dict(v["manifest"]) for v in r.json()["versions"]}
            assert listed == expected
        for digest, size in digests.items():
            assert blob_sha256(reg, digest) == (digest, size)
    assert len(etags) == 1  # the same packument, byte for byte, from both
    assert replicas[0].bucket.open_uploads() == []
    assert set(digests) <= replicas[0].stored_blobs()


def test_twenty_clients_on_two_replicas_lose_no_version_and_duplicate_none(replicas, tmp_path: Path) -> None:
    a, b = replicas
    # The operator's way (docs/deploy.md): a user made with the CLI, straight in the shared database.
    out = run_nnpm(tmp_path / "home", "registry", "user", "add", "alice", "--database-url", a.database_url).stdout
    token = out.strip().splitlines()[-1]
    distinct, contested_builds = twenty_publishers(tmp_path)
    clients = distinct + contested_builds
    assert len(clients) == 20

    statuses = publish_at_once(replicas, token, clients)

    assert statuses[:12] == [201] * 12, statuses
    contested = list(zip(clients[12:], statuses[12:]))
    assert [s for _, s in contested].count(201) == 1, statuses
    winner = next(built for built, status in contested if status == 201)
    for built, status in contested:  # the others are answered as if they had arrived after the winner
        assert status in ((200, 201) if built.manifest == winner.manifest else (409,)), statuses

    # Exactly one row per version, straight from PostgreSQL; the contested one holds the winner's bytes.
    expected = {str(built.manifest.version): built.manifest for built in distinct}
    expected[CONTESTED] = winner.manifest
    rows = versions_in_database(a, NAME)
    assert {v: count for v, (count, _) in rows.items()} == {v: 1 for v in expected}
    assert rows[CONTESTED][1] == hashlib.sha256(winner.manifest.to_json()).hexdigest()
    assert a.query("SELECT count(*) FROM packages") == [(1,)]
    assert a.query("SELECT u.name FROM owners o JOIN users u ON u.id = o.user_id") == [("alice",)]
    assert_whole_through_both(replicas, expected)


# -- kill -9 of one replica mid-upload ------------------------------------------------------------

def big_file(path: Path, mib: int) -> Path:
    """`mib` MiB of distinct, repeatable 1 MiB blocks."""
    block = hashlib.sha256(b"replica").digest() * (MIB // 32)
    with open(path, "wb") as f:
        f.writelines(i.to_bytes(8, "big") + block[8:] for i in range(mib))
    return path


def test_kill_9_of_one_replica_mid_upload_the_other_serves_and_the_retry_succeeds(replicas, tmp_path: Path) -> None:
    a, b = replicas
    token = a.add_user("alice")
    steady = build(write_package(tmp_path / "steady", "steady", "1.0.0"))
    assert a.publish(tmp_path / "steady", token).status_code == 201
    folder = write_package(tmp_path / "big", "big-asset", "1.0.0", weights=(4.0, 5.0, 6.0),
                           extra_toml='[files]\ninclude = ["big.bin"]\n')
    big = big_file(folder / "big.bin", 100)
    entry = build(folder).manifest.file("big.bin")
    url = f"/api/v1/blobs/sha256:{entry.sha256}"

    def half_then_kill_a() -> Iterator[bytes]:
        with open(big, "rb") as f:
            for _ in range(entry.size // MIB // 2):
                yield f.read(MIB)
            assert wait_for(lambda: a.uploads_in_flight()), "A never began storing the upload"
            a.kill()
            yield from iter(lambda: f.read(MIB), b"")

    with a.client(token) as c, pytest.raises(httpx.TransportError):
        c.put(url, content=half_then_kill_a(), headers={"Content-Length": str(entry.size)})
    assert a.proc.poll() is not None

    # B serves on, alone: health, packuments, blobs; the half upload is nowhere to be seen.
    with b.client(token) as c:
        assert c.get("/api/v1/health").json()["status"] == "ok"
        assert c.get("/api/v1/packages/steady").json()["latest"] == "1.0.0"
        assert c.head(url).status_code == 404 and c.get(url).status_code == 404
    for f in steady.manifest.files:
        assert blob_sha256(b, f.sha256) == (f.sha256, f.size)
    assert len(b.uploads_in_flight()) == 1 and entry.sha256 not in b.stored_blobs()

    # The retry through B: the big blob goes up whole, then the version commits.
    with RegistryClient(b.url, token=token) as client:
        result = publish(folder, client, progress=False)
    assert result.created and "big.bin" in [f.path for f in result.uploaded]
    assert blob_sha256(b, entry.sha256) == (entry.sha256, entry.size)
    with b.client() as c:
        packument = c.get("/api/v1/packages/big-asset")
        assert Manifest.from_dict(packument.json()["versions"][0]["manifest"]) == result.manifest

    # A, restarted over the same database and bucket, serves the same data.
    a.start()
    with a.client() as c:
        assert c.get("/api/v1/packages/big-asset").headers["etag"] == packument.headers["etag"]
        head = c.head(url)
        assert head.status_code == 200 and int(head.headers["content-length"]) == entry.size
        tail = c.get(url, headers={"Range": f"bytes={entry.size - 100}-"})
        assert tail.status_code == 206 and tail.content == big.read_bytes()[-100:]
        assert c.get("/api/v1/packages/steady").json()["latest"] == "1.0.0"
    assert versions_in_database(b, "big-asset") == {"1.0.0": (1, hashlib.sha256(result.manifest.to_json()).hexdigest())}


def wait_for(condition, timeout: float = 10.0) -> bool:
    """Poll `condition` until it is true or `timeout` seconds passed; its last value."""
    import time

    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(value)

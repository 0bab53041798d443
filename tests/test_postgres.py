"""The registry on a real PostgreSQL (tests/pgserver.py): the API over `--database-url`, two
servers sharing one database, concurrent publishers, and no transaction left open while a
request body streams in. The race tests also run in-process on SQLite: one contract."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cli import one_error_line, run_nnpm
from concurrency import at_once
from packages import write_unique_package
from protocol import put_manifest
from registry_proc import Registry, close_all, start_registry
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from registry_server.db.engine import engine_url
from registry_server.services.auth import add_user

# -- fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_database(postgres_server) -> str:
    """One database for the module's two servers (tests use their own package names)."""
    return postgres_server.create_database()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, pg_database: str) -> Iterator[tuple[Registry, Registry]]:
    """Two registry processes on one PostgreSQL, started at once on the empty database (both migrate)."""
    started: list[Registry] = []
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: start_registry(tmp_path_factory, started, database_url=pg_database), range(2))
    yield a, b
    close_all(started)


def query(url: str, sql: str, **params) -> list[tuple]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def version_rows(url: str, name: str) -> list[str]:
    return sorted(v for (v,) in query(url, "SELECT v.version FROM versions v JOIN packages p ON p.id = v.package_id "
                                           "WHERE p.name = :name", name=name))


def owners(url: str, name: str) -> list[str]:
    return sorted(u for (u,) in query(url, "SELECT u.name FROM owners o JOIN users u ON u.id = o.user_id "
                                           "JOIN packages p ON p.id = o.package_id WHERE p.name = :name", name=name))


def upload_blobs(reg: Registry, token: str, folder: Path) -> bytes:
    """PUT every file of the package; its canonical manifest bytes."""
    from nnpm.author.pack import build

    built = build(folder)
    with reg.client(token) as c:
        for f in built.manifest.files:
            r = c.put(f"/api/v1/blobs/sha256:{f.sha256}", content=built.paths[f.path].read_bytes())
            assert r.status_code in (200, 201), r.text
    return built.manifest.to_json()


def error_code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]


# -- the API on PostgreSQL -------------------------------------------------------------------------

def test_publish_read_yank_owners_and_search_on_postgres(servers, pg_database: str, tmp_path: Path) -> None:
    reg, _ = servers
    alice, bob = add_user(pg_database, "alice"), add_user(pg_database, "bob")
    about = {"description": "Adds numbers on Postgres", "tags": ("arith", "pg")}
    folder = write_unique_package(tmp_path, "pg-tiny", "1.0.0", **about)
    later = write_unique_package(tmp_path, "pg-tiny", "2.0.0", **about)
    assert reg.publish(folder, alice).status_code == 201
    assert reg.publish(folder, alice).status_code == 200  # identical retry
    other = write_unique_package(tmp_path, "pg-tiny", "1.0", weights=(9.0, 9.0, 9.0))
    assert error_code(reg.publish(other, alice)) == (409, "conflict")  # 1.0 is 1.0.0, other bytes
    assert error_code(reg.publish(later, bob)) == (403, "forbidden")
    assert error_code(reg.publish(folder, "nnpm_not-a-token")) == (401, "unauthorized")

    with reg.client() as c:
        r = c.get("/api/v1/packages/PG_Tiny")
        doc = r.json()
        assert doc["name"] == "pg-tiny" and doc["latest"] == "1.0.0"
        assert [v["version"] for v in doc["versions"]] == ["1.0.0"]
        assert doc["versions"][0]["published_at"].endswith("Z")
        assert c.get("/api/v1/packages/pg-tiny", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
        assert c.get("/api/v1/packages/pg-tiny/1.0").json()["manifest"]["package"]["name"] == "pg-tiny"
        assert error_code(c.get("/api/v1/packages/pg-tiny/3.0")) == (404, "not_found")
        assert error_code(c.post("/api/v1/packages/pg-tiny/1.0.0/yank", json={"reason": "x"})) == (401, "unauthorized")

    with reg.client(bob) as c:
        assert error_code(c.post("/api/v1/packages/pg-tiny/1.0.0/yank", json={"reason": "x"})) == (403, "forbidden")
        assert error_code(c.put("/api/v1/packages/pg-tiny/owners/bob")) == (403, "forbidden")
    with reg.client(alice) as c:
        yanked = c.post("/api/v1/packages/pg-tiny/1.0.0/yank", json={"reason": "wrong\x00weights"}).json()
        assert yanked["yanked"] is True and yanked["yanked_reason"] == "wrongweights"  # no NUL in PG text
        assert c.get("/api/v1/packages/pg-tiny").headers["etag"] != r.headers["etag"]
        assert c.delete("/api/v1/packages/pg-tiny/1.0.0/yank").json()["yanked_reason"] is None
        assert error_code(c.put("/api/v1/packages/pg-tiny/owners/nobody")) == (404, "not_found")
        assert c.put("/api/v1/packages/pg-tiny/owners/bob").json() == {"owners": ["alice", "bob"]}
        assert c.put("/api/v1/packages/pg-tiny/owners/bob").json() == {"owners": ["alice", "bob"]}
    assert reg.publish(later, bob).status_code == 201

    with reg.client() as c:
        for q in ("pg-tiny", "PG TINY", "postgres", "ARITH"):
            hits = c.get("/api/v1/search", params={"q": q}).json()["results"]
            assert [h["name"] for h in hits] == ["pg-tiny"], q
            assert hits[0]["version"] == "2.0.0" and hits[0]["tags"] == ["arith", "pg"]
        assert c.get("/api/v1/search", params={"q": "100%_"}).json() == {"results": [], "total": 0}
        assert "pg-tiny" in [h["name"] for h in c.get("/api/v1/search").json()["results"]]
        page = c.get("/packages/pg-tiny")
        assert page.status_code == 200 and "Adds numbers on Postgres" in page.text
    assert version_rows(pg_database, "pg-tiny") == ["1.0.0", "2.0.0"]


def test_text_postgres_cannot_store_is_refused_or_cleaned_not_a_500(servers, pg_database: str,
                                                                   tmp_path: Path) -> None:
    reg, _ = servers
    token = add_user(pg_database, "carol")
    manifest = upload_blobs(reg, token, write_unique_package(tmp_path, "pg-nul", description="ok", tags=("ok",)))
    with_nul = manifest.replace(b'"description": "ok"', b'"description": "a\\u0000b"').replace(
        b'"ok"\n', b'"x\\u0000y"\n')
    assert with_nul.count(b"\\u0000") == 2
    r = put_manifest(reg, token, "pg-nul", "1.0.0", with_nul)   # NUL is a control character: refused, not a 500
    assert error_code(r) == (400, "invalid_manifest") and "control character U+0000" in r.json()["detail"]
    assert version_rows(pg_database, "pg-nul") == []
    long_version = "1." + ".".join(["1"] * 60)
    long_package = write_unique_package(tmp_path, "pg-long", long_version)
    assert error_code(reg.publish(long_package, token)) == (400, "invalid_manifest")
    manifest = upload_blobs(reg, token, write_unique_package(tmp_path, "pg-surrogate", description="ok"))
    bad = manifest.replace(b'"description": "ok"', b'"description": "\\ud800"')
    assert bad != manifest
    assert error_code(put_manifest(reg, token, "pg-surrogate", "1.0.0", bad)) == (400, "invalid_manifest")
    with reg.client() as c:
        assert c.get("/api/v1/search", params={"q": "\x00"}).status_code == 200


def test_nnpm_publish_yank_and_install_against_a_postgres_registry(servers, pg_database: str,
                                                                   tmp_path: Path) -> None:
    reg, _ = servers
    home = tmp_path / "home"
    token = add_user(pg_database, "dave")
    run_nnpm(home, "login", "--registry", reg.url, "--token", token)
    folder = write_unique_package(tmp_path, "pg-cli", "1.0.0")
    assert "published pg-cli 1.0.0" in run_nnpm(home, "publish", str(folder), "--no-progress").stdout
    assert "already published" in run_nnpm(home, "publish", str(folder), "--no-progress").stdout
    run_nnpm(home, "install", "pg-cli==1.0.0", "--quiet")
    run_nnpm(home, "yank", "pg-cli==1.0.0", "--reason", "superseded")
    with reg.client() as c:
        assert c.get("/api/v1/packages/pg-cli/1.0.0").json()["yanked_reason"] == "superseded"
    assert version_rows(pg_database, "pg-cli") == ["1.0.0"]


# -- two servers, one database ----------------------------------------------------------------------

def test_two_servers_on_one_database_see_each_others_writes_at_once(servers, pg_database: str,
                                                                    tmp_path: Path) -> None:
    a, b = servers
    erin = add_user(pg_database, "erin")  # issued after both servers started
    with b.client(erin) as c:
        assert c.get("/api/v1/whoami").json() == {"user": "erin"}
    assert a.publish(write_unique_package(tmp_path, "pg-shared"), erin).status_code == 201
    with a.client(erin) as ca, b.client(erin) as cb:
        etag = cb.get("/api/v1/packages/pg-shared").headers["etag"]
        assert ca.get("/api/v1/packages/pg-shared").headers["etag"] == etag  # same bytes on every replica
        assert cb.post("/api/v1/packages/pg-shared/1.0.0/yank", json={"reason": "via b"}).status_code == 200
        assert ca.get("/api/v1/packages/pg-shared").json()["versions"][0]["yanked_reason"] == "via b"
        add_user(pg_database, "frank")
        assert ca.put("/api/v1/packages/pg-shared/owners/frank").status_code == 200
        assert cb.get("/api/v1/packages/pg-shared/owners").json() == {"owners": ["erin", "frank"]}


@pytest.mark.parametrize("case", ["same user, same bytes", "same user, other bytes", "two users, same bytes"])
def test_two_first_publishes_of_one_new_version_on_two_servers_make_one_row(
        servers, pg_database: str, tmp_path: Path, case: str) -> None:
    a, b = servers
    name = "pg-race-" + hashlib.sha256(case.encode()).hexdigest()[:8]
    one = add_user(pg_database, "gina")
    two = add_user(pg_database, "hugo") if case.startswith("two users") else one
    first = write_unique_package(tmp_path, name)
    second = write_unique_package(tmp_path, name, weights=(7.0, 7.0, 7.0)) if "other bytes" in case else first
    body_a, body_b = upload_blobs(a, one, first), upload_blobs(b, two, second)
    ra, rb = at_once(lambda: put_manifest(a, one, name, "1.0.0", body_a),
                     lambda: put_manifest(b, two, name, "1.0.0", body_b))
    winner, loser = (ra, rb) if ra.status_code == 201 else (rb, ra)
    assert winner.status_code == 201, (ra.text, rb.text)
    expected = {"same user, same bytes": 200, "same user, other bytes": 409, "two users, same bytes": 403}[case]
    assert loser.status_code == expected, loser.text
    assert version_rows(pg_database, name) == ["1.0.0"]
    assert len(query(pg_database, "SELECT id FROM packages WHERE name = :n", n=name)) == 1
    assert owners(pg_database, name) == ["hugo" if winner is rb and two != one else "gina"]  # the first to commit


def test_ten_concurrent_publishes_of_versions_of_one_new_package_all_land(servers, pg_database: str,
                                                                          tmp_path: Path) -> None:
    a, b = servers
    token = add_user(pg_database, "ivy")
    jobs = []
    for i in range(10):
        reg, version = (a, b)[i % 2], f"{i + 1}.0.0"
        folder = write_unique_package(tmp_path, "pg-ten", version, weights=(float(i), 1.0, 2.0))
        body = upload_blobs(reg, token, folder)
        jobs.append(lambda reg=reg, version=version, body=body: put_manifest(reg, token, "pg-ten", version, body))
    responses = at_once(*jobs)
    assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses if r.status_code != 201]
    assert version_rows(pg_database, "pg-ten") == sorted(f"{i}.0.0" for i in range(1, 11))
    assert owners(pg_database, "pg-ten") == ["ivy"]
    with b.client() as c:
        assert c.get("/api/v1/packages/pg-ten").json()["latest"] == "10.0.0"


# -- no transaction open while a body streams in ---------------------------------------------------

def test_no_transaction_stays_open_while_a_request_body_streams_in(servers, pg_database: str,
                                                                   tmp_path: Path) -> None:
    reg, _ = servers
    token = add_user(pg_database, "jack")
    database = pg_database.rsplit("/", 1)[1]
    admin = pg_database.rsplit("/", 1)[0] + "/postgres"

    def idle_in_transaction() -> int:
        return query(admin, "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                            "AND state LIKE 'idle in transaction%'", db=database)[0][0]

    def slow_put(path: str, data: bytes) -> tuple[int, int]:
        """PUT `data` in two halves with a pause between; (status, idle-in-transaction count during the pause)."""
        half, paused, resume = len(data) // 2, threading.Event(), threading.Event()

        def body():
            yield data[:half]
            paused.set()
            resume.wait(30)
            yield data[half:]

        seen: list[int] = []

        def watch():
            paused.wait(30)
            time.sleep(0.5)  # the server has authenticated and is waiting for the rest
            seen.append(idle_in_transaction())
            resume.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        with reg.client(token) as c:
            r = c.put(path, content=body(), headers={"Content-Length": str(len(data))})
        watcher.join()
        return r.status_code, seen[0]

    blob = b"streamed slowly " * 4096
    assert slow_put(f"/api/v1/blobs/sha256:{hashlib.sha256(blob).hexdigest()}", blob) == (201, 0)
    folder = write_unique_package(tmp_path, "pg-slow")
    manifest = upload_blobs(reg, token, folder)
    assert slow_put("/api/v1/packages/pg-slow/1.0.0", manifest) == (201, 0)


# -- the race itself, in-process and deterministic, on both databases -------------------------------

class _Store:
    """Just enough of a blob store: every file of the given manifests is there."""

    def __init__(self, *manifests) -> None:
        self.sizes = {f.sha256: f.size for m in manifests for f in m.files}

    def size(self, digest: str) -> int | None:
        return self.sizes.get(digest)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path):
    from registry_server.db.engine import make_engine

    url = f"sqlite:///{tmp_path / 'registry.db'}" if request.param == "sqlite" else \
        request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("case", ["same user, same bytes", "same user, other bytes", "two users, same bytes",
                                  "same user, two versions"])
def test_publishers_racing_past_every_check_settle_like_sequential_ones(
        engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """Both pass the front door (no package yet), wait for each other, then commit at once."""
    import registry_server.services.publish as pub
    from nnpm.author.pack import build
    from nnpm.errors import NnpmError
    from registry_server.db.engine import session_factory
    from registry_server.services import validate
    from registry_server.services.auth import get_or_create_user
    from registry_server.settings import ServerSettings

    sessions = session_factory(engine)
    with sessions() as s:
        users = [get_or_create_user(s, "kim"), get_or_create_user(s, "lou" if case.startswith("two") else "kim")]
    second_version = "2.0.0" if "two versions" in case else "1.0.0"
    second_weights = (5.0, 5.0, 5.0) if "other bytes" in case else (1.0, 2.0, 3.0)
    manifests = [build(write_unique_package(tmp_path, "race", "1.0.0")).manifest,
                 build(write_unique_package(tmp_path, "race", second_version, weights=second_weights)).manifest]
    store, settings = _Store(*manifests), ServerSettings(data_dir=tmp_path / "data")
    both_checked = threading.Barrier(2)
    real_check_blobs = pub.check_blobs

    def check_blobs_then_wait(manifest, store):
        real_check_blobs(manifest, store)
        both_checked.wait(timeout=30)

    monkeypatch.setattr(pub, "check_blobs", check_blobs_then_wait)
    monkeypatch.setattr(validate, "check_model", lambda manifest, store, settings: None)

    def attempt(i: int):
        with sessions() as session:
            user = session.merge(users[i])
            m = manifests[i]
            try:
                status, row = pub.publish(session, store, settings, user, "race", str(m.version), m.to_json())
                return status, row.version
            except NnpmError as exc:  # what the API would answer with
                return exc.response_status(), type(exc).__name__

    results = at_once(lambda: attempt(0), lambda: attempt(1))
    statuses = sorted(status for status, _ in results)
    expected = {"same user, same bytes": [200, 201], "same user, other bytes": [201, 409],
                "two users, same bytes": [201, 403], "same user, two versions": [201, 201]}[case]
    assert statuses == expected, results
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM packages")) == 1
        rows = conn.scalar(text("SELECT count(*) FROM versions"))
        owner_names = list(conn.scalars(text("SELECT u.name FROM owners o JOIN users u ON u.id = o.user_id")))
    assert rows == (2 if "two versions" in case else 1)
    winner = users[[s for s, _ in results].index(201)].name
    assert owner_names == [winner]


def test_the_registry_reads_committed_even_where_the_database_defaults_to_serializable(
        postgres_url: str) -> None:
    from registry_server.db.engine import make_engine

    admin = create_engine(postgres_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{postgres_url.rsplit("/", 1)[1]}" '
                          "SET default_transaction_isolation = 'serializable'"))
    admin.dispose()
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SHOW transaction_isolation")) == "read committed"
    finally:
        engine.dispose()


def test_an_unreachable_database_is_one_error_line_without_the_password(tmp_path: Path) -> None:
    proc = run_nnpm(tmp_path / "home", "registry", "user", "add", "alice", "--data", str(tmp_path / "data"),
                    "--database-url", "postgresql://nnpm:s3cret@127.0.0.1:1/registry", check=False)
    line = one_error_line(proc)
    assert "cannot use the database postgresql+psycopg://nnpm:***@127.0.0.1:1/registry" in line, line
    assert "s3cret" not in proc.stdout + proc.stderr


def test_postgres_urls_without_a_driver_use_psycopg() -> None:
    assert engine_url("postgresql://u@h:5/db") == "postgresql+psycopg://u@h:5/db"
    assert engine_url("postgres://u:p%40ss@h/db") == "postgresql+psycopg://u:p%40ss@h/db"
    assert engine_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert engine_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"

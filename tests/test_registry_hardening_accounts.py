"""Registry hardening (issue 13), users and blobs: user names unique ignoring case, revision 0002, the
per-user upload quota, and garbage collection of blobs no version references (never one a publish
in flight needs).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from nnpm.author.pack import build
from nnpm.errors import ConfigError, NotFoundError
from nnpm.format.manifest import FileEntry

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.registry_backends("sqlite-dir")




def run(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc


# -- user names ------------------------------------------------------------------------------------

def test_user_names_are_ascii_and_unique_ignoring_case(database_url: str) -> None:
    from registry_server.db.engine import make_engine, session_factory
    from registry_server.db.tables import Package, User
    from registry_server.services.auth import get_or_create_user
    from registry_server.services.catalog import owners_of
    from registry_server.services.owners import add_owner

    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as s:
            alice = get_or_create_user(s, "Alice")
            with pytest.raises(ConfigError, match="already a user called 'Alice'"):
                get_or_create_user(s, "alice")
            assert get_or_create_user(s, "Alice").id == alice.id
            for bad in ("alice\n", "ålice", "al\u0131ce", "AL\u0130CE", "alice\u200b"):
                with pytest.raises(ConfigError, match="invalid user name"):
                    get_or_create_user(s, bad)
            s.add(User(name="ALICE"))  # behind the service's back: the database refuses it too
            with pytest.raises(DbIntegrityError):
                s.commit()
            s.rollback()
            pkg = Package(name="owned")
            s.add(pkg)
            s.commit()
            add_owner(s, pkg, "aLiCe")
            assert owners_of(s, pkg) == ["Alice"]
    finally:
        engine.dispose()


# -- revision 0002 ---------------------------------------------------------------------------------

def at_revision_0001(url: str, *users: str) -> None:
    """A database at revision 0001 holding `users` and one package with one version."""
    from alembic import command

    from registry_server.db.engine import make_engine
    from registry_server.db.migrations import alembic_config

    engine = make_engine(url, upgrade=False)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
            for name in users:
                conn.execute(text("INSERT INTO users (name, created_at) VALUES (:n, CURRENT_TIMESTAMP)"), {"n": name})
            conn.execute(text("INSERT INTO packages (id, name, created_at) VALUES (1, 'kept', CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO versions (package_id, version, version_key, manifest_json, manifest_sha256, "
                              "description, tags, yanked, published_at) VALUES (1, '1.0', '1', '{}', :sha, 'd', 't', "
                              ":no, CURRENT_TIMESTAMP)"), {"sha": "0" * 64, "no": False})
    finally:
        engine.dispose()


def test_a_database_at_0001_is_upgraded_with_its_rows_and_matches_the_models(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from registry_server.db.engine import make_engine
    from registry_server.db.migrations import current_revision, head_revision
    from registry_server.db.tables import Base

    at_revision_0001(database_url, "Alice", "bob")
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert current_revision(conn) == head_revision() and head_revision() >= "0002"
            assert conn.execute(text("SELECT version, readme_html FROM versions")).all() == [("1.0", None)]
            assert sorted(conn.scalars(text("SELECT name FROM users"))) == ["Alice", "bob"]
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        with pytest.raises(DbIntegrityError), engine.begin() as conn:
            conn.execute(text("INSERT INTO users (name, created_at) VALUES ('BOB', CURRENT_TIMESTAMP)"))
    finally:
        engine.dispose()


def test_an_upgrade_names_users_whose_names_differ_only_in_case(database_url: str) -> None:
    from registry_server.db.engine import migrate

    at_revision_0001(database_url, "Bob", "bob", "carol")
    with pytest.raises(ConfigError, match="differ only in case \\('bob'\\)"):
        migrate(database_url)


# -- the upload quota ------------------------------------------------------------------------------

def test_each_user_uploads_at_most_the_quota(registry_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNPM_REGISTRY_UPLOAD_QUOTA", "1000")
    reg = registry_factory()
    ann, ben = reg.add_user("ann"), reg.add_user("ben")

    def put(token: str, data: bytes, digest: str | None = None) -> int:
        with reg.client(token) as c:
            r = c.put(f"/api/v1/blobs/sha256:{digest or hashlib.sha256(data).hexdigest()}", content=data)
            if r.status_code == 413:
                assert "upload quota" in r.json()["detail"] and "ann" in r.json()["detail"], r.text
            return r.status_code

    first, second, third = b"1" * 600, b"2" * 600, b"3" * 300
    assert put(ann, first) == 201
    assert put(ann, second) == 413  # 1200 > 1000: refused before a byte is stored
    assert put(ann, first) == 200   # already stored: costs nothing
    assert put(ann, third, digest=hashlib.sha256(b"other").hexdigest()) == 400  # refused upload: not counted
    assert put(ann, third) == 201   # 900 <= 1000
    assert put(ben, second) == 201  # everyone has their own quota
    assert hashlib.sha256(second).hexdigest() in reg.stored_blobs()


# -- garbage collection ----------------------------------------------------------------------------

def test_gc_lists_then_deletes_only_blobs_no_version_needs_and_nobody_used_lately(
        registry_factory, small_package) -> None:
    reg = registry_factory()
    token = reg.add_user("gc")
    built = build(small_package("kept", readme="# kept\n"))
    assert reg.publish(built.paths["model.onnx"].parent, token).status_code == 201
    orphans = {name: hashlib.sha256(name.encode()).hexdigest() for name in ("old", "new", "legacy-old", "legacy-new")}
    with reg.client(token) as c:
        for name in ("old", "new"):
            assert c.put(f"/api/v1/blobs/sha256:{orphans[name]}", content=name.encode()).status_code == 201
    for name in ("legacy-old", "legacy-new"):  # stored before blob records existed: no row
        path = reg.data_dir / "blobs" / "sha256" / orphans[name][:2] / orphans[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
    long_ago = time.time() - 30 * 86400
    legacy_old = orphans["legacy-old"]
    os.utime(reg.data_dir / "blobs" / "sha256" / legacy_old[:2] / legacy_old, (long_ago, long_ago))
    model = built.manifest.file("model.onnx").sha256
    with sqlite3.connect(reg.data_dir / "registry.db") as db:  # unused for a month: the old orphan, and the graph
        db.execute("UPDATE blobs SET used_at = '2000-01-01 00:00:00.000000' WHERE digest IN (?, ?)",
                   (orphans["old"], model))
    expected = {orphans["old"], legacy_old}

    dry = run("-m", "registry_server.gc", "--data", str(reg.data_dir))
    assert {line.split()[2].removeprefix("sha256:") for line in dry.stdout.splitlines()
            if line.startswith("would delete sha256:")} == expected, dry.stdout
    assert "dry run" in dry.stdout and expected <= reg.stored_blobs()

    done = run("-m", "nnpm", "registry", "gc", "--data", str(reg.data_dir), "--yes")
    assert "deleted 2 unreferenced blobs" in done.stdout, done.stdout
    stored = reg.stored_blobs()
    assert not expected & stored
    assert {orphans["new"], orphans["legacy-new"], *(f.sha256 for f in built.manifest.files)} <= stored
    with reg.client() as c:
        for f in built.manifest.files:
            assert c.get(f"/api/v1/blobs/sha256:{f.sha256}").status_code == 200
    assert "deleted 0 unreferenced blobs" in run("-m", "registry_server.gc", "--data", str(reg.data_dir),
                                                 "--yes").stdout


def test_gc_and_a_publish_naming_the_same_blob_never_both_go_ahead(tmp_path: Path, small_package) -> None:
    from registry_server.db.engine import make_engine, session_factory
    from registry_server.services.blobs import claim_for_publish
    from registry_server.services.gc import collect
    from registry_server.storage.directory import DirBlobStore

    engine = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    sessions = session_factory(engine)
    manifest = build(small_package("racer")).manifest
    outcomes: list[str] = []

    class Store(DirBlobStore):
        def delete(self, digest: str) -> None:  # gc has decided: a publish claiming the blob now must not win
            with sessions() as s:
                try:
                    claim_for_publish(s, claiming, self)
                    outcomes.append("publish went ahead")
                except NotFoundError as exc:
                    outcomes.append(str(exc))
            super().delete(digest)

    store = Store(tmp_path / "blobs", tmp_path / "tmp")

    async def body(data: bytes):
        yield data

    try:
        for data in (b"early", b"late"):
            digest = hashlib.sha256(data).hexdigest()
            asyncio.run(store.put(digest, body(data), size=len(data)))
            old = time.time() - 7 * 86400  # stored a week ago, by a server without blob records
            os.utime(tmp_path / "blobs" / "sha256" / digest[:2] / digest, (old, old))
            claiming = manifest.with_files([FileEntry("data.bin", len(data), digest)])
            if data == b"early":  # the publish claims first: gc keeps the blob
                with sessions() as s:
                    claim_for_publish(s, claiming, store)
                assert collect(sessions, store, grace=3600, delete_blobs=True).collected == []
                assert store.exists(digest)
            else:  # gc flips the row first: the publish is refused, and the blob goes
                report = collect(sessions, store, grace=3600, delete_blobs=True)
                assert [b.digest for b in report.collected] == [digest] and not store.exists(digest)
                assert len(outcomes) == 1 and "being removed" in outcomes[0], outcomes
    finally:
        engine.dispose()

"""Schema migrations (Alembic, in registry_server/migrations): empty → head, adopting a database
made before migrations existed, many processes migrating at once, and the migrated schema
equal to the models. Each test runs on SQLite and on a real PostgreSQL (tests/pgserver.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from nnpm.errors import ConfigError
from registry_server.db.engine import make_engine, migrate
from registry_server.db.migrations import (
    INITIAL_REVISION,
    INITIAL_TABLES,
    alembic_config,
    current_revision,
    head_revision,
)
from registry_server.db.tables import Base, Package, Release, User
from registry_server.services.auth import issue_token, user_for_token

ROOT = Path(__file__).resolve().parents[1]




def plain_engine(url: str) -> Engine:
    """An engine that changes nothing by itself (no migration, no pool)."""
    return create_engine(url, poolclass=NullPool)


def revision_rows(url: str) -> list[str]:
    engine = plain_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(text("SELECT version_num FROM alembic_version")))
    finally:
        engine.dispose()


def schema_differences(url: str) -> list:
    """What Alembic's autogenerate would change to make the database match the models ([] = equal)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = plain_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = plain_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def fill_some_rows(url: str) -> str:
    """A user with a token, a package and a version, written straight through the models; the token."""
    engine = plain_engine(url)
    try:
        with Session(engine, expire_on_commit=False) as session:
            user = User(name="alice")
            session.add(user)
            session.commit()
            token = issue_token(session, user)
            pkg = Package(name="kept")
            session.add(pkg)
            session.flush()
            session.add(Release(package_id=pkg.id, version="1.0", version_key="1", manifest_json="{}",
                                manifest_sha256="0" * 64, description="d", tags="t"))
            session.commit()
    finally:
        engine.dispose()
    return token


def assert_rows_kept(url: str, token: str) -> None:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            assert user_for_token(session, token).name == "alice"
            (row,) = session.scalars(select(Release).join(Package).where(Package.name == "kept")).all()
            assert (row.version, row.manifest_json, row.yanked) == ("1.0", "{}", False)
    finally:
        engine.dispose()


def create_all_schema(url: str) -> None:
    """What the server did before migrations existed: Base.metadata.create_all, no alembic_version."""
    engine = plain_engine(url)
    try:
        Base.metadata.create_all(engine)
    finally:
        engine.dispose()


def schema_text(url: str, server=None) -> str:
    """The database's DDL, alembic_version left out: sqlite_master, or pg_dump --schema-only."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            rows = db.execute("SELECT type, name, sql FROM sqlite_master WHERE name != 'alembic_version' "
                              "AND name NOT LIKE 'sqlite_%' ORDER BY type, name").fetchall()
        return "\n".join(" ".join(str(part).split()) for row in rows for part in row)
    database = url.rsplit("/", 1)[1]
    dump = subprocess.run([str(server.bin_dir / "pg_dump"), "--schema-only", "--no-owner",
                           "-T", "alembic_version", "-h", "127.0.0.1", "-p", str(server.port),
                           "-U", "postgres", database], capture_output=True, text=True, check=True)
    return "\n".join(line for line in dump.stdout.splitlines()
                     if line.strip() and not line.startswith("--") and "restrict" not in line)


# -- empty → head ------------------------------------------------------------------------------------

def test_an_empty_database_is_brought_to_head_and_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    engine.dispose()
    assert revision_rows(database_url) == [head_revision()]
    assert table_names(database_url) == set(Base.metadata.tables) | {"alembic_version"}
    assert schema_differences(database_url) == []
    token = fill_some_rows(database_url)
    migrate(database_url)  # again: nothing to do, nothing lost
    assert revision_rows(database_url) == [head_revision()]
    assert_rows_kept(database_url, token)


def test_revision_by_revision_gives_the_same_schema_as_a_fresh_head(
        request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> None:
    """0001 holds exactly the tables of the code before migrations; each later revision applied on
    top of it ends in the very schema a fresh upgrade to head makes (which matches the models)."""
    if database_url.startswith("sqlite"):
        other, server = f"sqlite:///{tmp_path / 'fresh.db'}", None
    else:
        server = request.getfixturevalue("postgres_server")
        other = server.create_database()
    engine = make_engine(database_url, upgrade=False)
    try:
        from alembic import command

        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), INITIAL_REVISION)
    finally:
        engine.dispose()
    assert table_names(database_url) == set(INITIAL_TABLES) | {"alembic_version"}
    assert "uq_package_version" in schema_text(database_url, server)
    migrate(database_url)
    make_engine(other).dispose()
    assert schema_text(database_url, server) == schema_text(other, server)
    assert schema_differences(database_url) == []


# -- adopting a database made before migrations ------------------------------------------------------

def test_a_database_made_by_create_all_is_adopted_with_its_rows(database_url: str) -> None:
    create_all_schema(database_url)
    token = fill_some_rows(database_url)
    assert "alembic_version" not in table_names(database_url)
    migrate(database_url)
    assert revision_rows(database_url) == [head_revision()]
    assert schema_differences(database_url) == []
    assert_rows_kept(database_url, token)


def test_a_database_with_only_some_registry_tables_is_refused(database_url: str) -> None:
    engine = plain_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(64))"))
    engine.dispose()
    with pytest.raises(ConfigError, match="owners, packages, tokens, versions"):
        migrate(database_url)
    assert "alembic_version" not in table_names(database_url)


def test_other_tables_in_a_shared_database_are_left_alone(database_url: str) -> None:
    engine = plain_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE someone_else (id INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO someone_else (id) VALUES (7)"))
    engine.dispose()
    migrate(database_url)
    assert table_names(database_url) == set(Base.metadata.tables) | {"alembic_version", "someone_else"}
    engine = plain_engine(database_url)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT id FROM someone_else")) == 7
    engine.dispose()


def test_a_registry_server_adopts_its_pre_migration_sqlite_database(registry_factory, small_package) -> None:
    reg = registry_factory()
    token = reg.add_user("alice")
    assert reg.publish(small_package("old-model", "1.0.0"), token).status_code == 201
    reg.stop()
    with sqlite3.connect(reg.data_dir / "registry.db") as db:  # as the code before migrations left it
        db.execute("DROP TABLE alembic_version")
    reg.start()
    assert revision_rows(reg.database_url) == [head_revision()]
    with reg.client(token) as c:
        assert c.get("/api/v1/packages/old-model").json()["latest"] == "1.0.0"
        assert c.get("/api/v1/whoami").json() == {"user": "alice"}
    assert reg.publish(small_package("old-model", "1.1.0"), token).status_code == 201


# -- many processes at once --------------------------------------------------------------------------

MIGRATE_AT = textwrap.dedent("""
    import sys, time
    from registry_server.db.engine import make_engine
    from registry_server.db.migrations import current_revision
    url, start_at = sys.argv[1], float(sys.argv[2])
    time.sleep(max(0.0, start_at - time.time()))
    engine = make_engine(url)
    with engine.connect() as conn:
        print(current_revision(conn))
    engine.dispose()
""")


def test_processes_migrating_one_database_at_once_all_succeed(database_url: str) -> None:
    start_at = time.time() + 2.0  # every process imported and waiting before the first one starts
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE_AT, database_url, str(start_at)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    for out, err, rc in results:
        assert rc == 0, err
        assert out.strip() == head_revision()
    assert revision_rows(database_url) == [head_revision()]
    assert schema_differences(database_url) == []


# -- the command line for people writing revisions ---------------------------------------------------

def test_the_alembic_command_line_runs_without_an_ini_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    def run(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "registry_server.db.migrations", "--database-url", url, *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert INITIAL_REVISION in run("history")
    run("upgrade", "head")
    assert f"{head_revision()} (head)" in run("current")
    engine = plain_engine(url)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
    engine.dispose()

"""Schema migrations of the registry database (Alembic), shipped inside the package.

`upgrade(engine)` brings a database to the newest revision; the server runs it once at
start-up (through `registry_server.db.tables.make_engine`), so there is no alembic.ini and no
separate step. It

- creates the schema in an empty database (the models' tables at once, stamped at the head);
- adopts a database made before migrations existed (every table of the first revision
  there, no `alembic_version`): it is stamped at the first revision, then upgraded;
- applies the revisions a database is missing, all in one transaction;
- is safe when several servers start at once against one database: PostgreSQL holds an
  advisory lock around it, SQLite a write lock (`BEGIN IMMEDIATE`).

Folder layout: `env.py` (how Alembic runs here), `versions/NNNN_*.py` (one revision each,
revision ids "0001", "0002", ...), `script.py.mako` (the template for new ones). To write
the next revision, change the models in `registry_server/db.py`, then

    python -m registry_server.db.migrations --database-url sqlite:///scratch.db upgrade head
    python -m registry_server.db.migrations --database-url sqlite:///scratch.db \\
        revision --autogenerate --rev-id 0002 -m "what changes"

and read the generated file before committing it (autogenerate is a draft). SQLite
revisions use `op.batch_alter_table`, which `env.py` asks autogenerate to render.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from nnpm.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config

FOLDER = Path(__file__).resolve().parent
INITIAL_REVISION = "0001"
# The tables the first revision creates: a database holding all of them and no
# alembic_version was made by `Base.metadata.create_all` before migrations existed.
INITIAL_TABLES = frozenset({"users", "tokens", "packages", "owners", "versions"})
PG_LOCK_KEY = 0x6E6E706D_6D696772  # "nnpmmigr": one advisory lock id for schema upgrades
log = logging.getLogger("registry_server")


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic config for this folder, running on `connection` (or connecting to `url`)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(FOLDER).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision id in versions/."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at; None when it has no alembic_version (empty, or made before migrations)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the database behind `engine` to the newest revision (see the module docstring)."""
    from alembic import command

    with _locked(engine) as conn:
        before = current_revision(conn)
        tables = set(inspect(conn).get_table_names())
        config = alembic_config(conn)
        if before is None and tables & INITIAL_TABLES:
            missing = INITIAL_TABLES - tables
            if missing:
                raise ConfigError(
                    f"the database has some registry tables but not {', '.join(sorted(missing))}, "
                    "and no alembic_version table",
                    hint="point --database-url at an empty database or at an existing nnpm registry database")
            command.stamp(config, INITIAL_REVISION)
            log.info("adopted a registry database made before schema migrations (stamped %s)", INITIAL_REVISION)
        if before is None and not tables:
            # An empty database gets the models' schema at once, stamped head: the same schema the
            # revisions build one by one (tests/test_migrations.py compares them), without SQLite's
            # table copies of every batch_alter_table; each test registry starts faster.
            from registry_server.db.tables import Base

            Base.metadata.create_all(conn)
            command.stamp(config, "head")
        else:
            command.upgrade(config, "head")
        after = current_revision(conn)
    if after != before:
        log.info("database schema upgraded from %s to %s", before or "nothing", after)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction that no other migrating process can enter at the same time."""
    dialect = engine.dialect.name
    if dialect == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
            conn.commit()
            try:
                with conn.begin():
                    yield conn
            finally:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
                    conn.commit()
                except Exception:  # noqa: BLE001 - a broken connection: closing it for good releases the lock
                    conn.invalidate()
    elif dialect == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        # The server's engine lets pysqlite run DDL in autocommit; this one sends BEGIN
        # IMMEDIATE itself, so the whole upgrade is one transaction holding SQLite's write lock.
        locked = create_engine(engine.url, poolclass=NullPool, connect_args={"timeout": 60})

        @event.listens_for(locked, "connect")
        def _own_transactions(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA journal_mode=WAL")

        @event.listens_for(locked, "begin")
        def _write_lock(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        try:
            with locked.connect() as conn, conn.begin():
                yield conn
        finally:
            locked.dispose()
    else:  # another database, or SQLite in memory: one transaction, no lock
        with engine.connect() as conn, conn.begin():
            yield conn

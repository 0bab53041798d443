"""The database engine and sessions: SQLite (a file under the data folder) by default, any SQLAlchemy URL with --database-url.

No state lives in the process: several servers may share one database. `make_engine`
brings a database to the newest schema revision (Alembic, `db/migrations/`) before
handing it out. Transactions are short and READ COMMITTED on PostgreSQL; races end in a
unique constraint, and the loser re-reads (see `registry_server.services.publish`).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from nnpm.errors import ConfigError


def engine_url(url: str) -> str:
    """`url`, with PostgreSQL spelled for psycopg 3 (`postgresql://` and `postgres://` name no driver)."""
    try:
        parsed = make_url("postgresql" + url[len("postgres"):] if url.startswith("postgres://") else url)
    except ArgumentError:
        raise ConfigError(f"{url!r} is not a database URL",
                          hint="use e.g. postgresql+psycopg://USER:PASSWORD@HOST:5432/DB or sqlite:///PATH") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, upgrade: bool = True) -> Engine:
    """An engine for `url`, its schema brought to the newest revision (unless `upgrade=False`).

    SQLite gets WAL, foreign keys and a busy timeout; other databases a pre-ping pool
    (PostgreSQL at READ COMMITTED).
    """
    url = engine_url(url)
    if url.startswith("sqlite"):
        # Requests run on AnyIO's 40 worker threads: pool that many connections, so a busy server
        # does not open, PRAGMA and close an overflow connection for each request.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=40, max_overflow=10)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        # READ COMMITTED whatever the server's default: races end at a unique constraint, never
        # in a serialization failure, and each statement sees what other servers committed.
        options = {"isolation_level": "READ COMMITTED"} if url.startswith("postgresql") else {}
        try:
            engine = create_engine(url, pool_pre_ping=True, **options)
        except (ImportError, NoSuchModuleError) as exc:
            shown = make_url(url).render_as_string(hide_password=True)
            raise ConfigError(f"no database driver for {shown}: {exc}",
                              hint="pip install 'nnpm[postgres]' (psycopg 3)" if url.startswith("postgresql")
                              else "install the SQLAlchemy driver the URL names") from None
    if upgrade:
        try:
            migrate(engine)
        except BaseException:
            engine.dispose()
            raise
    return engine


def migrate(target: Engine | str) -> None:
    """Bring the database (an engine, or a URL) to the newest schema revision; safe to run from many processes.

    An empty database gets the whole schema; one made before migrations existed is
    adopted; PostgreSQL takes an advisory lock around the upgrade, SQLite its write lock.
    A database that cannot be reached is a ConfigError naming it (password hidden).
    """
    from registry_server.db.migrations import upgrade

    engine = target if isinstance(target, Engine) else make_engine(target, upgrade=False)
    try:
        upgrade(engine)
    except OperationalError as exc:  # unreachable, refused, no such database, bad password, locked, ...
        shown = engine.url.render_as_string(hide_password=True)
        raise ConfigError(f"cannot use the database {shown}: {' '.join(str(exc.orig).split())}") from None
    finally:
        if engine is not target:
            engine.dispose()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to `engine`; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One session, closed at the end (a FastAPI dependency body)."""
    with factory() as session:
        yield session

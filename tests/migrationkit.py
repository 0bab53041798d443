"""Migration tests' two halves: a database left at an old revision with some rows, then upgraded.

- ``at_revision(database_url, revision, *statements)``: migrate an empty database to
  ``revision`` only, and run each ``(sql, params)`` statement in it;
- ``upgraded(database_url)``: a context manager that opens the database the way the server
  does (which migrates it to the head), yields a connection, and checks on the way out
  that the tables then match the models exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Connection


def at_revision(database_url: str, revision: str, *statements: tuple[str, dict]) -> None:
    """An empty database migrated to `revision` only, holding the rows `statements` insert."""
    from alembic import command

    from registry_server.db.engine import make_engine
    from registry_server.db.migrations import alembic_config

    engine = make_engine(database_url, upgrade=False)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
            for sql, params in statements:
                conn.execute(text(sql), params)
    finally:
        engine.dispose()


@contextmanager
def upgraded(database_url: str) -> Iterator[Connection]:
    """The database opened as the server opens it (upgraded to the head); its tables must match the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from registry_server.db.engine import make_engine
    from registry_server.db.tables import Base

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            yield conn
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()

"""How Alembic runs the registry's migrations: on the connection `upgrade()` hands in, or,
from `python -m registry_server.db.migrations`, on a new connection to `sqlalchemy.url`."""

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from registry_server.db.tables import Base

config = context.config


def configure(**kwargs) -> None:
    context.configure(target_metadata=Base.metadata, compare_type=True, **kwargs)


def run_on(connection) -> None:
    configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    run_on(config.attributes["connection"])
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            run_on(connection)
            connection.commit()
    finally:
        engine.dispose()

"""Alembic environment for the daemon's store.

Works from the installed package: :func:`tlswatch.daemon.store.db.migrate` builds the Alembic
config in code (no alembic.ini needed) and hands over an open connection in
``config.attributes["connection"]``; run by hand, ``sqlalchemy.url`` is used instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from tlswatch.daemon.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.connect() as conn:
            _run(conn)
        engine.dispose()
    else:
        _run(connection)


def _run(connection: object) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds tables there.
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

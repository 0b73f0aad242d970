"""Alembic environment for wactl.

Used two ways: from code (`wactl.db.migrate`, which passes an open connection in
``config.attributes["connection"]``) and by developers running ``alembic`` in a checkout
(alembic.ini), where the URL comes from wactl's own configuration.
"""

from alembic import context
from sqlalchemy.engine import Connection

import wactl.db.models  # noqa: F401  (registers the tables on the metadata)
from wactl.db.base import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from wactl.config import load_config

    return load_config().database_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    from wactl.db.engine import make_engine

    engine = make_engine(_url())
    try:
        with engine.begin() as own_connection:
            _configure(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

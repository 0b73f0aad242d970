"""Alembic, driven from code: upgrade, downgrade, current, history and the schema check.

Migrations live in the repository's top-level ``alembic/`` folder. The wheel ships
them as ``wactl/_alembic`` (see pyproject.toml), so an installed wactl migrates without
a checkout. Importing Alembic costs ~40 ms, which is why only database commands do.
"""

from __future__ import annotations

from dataclasses import dataclass

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from wactl.db.engine import describe_db_error
from wactl.db.schema import (
    current_revision,
    ensure_current,
    ensure_known,
    head_revision,
    migrations_dir,
)
from wactl.errors import NotFoundError

__all__ = [
    "Revision",
    "current_revision",
    "downgrade",
    "ensure_current",
    "ensure_known",
    "head_revision",
    "history",
    "migrations_dir",
    "upgrade",
]


def alembic_config(engine: Engine | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir()))
    if engine is not None:
        # Percent signs are interpolation syntax in Alembic's ini-style config.
        url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
        config.set_main_option("sqlalchemy.url", url)
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def _run(engine: Engine, action: str, revision: str) -> None:
    config = alembic_config(engine)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            if action == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
    except OperationalError as exc:
        raise describe_db_error(engine, exc) from exc
    except CommandError as exc:
        raise NotFoundError(
            f"cannot {action} to '{revision}': {exc}", hint="see `wactl db history`"
        ) from exc


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    _run(engine, "downgrade", revision)


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    message: str
    is_head: bool


def history() -> list[Revision]:
    """All revisions, newest first."""
    revisions = []
    for script in script_directory().walk_revisions():
        down = script.down_revision
        revisions.append(
            Revision(
                revision=script.revision,
                down_revision=down if isinstance(down, str) or down is None else ",".join(down),
                message=script.doc or "",
                is_head=script.is_head,
            )
        )
    return revisions

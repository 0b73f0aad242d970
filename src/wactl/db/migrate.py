"""Alembic, driven from code: upgrade, downgrade, current, history and the schema check.

Migrations live in the repository's top-level ``alembic/`` folder. The wheel ships
them as ``wactl/_alembic`` (see pyproject.toml), so an installed wactl migrates without
a checkout. Importing Alembic costs ~40 ms, which is why only database commands do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

import wactl
from wactl.db.engine import describe_db_error, display_url
from wactl.errors import DatabaseError, NotFoundError, SchemaOutOfDateError


def migrations_dir() -> Path:
    """The migrations folder: inside the installed package, else the checkout's."""
    package_dir = Path(wactl.__file__).resolve().parent
    shipped = package_dir / "_alembic"
    if (shipped / "env.py").is_file():
        return shipped
    checkout = package_dir.parent.parent / "alembic"
    if (checkout / "env.py").is_file():
        return checkout
    raise DatabaseError(
        f"the migrations are missing: neither {shipped} nor {checkout} exists",
        hint="reinstall wactl",
    )


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


def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None, "the migrations folder has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise describe_db_error(engine, exc) from exc


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


def ensure_known(engine: Engine) -> None:
    """Refuse a database migrated by a newer wactl: this one cannot know its schema."""
    current = current_revision(engine)
    if current is not None and current not in {rev.revision for rev in history()}:
        raise SchemaOutOfDateError(
            f"database {display_url(engine.url)} is at revision {current}, which this "
            f"wactl ({wactl.__version__}) does not know",
            hint="upgrade wactl to the version that migrated it",
        )


def ensure_current(engine: Engine) -> None:
    """Refuse to run on a schema this wactl was not built for, naming the fix."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaOutOfDateError(
            f"database {display_url(engine.url)} has no wactl schema",
            hint="run `wactl init` (or `wactl db upgrade`) first",
        )
    ensure_known(engine)
    raise SchemaOutOfDateError(
        f"database {display_url(engine.url)} is at revision {current} but this wactl needs {head}",
        hint="run `wactl db upgrade`",
    )

"""Is the database at the schema this wactl needs? Answered without importing Alembic.

Alembic costs ~11 MB of unique memory and ~40 ms to import. The daemon (for its
whole life), every worker and every CLI database command only need to compare one
row, ``alembic_version.version_num``, with the newest revision in the migrations
folder; this module reads both directly. `wactl.db.migrate` (Alembic) does the
migrating, and a test checks that both agree on the revisions.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

import wactl
from wactl.db.engine import describe_db_error, display_url
from wactl.errors import DatabaseError, SchemaOutOfDateError

_REVISION = re.compile(r"""^revision\s*(?::[^=]*)?=\s*["']([^"']+)["']""", re.MULTILINE)
_DOWN = re.compile(r"""^down_revision\s*(?::[^=]*)?=\s*(?:None|["']([^"']+)["'])""", re.MULTILINE)


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


@functools.cache
def revisions() -> dict[str, str | None]:
    """Every revision of the migrations folder -> the revision it follows."""
    found: dict[str, str | None] = {}
    for path in sorted((migrations_dir() / "versions").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(source), _DOWN.search(source)
        if revision is None or down is None:
            continue
        found[revision[1]] = down[1]
    return found


def head_revision() -> str:
    """The newest revision (the one no other revision follows)."""
    known = revisions()
    followed = {down for down in known.values() if down is not None}
    heads = [revision for revision in known if revision not in followed]
    if len(heads) != 1:
        raise DatabaseError(f"the migrations have {len(heads)} heads, not one: {heads}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The database's revision; None when it has no wactl schema yet."""
    try:
        with engine.connect() as connection:
            try:
                value = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except (OperationalError, ProgrammingError) as exc:
                if "alembic_version" in str(exc.orig):  # no such table: an empty database
                    return None
                raise
    except OperationalError as exc:
        raise describe_db_error(engine, exc) from exc
    return None if value is None else str(value)


def ensure_known(engine: Engine) -> None:
    """Refuse a database migrated by a newer wactl: this one cannot know its schema."""
    current = current_revision(engine)
    if current is not None and current not in revisions():
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

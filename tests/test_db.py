"""Storage: migrations on both backends, drift, schema checks, pragmas, cascades, errors."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select, text

from tests.conftest import CLI
from wactl.db import migrate
from wactl.db.base import Base
from wactl.db.engine import make_engine, session_scope
from wactl.errors import DatabaseError, SchemaOutOfDateError

TABLES = {
    "tenant",
    "tenant_config",
    "whatsapp_session",
    "worker_process",
    "message_log",
    "user",
    "setup_request",
    "portal_event_log",
    "chat_state",  # per-chat pauses of the bot (conversation pipeline)
    "wajs_release",  # wa-js versions: installed, per-tenant canaries, the fleet default
    "wajs_tenant_override",
    "wajs_fleet_default",
    "serving_daemon",  # which daemon serves the database (one per database)
    "portal_signin",  # portal sign-ins started and not finished (state and nonce, used once)
}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert _tables(empty_db_url) == TABLES
        migrate.downgrade(engine, "base")
        assert migrate.current_revision(engine) is None
        assert _tables(empty_db_url) == set()
        migrate.upgrade(engine)
        assert _tables(empty_db_url) == TABLES
    finally:
        engine.dispose()


def test_models_and_migrations_do_not_drift(db_url: str) -> None:
    """Autogenerate against the migrated schema must find nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "target_metadata": Base.metadata}
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_schema_check_names_the_command(empty_db_url: str, cli: CLI) -> None:
    result = cli("tenant", "list")
    assert result.code == 4
    assert result.err.count("\n") == 1
    assert "has no wactl schema; run `wactl init` (or `wactl db upgrade`) first" in result.err

    engine = make_engine(empty_db_url)
    try:
        migrate.upgrade(engine)
        # Pretend the code moved on: the database sits at an older, known revision.
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'base-ish'"))
        with pytest.raises(SchemaOutOfDateError, match="does not know"):
            migrate.ensure_current(engine)
    finally:
        engine.dispose()


def test_out_of_date_schema_refuses_and_upgrade_fixes_it(empty_db_url: str, cli: CLI) -> None:
    head = migrate.head_revision()
    first = migrate.history()[-1].revision
    assert first != head, "needs at least two revisions"
    engine = make_engine(empty_db_url)
    try:
        migrate.upgrade(engine, first)
    finally:
        engine.dispose()
    result = cli("tenant", "list")
    assert result.code == 4
    assert result.err.endswith(
        f"is at revision {first} but this wactl needs {head}; run `wactl db upgrade`\n"
    )
    result = cli("db", "upgrade")
    assert result.code == 0, result.err
    assert f"from {first} to {head}" in result.err
    assert cli("tenant", "list", "--json").out == "[]\n"


def test_db_commands(empty_db_url: str, cli: CLI) -> None:
    head = migrate.head_revision()
    result = cli("db", "current", "--json")
    assert result.code == 0
    assert '"revision": null' in result.out and '"up_to_date": false' in result.out
    result = cli("db", "upgrade")
    assert result.code == 0, result.err
    assert f"to {head}" in result.err
    result = cli("db", "upgrade")
    assert "nothing to do" in result.err
    result = cli("db", "current")
    assert result.out == f"{head} (up to date)\n"
    result = cli("db", "history")
    lines = result.out.splitlines()
    assert lines[0].endswith(f"-> {head} (head): {migrate.history()[0].message}")
    assert lines[-1].startswith("base -> 0001: initial schema")
    result = cli("db", "upgrade", "nosuchrev")
    assert result.code == 5
    assert result.err.startswith("error: cannot upgrade to 'nosuchrev'")
    # Declining the confirmation changes nothing.
    result = cli("db", "downgrade", "base", input="n\n")
    assert result.code == 8
    assert _tables(empty_db_url) == TABLES
    result = cli("db", "downgrade", "base", "--yes")
    assert result.code == 0, result.err
    assert _tables(empty_db_url) == set()
    result = cli("audit")
    assert result.code == 4  # no schema any more


def test_sqlite_pragmas_on_every_connection(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}", busy_timeout_ms=1234)
    try:
        for _ in range(2):
            with engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
            engine.dispose()  # force a brand-new connection on the next round
    finally:
        engine.dispose()


def test_unreachable_postgres_is_one_line_with_redacted_url(
    cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port 9 (discard) on loopback: nothing listens there, so the connection is refused.
    monkeypatch.setenv("WACTL_DATABASE_URL", "postgresql+psycopg://bob:s3cret@127.0.0.1:9/wactl")
    result = cli("tenant", "list")
    assert result.code == 4
    assert result.err.count("\n") == 1
    assert result.err.startswith(
        "error: cannot use database postgresql+psycopg://bob:***@127.0.0.1:9/wactl: "
    )
    assert "s3cret" not in result.err
    assert "refused" in result.err.lower()


def test_unreachable_sqlite_directory(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WACTL_DATABASE_URL", "sqlite:////nonexistent-dir/x/wactl.db")
    result = cli("tenant", "list")
    assert result.code == 4
    assert result.err == (
        "error: cannot use database sqlite:////nonexistent-dir/x/wactl.db: "
        "unable to open database file; the directory /nonexistent-dir/x does not exist: "
        "create it, or fix database.url\n"
    )


def test_plain_postgresql_url_uses_psycopg() -> None:
    from tests.support import PG_ADMIN_URL

    engine = make_engine(PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://"))
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as connection:
            assert connection.execute(select(1)).scalar() == 1
    finally:
        engine.dispose()


def test_bad_url_is_a_database_error() -> None:
    with pytest.raises(DatabaseError, match="is not a database URL"):
        make_engine("not a url")


def test_session_scope_rolls_back(db_url: str) -> None:
    from wactl.db.models import PortalEventLog

    engine = make_engine(db_url)
    try:
        with pytest.raises(RuntimeError), session_scope(engine) as session:
            session.add(PortalEventLog(actor="os:t", event_type="x", payload_json={}))
            session.flush()
            raise RuntimeError("boom")
        with session_scope(engine) as session:
            assert session.scalars(select(PortalEventLog)).all() == []
    finally:
        engine.dispose()


def test_0003_fills_chat_and_state_of_logged_messages(empty_db_url: str) -> None:
    import uuid

    engine = make_engine(empty_db_url)
    tenant_id = uuid.uuid4()
    try:
        migrate.upgrade(engine, "0002")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO tenant (id, slug, name, status, engine, created_at, updated_at) "
                    "VALUES (:id, 'old', 'Old', 'STOPPED', 'sandbox', :now, :now)"
                ),
                {
                    "id": tenant_id.hex if engine.dialect.name == "sqlite" else tenant_id,
                    "now": "2026-01-01 00:00:00",
                },
            )
            for direction, sender, receiver in (("IN", "+1a", "+2b"), ("OUT", "+2b", "+1a")):
                connection.execute(
                    text(
                        "INSERT INTO message_log (tenant_id, direction, from_number, to_number, "
                        "message_text, wa_message_id, created_at) VALUES "
                        "(:t, :d, :f, :r, 'x', :d, '2026-01-01 00:00:00')"
                    ),
                    {
                        "t": tenant_id.hex if engine.dialect.name == "sqlite" else tenant_id,
                        "d": direction,
                        "f": sender,
                        "r": receiver,
                    },
                )
        migrate.upgrade(engine)
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT direction, chat, state FROM message_log ORDER BY id")
            ).all()
        assert [tuple(r) for r in rows] == [("IN", "+1a", "ANSWERED"), ("OUT", "+1a", "SENT")]
        migrate.downgrade(engine, "0002")
        migrate.upgrade(engine)
    finally:
        engine.dispose()


def test_light_schema_check_agrees_with_alembic() -> None:
    """wactl.db.schema reads the migrations without Alembic; both must see the same."""
    from wactl.db import schema

    script = migrate.script_directory()
    assert schema.head_revision() == script.get_current_head()
    alembic_view = {s.revision: s.down_revision for s in script.walk_revisions()}
    assert schema.revisions() == alembic_view

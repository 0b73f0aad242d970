"""`wactl audit`: every state-changing operator command leaves a row with its actor."""

from __future__ import annotations

import datetime as dt
import getpass
import json
from pathlib import Path

from sqlalchemy import select

from tests.conftest import CLI
from tests.support import db_session
from wactl.db.models import PortalEventLog

EVENT_KEYS = {"id", "created_at", "tenant", "actor", "event_type", "payload"}


def test_operator_actions_are_audited(cli: CLI, db_url: str, tmp_path: Path) -> None:
    actor = f"os:{getpass.getuser()}"
    assert cli("tenant", "create", "one", "--name", "One").code == 0
    assert cli("tenant", "create", "two", "--name", "Two").code == 0
    assert cli("tenant", "edit", "one", "--language", "es").code == 0
    exported = cli("tenant", "config", "export", "one").out
    path = tmp_path / "one.toml"
    path.write_text(exported.replace('timezone = "UTC"', 'timezone = "Europe/Madrid"'))
    assert cli("tenant", "config", "apply", "one", str(path)).code == 0
    assert cli("tenant", "delete", "two", "--yes").code == 0

    events = json.loads(cli("audit", "--json").out)
    assert [(e["tenant"], e["event_type"]) for e in events] == [
        ("one", "tenant.created"),
        ("two", "tenant.created"),
        ("one", "tenant.edited"),
        ("one", "tenant.config_applied"),
        ("two", "tenant.deleted"),
    ]
    assert all(set(e) == EVENT_KEYS and e["actor"] == actor for e in events)
    assert events[2]["payload"] == {"language": {"old": "en", "new": "es"}}

    only_two = json.loads(cli("audit", "--tenant", "two", "--json").out)
    assert [e["event_type"] for e in only_two] == ["tenant.created", "tenant.deleted"]
    assert [e["event_type"] for e in json.loads(cli("audit", "--limit", "1", "--json").out)] == [
        "tenant.deleted"
    ]
    table = cli("audit").out
    assert "tenant.config_applied" in table and actor in table


def test_since(cli: CLI, db_url: str) -> None:
    assert cli("tenant", "create", "one", "--name", "One").code == 0
    with db_session(db_url) as session:
        session.add(
            PortalEventLog(
                actor="portal:old@example.com",
                event_type="request.submitted",
                tenant_slug="one",
                payload_json={},
                created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
            )
        )
    assert len(json.loads(cli("audit", "--json").out)) == 2
    recent = json.loads(cli("audit", "--since", "1d", "--json").out)
    assert [e["event_type"] for e in recent] == ["tenant.created"]
    four_days_ago = (dt.date.today() - dt.timedelta(days=4)).isoformat()
    assert len(json.loads(cli("audit", "--since", four_days_ago, "--json").out)) == 2
    result = cli("audit", "--since", "yesterday")
    assert (result.code, result.err) == (
        2,
        "error: --since: 'yesterday' is not a duration or a date; "
        "use e.g. 30m, 12h, 7d, 2w, 2026-11-01 or 2026-11-01T09:00\n",
    )
    assert "no audit events match" in cli("audit", "--tenant", "nobody").err


def test_failed_commands_leave_no_audit_row(cli: CLI, db_url: str) -> None:
    assert cli("tenant", "create", "bad slug", "--name", "X").code == 2
    assert cli("tenant", "delete", "missing", "--yes").code == 5
    with db_session(db_url) as session:
        assert session.scalars(select(PortalEventLog)).all() == []

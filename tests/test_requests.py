"""Setup requests: submitted the way the portal does, decided with `wactl requests`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import CLI
from tests.support import db_session
from wactl.db import requests
from wactl.db.models import Tenant
from wactl.db.tenants import new_tenant_rows
from wactl.enums import TenantStatus
from wactl.errors import ConflictError, ValidationError

REQUEST_KEYS = {
    "id",
    "tenant",
    "status",
    "business_name",
    "template_type",
    "language",
    "whatsapp_number",
    "timezone",
    "hours",
    "holidays",
    "notes",
    "decision_reason",
    "decided_by",
    "decided_at",
    "created_at",
}


def _signup(url: str, slug: str) -> None:
    """What the portal's first sign-in does: a NEW tenant with its session and worker rows."""
    with db_session(url) as session:
        tenant = Tenant(slug=slug, name=f"{slug} owner", status=TenantStatus.NEW)
        new_tenant_rows(tenant)
        session.add(tenant)


def _submit(url: str, slug: str, **overrides: Any) -> int:
    fields: dict[str, Any] = {
        "business_name": "Salão Bela",
        "template": "salon",
        "language": "pt",
        "whatsapp_number": "+55 11 91234-5678",
        "timezone": "America/Sao_Paulo",
        "weekly_hours": {"tue": ["09:00-18:00"], "sat": ["09:00-13:00"]},
        "holidays": ["2026-12-25"],
        "notes": "  please hurry ",
    }
    fields.update(overrides)
    with db_session(url) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
        assert tenant is not None
        return requests.submit_request(
            session, tenant, actor="portal:owner@example.com", **fields
        ).id


def test_list_show_approve(cli: CLI, db_url: str) -> None:
    _signup(db_url, "bela")
    request_id = _submit(db_url, "bela")
    shown = json.loads(cli("tenant", "show", "bela", "--json").out)
    assert shown["status"] == "SETUP_REQUESTED"

    listed = json.loads(cli("requests", "list", "--json").out)
    assert [r["id"] for r in listed] == [request_id]
    assert set(listed[0]) == REQUEST_KEYS
    assert listed[0]["whatsapp_number"] == "+5511912345678"
    assert listed[0]["notes"] == "please hurry"
    assert listed[0]["hours"]["tue"] == ["09:00-18:00"] and listed[0]["hours"]["mon"] == []
    assert json.loads(cli("requests", "list", "--status", "approved", "--json").out) == []
    assert "Salão Bela" in cli("requests", "list", "--status", "pending").out
    assert "America/Sao_Paulo" in cli("requests", "show", str(request_id)).out

    result = cli("requests", "approve", str(request_id))
    assert result.code == 0, result.err
    tenant = json.loads(cli("tenant", "show", "bela", "--json").out)
    assert tenant["status"] == "STOPPED"
    assert tenant["phone_number"] == "+5511912345678"
    assert tenant["name"] == tenant["business_name"] == "Salão Bela"
    assert (tenant["template_type"], tenant["language"], tenant["timezone"]) == (
        "salon",
        "pt",
        "America/Sao_Paulo",
    )
    assert tenant["hours"]["sat"] == ["09:00-13:00"]
    assert tenant["holidays"] == ["2026-12-25"]
    decided = json.loads(cli("requests", "show", str(request_id), "--json").out)
    assert decided["status"] == "APPROVED"
    assert decided["decided_by"].startswith("os:")

    result = cli("requests", "approve", str(request_id))
    assert (result.code, result.err) == (
        6,
        f"error: setup request #{request_id} is already approved; "
        "only pending requests can be approved or rejected\n",
    )


def test_reject(cli: CLI, db_url: str) -> None:
    _signup(db_url, "bela")
    request_id = _submit(db_url, "bela")
    result = cli("requests", "reject", str(request_id))
    assert result.code == 2
    assert result.err.startswith("error: Missing option '--reason'")
    result = cli("requests", "reject", str(request_id), "--reason", "   ")
    assert (result.code, result.err) == (
        2,
        "error: reason: must not be empty; say what the owner should fix\n",
    )
    result = cli("requests", "reject", str(request_id), "--reason", "number is a landline")
    assert result.code == 0, result.err
    tenant = json.loads(cli("tenant", "show", "bela", "--json").out)
    assert tenant["status"] == "NEW"
    assert tenant["phone_number"] is None
    data = json.loads(cli("requests", "show", str(request_id), "--json").out)
    assert (data["status"], data["decision_reason"]) == ("REJECTED", "number is a landline")
    # The owner may send a corrected request afterwards.
    _submit(db_url, "bela", whatsapp_number="+5511987654321")
    assert len(json.loads(cli("requests", "list", "--status", "pending", "--json").out)) == 1


def test_not_found_and_bad_id(cli: CLI, db_url: str) -> None:
    result = cli("requests", "show", "42")
    assert (result.code, result.err) == (
        5,
        "error: no setup request #42; see `wactl requests list`\n",
    )
    result = cli("requests", "approve", "forty-two")
    assert result.code == 2
    assert result.err.startswith("error: Invalid value for 'ID'")
    result = cli("requests", "list", "--status", "maybe")
    assert result.code == 2


def test_approve_refuses_a_number_another_tenant_uses(cli: CLI, db_url: str) -> None:
    assert (
        cli("tenant", "create", "first", "--name", "First", "--phone", "+5511912345678").code == 0
    )
    _signup(db_url, "bela")
    request_id = _submit(db_url, "bela")
    result = cli("requests", "approve", str(request_id))
    assert result.code == 6
    assert "already belongs to tenant 'first'" in result.err
    assert json.loads(cli("requests", "show", str(request_id), "--json").out)["status"] == "PENDING"


def test_submit_validates_and_refuses_a_second_pending_request(db_url: str) -> None:
    _signup(db_url, "bela")
    with pytest.raises(ValidationError, match="whatsapp_number"):
        _submit(db_url, "bela", whatsapp_number="12345")
    with pytest.raises(ValidationError, match=r"hours\.tue"):
        _submit(db_url, "bela", weekly_hours={"tue": ["18:00-09:00"]})
    with pytest.raises(ValidationError, match="template_type"):
        _submit(db_url, "bela", template="bakery")
    _submit(db_url, "bela")
    with pytest.raises(ConflictError, match="already has a pending setup request"):
        _submit(db_url, "bela")

"""What the dashboard's I/O workers tell the app (STYLE.md 13: results as Messages)."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from wactl.tui.data import TenantDetail


class DaemonConnected(Message):
    """The daemon answered and speaks our protocol; ``info`` is its /v1/version."""

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__()
        self.info = info


class DaemonLost(Message):
    """The daemon cannot be reached (or went away); the next try is ``retry_in`` s away."""

    def __init__(self, reason: str, retry_in: float) -> None:
        super().__init__()
        self.reason = reason
        self.retry_in = retry_in


class TenantsLoaded(Message):
    """A /v1/tenants answer: every worker's view."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__()
        self.rows = rows


class DaemonEvent(Message):
    """One /v1/events event (worker, qr, session, error, handoff, takeover, lagged...)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__()
        self.payload = payload


class DetailLoaded(Message):
    """A detail read finished (None: it failed unexpectedly; the pane keeps what it had)."""

    def __init__(self, detail: TenantDetail | None) -> None:
        super().__init__()
        self.detail = detail


class NamesLoaded(Message):
    def __init__(self, names: dict[str, str]) -> None:
        super().__init__()
        self.names = names

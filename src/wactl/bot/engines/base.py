"""What an engine is: the worker's one connection to WhatsApp (DESIGN.md section 4).

An `Engine` links a tenant's WhatsApp account, reports what happens to the link through
an `EngineEvents` object (the worker), and sends text. Engines know nothing about the
database, the control socket or the daemon: the worker turns their events into rows and
control-socket events. This module holds only the interface and its errors; stdlib only.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import ClassVar, Protocol

from wactl.errors import ConfigError, WactlError


class EngineError(WactlError):
    """An engine cannot do what was asked (a broken session, a failed send)."""


class EngineUnavailableError(ConfigError):
    """The tenant's engine exists in the configuration model but not in this wactl."""


@dataclass(frozen=True)
class InboundMessage:
    """A message that arrived on the tenant's WhatsApp account."""

    #: WhatsApp's id of the message; with the tenant, the durable dedup key.
    wa_message_id: str
    #: The chat the message belongs to (for a one-to-one chat, the customer's number).
    chat: str
    #: Who wrote it (E.164 without spaces, or WhatsApp's id for groups).
    from_number: str
    #: The tenant's own number.
    to_number: str
    text: str
    #: When WhatsApp says the message was sent (UTC, aware).
    timestamp: dt.datetime
    #: True for a message the business wrote itself (from the phone, not the bot).
    from_me: bool = False


class EngineEvents(Protocol):
    """What an engine reports; implemented by the worker.

    Engines await each callback, so events arrive in the order they happened and a
    callback may do I/O. Callbacks should not raise; an engine logs an exception from
    one and carries on.
    """

    async def on_qr(self, qr: str) -> None:
        """A new QR code is showing; the previous one no longer links."""

    async def on_ready(self) -> None:
        """The account is linked and the engine can send and receive."""

    async def on_disconnected(self, reason: str) -> None:
        """The link was lost for ``reason``; the engine may get it back by itself."""

    async def on_logged_out(self) -> None:
        """The account was unlinked (from the phone or by `Engine.logout`)."""

    async def on_message(self, message: InboundMessage) -> None:
        """A message arrived."""


class Engine(abc.ABC):
    """One tenant's connection to WhatsApp, owned by that tenant's worker."""

    #: The name tenants select it by (`wactl.enums.EngineName` values).
    name: ClassVar[str]

    def __init__(self, tenant_slug: str, events: EngineEvents) -> None:
        self.tenant_slug = tenant_slug
        self.events = events

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; report `on_ready` when a saved session links, else show QR codes.

        Raises `EngineError` when the engine cannot run at all (for example a corrupt
        saved session), which makes the worker exit with an error.
        """

    async def watch(self) -> None:
        """Return only when the engine broke beyond repair, by raising `EngineError`.

        The worker runs it beside everything else once `start` returned; when it raises,
        the worker exits with an error and the daemon starts it again (with backoff).
        A browser that crashed or stopped answering is that case: a fresh process is
        the cure. Engines with nothing to watch (the sandbox) never return.
        """
        await asyncio.Event().wait()

    @abc.abstractmethod
    async def stop(self) -> None:
        """Disconnect and release everything; the saved session stays for the next start."""

    async def reserve_id(self, to: str, client_id: str) -> str:
        """The WhatsApp id the reply ``client_id`` to ``to`` will carry, fixed before it
        is sent. The pipeline stores it with the reply, durably, before `send_text`, so
        that `was_sent` can be asked about it after a crash at any point.

        ``client_id`` is the pipeline's own id of the reply, unique per tenant; engines
        that cannot choose WhatsApp's id in advance return it (the default) and remember
        it themselves.
        """
        return client_id

    @abc.abstractmethod
    async def send_text(self, to: str, text: str, *, message_id: str) -> str:
        """Send ``text`` to the chat ``to`` under ``message_id`` (from `reserve_id`);
        returns WhatsApp's id of the sent message. Sending a ``message_id`` again that
        reached WhatsApp already must not deliver it twice."""

    @abc.abstractmethod
    async def was_sent(self, message_id: str) -> bool | None:
        """Whether the reply stored under ``message_id`` (from `reserve_id`) reached
        WhatsApp: True; False (it did not, and will not by itself: the pipeline sends it
        again, under a new id from `reserve_id`); or None when that cannot be told now
        (the pipeline asks again later and sends nothing meanwhile)."""

    async def mark_read(self, message_id: str) -> None:  # noqa: B027 - optional
        """Show the customer that their message ``message_id`` was read (the bot starts
        answering it). Best effort: never raises. The default does nothing (the sandbox
        has no read receipts)."""

    @abc.abstractmethod
    async def logout(self) -> None:
        """Unlink the account and forget the saved session, then show QR codes again."""

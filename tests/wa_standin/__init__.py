"""A local stand-in for WhatsApp Web and WhatsApp's side of it, over real HTTP on loopback.

`StandIn` serves a blank page (with a Content-Security-Policy like WhatsApp Web's: no
inline scripts) and a control API on the same origin. The engine opens the page
(``browser.url``, or ``https://web.whatsapp.com/`` routed here with ``context.route``)
and injects ``fake_wpp.js`` in place of wa-js (``browser.wa_js_path``); that file plays
wa-js 4.6.0 as the real library behaves, each behaviour citing the wa-js source file it
follows. This module plays what is not in the browser:

- WhatsApp's servers: messages to the linked device are queued until the device
  acknowledges them, and delivered again to a page that starts before it did (after a
  crash); messages the device sends are accepted once per id (a second send of an id is
  counted, not delivered twice); the server answers a search for a message by id
  (wa-js ``callGetSearchContext``) and a number's LID (``queryExists``).
- The business's phone: `scan` the QR the tenant shows (the device is then named as
  wa-js's ``WPPConfig.deviceName`` says), `phone_logout`.
- Customers: `customer_writes`. Since WhatsApp's move to LIDs most one-to-one chats are
  ``NNN@lid`` (wa-js ``chat/functions/prepareRawMessage.ts``): a share of customers
  (``lid_share``) write from a ``@lid`` chat, and of those a share (``hidden_share``)
  without WhatsApp telling the device their phone number (wa-js's lidPnCache then has
  no entry: ``contact/functions/getPnLidEntry.ts``). Which customer is which is
  deterministic (a hash of the number), or set per number in `addressing`.
- The test breaking things: `hang` (the page's main thread never answers again), stream
  modes (`set_mode`: OFFLINE, CONFLICT...), `withhold_ready` (the sync never ends).

Each page is a *session*: an id kept in the profile's localStorage, so a restarted
browser on the same profile is the same linked device, and a wiped profile is a new one.
Like WhatsApp Web, it turns a browser that says "HeadlessChrome" away: the page then
shows no QR and wa-js never becomes ready.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve().parent
#: What the engine injects in place of wa-js (browser.wa_js_path).
FAKE_WPP = HERE / "fake_wpp.js"
#: The stand-in's policy forbids inline scripts, so the engine's scripts must go in as
#: init scripts (as with WhatsApp Web, whose policy is stricter still); it does not stop
#: requests to other hosts, so that a test sees every one the page attempts.
CSP = "script-src 'self'"
PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>WhatsApp (stand-in)</title></head>
<body><p>WhatsApp Web stand-in for wactl's tests.</p>
<script>document.body.dataset.inline = "ran";</script></body></html>
"""
#: What WhatsApp Web turns away.
HEADLESS = "HeadlessChrome"
#: How long a poll waits for a command before the page asks again.
POLL_SECONDS = 1.0
#: How a customer's chat is addressed.
PN, LID, LID_HIDDEN = "pn", "lid", "lid-hidden"


@dataclass
class Session:
    """One linked device (a profile), as WhatsApp's side knows it."""

    id: str
    boots: int = 0
    linked: bool = False
    #: The account's number and LID (set by the scan).
    me: str = ""
    me_lid: str = ""
    #: The name the device shows under Linked devices on the phone (WPPConfig.deviceName
    #: as wa-js had it when the QR was scanned; False: the browser's own).
    device_name: Any = None
    #: window.WPPConfig as wa-js merged it, at each boot.
    configs: list[dict[str, Any]] = field(default_factory=list)
    qrs: list[str] = field(default_factory=list)
    #: The stream mode the page last reported.
    mode: str | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    #: When the page last polled (monotonic).
    seen: float = 0.0
    #: The User-Agent of each boot: the HTTP header, and the page's navigator.userAgent.
    user_agents: list[tuple[str, str]] = field(default_factory=list)
    #: The page's URL at each boot.
    urls: list[str] = field(default_factory=list)
    #: Messages for the device it has not acknowledged yet (id -> record), oldest first.
    undelivered: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Every message the server knows in this account (id -> record).
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Messages the server accepted from the device, once per id, in order.
    sent: list[dict[str, Any]] = field(default_factory=list)
    #: Every send the device made, repeats included (ids).
    send_attempts: list[str] = field(default_factory=list)
    #: Chats the device marked read (read receipts), in order.
    reads: list[str] = field(default_factory=list)
    #: The device's own storage (what WhatsApp Web keeps in IndexedDB): the link,
    #: chats with their messages and unread counts, the LID -> phone number cache.
    device: dict[str, Any] = field(default_factory=lambda: _empty_device())

    @property
    def qr(self) -> str | None:
        return self.qrs[-1] if self.qrs and not self.linked else None

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def _empty_device() -> dict[str, Any]:
    return {"linked": False, "me": None, "meLid": None, "chats": {}, "lidPn": {}}


class StandIn:
    """The HTTP server (a thread) and the test's handle on every session."""

    def __init__(
        self,
        *,
        rotate_ms: int = 60_000,
        ready_delay_ms: int = 0,
        withhold_ready: bool = False,
        lid_share: float = 0.0,
        hidden_share: float = 0.0,
    ) -> None:
        self.settings = {
            "rotateMs": rotate_ms,
            "readyDelayMs": ready_delay_ms,
            "withholdReady": withhold_ready,
        }
        self.lid_share = lid_share
        self.hidden_share = hidden_share
        #: Per customer number (+E164): PN, LID or LID_HIDDEN, overriding the shares.
        self.addressing: dict[str, str] = {}
        self.sessions: dict[str, Session] = {}
        self.changed = threading.Condition()
        #: While set and not open, the page is slow to load (a slow network): its request
        #: waits for the gate (at most a minute); `pages_held` counts the waiting ones.
        self.page_gate: threading.Event | None = None
        self.pages_held = 0
        self.server = _Server(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._stopped = False

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> StandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.changed:
            self._stopped = True
            self.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # --- customers and their ids ---------------------------------------------------------

    def addressing_of(self, number: str) -> str:
        """How ``number``'s chat is addressed: `PN`, `LID` or `LID_HIDDEN`."""
        if number in self.addressing:
            return self.addressing[number]
        draw = int.from_bytes(hashlib.sha256(number.encode()).digest()[:8], "big") / 2**64
        if draw >= self.lid_share:
            return PN
        hidden = (draw / self.lid_share) < self.hidden_share if self.lid_share else False
        return LID_HIDDEN if hidden else LID

    @staticmethod
    def lid_of(number: str) -> str:
        """The customer's LID: a number unrelated to the phone number, stable per number."""
        digest = int.from_bytes(hashlib.sha256(b"lid" + number.encode()).digest()[:8], "big")
        return f"{100_000_000_000_000 + digest % 900_000_000_000_000}@lid"

    def chat_of(self, number: str) -> str:
        """The chat id WhatsApp uses for the customer ``number`` (+E164)."""
        if self.addressing_of(number) == PN:
            return f"{number.lstrip('+')}@c.us"
        return self.lid_of(number)

    # --- what the test does ------------------------------------------------------------

    def wait(self, condition: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Wait until ``condition()`` (called under the lock) is truthy; returns it."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                value = condition()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"stand-in: condition not met within {timeout} s")
                self.changed.wait(left)

    def session_showing(self, qr: str, timeout: float = 30.0) -> Session:
        """The session whose page shows (or showed) ``qr``."""
        found: Session = self.wait(
            lambda: next((s for s in self.sessions.values() if qr in s.qrs), None), timeout
        )
        return found

    def command(self, session: Session, op: str, **args: Any) -> None:
        with self.changed:
            session.commands.append({"op": op, "args": args})
            self.changed.notify_all()

    def scan(self, qr: str, *, me: str = "15550000000") -> Session:
        """The business's phone scans ``qr`` (Linked devices > Link a device)."""
        session = self.session_showing(qr)
        self.command(session, "scan", qr=qr, me=f"{me}@c.us", meLid=self.lid_of("+" + me))
        return session

    def set_mode(self, session: Session, mode: str) -> None:
        """WhatsApp Web's stream changes mode (whatsapp/enums/StreamMode.ts)."""
        self.command(session, "mode", mode=mode)

    def customer_writes(
        self, session: Session, number: str, body: str, *, wait: bool = True, **extra: Any
    ) -> str:
        """A customer (+E164) writes ``body``; returns WhatsApp's id of the message.

        The server queues it for the device until the device acknowledges it (so a page
        that dies first gets it again). ``extra``: ``fromMe`` (the business typed it on
        its phone), ``type`` (``ciphertext``: not decrypted yet, see `decrypt`),
        ``isNotification``, ``broadcast``, ``author``, ``key``, or ``chat`` to write
        somewhere other than the customer's own chat (a group, status@broadcast).
        ``wait``: until the device has acknowledged it.
        """
        chat = extra.pop("chat", None) or self.chat_of(number)
        key = extra.pop("key", "3A" + secrets.token_hex(9).upper())
        from_me = bool(extra.pop("fromMe", False))
        group = chat.endswith("@g.us")
        author = extra.pop("author", None)
        message_id = f"{str(from_me).lower()}_{chat}_{key}"
        if group and author:
            message_id += f"_{author}"
        record: dict[str, Any] = {
            "id": message_id,
            "key": key,
            "chat": chat,
            "fromMe": from_me,
            "from": f"{session.me}" if from_me else chat,
            "to": chat if from_me else session.me,
            "author": author if group else None,
            "body": body,
            "type": extra.pop("type", "chat"),
            "t": int(time.time()),
            "ack": 1 if from_me else None,
            "isNotification": bool(extra.pop("isNotification", False)),
            "broadcast": bool(extra.pop("broadcast", False)),
        }
        assert not extra, f"unknown message fields {sorted(extra)}"
        if chat.endswith("@lid") and self.addressing_of(number) == LID:
            record["pn"] = f"{number.lstrip('+')}@c.us"  # WhatsApp shares the number
        with self.changed:
            session.history[message_id] = record
            session.undelivered[message_id] = record
            session.commands.append({"op": "deliver", "args": {"record": record}})
            self.changed.notify_all()
        if wait:
            self.wait(lambda: message_id not in session.undelivered)
        return message_id

    def decrypt(self, session: Session, message_id: str, body: str) -> None:
        """A ``ciphertext`` message is decrypted on the device: its type becomes chat."""
        self.command(session, "decrypt", id=message_id, body=body)

    def sent_to(self, session: Session, number: str) -> list[str]:
        """The texts the device sent to the customer ``number`` (either of their chats)."""
        chats = {f"{number.lstrip('+')}@c.us", self.lid_of(number)}
        with self.changed:
            return [m["body"] for m in session.sent if m["chat"] in chats]

    # --- what the page does ------------------------------------------------------------

    def _session(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = Session(session_id)
        return session

    def hello(self, session_id: str, body: dict[str, Any], user_agent: str) -> dict[str, Any]:
        page_agent = str(body.get("userAgent", ""))
        with self.changed:
            session = self._session(session_id)
            session.user_agents.append((user_agent, page_agent))
            if HEADLESS in user_agent or HEADLESS in page_agent:
                self.changed.notify_all()
                return {"refused": "update your browser"}
            session.boots += 1
            session.linked = bool(session.device["linked"])
            session.mode = None
            session.seen = time.monotonic()
            session.urls.append(str(body.get("url", "")))
            config = body.get("config")
            session.configs.append(config if isinstance(config, dict) else {})
            if session.linked:
                # What the device never acknowledged is delivered again, oldest first.
                redeliver = [
                    {"op": "deliver", "args": {"record": record}}
                    for record in session.undelivered.values()
                ]
                queued = [c for c in session.commands if c["op"] != "deliver"]
                session.commands = redeliver + queued
            device = json.loads(json.dumps(session.device))
            self.changed.notify_all()
        return {**self.settings, "device": device, "boot": session.boots}

    def poll(self, session_id: str, boot: int) -> list[dict[str, Any]]:
        """The commands for the page of ``boot``. A poll left behind by a page that died
        (the same device, an older boot) gets none: they are the new page's."""
        deadline = time.monotonic() + POLL_SECONDS
        with self.changed:
            session = self._session(session_id)
            session.seen = time.monotonic()
            while boot == session.boots and not session.commands and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(left)
            if boot != session.boots:
                return []
            commands, session.commands = session.commands, []
            return commands

    def event(self, session_id: str, body: dict[str, Any]) -> None:
        name, data = str(body.get("event")), dict(body.get("data") or {})
        with self.changed:
            session = self._session(session_id)
            session.events.append((name, data))
            if name == "qr":
                session.qrs.append(data["qr"])
            elif name == "mode":
                session.mode = data.get("mode")
            elif name == "delivered":
                session.undelivered.pop(str(data.get("id")), None)
            self.changed.notify_all()

    def store(self, session_id: str, change: dict[str, Any]) -> None:
        """Commit one change to the device's storage (an IndexedDB transaction)."""
        with self.changed:
            session = self._session(session_id)
            device = session.device
            op = change.get("op")
            if op == "link":
                device.update(linked=True, me=change.get("me"), meLid=change.get("meLid"))
                session.linked = True
                session.me = str(change.get("me") or "")
                session.device_name = change.get("deviceName")
            elif op == "forget":
                session.device = _empty_device()
                session.linked = False
            elif op == "chat":
                device["chats"].setdefault(
                    str(change["chat"]), {"lastReceivedKey": None, "unreadCount": 0, "msgs": []}
                )
            elif op == "message":
                record = dict(change["record"])
                chat = device["chats"].setdefault(
                    record["chat"], {"lastReceivedKey": None, "unreadCount": 0, "msgs": []}
                )
                at = next((i for i, m in enumerate(chat["msgs"]) if m["id"] == record["id"]), None)
                if at is None:
                    chat["msgs"].append(record)
                    if not record.get("fromMe"):
                        chat["lastReceivedKey"] = record["id"]
                        chat["unreadCount"] += 1
                else:
                    chat["msgs"][at] = record
            elif op == "read":
                chat_id = str(change.get("chat"))
                if chat_id in device["chats"]:
                    device["chats"][chat_id]["unreadCount"] = 0
                session.reads.append(chat_id)
            elif op == "lidpn":
                device["lidPn"][str(change["lid"])] = str(change["pn"])
            else:
                raise ValueError(f"unknown device change {op!r}")
            self.changed.notify_all()

    def accept(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """The device sends a message: the server takes it once per id (ACK.SENT)."""
        record = dict(body.get("record") or {})
        with self.changed:
            session = self._session(session_id)
            if not session.linked:
                return {"error": "not linked"}
            message_id = str(record.get("id"))
            session.send_attempts.append(message_id)
            if message_id not in session.history:
                record["ack"] = 1
                record.pop("local", None)
                session.history[message_id] = record
                session.sent.append(record)
            self.changed.notify_all()
        return {"ack": 1}

    def search(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """A message by id, as the server has it (wa-js's remote search), or None."""
        with self.changed:
            session = self._session(session_id)
            record = session.history.get(str(body.get("id")))
            return {"record": dict(record) if record else None}

    def contact(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """A number's LID (wa-js queryExists), when the number's chat is a LID chat."""
        number = "+" + str(body.get("id", "")).partition("@")[0]
        lid = self.lid_of(number) if self.addressing_of(number) != PN else None
        return {"lid": lid}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser closing mid-request is normal here; anything else is printed."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test's output is for the test

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", CSP)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, value: Any) -> None:
            self._reply(200, json.dumps(value).encode(), "application/json")

        def _session_id(self) -> str:
            query = parse_qs(urlsplit(self.path).query)
            return query.get("session", [""])[0]

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path in ("/", "/index.html"):
                gate = standin.page_gate
                if gate is not None:
                    with standin.changed:
                        standin.pages_held += 1
                        standin.changed.notify_all()
                    gate.wait(timeout=60)
                self._reply(200, PAGE, "text/html; charset=utf-8")
            elif path == "/standin/poll":
                boot = parse_qs(urlsplit(self.path).query).get("boot", ["0"])[0]
                self._json(standin.poll(self._session_id(), int(boot) if boot.isdigit() else 0))
            else:
                self._reply(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            session_id = self._session_id()
            if path == "/standin/hello":
                agent = self.headers.get("User-Agent", "")
                self._json(standin.hello(session_id, body, agent))
            elif path == "/standin/event":
                standin.event(session_id, body)
                self._json({})
            elif path == "/standin/send":
                answer = standin.accept(session_id, body)
                if "error" in answer:
                    self._reply(409, answer["error"].encode(), "text/plain")
                else:
                    self._json(answer)
            elif path == "/standin/device":
                standin.store(session_id, body)
                self._json({})
            elif path == "/standin/search":
                self._json(standin.search(session_id, body))
            elif path == "/standin/contact":
                self._json(standin.contact(session_id, body))
            else:
                self._reply(404, b"not found", "text/plain")

    return Handler


@contextmanager
def running_standin(**settings: Any) -> Iterator[StandIn]:
    standin = StandIn(**settings).start()
    try:
        yield standin
    finally:
        standin.stop()

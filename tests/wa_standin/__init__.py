"""A local stand-in for WhatsApp Web, driven by the test over real HTTP on loopback.

`StandIn` serves a blank page (with a Content-Security-Policy like WhatsApp Web's: no
inline scripts) and a control API on the same origin. The engine opens the page
(``browser.url``, or ``https://web.whatsapp.com/`` routed here with ``context.route``) and
injects ``fake_wpp.js`` in place of wa-js (``browser.wa_js_path``). Each page is a
*session* (an id kept in the profile's localStorage, so a restarted browser on the same
profile is the same linked device, and a wiped profile is a new one). The page
long-polls ``/standin/poll`` for commands and reports what happens to ``/standin/event``:

- the test plays the phone: `scan` the QR the tenant shows, `phone_logout`;
- the test plays customers: `customer_writes`, and the business typing on its phone
  (``from_me``);
- the test breaks the page: `hang` (its main thread never answers again);
- the page tells the test what "WhatsApp's servers" received: `sent`.

Like WhatsApp Web, it turns a browser that says "HeadlessChrome" away: the page then
shows no QR and wa-js never becomes ready.
"""

from __future__ import annotations

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
#: WhatsApp Web's policy forbids inline scripts; so does the stand-in's.
CSP = "default-src 'self'; script-src 'self'; connect-src 'self'"
PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>WhatsApp (stand-in)</title></head>
<body><p>WhatsApp Web stand-in for wactl's tests.</p>
<script>document.body.dataset.inline = "ran";</script></body></html>
"""
#: What WhatsApp Web turns away.
HEADLESS = "HeadlessChrome"
#: How long a poll waits for a command before the page asks again.
POLL_SECONDS = 1.0


@dataclass
class Session:
    """One page's view of its linked device, as the page last reported it."""

    id: str
    boots: int = 0
    authenticated: bool = False
    qrs: list[str] = field(default_factory=list)
    ready: bool = False
    sent: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    #: When the page last polled (monotonic).
    seen: float = 0.0
    #: The User-Agent of each boot: the HTTP header, and the page's navigator.userAgent.
    user_agents: list[tuple[str, str]] = field(default_factory=list)

    @property
    def qr(self) -> str | None:
        return self.qrs[-1] if self.qrs and not self.authenticated else None


class StandIn:
    """The HTTP server (a thread) and the test's handle on every session."""

    def __init__(
        self, *, rotate_ms: int = 60_000, ready_delay_ms: int = 0, withhold_ready: bool = False
    ) -> None:
        self.settings = {
            "rotateMs": rotate_ms,
            "readyDelayMs": ready_delay_ms,
            "withholdReady": withhold_ready,
        }
        self.sessions: dict[str, Session] = {}
        self.changed = threading.Condition()
        self.server = _Server(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
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
        self.command(session, "scan", qr=qr, me=me)
        return session

    def customer_writes(self, session: Session, number: str, body: str, **extra: Any) -> str:
        """A customer (+E164) writes ``body``; returns WhatsApp's id of the message.

        ``extra`` goes to the page as is: ``fromMe`` (the business typed it on its
        phone), ``type``, ``isNotification``, ``broadcast``, ``author``, or ``chat`` to
        write somewhere other than the customer's own chat (a group, status@broadcast).
        """
        chat = extra.pop("chat", f"{number.lstrip('+')}@c.us")
        key = extra.pop("key", "3A" + secrets.token_hex(9).upper())
        from_me = bool(extra.get("fromMe"))
        group = chat.endswith("@g.us")
        author = extra.get("author")
        message_id = f"{str(from_me).lower()}_{chat}_{key}"
        if group and author:
            message_id += f"_{author}"
        self.command(session, "message", chat=chat, key=key, body=body, **extra)
        self.wait(lambda: ("delivered", {"id": message_id}) in session.events)
        return message_id

    def sent_to(self, session: Session, number: str) -> list[str]:
        chat = f"{number.lstrip('+')}@c.us"
        with self.changed:
            return [m["body"] for m in session.sent if m["chat"] == chat]

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
            session.authenticated = bool(body.get("authenticated"))
            session.ready = False
            session.seen = time.monotonic()
            self.changed.notify_all()
        return self.settings

    def poll(self, session_id: str) -> list[dict[str, Any]]:
        deadline = time.monotonic() + POLL_SECONDS
        with self.changed:
            session = self._session(session_id)
            session.seen = time.monotonic()
            while not session.commands and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(left)
            commands, session.commands = session.commands, []
            return commands

    def event(self, session_id: str, body: dict[str, Any]) -> None:
        name, data = str(body.get("event")), dict(body.get("data") or {})
        with self.changed:
            session = self._session(session_id)
            session.events.append((name, data))
            if name == "qr":
                session.qrs.append(data["qr"])
                session.authenticated = False
            elif name == "ready":
                session.authenticated = session.ready = True
            elif name == "sent":
                session.sent.append(data)
            elif name == "logout":
                session.authenticated = session.ready = False
            self.changed.notify_all()


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
                self._reply(200, PAGE, "text/html; charset=utf-8")
            elif path == "/standin/poll":
                self._json(standin.poll(self._session_id()))
            else:
                self._reply(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if path == "/standin/hello":
                agent = self.headers.get("User-Agent", "")
                self._json(standin.hello(self._session_id(), body, agent))
            elif path == "/standin/event":
                standin.event(self._session_id(), body)
                self._json({})
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

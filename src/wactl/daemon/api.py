"""The daemon's HTTP API under /v1: each endpoint defined once, OpenAPI derived from it.

An `Endpoint` carries its method, path, summary, request and response schemas and
handler; `build_app` turns the list into Starlette routes and `openapi_document` into
the OpenAPI 3.1 document served at /v1/openapi.json (STYLE.md 6). Errors are JSON
``{"error": "...", "hint": "..."}`` with a 4xx status for anything the client got wrong.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import wactl
from wactl.actor import operator_actor
from wactl.daemon import metrics
from wactl.daemon.events import EventHub
from wactl.daemon.supervisor import Supervisor
from wactl.db.engine import describe_db_error
from wactl.enums import WORKER_STATE_MEANINGS
from wactl.errors import (
    ConflictError,
    DaemonError,
    DatabaseError,
    NotFoundError,
    UsageError,
    WactlError,
)
from wactl.ipc.protocol import (
    ACTOR_HEADER,
    MAX_PAUSE_MINUTES,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
)

Handler = Callable[[Request, "DaemonState"], Awaitable[Response]]

#: How often an idle event stream sends a comment line, so clients notice a dead daemon.
KEEPALIVE_SECONDS = 15.0


@dataclass
class DaemonState:
    """What handlers need: the supervisor, the hub, and how to ask the daemon to exit."""

    supervisor: Supervisor
    hub: EventHub
    socket_path: str
    request_shutdown: Callable[[bool], None]
    pid: int


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    summary: str
    handler: Handler
    description: str = ""
    request_schema: dict[str, Any] | None = None
    response_schema: dict[str, Any] = field(default_factory=dict)
    content_type: str = "application/json"
    path_params: tuple[str, ...] = ()


class ApiError(Exception):
    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.hint = hint


def _actor(request: Request) -> str:
    """Who asked: the client's header (only the socket's owner can connect), else us."""
    claimed = request.headers.get(ACTOR_HEADER, "")
    return claimed[:200] if claimed.startswith("os:") else operator_actor()


def _error_response(
    status: int, message: str, hint: str | None = None, kind: str | None = None
) -> Response:
    """An error reply; ``kind`` "database" tells the client it was the database (exit
    code 4), not the daemon, that failed."""
    # ASCII-escaped: a message quoting a client's broken text (a lone surrogate) must
    # never make the error reply itself fail to encode.
    payload: dict[str, Any] = {"error": message, "hint": hint}
    if kind is not None:
        payload["kind"] = kind
    body = json.dumps(payload, ensure_ascii=True)
    return Response(body, status_code=status, media_type="application/json")


async def _json_body(request: Request, schema: dict[str, Any]) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        body: Any = {}
    else:
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(422, "the request body must be a JSON object")
    allowed = set(schema.get("properties", {}))
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            422, f"unknown field '{unknown[0]}'", hint=f"allowed: {', '.join(sorted(allowed))}"
        )
    return body


# --- schemas ---------------------------------------------------------------------------

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "hint": {"type": ["string", "null"]}},
}
NULLABLE_NUMBER = {"type": ["number", "null"]}
NULLABLE_INT = {"type": ["integer", "null"]}
NULLABLE_STRING = {"type": ["string", "null"]}
WORKER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["slug", "state", "desired", "engine", "restarts"],
    "properties": {
        "slug": {"type": "string"},
        "state": {
            "type": "string",
            "enum": [state.value for state in WORKER_STATE_MEANINGS],
            "description": " ".join(
                f"{state}: {meaning}." for state, meaning in WORKER_STATE_MEANINGS.items()
            ),
        },
        "desired": {"type": "string", "enum": ["RUNNING", "STOPPED"]},
        "engine": {"type": "string"},
        "wa_js_version": {
            "type": ["string", "null"],
            "description": "The wa-js version a running whatsapp-web worker injects.",
        },
        "pid": NULLABLE_INT,
        "uptime_seconds": NULLABLE_NUMBER,
        "restarts": {"type": "integer"},
        "cpu_percent": NULLABLE_NUMBER,
        "memory_rss_bytes": NULLABLE_INT,
        "memory_uss_bytes": NULLABLE_INT,
        "processes": {"type": "integer"},
        "heartbeat_age_seconds": NULLABLE_NUMBER,
        "messages_in_1h": NULLABLE_INT,
        "messages_out_1h": NULLABLE_INT,
        "messages_in_total": {"type": "integer"},
        "messages_out_total": {"type": "integer"},
        "session_state": NULLABLE_STRING,
        "has_qr": {"type": "boolean"},
        "last_error": NULLABLE_STRING,
        "problems": {
            "type": "array",
            "description": "What the running worker says is failing now (the database, "
            "sending replies), each until it works again.",
            "items": {
                "type": "object",
                "required": ["area", "message", "since"],
                "properties": {
                    "area": {"type": "string"},
                    "message": {"type": "string"},
                    "since": {"type": "string", "description": "ISO 8601 UTC"},
                },
            },
        },
        "reason": NULLABLE_STRING,
    },
}
TARGETS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": 'Either {"tenants": ["slug", ...]} or {"all": true}.',
    "properties": {
        "tenants": {"type": "array", "items": {"type": "string"}},
        "all": {"type": "boolean"},
    },
}
WORKERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["workers"],
    "properties": {"workers": {"type": "array", "items": WORKER_SCHEMA}},
}


# --- handlers --------------------------------------------------------------------------


async def version(request: Request, state: DaemonState) -> Response:
    return JSONResponse(
        {"protocol": PROTOCOL_VERSION, "version": wactl.__version__, "pid": state.pid}
    )


async def status(request: Request, state: DaemonState) -> Response:
    supervisor = state.supervisor
    await supervisor.refresh()
    return JSONResponse(
        {
            "pid": state.pid,
            "version": wactl.__version__,
            "protocol": PROTOCOL_VERSION,
            "uptime_seconds": round(supervisor.uptime(), 1),
            "socket": state.socket_path,
            "workers": supervisor.counts(),
            "event_subscribers": state.hub.subscriber_count,
            "database": supervisor.database_health(),
        }
    )


async def list_tenants(request: Request, state: DaemonState) -> Response:
    await state.supervisor.refresh()
    return JSONResponse(state.supervisor.views())


async def show_tenant(request: Request, state: DaemonState) -> Response:
    slug = request.path_params["slug"]
    supervisor = state.supervisor
    worker = await supervisor.worker_for(slug)
    return JSONResponse(worker.view(time.monotonic()))


def _targets(body: dict[str, Any], state: DaemonState) -> list[str]:
    tenants = body.get("tenants")
    everything = body.get("all", False)
    if not isinstance(everything, bool):
        raise ApiError(422, "'all' must be true or false")
    if tenants is not None and (
        not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants)
    ):
        raise ApiError(422, "'tenants' must be a list of slugs")
    if everything == bool(tenants):
        raise ApiError(422, "give either 'tenants' (a non-empty list) or 'all': true")
    if everything:
        return sorted(state.supervisor.workers)
    assert tenants is not None
    return list(dict.fromkeys(tenants))


def _action(name: str) -> Handler:
    async def handler(request: Request, state: DaemonState) -> Response:
        body = await _json_body(request, TARGETS_SCHEMA)
        supervisor = state.supervisor
        if body.get("all"):
            await supervisor.refresh()
        slugs = _targets(body, state)
        action = getattr(supervisor, name)
        results = []
        errors = []
        for slug in slugs:
            try:
                results.append(await action(slug))
            except (NotFoundError, ConflictError) as exc:
                if body.get("all") and isinstance(exc, ConflictError):
                    continue  # --all skips tenants that are not set up yet
                errors.append(exc)
                continue
            try:
                await supervisor.audit(_actor(request), f"worker.{name}", slug, {})
            except DatabaseError as exc:
                raise DatabaseError(
                    f"{name} of {slug} done, but the audit trail could not record it: "
                    f"{exc.message}",
                    hint=exc.hint,
                ) from exc
        if errors and not results:
            raise errors[0]
        now = time.monotonic()
        payload: dict[str, Any] = {"workers": [w.view(now) for w in results]}
        if errors:
            payload["errors"] = [e.one_line() for e in errors if isinstance(e, WactlError)]
        return JSONResponse(payload)

    return handler


async def show_qr(request: Request, state: DaemonState) -> Response:
    worker = await state.supervisor.worker_for(request.path_params["slug"])
    return JSONResponse(
        {
            "slug": worker.slug,
            "state": worker.machine.state.value,
            "session_state": worker.session_state,
            "qr": worker.qr,
            "last_error": worker.last_error,
        }
    )


async def logout(request: Request, state: DaemonState) -> Response:
    slug = request.path_params["slug"]
    result = await state.supervisor.request(slug, "logout")
    await state.supervisor.audit(_actor(request), "whatsapp.logout", slug, {})
    return JSONResponse({"slug": slug, "result": result})


SCAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"qr": {"type": "string", "description": "The QR being scanned (optional)."}},
}


async def _require_sandbox(state: DaemonState, slug: str, hint: str) -> None:
    """The sandbox endpoints play WhatsApp's part; a real engine's tenant is refused."""
    worker = await state.supervisor.worker_for(slug)
    if worker.engine != "sandbox":
        raise ApiError(409, f"tenant '{slug}' uses the {worker.engine} engine", hint=hint)


async def sandbox_scan(request: Request, state: DaemonState) -> Response:
    slug = request.path_params["slug"]
    body = await _json_body(request, SCAN_SCHEMA)
    qr = body.get("qr")
    if qr is not None and not isinstance(qr, str):
        raise ApiError(422, "'qr' must be a string")
    await _require_sandbox(state, slug, "scan its QR with the phone instead (`wactl tenant qr`)")
    result = await state.supervisor.request(slug, "scan", {"qr": qr} if qr else {})
    await state.supervisor.audit(_actor(request), "sandbox.scan", slug, {})
    return JSONResponse({"slug": slug, "result": result})


SEND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["from", "text"],
    "properties": {
        "from": {"type": "string", "description": "The customer's number."},
        "text": {"type": "string"},
        "id": {
            "type": "string",
            "description": "WhatsApp's message id (default: a new one); "
            "sending the same id twice plays a redelivery.",
        },
        "from_me": {"type": "boolean", "description": "The business typed it on its phone."},
        "wait": {
            "type": "boolean",
            "description": "Wait for the bot's answer (default); false: answer "
            '{"status": "queued"} once the message is handed to the worker.',
        },
    },
}


async def sandbox_send(request: Request, state: DaemonState) -> Response:
    slug = request.path_params["slug"]
    body = await _json_body(request, SEND_SCHEMA)
    for key in ("from", "text"):
        if not isinstance(body.get(key), str) or not body[key].strip():
            raise ApiError(422, f"'{key}' must be a non-empty string")
    if "id" in body and (not isinstance(body["id"], str) or not body["id"]):
        raise ApiError(422, "'id' must be a non-empty string")
    for flag in ("from_me", "wait"):
        if flag in body and not isinstance(body[flag], bool):
            raise ApiError(422, f"'{flag}' must be true or false")
    await _require_sandbox(state, slug, "customers reach it through WhatsApp itself")
    result = await state.supervisor.request(slug, "send", body)
    return JSONResponse({"slug": slug, **result})


PAUSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["chat"],
    "properties": {
        "chat": {"type": "string", "description": "The customer's number (+E164) or LID."},
        "minutes": {
            "type": "number",
            "description": "How long the bot stays quiet in the chat (default: "
            "pipeline.handoff_pause_minutes).",
        },
    },
}
RESUME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["chat"],
    "properties": {"chat": {"type": "string"}},
}
PAUSED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "slug": {"type": "string"},
        "chat": {"type": "string"},
        "paused_until": NULLABLE_STRING,
    },
}


def _chat_of(body: dict[str, Any]) -> str:
    from wactl.errors import ValidationError
    from wactl.validation import normalize_chat

    chat = body.get("chat")
    if not isinstance(chat, str):
        raise ApiError(422, "'chat' must be the customer's number or LID")
    try:
        return normalize_chat(chat, "chat")
    except ValidationError as exc:
        raise ApiError(422, exc.message, exc.hint) from None


async def pause_chat(request: Request, state: DaemonState) -> Response:
    slug = request.path_params["slug"]
    body = await _json_body(request, PAUSE_SCHEMA)
    chat = _chat_of(body)
    default = state.supervisor.config.pipeline.handoff_pause_minutes
    minutes = body.get("minutes", default)
    if (
        not isinstance(minutes, int | float)
        or isinstance(minutes, bool)
        or not 0 < minutes <= MAX_PAUSE_MINUTES
    ):
        raise ApiError(422, f"'minutes' must be a number above 0, at most {MAX_PAUSE_MINUTES}")
    result = await state.supervisor.pause_chat(slug, chat, float(minutes))
    await state.supervisor.audit(_actor(request), "chat.paused", slug, result)
    state.hub.publish("chat", slug=slug, **result)
    return JSONResponse({"slug": slug, **result})


async def resume_chat(request: Request, state: DaemonState) -> Response:
    slug = request.path_params["slug"]
    chat = _chat_of(await _json_body(request, RESUME_SCHEMA))
    result = await state.supervisor.pause_chat(slug, chat, 0)
    await state.supervisor.audit(_actor(request), "chat.resumed", slug, result)
    state.hub.publish("chat", slug=slug, **result)
    return JSONResponse({"slug": slug, **result})


async def events(request: Request, state: DaemonState) -> Response:
    subscription = state.hub.subscribe()

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(subscription.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                data = json.dumps(item, separators=(",", ":"))
                yield f"id: {item['id']}\nevent: {item['event']}\ndata: {data}\n\n".encode()
                if item["event"] == "shutdown":
                    return
        finally:
            subscription.close()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store"},
    )


async def get_metrics(request: Request, state: DaemonState) -> Response:
    await state.supervisor.refresh()
    text = metrics.render(
        state.supervisor.views(), uptime=state.supervisor.uptime(), version=wactl.__version__
    )
    return PlainTextResponse(text, media_type=metrics.CONTENT_TYPE)


SHUTDOWN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "stop_workers": {
            "type": "boolean",
            "description": "Also stop every worker (default: they keep running).",
        }
    },
}


async def shutdown(request: Request, state: DaemonState) -> Response:
    body = await _json_body(request, SHUTDOWN_SCHEMA)
    stop_workers = body.get("stop_workers", False)
    if not isinstance(stop_workers, bool):
        raise ApiError(422, "'stop_workers' must be true or false")
    await state.supervisor.audit(
        _actor(request), "daemon.stop", None, {"stop_workers": stop_workers}
    )
    state.request_shutdown(stop_workers)
    return JSONResponse({"pid": state.pid, "stopping_workers": stop_workers})


async def openapi(request: Request, state: DaemonState) -> Response:
    return JSONResponse(openapi_document())


SLUG = ("slug",)
ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        "/v1/version",
        "Protocol version and daemon identity",
        version,
        "Clients call this first and refuse a daemon that speaks another protocol.",
        response_schema={
            "type": "object",
            "required": ["protocol", "version", "pid"],
            "properties": {
                "protocol": {"type": "integer"},
                "version": {"type": "string"},
                "pid": {"type": "integer"},
            },
        },
    ),
    Endpoint(
        "GET",
        "/v1/status",
        "Daemon status",
        status,
        "pid, version, uptime, socket and the number of workers in each state.",
        response_schema={"type": "object"},
    ),
    Endpoint(
        "GET",
        "/v1/tenants",
        "Every tenant's worker",
        list_tenants,
        "What `wactl ps --json` prints.",
        response_schema={"type": "array", "items": WORKER_SCHEMA},
    ),
    Endpoint(
        "GET",
        "/v1/tenants/{slug}",
        "One tenant's worker",
        show_tenant,
        response_schema=WORKER_SCHEMA,
        path_params=SLUG,
    ),
    Endpoint(
        "POST",
        "/v1/start",
        "Start workers",
        _action("start"),
        "Sets the desired state to RUNNING and starts the workers; returns at once "
        "(poll the tenants or follow /v1/events). A quarantined (FATAL) worker is "
        "started again. With all=true, tenants not set up yet are skipped.",
        request_schema=TARGETS_SCHEMA,
        response_schema=WORKERS_SCHEMA,
    ),
    Endpoint(
        "POST",
        "/v1/stop",
        "Stop workers",
        _action("stop"),
        "SIGTERM to each worker's process group, the grace period, then SIGKILL; "
        "returns when they are gone.",
        request_schema=TARGETS_SCHEMA,
        response_schema=WORKERS_SCHEMA,
    ),
    Endpoint(
        "POST",
        "/v1/restart",
        "Restart workers",
        _action("restart"),
        "Graceful stop, then start; clears the crash history.",
        request_schema=TARGETS_SCHEMA,
        response_schema=WORKERS_SCHEMA,
    ),
    Endpoint(
        "GET",
        "/v1/tenants/{slug}/qr",
        "The QR to scan",
        show_qr,
        "The current QR payload of an unlinked tenant (null when linked or stopped).",
        response_schema={"type": "object"},
        path_params=SLUG,
    ),
    Endpoint(
        "POST",
        "/v1/tenants/{slug}/logout",
        "Unlink WhatsApp",
        logout,
        "Logs the running worker out of WhatsApp; a new QR follows.",
        response_schema={"type": "object"},
        path_params=SLUG,
    ),
    Endpoint(
        "POST",
        "/v1/tenants/{slug}/sandbox/scan",
        "Link a sandbox tenant",
        sandbox_scan,
        "Plays the phone scanning the sandbox tenant's QR.",
        request_schema=SCAN_SCHEMA,
        response_schema={"type": "object"},
        path_params=SLUG,
    ),
    Endpoint(
        "POST",
        "/v1/tenants/{slug}/sandbox/send",
        "A customer writes to a sandbox tenant",
        sandbox_send,
        "Goes through the same pipeline as WhatsApp messages; answers with the outcome "
        "(status replied, ignored, duplicate or failed) and the bot's reply.",
        request_schema=SEND_SCHEMA,
        response_schema={"type": "object"},
        path_params=SLUG,
    ),
    Endpoint(
        "POST",
        "/v1/tenants/{slug}/chats/pause",
        "Pause the bot in one chat",
        pause_chat,
        "The bot stays quiet in the chat for 'minutes' (a person answers); through the "
        "running worker, or in the database when it does not run. Audited.",
        request_schema=PAUSE_SCHEMA,
        response_schema=PAUSED_SCHEMA,
        path_params=SLUG,
    ),
    Endpoint(
        "POST",
        "/v1/tenants/{slug}/chats/resume",
        "Hand a chat back to the bot",
        resume_chat,
        "Ends the chat's pause now: the bot answers the customer's next message. Audited.",
        request_schema=RESUME_SCHEMA,
        response_schema=PAUSED_SCHEMA,
        path_params=SLUG,
    ),
    Endpoint(
        "GET",
        "/v1/events",
        "Live events (Server-Sent Events)",
        events,
        "worker (state changes), qr, session, error, problem and healed (what a worker "
        "says fails now, and that it works again), handoff (a customer asked for a "
        "person), takeover (the business answered by hand) and chat (an operator paused "
        "or resumed a chat: chat, paused_until) events, as JSON in data lines; shutdown "
        "when the daemon stops.",
        content_type="text/event-stream",
    ),
    Endpoint(
        "GET", "/v1/metrics", "Prometheus metrics", get_metrics, content_type=metrics.CONTENT_TYPE
    ),
    Endpoint(
        "POST",
        "/v1/shutdown",
        "Stop the daemon",
        shutdown,
        "Workers keep running (a new daemon re-adopts them) unless stop_workers.",
        request_schema=SHUTDOWN_SCHEMA,
        response_schema={"type": "object"},
    ),
    Endpoint(
        "GET", "/v1/openapi.json", "This document", openapi, response_schema={"type": "object"}
    ),
]


def _operation_id(endpoint: Endpoint) -> str:
    words = endpoint.path.removeprefix("/v1/").replace(".", "_").replace("{", "").replace("}", "")
    return f"{endpoint.method.lower()}_{words.replace('/', '_')}"


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        content = (
            {"application/json": {"schema": endpoint.response_schema}}
            if endpoint.content_type == "application/json"
            else {endpoint.content_type: {"schema": {"type": "string"}}}
        )
        responses: dict[str, Any] = {
            "200": {"description": "OK", "content": content},
            "default": {
                "description": "An error, with what to do about it.",
                "content": {"application/json": {"schema": ERROR_SCHEMA}},
            },
        }
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "operationId": _operation_id(endpoint),
            "responses": responses,
        }
        if endpoint.description:
            operation["description"] = endpoint.description
        if endpoint.path_params:
            operation["parameters"] = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in endpoint.path_params
            ]
        if endpoint.request_schema is not None:
            operation["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": endpoint.request_schema}},
            }
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "wactld",
            "version": wactl.__version__,
            "description": "The wactl daemon's API, on its Unix socket "
            "(curl --unix-socket SOCK http://wactl/v1/tenants).",
        },
        "paths": paths,
    }


def build_app(state: DaemonState) -> Starlette:
    def wrap(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            theirs = request.headers.get(PROTOCOL_HEADER)
            if theirs is not None and theirs != str(PROTOCOL_VERSION):
                return _error_response(
                    400,
                    f"this daemon speaks protocol {PROTOCOL_VERSION}, the client {theirs}",
                    "run the same wactl version as the daemon, or `wactl daemon restart`",
                )
            try:
                return await endpoint.handler(request, state)
            except ApiError as exc:
                return _error_response(exc.status, exc.message, exc.hint)
            except NotFoundError as exc:
                return _error_response(404, exc.message, exc.hint)
            except ConflictError as exc:
                return _error_response(409, exc.message, exc.hint)
            except UsageError as exc:
                return _error_response(422, exc.message, exc.hint)
            except DaemonError as exc:
                return _error_response(503, exc.message, exc.hint)
            except DatabaseError as exc:
                return _error_response(503, exc.message, exc.hint, kind="database")
            except DBAPIError as exc:
                error = describe_db_error(state.supervisor.db, exc)
                return _error_response(503, error.message, error.hint, kind="database")
            except WactlError as exc:
                return _error_response(503, exc.message, exc.hint)

        return route

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = _error_response(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})  # 405 carries Allow (RFC 9110)
        return response

    async def server_error(request: Request, exc: Exception) -> Response:
        import logging

        logging.getLogger("wactl.daemon.api").exception("unexpected error in %s", request.url.path)
        return _error_response(500, f"unexpected {type(exc).__name__}", "see `wactl daemon logs`")

    routes = [Route(e.path, wrap(e), methods=[e.method]) for e in ENDPOINTS]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.add_middleware(_ProtocolHeader)
    return app


class _ProtocolHeader:
    """Every response says which protocol this daemon speaks (errors and 404s too)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = (PROTOCOL_HEADER.lower().encode(), str(PROTOCOL_VERSION).encode())

        async def send_with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, send_with_header)

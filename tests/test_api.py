"""The daemon's HTTP API as a client meets it: real HTTP on the real Unix socket.

- the OpenAPI document the daemon serves is valid OpenAPI 3.1 and describes exactly
  the routes the app serves;
- schemathesis fuzzes every operation from that document against a real daemon (and
  /v1/shutdown against a real in-process Supervisor whose shutdown is recorded): no
  5xx, every 4xx is a JSON ``{"error": ...}``, every 200 matches its documented schema;
- malformed requests (bad JSON, bad targets, unknown routes and methods, a wrong
  protocol header, a garbage request line) get the documented errors;
- ``curl --unix-socket`` works; the client explains why it cannot reach a daemon;
- /v1/metrics is well-formed Prometheus text.

Tests that involve a database run on SQLite and PostgreSQL (the ``daemon`` and
``db_url`` fixtures). Every wait polls; every server, thread and process started here
is stopped in a ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import socketserver
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlencode, urlsplit

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from starlette.routing import Route

import wactl
from tests.conftest import CLI
from tests.daemon_support import Daemon
from tests.support import Result, db_session, poll_for
from wactl.errors import DaemonError
from wactl.ipc.client import DaemonClient, DaemonNotRunning
from wactl.ipc.protocol import PROTOCOL_HEADER, PROTOCOL_VERSION

if TYPE_CHECKING:
    from starlette.applications import Starlette

Operation: TypeAlias = "schemathesis.APIOperation[Any, Any, Any, Any]"
FuzzCase: TypeAlias = "schemathesis.Case[Any]"

# jsonschema_rs is not a direct dependency: it comes with schemathesis (a dev
# dependency), which validates OpenAPI documents with it.

#: Operations that are not fuzzed against the daemon, and why.
NOT_FUZZED = {
    # An event stream never ends by itself: every example would hang until a timeout.
    ("GET", "/v1/events"),
    # Stops the daemon under test; fuzzed against a recorder instead
    # (test_fuzz_shutdown_in_process).
    ("POST", "/v1/shutdown"),
}
#: Examples per fuzzed operation: enough to meet every validation branch and the real
#: tenants, bounded in time (the whole fuzz run measured ~4-5 s per backend).
MAX_EXAMPLES = 40
#: Operations whose body names tenants.
TARGET_PATHS = ("/v1/start", "/v1/stop", "/v1/restart")
SLUGS = ("alpha", "beta")


# --- HTTP over the Unix socket ---------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client on an AF_UNIX socket (the Host header says ``wactl``)."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        super().__init__("wactl", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.unix_path))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def call(
    path: Path,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    connection = UnixHTTPConnection(path)
    try:
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        received = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, received, response.read())
    finally:
        connection.close()


def call_json(path: Path, method: str, target: str, body: Any) -> Reply:
    return call(
        path, method, target, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )


def raw_exchange(path: Path, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` as is, say that is all, and read until the server closes."""
    chunks = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(raw: bytes) -> int:
    """The status code of a raw HTTP/1.1 response."""
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", raw)
    assert match is not None, raw[:200]
    return int(match.group(1))


# --- tenants through the in-process CLI --------------------------------------------------


def create_tenants(cli: CLI, *slugs: str) -> None:
    for slug in slugs:
        result = cli("tenant", "create", slug, "--name", slug.title())
        assert result.code == 0, result.err


def start_tenants(cli: CLI, *slugs: str) -> None:
    result = cli("tenant", "start", *slugs)
    assert result.code == 0, result.err


# --- 1. the OpenAPI document -----------------------------------------------------------

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _schemas_in(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every request and response schema of the document, with where it is."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            body = operation.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                yield f"{where} request {media}", content["schema"]
            for code, response in operation["responses"].items():
                for media, content in response.get("content", {}).items():
                    yield f"{where} {code} {media}", content["schema"]
            for parameter in operation.get("parameters", []):
                yield f"{where} parameter {parameter['name']}", parameter["schema"]


def test_openapi_document_over_the_socket(daemon: Daemon) -> None:
    from wactl.daemon.api import ENDPOINTS, openapi_document

    reply = call(daemon.socket, "GET", "/v1/openapi.json")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    document = reply.json()
    assert document == openapi_document()
    # Structure, against the OpenAPI 3.1 meta-schema that schemathesis ships.
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"])
    schemathesis.openapi.from_dict(document).validate()
    assert document["info"]["title"] == "wactld"
    assert document["info"]["version"] == wactl.__version__
    # Every endpoint appears once, with its method, and nothing else does.
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method.upper() in METHODS
    }
    defined = {(e.method, e.path) for e in ENDPOINTS}
    assert len(defined) == len(ENDPOINTS)
    assert documented == defined
    operation_ids = []
    for endpoint in ENDPOINTS:
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        operation_ids.append(operation["operationId"])
        assert operation["summary"] == endpoint.summary
        assert set(operation["responses"]) == {"200", "default"}
        assert set(operation["responses"]["200"]["content"]) == {endpoint.content_type}
        error = operation["responses"]["default"]["content"]["application/json"]["schema"]
        assert error["required"] == ["error"]
        in_path = re.findall(r"\{(\w+)\}", endpoint.path)
        declared = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        assert declared == in_path
        assert all(p["required"] for p in operation.get("parameters", []))
        if endpoint.request_schema is None:
            assert "requestBody" not in operation
        else:
            content = operation["requestBody"]["content"]
            assert content == {"application/json": {"schema": endpoint.request_schema}}
    assert len(set(operation_ids)) == len(operation_ids), operation_ids
    # Each schema is itself a valid JSON Schema 2020-12 (the dialect of OpenAPI 3.1).
    for where, schema in _schemas_in(document):
        dialect = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
        assert jsonschema_rs.meta.is_valid(dialect), where


def test_request_bodies_are_documented_as_closed(daemon: Daemon) -> None:
    """The daemon rejects unknown fields with 422, so the document must not allow them.

    Without ``additionalProperties: false`` a client generated from the document (or
    schemathesis' positive data) sends bodies the daemon refuses.
    """
    document = call(daemon.socket, "GET", "/v1/openapi.json").json()
    open_bodies = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "requestBody" not in operation:
                continue
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            if schema.get("additionalProperties") is not False:
                open_bodies.append(f"{method.upper()} {path}")
            # What the daemon does with an unknown field:
            reply = call_json(daemon.socket, method.upper(), path.format(slug="x"), {"zz": 1})
            assert (reply.status, reply.json()["error"]) == (422, "unknown field 'zz'")
    assert open_bodies == [], f"open to unknown fields the daemon rejects: {open_bodies}"


def test_served_routes_match_the_document(daemon: Daemon) -> None:
    from wactl.daemon.api import ENDPOINTS

    documented = {(e.method, e.path) for e in ENDPOINTS}
    # Inside: every route of the app is documented. HEAD is implied by GET (Starlette
    # answers it for every GET route; OpenAPI documents need not list it). A second
    # Supervisor on the daemon's database is harmless here: it has no tenants to start.
    with in_process_api() as api:
        served = {
            (method, route.path)
            for route in api.app.routes
            if isinstance(route, Route)
            for method in route.methods or ()
            if method != "HEAD"
        }
    assert served == documented
    # Outside, over the socket: each documented path answers the other methods with a
    # JSON 405, and its documented method reaches the handler (not a routing 404/405).
    routing_errors = {"Not Found", "Method Not Allowed"}
    for method, path in sorted(documented):
        target = path.format(slug="nosuch")
        for other in METHODS:
            if (other, path) in documented:
                continue
            reply = call(daemon.socket, other, target)
            assert reply.status == 405, (other, path)
            assert reply.json() == {"error": "Method Not Allowed", "hint": None}
        if (method, path) in NOT_FUZZED:
            continue  # an endless stream; stopping the daemon
        reply = call_json(daemon.socket, method, target, {"tenants": ["nosuch"]})
        if reply.headers["content-type"].startswith("application/json"):
            answer = reply.json()
            error = answer.get("error") if isinstance(answer, dict) else None
            assert error not in routing_errors, (method, path, reply)


# --- 2. fuzzing ------------------------------------------------------------------------


def operations_of(document: dict[str, Any]) -> list[Operation]:
    """The schemathesis operations of an OpenAPI document, in its order."""
    schema = schemathesis.openapi.from_dict(document)
    return [schema[path][method] for path, item in document["paths"].items() for method in item]


def send_case(path: Path, case: FuzzCase) -> tuple[str, Reply]:
    """Send a generated case over the Unix socket; returns a description and the reply."""
    request = case.as_transport_kwargs(base_url="http://wactl")
    assert set(request) <= {"method", "url", "headers", "params", "cookies", "json", "data"}
    url = urlsplit(request["url"])
    queries = [url.query] if url.query else []
    params = request.get("params")
    if params:
        queries.append(params if isinstance(params, str) else urlencode(params, doseq=True))
    target = url.path + ("?" + "&".join(queries) if queries else "")
    headers = {str(name): str(value) for name, value in request["headers"].items()}
    if request.get("cookies"):
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in request["cookies"].items())
    body: bytes | None = None
    if request.get("json") is not None:
        # As requests does: no NaN or infinities, which are not JSON.
        body = json.dumps(request["json"], allow_nan=False).encode()
        headers.setdefault("Content-Type", "application/json")
    elif request.get("data") is not None:
        data = request["data"]
        body = data if isinstance(data, bytes) else str(data).encode()
    method = str(request["method"])
    shown = f"{method} {target} body={body[:300]!r}" if body is not None else f"{method} {target}"
    return shown, call(path, method, target, body, headers)


@dataclass
class ResponseChecker:
    """What every fuzzed response must satisfy, with the documented 200 schemas."""

    document: dict[str, Any]
    statuses: dict[str, set[int]] = field(default_factory=dict)

    def check(self, operation: Operation, shown: str, reply: Reply) -> None:
        label = f"{operation.method.upper()} {operation.path}"
        self.statuses.setdefault(label, set()).add(reply.status)
        assert reply.status < 500, f"{shown} -> {reply.status} {reply.body[:500]!r}"
        content_type = reply.headers.get("content-type", "")
        if 400 <= reply.status < 500:
            assert content_type == "application/json", f"{shown} -> {reply.status} {content_type}"
            body = reply.json()
            assert isinstance(body, dict), f"{shown} -> {body!r}"
            assert isinstance(body.get("error"), str) and body["error"], f"{shown} -> {body!r}"
            assert isinstance(body.get("hint"), str | None), f"{shown} -> {body!r}"
            return
        assert reply.status == 200, f"{shown} -> {reply.status}"
        documented = self.document["paths"][operation.path][operation.method.lower()]
        (media, content), *_ = documented["responses"]["200"]["content"].items()
        assert content_type.split(";")[0] == media.split(";")[0], f"{shown} -> {content_type}"
        if media == "application/json":
            errors = [
                str(e)
                for e in jsonschema_rs.validator_for(content["schema"]).iter_errors(reply.json())
            ]
            assert errors == [], f"{shown}: the answer does not match its schema: {errors}"


def targets_bodies(slugs: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies for start/stop/restart that name real tenants (and sometimes others)."""
    names = st.sampled_from([*slugs, "nosuch"])
    return st.one_of(
        st.fixed_dictionaries({"tenants": st.lists(names, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"all": st.booleans()}),
        st.fixed_dictionaries(
            {"tenants": st.lists(names, max_size=2)}, optional={"all": st.booleans()}
        ),
    )


def case_strategy(operation: Operation, slugs: tuple[str, ...]) -> st.SearchStrategy[FuzzCase]:
    """Schemathesis' own positive (and, with a body, negative) cases, plus cases aimed at
    the real tenants: random slugs alone would nearly always meet a 404."""
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if operation.body:
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    if "{slug}" in operation.path:
        strategies.append(
            st.sampled_from(slugs).flatmap(
                lambda slug: operation.as_strategy(path_parameters={"slug": slug})
            )
        )
    if operation.path in TARGET_PATHS:
        strategies.append(
            targets_bodies(slugs).flatmap(lambda body: operation.as_strategy(body=body))
        )
    return st.one_of(strategies)


def fuzz(
    operation: Operation,
    slugs: tuple[str, ...],
    on_case: Callable[[FuzzCase], None],
    max_examples: int = MAX_EXAMPLES,
) -> None:
    @given(case=case_strategy(operation, slugs))
    @settings(
        max_examples=max_examples,
        deadline=None,  # a restart waits for a real process to exit
        database=None,  # nothing written under the working directory
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def run(case: FuzzCase) -> None:
        on_case(case)

    run()


def live_and_linked(daemon: Daemon, slug: str) -> None:
    started = call_json(daemon.socket, "POST", "/v1/start", {"tenants": [slug]})
    assert started.status == 200, started
    daemon.wait_state(slug, "RUNNING")
    poll_for(
        lambda: daemon.ps()[slug]["has_qr"] or daemon.ps()[slug]["session_state"] == "CONNECTED"
    )
    if daemon.ps()[slug]["session_state"] != "CONNECTED":
        scanned = call_json(daemon.socket, "POST", f"/v1/tenants/{slug}/sandbox/scan", {})
        assert scanned.status == 200, scanned


def test_fuzz_api_from_its_openapi(cli: CLI, daemon: Daemon) -> None:
    create_tenants(cli, *SLUGS)
    start_tenants(cli, "alpha")  # so logout, scan and qr meet a live worker too
    document = call(daemon.socket, "GET", "/v1/openapi.json").json()
    operations = operations_of(document)
    fuzzed = [op for op in operations if (op.method.upper(), op.path) not in NOT_FUZZED]
    assert len(fuzzed) == len(operations) - len(NOT_FUZZED)
    checker = ResponseChecker(document)
    try:
        for operation in fuzzed:
            # Each operation meets a live, linked worker (the previous one may have
            # stopped or unlinked it).
            live_and_linked(daemon, "alpha")

            def one(case: FuzzCase, operation: Operation = operation) -> None:
                shown, reply = send_case(daemon.socket, case)
                checker.check(operation, shown, reply)

            fuzz(operation, SLUGS, one)
    finally:
        # Whatever the fuzzing started is stopped, and no worker process is left.
        stopped = call_json(daemon.socket, "POST", "/v1/stop", {"all": True})
        poll_for(lambda: not daemon.worker_processes(), timeout=30)
    assert stopped.status == 200, stopped
    assert {w["state"] for w in stopped.json()["workers"]} == {"STOPPED"}
    # The fuzzing reached the handlers, not only the validation.
    assert 200 in checker.statuses["POST /v1/start"], checker.statuses
    assert 200 in checker.statuses["GET /v1/tenants/{slug}"], checker.statuses
    assert 404 in checker.statuses["GET /v1/tenants/{slug}"], checker.statuses
    assert 422 in checker.statuses["POST /v1/restart"], checker.statuses
    assert 200 in checker.statuses["POST /v1/tenants/{slug}/logout"], checker.statuses
    assert daemon.client.check_version()["pid"] == daemon.pid  # still the same daemon


@dataclass
class InProcessApi:
    socket: Path
    app: Starlette
    shutdowns: list[bool]


@contextlib.contextmanager
def in_process_api() -> Iterator[InProcessApi]:
    """`build_app` around a real, booted Supervisor on this test's database, served by
    uvicorn on a Unix socket from one event loop in a thread; asking it to shut down
    is only recorded."""
    import uvicorn

    from wactl.config import load_config
    from wactl.daemon.api import DaemonState, build_app
    from wactl.daemon.events import EventHub
    from wactl.daemon.supervisor import Supervisor
    from wactl.db.engine import make_engine

    runtime = Path(tempfile.mkdtemp(prefix="wt", dir="/tmp"))
    path = runtime / "api.sock"
    config = load_config(environ={**os.environ, "WACTL_PATHS_RUNTIME_DIR": str(runtime)})
    engine = make_engine(config.database_url)
    hub = EventHub()
    supervisor = Supervisor(config, engine, hub)
    shutdowns: list[bool] = []
    state = DaemonState(
        supervisor=supervisor,
        hub=hub,
        socket_path=str(path),
        request_shutdown=shutdowns.append,
        pid=os.getpid(),
    )
    app = build_app(state)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            uds=str(path),
            log_config=None,
            access_log=False,
            lifespan="off",
            http="h11",
            loop="asyncio",
        )
    )
    failures: list[BaseException] = []

    async def serve() -> None:
        await supervisor.boot()
        try:
            await server.serve()
        finally:
            await supervisor.shutdown(stop_workers=True)

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, name="in-process-api")
    thread.start()
    try:
        poll_for(lambda: server.started or not thread.is_alive(), timeout=30)
        if failures:
            raise failures[0]
        yield InProcessApi(path, app, shutdowns)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        engine.dispose()
        shutil.rmtree(runtime, ignore_errors=True)
    assert not thread.is_alive()
    assert not failures, failures


def test_fuzz_shutdown_in_process(db_url: str) -> None:
    from wactl.daemon.api import openapi_document

    (operation,) = [op for op in operations_of(openapi_document()) if op.path == "/v1/shutdown"]
    checker = ResponseChecker(openapi_document())
    with in_process_api() as api:

        def one(case: FuzzCase) -> None:
            before = len(api.shutdowns)
            shown, reply = send_case(api.socket, case)
            checker.check(operation, shown, reply)
            # Asked exactly once when accepted, never when refused.
            assert len(api.shutdowns) == before + (reply.status == 200), shown
            if reply.status == 200:
                assert reply.json()["stopping_workers"] is api.shutdowns[-1]

        fuzz(operation, (), one)
        shutdowns = list(api.shutdowns)
    assert checker.statuses["POST /v1/shutdown"] >= {200, 422}, checker.statuses
    assert set(shutdowns) <= {True, False} and shutdowns


# --- 3. malformed requests over the real socket ----------------------------------------


def error_of(reply: Reply) -> tuple[int, str, str | None]:
    """(status, error, hint) of a JSON error reply."""
    assert reply.headers.get("content-type") == "application/json", reply
    body = reply.json()
    assert set(body) == {"error", "hint"}, body
    return reply.status, body["error"], body["hint"]


def post(path: Path, target: str, body: bytes) -> tuple[int, str, str | None]:
    return error_of(call(path, "POST", target, body, {"Content-Type": "application/json"}))


NOT_JSON = (400, "the request body is not JSON", None)
NOT_AN_OBJECT = (422, "the request body must be a JSON object", None)
EITHER = (422, "give either 'tenants' (a non-empty list) or 'all': true", None)
NOT_A_LIST = (422, "'tenants' must be a list of slugs", None)
NOT_A_BOOL = (422, "'all' must be true or false", None)


def test_malformed_bodies(cli: CLI, daemon: Daemon, db_url: str) -> None:
    from sqlalchemy import func, select

    from wactl.db.models import PortalEventLog

    create_tenants(cli, "alpha")
    sock = daemon.socket
    for target in TARGET_PATHS:
        assert post(sock, target, b"{not json") == NOT_JSON, target
        assert post(sock, target, b'{"tenants": ["alpha"]') == NOT_JSON, target
        assert post(sock, target, b"\xff\xfe{}") == NOT_JSON, target  # not even UTF-8
        assert post(sock, target, b'["alpha"]') == NOT_AN_OBJECT, target
        assert post(sock, target, b'"alpha"') == NOT_AN_OBJECT, target
        assert post(sock, target, b"null") == NOT_AN_OBJECT, target
        assert post(sock, target, b'{"tenants": ["alpha"], "tenant": "alpha"}') == (
            422,
            "unknown field 'tenant'",
            "allowed: all, tenants",
        ), target
        assert post(sock, target, b'{"tenants": "a"}') == NOT_A_LIST, target
        assert post(sock, target, b'{"tenants": ["alpha", 1]}') == NOT_A_LIST, target
        assert post(sock, target, b'{"tenants": {"alpha": true}}') == NOT_A_LIST, target
        assert post(sock, target, b'{"all": "yes"}') == NOT_A_BOOL, target
        assert post(sock, target, b'{"all": 1}') == NOT_A_BOOL, target
        assert post(sock, target, b'{"tenants": ["alpha"], "all": true}') == EITHER, target
        assert post(sock, target, b"{}") == EITHER, target
        assert post(sock, target, b"") == EITHER, target  # no body reads as {}
        assert post(sock, target, b'{"tenants": []}') == EITHER, target
        assert post(sock, target, b'{"all": false}') == EITHER, target
    scan = "/v1/tenants/alpha/sandbox/scan"
    assert post(sock, scan, b'{"qr": 5}') == (422, "'qr' must be a string", None)
    assert post(sock, scan, b'{"code": "x"}') == (422, "unknown field 'code'", "allowed: qr")
    assert post(sock, scan, b"[1]") == NOT_AN_OBJECT
    # /v1/shutdown validates before it acts, so the daemon under test survives these.
    assert post(sock, "/v1/shutdown", b'{"stop_workers": "yes"}') == (
        422,
        "'stop_workers' must be true or false",
        None,
    )
    assert post(sock, "/v1/shutdown", b'{"now": true}') == (
        422,
        "unknown field 'now'",
        "allowed: stop_workers",
    )
    assert post(sock, "/v1/shutdown", b"{oops") == NOT_JSON
    # None of it started, stopped or audited anything.
    assert daemon.ps()["alpha"]["state"] == "STOPPED"
    assert daemon.client.check_version()["pid"] == daemon.pid
    with db_session(db_url) as session:
        actions = select(func.count()).select_from(PortalEventLog)
        assert session.scalar(actions.where(PortalEventLog.event_type != "tenant.created")) == 0


def test_unknown_tenant(cli: CLI, daemon: Daemon) -> None:
    create_tenants(cli, "alpha")
    sock = daemon.socket
    missing = (404, "no tenant 'x'", "see `wactl tenant list`")
    assert error_of(call(sock, "GET", "/v1/tenants/x")) == missing
    assert error_of(call(sock, "GET", "/v1/tenants/x/qr")) == missing
    assert post(sock, "/v1/tenants/x/logout", b"") == missing
    assert post(sock, "/v1/tenants/x/sandbox/scan", b"{}") == missing
    for target in TARGET_PATHS:
        assert post(sock, target, b'{"tenants": ["x"]}') == missing, target
    # Named with a real tenant, the real one is acted on and the unknown one reported.
    reply = call_json(sock, "POST", "/v1/stop", {"tenants": ["alpha", "x"]})
    assert reply.status == 200
    assert [w["slug"] for w in reply.json()["workers"]] == ["alpha"]
    assert reply.json()["errors"] == ["no tenant 'x'; see `wactl tenant list`"]


#: Slugs no tenant can have (see wactl.validation.SLUG_RE), percent-encoded for a path.
IMPOSSIBLE_PATH_SLUGS = {
    "nul": "%00",
    "nul-inside": "a%00b",
    "too-long": "x" * 200,
    "encoded-surrogate": "%ED%A0%80",
    "not-utf8": "%FF",
    "rtl-override": "%E2%80%AE",
}
#: The same, as JSON strings may carry them: a NUL, lone surrogates ("\ud800").
IMPOSSIBLE_BODY_SLUGS = {"nul": "\x00", "lone-surrogate": "\ud800", "low-surrogate": "a\udfffb"}


def test_impossible_slugs_are_unknown_tenants(daemon: Daemon) -> None:
    """A slug no tenant can have is an unknown tenant on every backend, never a 500
    (PostgreSQL refuses NUL bytes in text; neither driver encodes a lone surrogate)."""
    wrong = []
    for name, slug in IMPOSSIBLE_PATH_SLUGS.items():
        for target in (f"/v1/tenants/{slug}", f"/v1/tenants/{slug}/qr"):
            status, error, hint = error_of(call(daemon.socket, "GET", target))
            if (status, hint) != (404, "see `wactl tenant list`") or "no tenant" not in error:
                wrong.append(f"{name}: GET {target[:40]} -> {status} {error}")
    for name, slug in IMPOSSIBLE_BODY_SLUGS.items():
        body = json.dumps({"tenants": [slug]}).encode()  # \u escapes: valid JSON and UTF-8
        for target in TARGET_PATHS:
            status, error, hint = post(daemon.socket, target, body)
            if (status, hint) != (404, "see `wactl tenant list`") or "no tenant" not in error:
                wrong.append(f"{name}: POST {target} {body!r} -> {status} {error}")
    assert wrong == [], "\n".join(wrong)
    assert daemon.client.check_version()["pid"] == daemon.pid


def test_routing_errors(daemon: Daemon) -> None:
    sock = daemon.socket
    not_found = (404, "Not Found", None)
    for target in ("/v1/nope", "/v2/version", "/", "/v1/tenants/a/b/c", "/v1/openapi.yaml"):
        assert error_of(call(sock, "GET", target)) == not_found, target
    # A trailing slash is forgiven with a redirect (Starlette's redirect_slashes).
    reply = call(sock, "GET", "/v1/version/")
    assert (reply.status, reply.headers["location"]) == (307, "http://wactl/v1/version")
    not_allowed = (405, "Method Not Allowed", None)
    assert error_of(call(sock, "GET", "/v1/start")) == not_allowed
    assert error_of(call(sock, "DELETE", "/v1/tenants")) == not_allowed
    assert error_of(call(sock, "POST", "/v1/version")) == not_allowed
    assert error_of(call(sock, "PUT", "/v1/tenants/alpha")) == not_allowed
    assert error_of(call(sock, "GET", "/v1/shutdown")) == not_allowed
    assert daemon.client.check_version()["pid"] == daemon.pid


def test_method_not_allowed_names_the_allowed_methods(daemon: Daemon) -> None:
    """RFC 9110 section 15.5.6: a 405 response carries an Allow header."""
    reply = call(daemon.socket, "GET", "/v1/start")
    assert reply.status == 405
    assert reply.headers.get("allow") == "POST"
    reply = call(daemon.socket, "DELETE", "/v1/tenants")
    assert reply.status == 405
    assert sorted(reply.headers.get("allow", "").split(", ")) == ["GET", "HEAD"]


def test_wrong_protocol_header(daemon: Daemon) -> None:
    sock = daemon.socket
    hint = "run the same wactl version as the daemon, or `wactl daemon restart`"
    reply = call(sock, "GET", "/v1/tenants", headers={PROTOCOL_HEADER: "7"})
    assert error_of(reply) == (
        400,
        f"this daemon speaks protocol {PROTOCOL_VERSION}, the client 7",
        hint,
    )
    # Checked before anything else: a bad body behind a wrong header is a protocol error.
    reply = call(sock, "POST", "/v1/start", b"{not json", {PROTOCOL_HEADER: "0"})
    assert error_of(reply) == (
        400,
        f"this daemon speaks protocol {PROTOCOL_VERSION}, the client 0",
        hint,
    )
    # The right version is accepted, and so is no header at all (curl sends none).
    reply = call(sock, "GET", "/v1/version", headers={PROTOCOL_HEADER: str(PROTOCOL_VERSION)})
    assert reply.status == 200
    assert call(sock, "GET", "/v1/version").status == 200


def test_daemon_echoes_the_protocol_header(daemon: Daemon) -> None:
    """wactl.ipc.protocol: "Header every client sends, and the daemon echoes"."""
    reply = call(daemon.socket, "GET", "/v1/version", headers={PROTOCOL_HEADER: "1"})
    assert reply.headers.get(PROTOCOL_HEADER.lower()) == str(PROTOCOL_VERSION)


#: Requests no HTTP/1.1 parser should accept.
GARBAGE = {
    "one-word": b"HELLO\r\n\r\n",
    "method-only": b"GET\r\n\r\n",
    "not-http": b"GET /v1/version FOO/1.1\r\n\r\n",
    "bad-header": b"GET /v1/version HTTP/1.1\r\nno colon here\r\n\r\n",
    "tls-hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),
    "binary": b"\x00\xff\x00\xff\r\n\r\n",
    "huge-line": b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
    "short-body": b"POST /v1/start HTTP/1.1\r\nContent-Length: 50\r\n\r\n{",
    "negative-length": b"POST /v1/start HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
}


def test_garbage_requests(daemon: Daemon) -> None:
    for name, garbage in GARBAGE.items():
        raw = raw_exchange(daemon.socket, garbage)
        # A 4xx, or the connection closed without an answer; never a 5xx or a hang.
        if raw:
            assert 400 <= status_of(raw) < 500, (name, raw[:300])
        # And the daemon keeps serving.
        reply = call(daemon.socket, "GET", "/v1/version")
        assert (reply.status, reply.json()["pid"]) == (200, daemon.pid), name


# --- 4. curl ---------------------------------------------------------------------------


def test_curl_over_the_unix_socket(cli: CLI, daemon: Daemon) -> None:
    from wactl.daemon.api import openapi_document

    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("the curl binary is not installed, so the documented example cannot run")
    create_tenants(cli, "alpha", "beta")
    # The example the OpenAPI document gives, as written there.
    example = re.search(r"\((curl [^)]*)\)", openapi_document()["info"]["description"])
    assert example is not None
    words = example.group(1).replace("SOCK", str(daemon.socket)).split()
    assert words[1:3] == ["--unix-socket", str(daemon.socket)]
    trailer = ["--silent", "--show-error", "--write-out", r"\n%{http_code} %{content_type}"]
    result = subprocess.run(
        [curl, *words[1:], *trailer], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    body, status_line = result.stdout.rsplit("\n", 1)
    assert status_line == "200 application/json"
    assert [row["slug"] for row in json.loads(body)] == ["alpha", "beta"]
    # An error reads the same through curl.
    result = subprocess.run(
        [
            curl,
            "--unix-socket",
            str(daemon.socket),
            "--data",
            '{"all": "yes"}',
            *trailer,
            "http://wactl/v1/start",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    body, status_line = result.stdout.rsplit("\n", 1)
    assert status_line == "422 application/json"
    assert json.loads(body) == {"error": "'all' must be true or false", "hint": None}


# --- 5. the client explains why it cannot reach a daemon -------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory under /tmp with a path short enough for AF_UNIX sockets."""
    path = Path(tempfile.mkdtemp(prefix="wt", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class FakeDaemon(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A stand-in on a Unix socket; its handlers may wait on ``release`` until the end."""

    daemon_threads = True

    def __init__(self, path: Path, handler: type[socketserver.BaseRequestHandler]) -> None:
        self.release = threading.Event()
        self.requests: list[str] = []
        self.accepted = 0
        super().__init__(str(path), handler)


class OldProtocolHandler(http.server.BaseHTTPRequestHandler):
    """Answers like a daemon of another wactl version: protocol 99."""

    def do_GET(self) -> None:
        assert isinstance(self.server, FakeDaemon)
        self.server.requests.append(self.path)
        if self.path != "/v1/version":
            self.send_error(404)
            return
        body = json.dumps({"protocol": 99, "version": "9.9.9", "pid": 4242}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: nothing on stderr during the tests."""


class SilentHandler(socketserver.BaseRequestHandler):
    """Accepts the connection, reads nothing, answers nothing."""

    def handle(self) -> None:
        assert isinstance(self.server, FakeDaemon)
        self.server.accepted += 1
        self.server.release.wait(timeout=60)


@contextlib.contextmanager
def fake_daemon(path: Path, handler: type[socketserver.BaseRequestHandler]) -> Iterator[FakeDaemon]:
    server = FakeDaemon(path, handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-daemon"
    )
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def client_error(path: Path, timeout: float = 10.0) -> DaemonError:
    with pytest.raises(DaemonError) as caught:
        DaemonClient(path, timeout=timeout).request("GET", "/v1/tenants")
    return caught.value


def test_client_no_socket(cli: CLI, short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = short_dir / "wactld.sock"
    error = client_error(sock)
    assert isinstance(error, DaemonNotRunning)
    line = f"the daemon is not running (no socket at {sock}); run `wactl daemon start`"
    assert error.one_line() == line
    monkeypatch.setenv("WACTL_PATHS_RUNTIME_DIR", str(short_dir))
    assert cli("daemon", "status") == Result(7, "", f"error: {line}\n")


def test_client_stale_socket(cli: CLI, short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = short_dir / "wactld.sock"
    # What a daemon killed with SIGKILL leaves: the socket file, nobody listening.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(sock))
    assert stat.S_ISSOCK(sock.stat().st_mode)
    error = client_error(sock)
    assert isinstance(error, DaemonNotRunning)
    line = (
        f"the daemon is not running ({sock} is a stale socket left by a daemon that died); "
        "run `wactl daemon start`, which replaces it"
    )
    assert error.one_line() == line
    monkeypatch.setenv("WACTL_PATHS_RUNTIME_DIR", str(short_dir))
    assert cli("daemon", "status") == Result(7, "", f"error: {line}\n")


def test_client_protocol_mismatch(
    cli: CLI, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = short_dir / "wactld.sock"
    line = (
        f"the daemon (wactl 9.9.9, pid 4242) speaks protocol 99, this wactl speaks "
        f"{PROTOCOL_VERSION}; run `wactl daemon restart` to run this version's daemon"
    )
    with fake_daemon(sock, OldProtocolHandler) as server:
        error = client_error(sock)
        assert not isinstance(error, DaemonNotRunning)  # it runs: no autostart over it
        assert error.one_line() == line
        # The version is checked first: the request itself was never sent.
        assert server.requests == ["/v1/version"]
        monkeypatch.setenv("WACTL_PATHS_RUNTIME_DIR", str(short_dir))
        assert cli("daemon", "status") == Result(7, "", f"error: {line}\n")
        assert cli("ps") == Result(7, "", f"error: {line}\n")
        assert server.requests == ["/v1/version"] * 3


def test_client_timeout(short_dir: Path) -> None:
    sock = short_dir / "wactld.sock"
    with fake_daemon(sock, SilentHandler) as server:
        error = client_error(sock, timeout=0.2)
        assert not isinstance(error, DaemonNotRunning)
        assert error.one_line() == (
            f"the daemon on {sock} did not answer within 0.2 s; see `wactl daemon logs`"
        )
        poll_for(lambda: server.accepted == 1)


PERMISSION_SCRIPT = """
import os, sys
from pathlib import Path

from wactl.cli.app import run
from wactl.errors import DaemonError
from wactl.ipc.client import DaemonClient

if os.getuid() == 0:  # drop to nobody, as another user would run wactl
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
try:
    DaemonClient(Path(sys.argv[1])).request("GET", "/v1/tenants")
except DaemonError as exc:
    print(type(exc).__name__, exc.one_line(), flush=True)
sys.exit(run(["daemon", "status"]))
"""


def test_client_permission_denied(short_dir: Path) -> None:
    sock = short_dir / "wactld.sock"
    line = (
        f"permission denied on the daemon socket {sock}; "
        "run wactl as the user who started the daemon"
    )
    home = short_dir / "home"
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("XDG_")},
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".state"),
        "XDG_DATA_HOME": str(home / ".data"),
        "WACTL_PATHS_RUNTIME_DIR": str(short_dir),
    }
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(sock))
        listener.listen(8)
        if os.geteuid() == 0:
            # root's connect() ignores file modes; the client runs as nobody instead,
            # who may enter the directory (0755) but not write to the socket (0600).
            short_dir.chmod(0o755)
            sock.chmod(0o600)
        else:
            sock.chmod(0o000)
        result = subprocess.run(
            [sys.executable, "-c", PERMISSION_SCRIPT, str(sock)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert (result.returncode, result.stdout, result.stderr) == (
        7,
        f"DaemonError {line}\n",
        f"error: {line}\n",
    )


# --- 6. metrics ------------------------------------------------------------------------

METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE_RE = re.compile(rf"({METRIC_NAME})(?:\{{(.*)\}})? (\S+)(?: -?\d+)?")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)')
HELP_TEXT_RE = re.compile(r"(?:[^\\\n]|\\[\\n])*")
UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Exposition:
    helps: dict[str, str]
    types: dict[str, str]
    samples: list[Sample]

    def series(self, name: str, **labels: str) -> list[Sample]:
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]


def _labels(text: str, where: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = LABEL_RE.match(text, position)
        assert match is not None, f"{where}: bad label at {text[position:]!r}"
        name, raw = match.groups()
        assert name not in labels, f"{where}: label {name} twice"
        labels[name] = re.sub(r"\\(.)", lambda m: UNESCAPE[m.group(1)], raw)
        position = match.end()
    return labels


def parse_prometheus(text: str) -> Exposition:
    """Parse the text exposition format 0.0.4 strictly: HELP and TYPE once per family and
    before its samples, a family's samples together, escaped label values, no duplicate
    series, float values."""
    assert text.endswith("\n")
    result = Exposition({}, {}, [])
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    done: set[str] = set()
    current: str | None = None
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number} {line!r}"
        if line.startswith(("# HELP ", "# TYPE ")):
            name, _, rest = line[7:].partition(" ")
            assert re.fullmatch(METRIC_NAME, name), where
            assert name not in done and name != current, f"{where}: after its samples"
            if line.startswith("# HELP "):
                assert name not in result.helps, f"{where}: second HELP"
                assert HELP_TEXT_RE.fullmatch(rest), where
                result.helps[name] = rest
            else:
                assert name not in result.types, f"{where}: second TYPE"
                assert rest in {"counter", "gauge", "histogram", "summary", "untyped"}, where
                result.types[name] = rest
            continue
        assert line and not line.startswith("#"), f"{where}: unexpected"
        match = SAMPLE_RE.fullmatch(line)
        assert match is not None, where
        name, label_text, value = match.groups()
        assert name in result.helps and name in result.types, f"{where}: no HELP/TYPE before"
        if name != current:
            assert name not in done, f"{where}: {name} samples are not together"
            if current is not None:
                done.add(current)
            current = name
        labels = _labels(label_text or "", where)
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"{where}: duplicate series"
        seen.add(key)
        result.samples.append(Sample(name, labels, float(value)))
    return result


PER_TENANT = ("wactl_worker_up", "wactl_worker_state", "wactl_worker_restarts_total")
PER_LIVE_TENANT = (
    "wactl_worker_cpu_percent",
    "wactl_worker_memory_rss_bytes",
    "wactl_worker_memory_uss_bytes",
    "wactl_worker_heartbeat_age_seconds",
)
STATES = ("STOPPED", "STARTING", "RUNNING", "STOPPING", "BACKOFF", "FATAL")


def test_metrics_are_valid_prometheus_text(cli: CLI, daemon: Daemon, db_url: str) -> None:
    from wactl.db.models import Tenant
    from wactl.db.tenants import new_tenant_rows
    from wactl.enums import TenantStatus

    create_tenants(cli, "alpha", "beta")
    # A slug that needs every escape in a label value. `tenant create` refuses it, so it
    # is written to the database directly, as an older or foreign writer could.
    odd = 'o"d\\d\nslug'
    with db_session(db_url) as session:
        tenant = Tenant(slug=odd, name="Odd", status=TenantStatus.STOPPED)
        new_tenant_rows(tenant)
        session.add(tenant)
    start_tenants(cli, "alpha")
    slugs = ["alpha", "beta", odd]
    # Listing the tenants makes the daemon learn of them; /v1/metrics alone does not yet
    # (test_metrics_include_tenants_created_since_boot).
    assert sorted(daemon.ps()) == sorted(slugs)
    # Wait for two samples of the live worker, so every optional series has a value.
    poll_for(
        lambda: all(
            daemon.ps()["alpha"][key] is not None for key in ("cpu_percent", "memory_uss_bytes")
        ),
        timeout=15,
    )
    reply = call(daemon.socket, "GET", "/v1/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = reply.body.decode("utf-8")
    metrics = parse_prometheus(text)
    assert 'tenant="o\\"d\\\\d\\nslug"' in text  # the escaped form, on the wire
    assert metrics.types["wactl_worker_restarts_total"] == "counter"
    assert metrics.series("wactl_daemon_info")[0].labels == {"version": wactl.__version__}
    by_state = {s.labels["state"]: s.value for s in metrics.series("wactl_workers")}
    assert by_state == {
        state: float(state == "RUNNING") + 2 * (state == "STOPPED") for state in STATES
    }
    for slug in slugs:
        for name in PER_TENANT:
            assert metrics.series(name, tenant=slug), (name, slug)
        states = {
            s.labels["state"]: s.value for s in metrics.series("wactl_worker_state", tenant=slug)
        }
        expected = "RUNNING" if slug == "alpha" else "STOPPED"
        assert states == {state: float(state == expected) for state in STATES}, slug
        (up,) = metrics.series("wactl_worker_up", tenant=slug)
        assert up.value == float(slug == "alpha")
    for name in PER_LIVE_TENANT:
        assert [s.labels for s in metrics.series(name)] == [{"tenant": "alpha"}], name
    (uss,) = metrics.series("wactl_worker_memory_uss_bytes")
    assert uss.value > 1_000_000


def test_message_counts_reach_ps_and_metrics_and_survive_restarts(cli: CLI, daemon: Daemon) -> None:
    """Messages in/out in the last hour (what the TUI shows) come with the worker's
    heartbeats; a restarted worker seeds them from the log, the Prometheus counters
    count each message once, and a restarted daemon keeps them."""
    create_tenants(cli, "alpha")
    start_tenants(cli, "alpha")
    poll_for(lambda: bool(daemon.ps()["alpha"]["has_qr"]), timeout=30)
    assert cli("sandbox", "scan", "alpha").code == 0

    def send(body: dict[str, Any]) -> str:
        reply = call_json(daemon.socket, "POST", "/v1/tenants/alpha/sandbox/send", body)
        assert reply.status == 200, reply.body
        status: str = reply.json()["status"]
        return status

    for n in range(3):
        assert send({"from": f"+1555020{n:04d}", "text": "hi", "id": f"c{n}"}) == "replied"
    assert send({"from": "+15550200000", "text": "hi", "id": "c0"}) == "duplicate"
    owner = {"from": "+15550200001", "text": "Ana here", "id": "o1", "from_me": True}
    assert send(owner) == "ignored"

    def counts() -> tuple[Any, ...]:
        row = daemon.ps()["alpha"]
        return tuple(row[f"messages_{d}_{w}"] for w in ("1h", "total") for d in ("in", "out"))

    poll_for(lambda: counts() == (3, 4, 3, 4), timeout=30)
    metrics = parse_prometheus(call(daemon.socket, "GET", "/v1/metrics").body.decode())
    assert metrics.types["wactl_messages_total"] == "counter"
    assert {
        (s.name, s.labels["direction"]): s.value
        for name in ("wactl_worker_messages_last_hour", "wactl_messages_total")
        for s in metrics.series(name, tenant="alpha")
    } == {
        ("wactl_worker_messages_last_hour", "in"): 3.0,
        ("wactl_worker_messages_last_hour", "out"): 4.0,
        ("wactl_messages_total", "in"): 3.0,
        ("wactl_messages_total", "out"): 4.0,
    }
    table = cli("ps")
    assert table.code == 0 and "IN/OUT" in table.out
    assert re.search(r"^alpha .* 3/4 ", table.out, re.MULTILINE), table.out

    # A new worker process: the last hour comes back from the log, the counters do not
    # count the same messages twice, and new messages add to both.
    old = daemon.ps()["alpha"]["pid"]
    assert cli("tenant", "restart", "alpha").code == 0
    poll_for(lambda: daemon.ps()["alpha"]["pid"] not in (None, old), timeout=30)
    poll_for(lambda: counts() == (3, 4, 3, 4), timeout=30)
    assert send({"from": "+15550209999", "text": "hi", "id": "c9"}) == "replied"
    poll_for(lambda: counts() == (4, 5, 4, 5), timeout=30)

    # A new daemon: the totals are the log's, not the new daemon's (they read 0/0 while
    # the last hour read 4/5); the worker went on and keeps counting.
    worker = daemon.ps()["alpha"]["pid"]
    assert cli("daemon", "restart").code == 0
    assert daemon.process is not None
    daemon.process.wait(timeout=10)
    daemon.process = None  # the CLI started the new daemon; the teardown finds it by socket
    assert daemon.ps()["alpha"]["pid"] == worker
    poll_for(lambda: counts() == (4, 5, 4, 5), timeout=30)
    assert send({"from": "+15550209998", "text": "hi", "id": "c8"}) == "replied"
    poll_for(lambda: counts() == (5, 6, 5, 6), timeout=30)
    # A stopped tenant keeps its totals across a daemon restart too (read from the log).
    assert cli("tenant", "stop", "alpha").code == 0
    assert cli("daemon", "restart").code == 0
    row = daemon.ps()["alpha"]
    assert (row["messages_in_total"], row["messages_out_total"]) == (5, 6)
    metrics = parse_prometheus(call(daemon.socket, "GET", "/v1/metrics").body.decode())
    series = metrics.series("wactl_messages_total", tenant="alpha")
    assert {s.labels["direction"]: s.value for s in series} == {"in": 5.0, "out": 6.0}


def test_metrics_include_tenants_created_since_boot(cli: CLI, daemon: Daemon) -> None:
    """Prometheus scrapes /v1/metrics alone: a tenant created after the daemon started
    must appear without anyone listing the tenants first. So must /v1/status count it."""
    create_tenants(cli, "gamma")
    metrics = parse_prometheus(call(daemon.socket, "GET", "/v1/metrics").body.decode())
    assert [s.value for s in metrics.series("wactl_worker_up", tenant="gamma")] == [0.0]
    status = call(daemon.socket, "GET", "/v1/status").json()
    assert status["workers"]["STOPPED"] == 1

"""Commands that touch worker processes, all through the daemon: `wactl ps`,
`wactl tenant start | stop | restart | qr | logout` and `wactl sandbox scan`.

The CLI never forks or signals a worker itself (DESIGN.md section 1).
"""

from __future__ import annotations

import inspect
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from wactl.cli.context import JsonFlag, Slug, Slugs, app_context, wait_option
from wactl.enums import WORKER_STATE_MEANINGS

if TYPE_CHECKING:
    from rich.console import Console

    from wactl.ipc.client import DaemonClient

AllFlag = Annotated[bool, typer.Option("--all", help="Every tenant.")]
WaitTimeout = Annotated[float, wait_option("Seconds to wait for the workers.")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="Return without waiting.")]


def _client(ctx: typer.Context) -> DaemonClient:
    from wactl.cli.daemon_client import client_for

    return client_for(app_context(ctx))


def ps(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List every tenant's worker: state, pid, uptime, restarts, CPU, memory, heartbeat,
    messages in/out in the last hour (IN/OUT)."""
    from wactl.cli.output import emit_json

    rows: list[dict[str, Any]] = _client(ctx).request("GET", "/v1/tenants")
    if json_output:
        emit_json(rows)
        return
    app = app_context(ctx)
    if not rows:
        app.err_console.print("no tenants yet; create one with `wactl tenant create`")
        return
    print_ps(app.console, rows)
    _warn_if_database_fails(ctx)


ps.__doc__ = (
    inspect.cleandoc(ps.__doc__ or "")
    + "\n\nStates: "
    + " ".join(f"{state}: {meaning}." for state, meaning in WORKER_STATE_MEANINGS.items())
)


def print_ps(console: Console, rows: list[dict[str, Any]]) -> None:
    """`wactl ps` for people: /v1/tenants views as a table that fits the console."""
    from wactl.cli.console import Column, print_table
    from wactl.formatting import duration, human_bytes
    from wactl.ipc.protocol import worker_error_text

    # At 80 columns the least telling figures go first (ENGINE, BEAT, CPU%...); slug,
    # state, pid and restarts stay whole, and the last error gets a line of its own.
    columns = (
        Column("SLUG"),
        Column("STATE"),
        Column("PID", right=True),
        Column("UPTIME", right=True, drop=1),
        Column("RST", right=True),
        Column("CPU%", right=True, drop=4),
        Column("MEM(USS)", right=True, drop=3),
        Column("BEAT", right=True, drop=5),
        Column("IN/OUT", right=True, drop=2),
        Column("ENGINE", drop=6),
        Column("LAST ERROR", below="cut"),
    )
    print_table(
        console,
        columns,
        [
            (
                row["slug"],
                row["state"],
                row["pid"] or "-",
                duration(row["uptime_seconds"]),
                row["restarts"],
                "-" if row["cpu_percent"] is None else f"{row['cpu_percent']:.1f}",
                human_bytes(row["memory_uss_bytes"]),
                duration(row["heartbeat_age_seconds"]),
                _in_out(row.get("messages_in_1h"), row.get("messages_out_1h")),
                row["engine"],
                " ".join(worker_error_text(row).split()),
            )
            for row in rows
        ],
    )


def _warn_if_database_fails(ctx: typer.Context) -> None:
    """The daemon serves what it knows when its database fails: say so."""
    import datetime as dt

    from wactl.formatting import local_time

    status: dict[str, Any] = _client(ctx).request("GET", "/v1/status")
    database = status.get("database") or {}
    if database.get("ok", True):
        return
    since = database.get("since")
    when = local_time(dt.datetime.fromisoformat(since)) if since else "a while"
    app_context(ctx).err_console.print(
        f"the daemon's database fails (since {when}): {database.get('problem')}; "
        "this is what the daemon knew",
        markup=False,
        soft_wrap=True,
    )


def _in_out(inbound: int | None, outbound: int | None) -> str:
    return "-" if inbound is None or outbound is None else f"{inbound}/{outbound}"


def _targets(slugs: list[str] | None, everything: bool) -> dict[str, Any]:
    from wactl.errors import UsageError

    if everything and slugs:
        raise UsageError("give tenants or --all, not both")
    if not everything and not slugs:
        raise UsageError("name at least one tenant, or give --all")
    return {"all": True} if everything else {"tenants": slugs}


def _wait_for(
    client: DaemonClient, slugs: list[str], done: set[str], timeout: float
) -> list[dict[str, Any]]:
    """Poll until every tenant's state is in ``done`` (or FATAL); the final views."""
    from wactl.errors import WaitTimeoutError

    deadline = time.monotonic() + timeout
    wanted = set(slugs)
    while True:
        views = [v for v in client.request("GET", "/v1/tenants") if v["slug"] in wanted]
        if all(v["state"] in done or v["state"] == "FATAL" for v in views):
            return views
        if time.monotonic() > deadline:
            waiting = sorted(
                (v for v in views if v["state"] not in done), key=lambda v: str(v["slug"])
            )
            raise WaitTimeoutError(
                f"still waiting after {timeout:g} s for: "
                + ", ".join(f"{v['slug']} ({v['state']})" for v in waiting),
                hint="`wactl ps` shows each worker's last error, and "
                "`wactl tenant logs SLUG --worker` its log",
            )
        time.sleep(0.1)


def _act(
    ctx: typer.Context,
    action: str,
    slugs: list[str] | None,
    everything: bool,
    *,
    wait: bool,
    timeout: float,
) -> None:
    from wactl.errors import ConflictError

    app = app_context(ctx)
    client = _client(ctx)
    answer = client.request(
        "POST", f"/v1/{action}", _targets(slugs, everything), timeout=max(timeout, 30.0)
    )
    app.changed(f"the daemon took the {action} request")
    for message in answer.get("errors", []):
        app.err_console.print(f"error: {message}")
    workers = answer["workers"]
    names = [w["slug"] for w in workers]
    if wait and action in ("start", "restart") and names:
        workers = _wait_for(client, names, {"RUNNING"}, timeout)
    for worker in workers:
        detail = f" (pid {worker['pid']})" if worker["pid"] else ""
        reason = f": {worker['last_error']}" if worker["state"] == "FATAL" else ""
        app.err_console.print(f"{worker['slug']}: {worker['state']}{detail}{reason}")
    failed = [w["slug"] for w in workers if w["state"] == "FATAL"]
    if failed:
        raise ConflictError(
            f"quarantined (FATAL): {', '.join(failed)}",
            hint="fix what its last error says (`wactl tenant logs SLUG --worker` has more), "
            f"then `wactl tenant start {' '.join(failed)}` starts it again and clears the "
            "quarantine",
        )
    if answer.get("errors"):
        raise ConflictError(f"{len(answer['errors'])} tenant(s) could not be {action}ed")


def start(
    ctx: typer.Context,
    slugs: Slugs = None,
    everything: AllFlag = False,
    no_wait: NoWait = False,
    timeout: WaitTimeout = 60.0,
) -> None:
    """Start tenants' workers and wait until they are RUNNING (their engine has started;
    a FATAL one exits 6). Starts the daemon if needed."""
    _act(ctx, "start", slugs, everything, wait=not no_wait, timeout=timeout)


def stop(
    ctx: typer.Context,
    slugs: Slugs = None,
    everything: AllFlag = False,
    timeout: WaitTimeout = 60.0,
) -> None:
    """Stop tenants' workers: SIGTERM, a grace period, then SIGKILL; nothing is left behind."""
    _act(ctx, "stop", slugs, everything, wait=True, timeout=timeout)


def restart(
    ctx: typer.Context,
    slugs: Slugs = None,
    everything: AllFlag = False,
    no_wait: NoWait = False,
    timeout: WaitTimeout = 60.0,
) -> None:
    """Restart tenants' workers gracefully (clears a quarantine and the crash history)."""
    _act(ctx, "restart", slugs, everything, wait=not no_wait, timeout=timeout)


def _draw_qr(payload: str, *, clear: bool) -> None:
    import io

    import segno

    buffer = io.StringIO()
    segno.make(payload, error="m").terminal(out=buffer, compact=True, border=2)
    if clear:
        sys.stdout.write("\x1b[H\x1b[2J")
    sys.stdout.write(buffer.getvalue())
    sys.stdout.flush()


def qr(
    ctx: typer.Context,
    slug: Slug,
    wait: Annotated[
        bool, typer.Option("--wait", help="Redraw as it rotates; return once linked.")
    ] = False,
    timeout: Annotated[float, wait_option("Seconds to wait.")] = 300.0,
) -> None:
    """Draw the QR code to scan with the business's phone (WhatsApp > Linked devices).

    With --wait, redraws when the QR rotates and exits 0 once the phone is linked, or 9
    when --timeout runs out.
    """
    from wactl.errors import ConflictError, WaitTimeoutError

    app = app_context(ctx)
    client = _client(ctx)
    path = f"/v1/tenants/{slug}/qr"
    deadline = time.monotonic() + timeout
    shown: str | None = None
    interactive = sys.stdout.isatty()
    while True:
        info = client.request("GET", path)
        if info["session_state"] == "CONNECTED":
            app.err_console.print(f"{slug}: linked")
            return
        if info["state"] == "FATAL":
            raise ConflictError(
                f"tenant '{slug}' was given up on (FATAL): {info.get('last_error') or '?'}",
                hint="fix what it says (`wactl tenant logs "
                f"{slug} --worker` has more), then `wactl tenant start {slug}` starts it "
                "again and clears the quarantine",
            )
        if info["state"] not in ("STARTING", "RUNNING", "BACKOFF"):
            raise ConflictError(
                f"tenant '{slug}' is not running (state {info['state']})",
                hint=f"start it with `wactl tenant start {slug}`",
            )
        if info["qr"] and info["qr"] != shown:
            _draw_qr(info["qr"], clear=interactive and shown is not None)
            shown = info["qr"]
            from wactl.cli.console import print_wrapped

            # Two lines, each wrapped at the terminal's width (a slug is up to 40 long).
            print_wrapped(
                app.err_console,
                f"{slug}: scan this with WhatsApp on the business's phone:\n"
                "Settings > Linked devices > Link a device",
            )
            if not wait:
                return
        if time.monotonic() > deadline:
            raise WaitTimeoutError(f"{slug}: not linked after {timeout:g} s")
        time.sleep(0.2)


def logout(ctx: typer.Context, slug: Slug) -> None:
    """Log the tenant out of WhatsApp; it shows a new QR to link again."""
    _client(ctx).request("POST", f"/v1/tenants/{slug}/logout", {})
    app_context(ctx).changed(f"'{slug}' was logged out")
    app_context(ctx).err_console.print(f"{slug}: logged out; a new QR is showing")


def sandbox_scan(
    ctx: typer.Context,
    slug: Slug,
    qr_payload: Annotated[
        str | None, typer.Option("--qr", help="The QR to scan (default: the current one).")
    ] = None,
) -> None:
    """Link a sandbox tenant, as a phone scanning its QR would."""
    if qr_payload is not None and not qr_payload.strip():
        from wactl.errors import UsageError

        raise UsageError("--qr: must not be empty", hint="leave --qr out to scan the current QR")
    body = {"qr": qr_payload} if qr_payload is not None else {}
    _client(ctx).request("POST", f"/v1/tenants/{slug}/sandbox/scan", body)
    app_context(ctx).changed(f"'{slug}' was linked")
    app_context(ctx).err_console.print(f"{slug}: linked (sandbox)")


FromOpt = Annotated[
    str, typer.Option("--from", metavar="+E164", help="The customer's WhatsApp number.")
]


#: The longest text a customer can send on WhatsApp (its documented limit); also the
#: most `sandbox chat` reads for one line.
MAX_MESSAGE_CHARS = 65536


def _check_ready(client: DaemonClient, slug: str) -> None:
    """Raise, naming exactly what to run, when the sandbox tenant cannot take a
    customer's message yet: its worker is not running, or its phone is not linked."""
    from wactl.errors import ConflictError

    view = client.request("GET", f"/v1/tenants/{slug}")
    if view["engine"] != "sandbox":
        return  # the daemon's own answer says what to do with a real engine
    linked = view["session_state"] == "CONNECTED"
    if view["state"] not in ("STARTING", "RUNNING"):
        scan = "" if linked else f", then `wactl sandbox scan {slug}` to link it"
        raise ConflictError(
            f"tenant '{slug}' is not running (state {view['state']})",
            hint=f"run `wactl tenant start {slug}`{scan}",
        )
    if not linked:
        raise ConflictError(
            f"tenant '{slug}' is not linked yet",
            hint=f"run `wactl sandbox scan {slug}` (the sandbox plays the phone scanning its QR)",
        )


def _send(client: DaemonClient, slug: str, number: str, text: str) -> dict[str, Any]:
    from wactl.errors import ConflictError, UsageError

    if len(text) > MAX_MESSAGE_CHARS:
        raise UsageError(
            f"the message is {len(text)} characters long; WhatsApp's limit is {MAX_MESSAGE_CHARS}"
        )
    try:
        answer: dict[str, Any] = client.request(
            "POST", f"/v1/tenants/{slug}/sandbox/send", {"from": number, "text": text}, timeout=90
        )
    except ConflictError:
        _check_ready(client, slug)  # says what to run, when that is the reason
        raise
    return answer


_WHY_IGNORED = {
    "paused": "the bot is paused in this chat (a person is answering)",
    "rate_limited": "rate limited",
    "owner": "sent as the business",
}


def _describe(answer: dict[str, Any]) -> str:
    """The bot's reply, or why there is none, for people. The reply is data: the
    template's words with the owner's business information and texts in them."""
    from wactl.display import printable

    if answer["status"] == "replied":
        return printable(answer["reply"], multiline=True)
    reason = printable(answer.get("reason") or "")
    if answer["status"] == "ignored":
        return f"(no reply: {_WHY_IGNORED.get(reason, reason)})"
    return f"(no reply: {answer['status']}{': ' + reason if reason else ''})"


def sandbox_send(
    ctx: typer.Context,
    slug: Slug,
    text: Annotated[str, typer.Argument(help="What the customer writes.")],
    sender: FromOpt = "+15551234567",
    json_output: JsonFlag = False,
) -> None:
    """Write to a sandbox tenant as a customer and print the bot's reply.

    The tenant's worker must be running (`wactl tenant start`) and linked (`wactl
    sandbox scan`); exit status 6 otherwise, naming the command to run.
    """
    from wactl.cli.output import emit_json
    from wactl.validation import normalize_chat_number

    number = normalize_chat_number(sender, "--from")
    answer = _send(_client(ctx), slug, number, text)
    app_context(ctx).changed("the message was delivered")
    if json_output:
        emit_json(answer)
        return
    sys.stdout.write(_describe(answer) + "\n")


def sandbox_chat(ctx: typer.Context, slug: Slug, sender: FromOpt = "+15551234567") -> None:
    """Talk to a sandbox tenant's bot as a customer, line by line (Ctrl-D ends).

    Like `sandbox send`, it needs the tenant running and linked. Each line is one
    message, of at most 65536 characters (WhatsApp's limit); a longer line ends the
    chat with exit status 2.
    """
    from wactl.errors import UsageError
    from wactl.validation import normalize_chat_number

    app = app_context(ctx)
    number = normalize_chat_number(sender, "--from")
    client = _client(ctx)
    _check_ready(client, slug)
    app.err_console.print(f"chatting with '{slug}' as {number}; Ctrl-D ends")
    interactive = sys.stdin.isatty()
    line_number = 0
    while True:
        if interactive:
            sys.stdout.write("you> ")
            sys.stdout.flush()
        # Bounded: a line without an end (a file of one huge line) is not read whole.
        line = sys.stdin.readline(MAX_MESSAGE_CHARS + 1)
        if not line:
            break
        line_number += 1
        if len(line.rstrip("\r\n")) > MAX_MESSAGE_CHARS:
            raise UsageError(
                f"line {line_number} is longer than {MAX_MESSAGE_CHARS} characters, "
                "WhatsApp's limit for a message"
            )
        text = line.strip()
        if not text:
            continue
        answer = _send(client, slug, number, text)
        app.changed("the message was delivered")
        sys.stdout.write(f"bot> {_describe(answer)}\n")
        sys.stdout.flush()

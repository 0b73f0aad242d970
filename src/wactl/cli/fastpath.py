"""The fast path of `wactl ps --json`: status polled by scripts, without typer and click.

`wactl ps --json` is what monitoring scripts run every few seconds, so it should cost
no more than `supervisorctl status` (~85 ms here). The full CLI spends ~60 ms importing
typer, click and the command modules before it does anything; this path imports only
the config loader and talks HTTP over the Unix socket with a raw socket (http.client
alone costs ~15 ms), ~35 ms in all (bench/supervise.py).

It handles only the plain case: a running daemon of the same protocol answering 200.
Anything else (no daemon, an error, another protocol) returns None, and the full CLI
runs instead, with its autostart, its explanations and its exit codes, so the two
paths never disagree about anything but speed (tests/test_fastpath.py checks it).
"""

from __future__ import annotations

import json
import socket
import sys

from wactl.display import json_text
from wactl.ipc.protocol import PROTOCOL_HEADER, PROTOCOL_VERSION, socket_path


def _args(argv: list[str]) -> tuple[bool, str | None]:
    """(whether ``argv`` is exactly `[--config PATH] ps --json`, the --config value)."""
    config: str | None = None
    rest = list(argv)
    if rest[:1] in (["--config"], ["-c"]) and len(rest) >= 2:
        config, rest = rest[1], rest[2:]
    elif rest[:1] and rest[0].startswith("--config="):
        config, rest = rest[0].split("=", 1)[1], rest[1:]
    return rest == ["ps", "--json"], config


def _get(path: str, sock_path: str, timeout: float = 10.0) -> bytes | None:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: wactl\r\nAccept: application/json\r\n"
        f"{PROTOCOL_HEADER}: {PROTOCOL_VERSION}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(sock_path)
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 200 "):
        return None
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    fields = {key.strip().lower(): value.strip() for key, value in headers.items()}
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return None
    length = fields.get("content-length")
    if length is None or not length.isdigit() or int(length) != len(body):
        return None
    return body


def try_fast(argv: list[str]) -> int | None:
    """Serve `wactl ps --json` fast, or return None to let the full CLI do it."""
    matched, config_flag = _args(argv)
    if not matched:
        return None
    try:
        from wactl.config import load_config

        config = load_config(config_flag)
        body = _get("/v1/tenants", str(socket_path(config.runtime_dir)))
        if body is None:
            return None
        rows = json.loads(body)
    except Exception:  # anything unusual: the full CLI runs and explains it
        return None
    if not isinstance(rows, list):
        return None
    # The same bytes `wactl.cli.output.emit_json` prints.
    sys.stdout.write(json_text(rows, indent=2) + "\n")
    sys.stdout.flush()
    return 0

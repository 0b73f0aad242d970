"""Prometheus text exposition of the supervisor's state (format version 0.0.4)."""

from __future__ import annotations

from typing import Any

from wactl.daemon.states import State

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(views: list[dict[str, Any]], *, uptime: float, version: str) -> str:
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("wactl_daemon_info", "gauge", "The daemon's version (value is always 1).")
    lines.append(f'wactl_daemon_info{{version="{_label(version)}"}} 1')
    family("wactl_daemon_uptime_seconds", "gauge", "Seconds since the daemon started.")
    lines.append(f"wactl_daemon_uptime_seconds {uptime:.1f}")
    family("wactl_workers", "gauge", "Workers by supervisor state.")
    for state in State:
        count = sum(1 for v in views if v["state"] == state.value)
        lines.append(f'wactl_workers{{state="{state.value}"}} {count}')

    family("wactl_worker_up", "gauge", "1 when the tenant's worker process is running.")
    for v in views:
        up = 1 if v["state"] == State.RUNNING.value else 0
        lines.append(f'wactl_worker_up{{tenant="{_label(v["slug"])}"}} {up}')
    family("wactl_worker_state", "gauge", "The worker's supervisor state (1 for the current one).")
    for v in views:
        for state in State:
            value = 1 if v["state"] == state.value else 0
            lines.append(
                f'wactl_worker_state{{tenant="{_label(v["slug"])}",state="{state.value}"}} {value}'
            )
    family("wactl_worker_restarts_total", "counter", "Restarts of the worker by the supervisor.")
    for v in views:
        lines.append(f'wactl_worker_restarts_total{{tenant="{_label(v["slug"])}"}} {v["restarts"]}')

    optional = [
        (
            "wactl_worker_cpu_percent",
            "CPU use of the worker's process tree, percent of one core.",
            "cpu_percent",
        ),
        (
            "wactl_worker_memory_rss_bytes",
            "Resident memory of the worker's process tree.",
            "memory_rss_bytes",
        ),
        (
            "wactl_worker_memory_uss_bytes",
            "Unique memory (USS) of the worker's process tree.",
            "memory_uss_bytes",
        ),
        (
            "wactl_worker_heartbeat_age_seconds",
            "Seconds since the worker's last heartbeat.",
            "heartbeat_age_seconds",
        ),
    ]
    for name, help_text, key in optional:
        family(name, "gauge", help_text)
        for v in views:
            if v[key] is not None:
                lines.append(f'{name}{{tenant="{_label(v["slug"])}"}} {v[key]}')
    family(
        "wactl_worker_messages_last_hour",
        "gauge",
        "Messages logged by the worker in the last hour, by direction (in: from customers; "
        "out: the bot's replies and the owner's own messages).",
    )
    for v in views:
        for direction in ("in", "out"):
            value = v[f"messages_{direction}_1h"]
            if value is not None:
                lines.append(
                    f'wactl_worker_messages_last_hour{{tenant="{_label(v["slug"])}",'
                    f'direction="{direction}"}} {value}'
                )
    family(
        "wactl_messages_total",
        "counter",
        "Messages in the tenant's log, by direction (in: from customers; out: sent by the "
        "bot or the owner); kept across worker and daemon restarts, less what retention "
        "removed.",
    )
    for v in views:
        for direction in ("in", "out"):
            lines.append(
                f'wactl_messages_total{{tenant="{_label(v["slug"])}",direction="{direction}"}} '
                f"{v[f'messages_{direction}_total']}"
            )
    return "\n".join(lines) + "\n"

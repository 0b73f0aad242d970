"""Enumerations shared by the database models, validation, the CLI and (later) the daemon.

Stdlib only. Each member's value is what is stored in the database and printed in
``--json`` output, so values never change once released.
"""

from __future__ import annotations

import enum


class TenantStatus(enum.StrEnum):
    """Where a tenant is in its life, as the original system tracked it."""

    NEW = "NEW"  # signed up in the portal, nothing configured yet
    SETUP_REQUESTED = "SETUP_REQUESTED"  # the owner asked for setup; an operator decides
    QR_PENDING = "QR_PENDING"  # the bot runs and waits for the phone to scan its QR
    CONNECTED = "CONNECTED"  # linked to WhatsApp and answering
    DISCONNECTED = "DISCONNECTED"  # was linked, lost the link
    ERROR = "ERROR"  # quarantined after crashes, or failed; see worker_process.last_error
    STOPPED = "STOPPED"  # configured and not running (created by an operator or approved)


class SessionState(enum.StrEnum):
    """State of the WhatsApp link of a tenant."""

    UNLINKED = "UNLINKED"
    QR_PENDING = "QR_PENDING"
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"


class WorkerStatus(enum.StrEnum):
    """Supervisor states of a worker process (DESIGN.md section 3)."""

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    BACKOFF = "BACKOFF"
    FATAL = "FATAL"


#: What each state means to an operator: `wactl ps --help` (and so the man page), the
#: TUI's help and the daemon's API schema say it in these words.
WORKER_STATE_MEANINGS: dict[WorkerStatus, str] = {
    WorkerStatus.STOPPED: "not running, and not wanted to run",
    WorkerStatus.STARTING: "started, its engine (the browser, for whatsapp-web) not up yet",
    WorkerStatus.RUNNING: "its engine has started: it answers customers, or shows a QR "
    "code until the phone is linked",
    WorkerStatus.STOPPING: "asked to stop, killed if it has not within daemon.stop_grace_seconds",
    WorkerStatus.BACKOFF: "it failed, and the daemon starts it again after a growing delay",
    WorkerStatus.FATAL: "it failed too often and is given up on until `wactl tenant start`",
}


class DesiredState(enum.StrEnum):
    """What the operator wants a worker to be; survives daemon restarts and reboots."""

    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class Direction(enum.StrEnum):
    IN = "IN"
    OUT = "OUT"


class MessageState(enum.StrEnum):
    """Where a logged message is in the pipeline (DESIGN.md section 5)."""

    NEW = "NEW"  # inbound, recorded (deduplicated), not handled yet
    ANSWERED = "ANSWERED"  # inbound, its reply was sent
    IGNORED = "IGNORED"  # inbound, deliberately not answered (paused chat, rate limit)
    FAILED = "FAILED"  # inbound, handling raised; see worker_process.last_error
    PENDING = "PENDING"  # outbound, decided and about to be handed to WhatsApp
    SENT = "SENT"  # outbound, handed to WhatsApp


class Role(enum.StrEnum):
    OWNER = "OWNER"
    ADMIN = "ADMIN"
    STAFF = "STAFF"


class RequestStatus(enum.StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class TemplateType(enum.StrEnum):
    RESTAURANT = "restaurant"
    CLINIC = "clinic"
    SALON = "salon"
    RETAIL = "retail"
    GENERIC = "generic"


class Language(enum.StrEnum):
    EN = "en"
    ES = "es"
    PT = "pt"


class EngineName(enum.StrEnum):
    SANDBOX = "sandbox"
    WHATSAPP_WEB = "whatsapp-web"

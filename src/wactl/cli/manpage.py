"""Generate the wactl(1) man page and examples/config.toml from the code they describe.

Why this module exists: the commands, options, config keys, exit codes and ``--json``
shapes are each defined once in the code. Documentation written by hand would drift
from them, so it is generated here and committed; tests/test_docs.py fails when the
committed files are stale. Regenerate with ``make docs``, which runs::

    python -m wactl.cli.manpage --write    # rewrite man/wactl.1 and examples/config.toml
    python -m wactl.cli.manpage --check    # exit 1 when either file is stale
    python -m wactl.cli.manpage            # print the man page

What it must not do: depend on the clock, the terminal width or the machine's paths
(the output is byte-for-byte reproducible), or be imported by the CLI. It is a
development tool: it walks the whole click command tree and imports tomli-w, which
`wactl --help` has no reason to pay for.

The page is written in the man(7) macro language, using only macros that both groff
and mandoc understand (no .SY/.EX extensions), and only ASCII, so that `man -l`
renders it the same everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import inspect
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

import wactl
from wactl import paths
from wactl.cli.app import command
from wactl.config import SECTIONS, Config, render_config
from wactl.config.loader import env_name
from wactl.config.model import field_doc
from wactl.enums import (
    DesiredState,
    EngineName,
    Language,
    RequestStatus,
    SessionState,
    TemplateType,
    TenantStatus,
    WorkerStatus,
)
from wactl.errors import EXIT_MEANINGS, ExitCode

#: Generated files, relative to the repository root.
MAN_PAGE = Path("man/wactl.1")
EXAMPLE_CONFIG = Path("examples/config.toml")

#: What `--check` tells the developer to run.
REGENERATE = "make docs"

#: Exit statuses of a command ended by a signal (128 + its number; `wactl.signals`).
SIGNALLED = (
    (130, "Interrupted (Ctrl-C, SIGINT)."),
    (
        143,
        "Terminated by SIGTERM (129: SIGHUP). The command undoes what it started, as "
        "for Ctrl-C; `portal serve` and `daemon run` stop gracefully and exit 0 instead.",
    ),
)

# --- hand-written parts, each checked against the code by tests/test_docs.py ------------


@dataclass(frozen=True)
class FileDoc:
    """A file or directory wactl uses, as the FILES section shows it."""

    #: What tests/test_docs.py compares it with (see `wactl.config.Config`).
    key: str
    #: The path with its XDG base directory variable.
    path: str
    #: The same path when that variable is not set.
    fallback: str
    doc: str


FILES: tuple[FileDoc, ...] = (
    FileDoc(
        "config",
        "$XDG_CONFIG_HOME/wactl/config.toml",
        "~/.config/wactl/config.toml",
        "The configuration file, unless `--config` or WACTL_CONFIG names another. "
        "`wactl init` writes it with mode 0600, as `database.url` may hold a password.",
    ),
    FileDoc(
        "data",
        "$XDG_DATA_HOME/wactl",
        "~/.local/share/wactl",
        "The data directory: database, logs and browser profiles. `paths.data_dir` moves it.",
    ),
    FileDoc(
        "database",
        "$XDG_DATA_HOME/wactl/wactl.db",
        "~/.local/share/wactl/wactl.db",
        "The SQLite database, used when `database.url` is empty. It is in the data "
        "directory, wherever that is.",
    ),
    FileDoc(
        "logs",
        "$XDG_DATA_HOME/wactl/logs",
        "~/.local/share/wactl/logs",
        "Per-tenant logs, in the data directory.",
    ),
    FileDoc(
        "wa-js",
        "$XDG_DATA_HOME/wactl/wa-js",
        "~/.local/share/wactl/wa-js",
        "The wa-js library `wactl engine install` fetched, one directory per version: "
        "VERSION/wppconnect-wa.js (the bundle), VERSION/package.tgz (the verified npm "
        "tarball, read by `wactl engine check`) and VERSION/manifest.json (version, "
        "integrity, sha256, tarball, source, time), in the data directory.",
    ),
    FileDoc(
        "runtime",
        "$XDG_RUNTIME_DIR/wactl",
        "~/.local/state/wactl/run",
        "The runtime directory: the daemon's socket and pid file. Without "
        "XDG_RUNTIME_DIR it is $XDG_STATE_HOME/wactl/run. `paths.runtime_dir` moves it.",
    ),
)

#: (variable, what it does). tests/test_docs.py checks that every variable the source
#: reads by name is listed here.
ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("WACTL_CONFIG", "The config file to use when `--config` is not given."),
    (
        "WACTL_<SECTION>_<KEY>",
        "Overrides one config key, for example WACTL_DATABASE_URL; see CONFIGURATION.",
    ),
    (
        "WACTL_DEBUG",
        "When set to a non-empty value, an unexpected error ends with its Python "
        "traceback instead of one line on stderr.",
    ),
    (
        "npm_config_registry",
        "npm's registry setting; `wactl engine install` fetches wa-js from it when "
        "`wajs.npm_registry` is empty (default https://registry.npmjs.org).",
    ),
    ("XDG_CONFIG_HOME", "Where the config file is (default ~/.config)."),
    ("XDG_DATA_HOME", "Where the data directory is (default ~/.local/share)."),
    ("XDG_RUNTIME_DIR", "Where the runtime directory is."),
    (
        "XDG_STATE_HOME",
        "Where the runtime directory is when XDG_RUNTIME_DIR is not set (default ~/.local/state).",
    ),
    ("NO_COLOR", "When set to a non-empty value, output has no colours or styles."),
    ("COLUMNS", "Width of tables and help, instead of the terminal's width."),
)

_TIMESTAMP = "string: ISO 8601 time in UTC, such as `2026-11-01T09:30:00+00:00`"


def _one_of(members: type[enum.Enum]) -> str:
    return "one of " + ", ".join(f"`{m.value}`" for m in members)


#: `wactl.db.tenants.tenant_json`, in output order.
TENANT_KEYS: tuple[tuple[str, str], ...] = (
    ("id", "string: the tenant's UUID."),
    ("slug", "string: the tenant's slug, as commands take it."),
    ("name", "string: the business's name."),
    ("status", f"string: {_one_of(TenantStatus)}."),
    ("engine", f"string: {_one_of(EngineName)}."),
    ("phone_number", "string: the WhatsApp number in E.164 form, or null."),
    ("business_name", "string: the name the bot uses, or null when not configured."),
    ("template_type", f"string: {_one_of(TemplateType)}; or null."),
    ("language", f"string: {_one_of(Language)}; or null."),
    ("timezone", "string: IANA time zone, such as `Europe/Madrid`; or null."),
    ("created_at", f"{_TIMESTAMP}."),
    ("updated_at", f"{_TIMESTAMP}."),
)

_HOURS = (
    'object: day (`mon` to `sun`) to a list of "HH:MM-HH:MM" ranges; an empty list means closed.'
)
_HOLIDAYS = 'list of "YYYY-MM-DD" dates on which the business is closed.'

#: What `wactl.db.tenants.tenant_detail_json` adds to `TENANT_KEYS`, in output order.
TENANT_DETAIL_KEYS: tuple[tuple[str, str], ...] = (
    ("hours", _HOURS),
    ("holidays", _HOLIDAYS),
    ("wa_js", "object: the wa-js version the tenant runs (whatsapp-web engine only)."),
    ("wa_js.version", "string: the version its worker injects from its next start."),
    (
        "wa_js.source",
        "string: `tenant` (its own, set by `tenant edit --wa-js`: a canary), `fleet` (the "
        "fleet default, set by `engine rollout`) or `pinned` (the version pinned in wactl).",
    ),
    ("session", "object: the WhatsApp link, or null."),
    ("session.state", f"string: {_one_of(SessionState)}."),
    ("session.has_qr", "boolean: a QR code is waiting to be scanned."),
    ("session.last_seen_at", f"{_TIMESTAMP}; or null."),
    ("worker", "object: the bot's worker process, or null."),
    ("worker.name", "string: the process name."),
    ("worker.status", f"string: {_one_of(WorkerStatus)}."),
    ("worker.desired", f"string: {_one_of(DesiredState)}."),
    ("worker.pid", "integer, or null when not running."),
    ("worker.restarts", "integer: how many times the supervisor restarted it."),
    ("worker.last_error", "string: why it last failed, or null."),
    ("worker.started_at", f"{_TIMESTAMP}; or null."),
)

#: `wactl.db.requests.request_json`, in output order.
REQUEST_KEYS: tuple[tuple[str, str], ...] = (
    ("id", "integer: the request's number, as commands take it."),
    ("tenant", "string: the tenant's slug."),
    ("status", f"string: {_one_of(RequestStatus)}."),
    ("business_name", "string."),
    ("template_type", f"string: {_one_of(TemplateType)}."),
    ("language", f"string: {_one_of(Language)}."),
    ("whatsapp_number", "string: E.164 form."),
    ("timezone", "string: IANA time zone."),
    ("hours", _HOURS),
    ("holidays", _HOLIDAYS),
    ("notes", "string: the owner's notes, or null."),
    ("decision_reason", "string: why it was rejected, or null."),
    ("decided_by", "string: who decided it (such as `os:alice`), or null."),
    ("decided_at", f"{_TIMESTAMP}; or null."),
    ("created_at", f"{_TIMESTAMP}."),
)

#: `wactl.db.audit.event_json`, in output order.
EVENT_KEYS: tuple[tuple[str, str], ...] = (
    ("id", "integer."),
    ("created_at", f"{_TIMESTAMP}."),
    ("tenant", "string: the tenant's slug, or null for events about no tenant."),
    ("actor", "string: `os:LOGIN` for commands run by an operator."),
    (
        "event_type",
        "string, such as `tenant.created`, `tenant.edited`, `tenant.config_applied`, "
        "`tenant.deleted`, `request.submitted`, `request.approved`, `request.rejected`, "
        "`db.upgraded`, `db.downgraded`, `wa_js.installed`, `wa_js.rolled_out`, "
        "`wa_js.rolled_back`, `wa_js.moved` (a tenant whose wa-js changed with them), "
        "`worker.start`, `worker.stop`, `worker.restart`, `chat.paused`, `chat.resumed`.",
    ),
    ("payload", "object: details, depending on the event type."),
)

#: `wactl db current --json`.
DB_CURRENT_KEYS: tuple[tuple[str, str], ...] = (
    ("database", "string: the database URL, password replaced by ***."),
    ("revision", "string: the schema revision, or null for an empty database."),
    ("head", "string: the newest revision this wactl knows."),
    ("up_to_date", "boolean: revision equals head."),
)

#: One element of `wactl db history --json`.
DB_HISTORY_KEYS: tuple[tuple[str, str], ...] = (
    ("revision", "string."),
    ("down_revision", "string: the revision it migrates from, or null for the first."),
    ("message", "string: what the migration does."),
    ("head", "boolean: this is the newest revision."),
)


#: `wactl.cli.engine_cmd.bundle_json`: `wactl engine install | status --json`.
WAJS_KEYS: tuple[tuple[str, str], ...] = (
    ("package", "string: `@wppconnect/wa-js`."),
    ("version", "string: the version (default: the one this wactl pins)."),
    ("pinned", "boolean: it is the version pinned in this wactl."),
    (
        "pinned_integrity",
        "string: the SRI hash (sha512) its tarball must have: pinned in wactl beside the "
        "version, or given with --integrity and recorded in the database.",
    ),
    ("path", "string: where the bundle is, or would be, on disk."),
    ("installed", "boolean: files for that version are there."),
    (
        "verified",
        "boolean: the manifest names that version and integrity, and the bundle's "
        "sha256 is the one recorded at install (and, for the pinned version, in wactl).",
    ),
    ("problem", "string: why it does not verify, or null."),
    ("integrity", "string: the integrity the manifest records, or null."),
    ("sha256", "string: the bundle's sha256 (hex) recorded at install, or null."),
    (
        "tarball",
        "string: the verified npm tarball kept beside the bundle, or null (an install "
        "by an older wactl).",
    ),
    ("source", "string: `npm` or `https`, how it was fetched; or null."),
    ("registry", "string: the registry it came from (password replaced by ***), or null."),
    ("installed_at", f"{_TIMESTAMP}; or null."),
)

#: `wactl.wajs_check.CheckReport.as_json`: `wactl engine check --json`.
WAJS_CHECK_KEYS: tuple[tuple[str, str], ...] = (
    ("package", "string: `@wppconnect/wa-js`."),
    ("version", "string: the version checked."),
    ("ok", "boolean: every check matches."),
    ("checked", "integer: how many checks ran."),
    ("differences", "list of objects, one per check that does not match:"),
    (
        "differences[].kind",
        "string: `function`, `event`, `member` (an option, field or enum value), `emit` "
        "(an event the bundle must emit) or `version` (what the bundle reports).",
    ),
    (
        "differences[].name",
        "string: what, such as `chat.sendTextMessage` or `SendMessageOptions.delay`.",
    ),
    ("differences[].file", "string: the file of the package, such as `dist/chat/types.d.ts`."),
    ("differences[].problem", "string: `differs`, `missing` or `file missing`."),
    ("differences[].expected", "string: the declaration wactl uses (comments removed)."),
    ("differences[].found", "string: what the package declares instead, or null."),
)

#: `wactl.db.wajs_releases.FleetChange.as_json` plus `restarted`: `wactl engine rollout |
#: rollback --json`.
WAJS_FLEET_KEYS: tuple[tuple[str, str], ...] = (
    (
        "fleet_default",
        'object: {"old": ..., "new": ...}, each {"version": STRING, "source": "fleet" '
        'or "pinned"}: what tenants without their own version ran before and run now.',
    ),
    ("cleared", 'list of {"tenant": SLUG, "version": STRING}: tenants\' own versions cleared.'),
    (
        "moves",
        'list of {"tenant": SLUG, "from": STRING, "to": STRING}: whatsapp-web tenants whose '
        "version changed.",
    ),
    ("restarted", "list of slugs: the running workers the daemon was asked to restart."),
)


#: `wactl.cli.doctor_cmd.Check`: each of `wactl doctor --json`'s "checks" (beside "ok",
#: true when none failed).
CHAT_KEYS: tuple[tuple[str, str], ...] = (
    ("chat", "string: the customer's number (+E164), or their LID (`NNN@lid`)."),
    ("messages", "integer: messages logged in it, both ways."),
    ("last_message_at", f"{_TIMESTAMP}, or null."),
    ("paused", "boolean: the bot is quiet in it now."),
    ("paused_until", f"{_TIMESTAMP}, or null when not paused."),
    (
        "pause_reason",
        "string: `handoff` (the customer asked for a person), `owner` (the business "
        "answered by hand) or `operator` (`wactl chats pause`); null when not paused.",
    ),
)
DOCTOR_KEYS: tuple[tuple[str, str], ...] = (
    (
        "name",
        "string: config, database, schema, daemon, browser, wa-js (one per version in use), "
        "whatsapp (when a tenant uses whatsapp-web), data dir or runtime dir.",
    ),
    ("status", "string: `ok`, `warn` (works, but worth knowing) or `fail` (will not work)."),
    ("detail", "string: what was found."),
    ("fix", "string: the command or setting that fixes it; null when ok."),
)


@dataclass(frozen=True)
class JsonShape:
    title: str
    #: The commands that print it, and what (an object, a list of them).
    printed_by: str
    keys: tuple[tuple[str, str], ...]
    note: str = ""


def _config_show_keys() -> tuple[tuple[str, str], ...]:
    return tuple(
        (section, "object: " + ", ".join(f"`{f.name}`" for f in dataclasses.fields(cls)) + ".")
        for section, cls in SECTIONS.items()
    )


def json_shapes() -> tuple[JsonShape, ...]:
    """Every `--json` output, in the order the JSON OUTPUT section lists them."""
    return (
        JsonShape(
            "Tenant",
            "`wactl tenant create --json` prints one; `wactl tenant list --json` a list.",
            TENANT_KEYS,
        ),
        JsonShape(
            "Tenant detail",
            "`wactl tenant show --json` prints the tenant's keys above, then:",
            TENANT_DETAIL_KEYS,
        ),
        JsonShape(
            "Tenant changes",
            "`wactl tenant edit --json` prints an object whose keys are the settings that "
            'changed, each with `{"old": ..., "new": ...}`; `{}` when nothing changed. For '
            "`wa_js`, null means the fleet's version.",
            (),
        ),
        JsonShape(
            "Setup request",
            "`wactl requests show --json` prints one; `wactl requests list --json` a list.",
            REQUEST_KEYS,
        ),
        JsonShape("Audit event", "`wactl audit --json` prints a list, oldest first.", EVENT_KEYS),
        JsonShape(
            "Chat", "`wactl chats list --json` prints a list, newest message first.", CHAT_KEYS
        ),
        JsonShape("Schema revision", "`wactl db current --json` prints one.", DB_CURRENT_KEYS),
        JsonShape(
            "Migration", "`wactl db history --json` prints a list, newest first.", DB_HISTORY_KEYS
        ),
        JsonShape(
            "wa-js",
            "`wactl engine install --json` and `wactl engine status --json` print one; "
            "`engine install` adds `check`, a wa-js check object (below) or null.",
            WAJS_KEYS,
        ),
        JsonShape("wa-js check", "`wactl engine check --json` prints one.", WAJS_CHECK_KEYS),
        JsonShape(
            "wa-js fleet change",
            "`wactl engine rollout --json` and `wactl engine rollback --json` print one.",
            WAJS_FLEET_KEYS,
        ),
        JsonShape(
            "Doctor check",
            '`wactl doctor --json` prints {"ok": BOOLEAN, "checks": [...]}, one object per '
            "check, in the order of the name list below.",
            DOCTOR_KEYS,
        ),
        JsonShape(
            "Configuration",
            "`wactl config show --json` prints one object per section, with every key; "
            "secrets are redacted.",
            _config_show_keys(),
            note="Values have the types listed under CONFIGURATION.",
        ),
    )


#: (what it shows, shell lines). tests/test_docs.py checks every `wactl` line against the
#: command tree, so an example cannot name a command or option that does not exist.
EXAMPLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Set wactl up for the current user: config file, directories and an SQLite database.",
        ("wactl init",),
    ),
    (
        "Keep the data in PostgreSQL instead, and create the schema there.",
        (
            "wactl config set database.url 'postgresql+psycopg://wactl@localhost:5432/wactl'",
            "wactl db upgrade",
        ),
    ),
    (
        "Create a tenant for a restaurant in Madrid whose bot answers in Spanish.",
        (
            "wactl tenant create casa-pepe --name 'Casa Pepe' --template restaurant \\",
            "    --language es --timezone Europe/Madrid --phone +34600123456",
        ),
    ),
    (
        "Print the slug of every tenant, for a script.",
        ("wactl tenant list --json | jq -r '.[].slug'",),
    ),
    (
        "Change a tenant's opening hours in an editor, check the diff, then apply it.",
        (
            "wactl tenant config export casa-pepe > casa-pepe.toml",
            '"$EDITOR" casa-pepe.toml',
            "wactl tenant config apply casa-pepe casa-pepe.toml --dry-run",
            "wactl tenant config apply casa-pepe casa-pepe.toml",
        ),
    ),
    (
        "Decide the setup requests owners sent from the portal.",
        (
            "wactl requests list --status pending",
            "wactl requests approve 12",
            "wactl requests reject 13 --reason 'The number is not on WhatsApp'",
        ),
    ),
    (
        "Serve the owners' portal behind an HTTPS reverse proxy on this host, with Google "
        "sign-in (redirect URI https://portal.example.com/auth/callback).",
        (
            "wactl config set portal.public_base_url https://portal.example.com",
            "wactl config set portal.google_client_id 1234-abc.apps.googleusercontent.com \\",
            '    portal.google_client_secret "$GOOGLE_CLIENT_SECRET"',
            "wactl config validate",
            "wactl portal serve --port 8080",
        ),
    ),
    (
        "See what happened to one tenant in the last week.",
        ("wactl audit --tenant casa-pepe --since 7d",),
    ),
    (
        "Fetch the wa-js library before the first whatsapp-web tenant starts (it is "
        "also fetched on first use), then check it.",
        ("wactl engine install", "wactl engine status"),
    ),
    (
        "Move to a newer wa-js without waiting for a wactl release: install it, see what "
        "changed, try it on one tenant, then move every tenant (or go back).",
        (
            "wactl engine install --version 4.7.0 \\",
            '    --integrity "$(npm view @wppconnect/wa-js@4.7.0 dist.integrity)"',
            "wactl engine check --version 4.7.0",
            "wactl tenant edit casa-pepe --wa-js 4.7.0 && wactl tenant restart casa-pepe",
            "wactl engine rollout 4.7.0",
            "wactl engine rollback",
        ),
    ),
    (
        "Run one command against another configuration.",
        ("wactl --config ~/staging.toml tenant list",),
    ),
    (
        "Branch on the exit status in a script (5 means no such tenant).",
        (
            "wactl tenant show casa-pepe --json > casa-pepe.json",
            'if [ "$?" -eq 5 ]; then echo "no tenant casa-pepe"; fi',
        ),
    ),
)

# --- roff --------------------------------------------------------------------------------

_ESCAPES = {
    "\\": r"\e",
    # Hyphens in commands, options, paths and values must be typed as ASCII
    # hyphen-minus; plain "-" may render as a typographic hyphen that breaks copy-paste.
    "-": r"\-",
    # Same for quotes: unescaped they render as curly quotes in UTF-8 output.
    "'": r"\(aq",
    "`": r"\(ga",
}


def escape(text: str) -> str:
    """Plain text as roff text: special characters escaped, non-ASCII as \\[uXXXX]."""
    out: list[str] = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char in "\t\n":
            out.append(" ")
        elif ord(char) < 32:
            continue
        elif ord(char) > 126:
            out.append(f"\\[u{ord(char):04X}]")
        else:
            out.append(char)
    return "".join(out)


def inline(text: str) -> str:
    """Text whose `backquoted` spans are literal input, rendered in bold."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backquote: not markup, show it as it is
        return escape(text)
    return "".join(
        rf"\fB{escape(part)}\fR" if index % 2 else escape(part)
        for index, part in enumerate(parts)
        if part
    )


def _macro_arg(text: str) -> str:
    escaped = escape(text).replace('"', r"\(dq")
    return f'"{escaped}"' if " " in escaped or not escaped else escaped


class _Roff:
    """Collects the lines of the page; every text line goes through `text_line`."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def macro(self, name: str, *args: str) -> None:
        self.lines.append(" ".join([f".{name}", *(_macro_arg(arg) for arg in args)]))

    def raw(self, line: str) -> None:
        """A line already in roff (used for macros with escapes as arguments)."""
        self.lines.append(line)

    def text_line(self, roff_text: str) -> None:
        roff_text = roff_text.strip()
        if not roff_text:
            return  # a blank line in roff is a blank line of output
        # A line starting with . or ' would be read as a request.
        if roff_text[0] in ".'":
            roff_text = r"\&" + roff_text
        self.lines.append(roff_text)

    def text(self, plain: str) -> None:
        self.text_line(inline(plain))

    def tagged(self, tag_roff: str, body: str | None = None) -> None:
        """A .TP entry: a tag line already in roff, then its (plain) body text."""
        self.macro("TP")
        self.text_line(tag_roff)
        if body:
            self.text(body)

    def verbatim(self, lines: Iterable[str]) -> None:
        """Lines shown as they are (no filling), indented: commands, file contents."""
        self.macro("RS", "4")
        self.macro("nf")
        for line in lines:
            escaped = escape(line.rstrip())
            self.lines.append(r"\&" + escaped if escaped else r"\&")
        self.macro("fi")
        self.macro("RE")

    def paragraphs(self, help_text: str | None) -> None:
        """Help text: blank-line separated paragraphs; click's \\b marks a verbatim one."""
        for paragraph in _paragraphs(help_text):
            self.macro("PP")
            lines = paragraph.splitlines()
            if lines[0].strip() == "\b":
                self.macro("nf")
                for line in lines[1:]:
                    self.text_line(r"\&" + inline(line.rstrip()))
                self.macro("fi")
            else:
                self.text(" ".join(line.strip() for line in lines))

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


def _paragraphs(help_text: str | None) -> list[str]:
    if not help_text:
        return []
    # click shows nothing after a form feed in --help; neither does the page.
    text = inspect.cleandoc(help_text).split("\f", 1)[0]
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def _summary(cmd: click.Command) -> str:
    """The first sentence of a command's help (its short help, if it has one)."""
    if cmd.short_help:
        return cmd.short_help
    paragraphs = _paragraphs(cmd.help)
    if not paragraphs:
        return ""
    first = " ".join(paragraphs[0].split())
    match = re.match(r"(.+?[.!?])(\s|$)", first)
    return match.group(1) if match else first


def _usage_roff(path: str, pieces: Sequence[str]) -> str:
    """The usage line: the command in bold, metavars such as SLUG in italics."""
    rest = " ".join(pieces)
    out: list[str] = []
    position = 0
    for match in re.finditer(r"[A-Z][A-Z0-9_]*", rest):
        out.append(escape(rest[position : match.start()]))
        out.append(rf"\fI{escape(match.group())}\fR")
        position = match.end()
    out.append(escape(rest[position:]))
    return rf"\fB{escape(path)}\fR " + "".join(out)


# --- the command tree ---------------------------------------------------------------------


@dataclass(frozen=True)
class CommandDoc:
    """One command of the tree with the context click needs to describe it."""

    path: str
    command: click.Command
    context: click.Context

    @property
    def is_group(self) -> bool:
        return isinstance(self.command, click.Group)

    def usage_pieces(self) -> list[str]:
        return self.command.collect_usage_pieces(self.context)

    def subcommands(self) -> list[str]:
        if not isinstance(self.command, click.Group):
            return []
        names = self.command.list_commands(self.context)
        return [name for name in names if not _is_hidden(self.command, self.context, name)]


def _is_hidden(group: click.Group, ctx: click.Context, name: str) -> bool:
    sub = group.get_command(ctx, name)
    return sub is None or sub.hidden


def walk_commands(root: click.Command | None = None) -> list[CommandDoc]:
    """Every visible command, depth first in the order `--help` lists them, root first."""
    root = root if root is not None else command()
    found: list[CommandDoc] = []

    def visit(cmd: click.Command, names: list[str], parent: click.Context | None) -> None:
        # context_settings carry help_option_names (-h) like a real invocation would.
        ctx = click.Context(cmd, info_name=names[-1], parent=parent, **cmd.context_settings)
        doc = CommandDoc(" ".join(names), cmd, ctx)
        found.append(doc)
        for name in doc.subcommands():
            assert isinstance(cmd, click.Group)
            sub = cmd.get_command(ctx, name)
            assert sub is not None
            visit(sub, [*names, name], ctx)

    visit(root, [root.name or "wactl"], None)
    return found


def visible_params(doc: CommandDoc) -> list[click.Parameter]:
    """The parameters the page documents: not hidden; the help option only for the root."""
    params = [p for p in doc.command.params if not getattr(p, "hidden", False)]
    if doc.context.parent is None:
        help_option = doc.command.get_help_option(doc.context)
        if help_option is not None:
            params.append(help_option)
    return params


def _is_unset(value: Any) -> bool:
    # click >= 8.3 marks "no default" with its own sentinel (click._utils.UNSET), which
    # it does not export; recognise it by its type instead of importing a private name.
    kind = type(value)
    return kind.__module__.startswith("click") and kind.__name__ == "Sentinel"


def _plain_value(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _type_metavar(param: click.Parameter) -> str:
    # "integer range" -> INTEGER: the range itself is described in words.
    return param.type.name.upper().removesuffix(" RANGE")


def _metavar(param: click.Parameter) -> str:
    if param.metavar:
        return param.metavar
    if isinstance(param, click.Argument) or isinstance(param.type, click.Choice):
        return (param.name or "value").upper()
    return _type_metavar(param)


def _range_text(param: click.Parameter) -> str | None:
    # Takes the parameter, not its type: ParamType is generic only from click 8.5 on.
    param_type = param.type
    if not isinstance(param_type, click.IntRange | click.FloatRange):
        return None
    low, high = param_type.min, param_type.max
    lower = None if low is None else f"{'more than' if param_type.min_open else 'at least'} {low}"
    upper = None if high is None else f"{'less than' if param_type.max_open else 'at most'} {high}"
    words = " and ".join(bound for bound in (lower, upper) if bound)
    return words[:1].upper() + words[1:] + "." if words else None


def _default_text(param: click.Parameter) -> str | None:
    show = getattr(param, "show_default", None)
    if show is False:
        return None
    if isinstance(show, str):
        return show
    default = param.default
    if isinstance(param, click.Option) and param.is_flag:
        return "on" if default is True else None
    # A callable default is computed at run time (often from the machine): not shown.
    if default is None or _is_unset(default) or callable(default):
        return None
    if isinstance(default, list | tuple):
        return ", ".join(f"`{_plain_value(item)}`" for item in default) or None
    return f"`{_plain_value(default)}`"


def param_description(param: click.Parameter) -> str:
    """The help text of a parameter followed by its choices, range, default and so on."""
    help_text = getattr(param, "help", None)
    parts = [" ".join(help_text.split())] if isinstance(help_text, str) and help_text else []
    if isinstance(param.type, click.Choice):
        choices = ", ".join(f"`{_plain_value(choice)}`" for choice in param.type.choices)
        any_case = "" if param.type.case_sensitive else " (in any case)"
        parts.append(f"One of {choices}{any_case}.")
    range_text = _range_text(param)
    if range_text:
        parts.append(range_text)
    default = _default_text(param)
    if default is not None:
        parts.append(f"Default: {default}.")
    if isinstance(param, click.Option):
        if param.required:
            parts.append("Required.")
        if param.multiple:
            parts.append("May be given more than once.")
    elif not param.required:
        parts.append("Optional.")
    if param.envvar:
        names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar)
        parts.append("Environment: " + ", ".join(names) + ".")
    return " ".join(parts)


def _option_tag(option: click.Option) -> str:
    # Short names first, as man pages list them ("-c, --config PATH").
    names = sorted(option.opts, key=lambda name: name.startswith("--"))
    names += option.secondary_opts
    tag = ", ".join(rf"\fB{escape(name)}\fR" for name in names)
    if not option.is_flag and not option.count:
        tag += rf" \fI{escape(_metavar(option))}\fR"
    return tag


def _argument_tag(argument: click.Parameter) -> str:
    dots = "..." if argument.nargs == -1 else ""
    return rf"\fI{escape(_metavar(argument))}\fR{dots}"


# --- sections -------------------------------------------------------------------------------


def _section_name(page: _Roff, root: CommandDoc) -> None:
    page.macro("SH", "NAME")
    summary = _summary(root.command).rstrip(".")
    if len(summary) > 1 and summary[1].islower():
        summary = summary[0].lower() + summary[1:]
    page.text_line(rf"{escape(root.path)} \- {escape(summary)}")


def _section_synopsis(page: _Roff, docs: list[CommandDoc]) -> None:
    page.macro("SH", "SYNOPSIS")
    root = docs[0]
    page.text_line(_usage_roff(root.path, root.usage_pieces()))
    for doc in docs[1:]:
        if not doc.is_group:
            page.macro("br")
            page.text_line(_usage_roff(doc.path, doc.usage_pieces()))


def _section_description(page: _Roff, docs: list[CommandDoc]) -> None:
    page.macro("SH", "DESCRIPTION")
    root = docs[0]
    paragraphs = _paragraphs(root.command.help)
    # The first paragraph is the NAME line; the rest describes the program.
    page.paragraphs("\n\n".join(paragraphs[1:]) if len(paragraphs) > 1 else root.command.help)
    page.macro("PP")
    page.text("The commands, each described under COMMANDS:")
    for name in root.subcommands():
        sub = next(doc for doc in docs if doc.path == f"{root.path} {name}")
        page.tagged(rf"\fB{escape(name)}\fR", _summary(sub.command))
    page.macro("PP")
    page.text(
        "Data goes to stdout and everything else (progress, confirmations, errors) to "
        "stderr. Errors are one line, starting with `error:`, that says what went wrong "
        "and what to do about it; the exit status says which kind of error it was "
        "(see EXIT STATUS). Commands that print data accept `--json` for scripts "
        "(see JSON OUTPUT). Commands that delete or destroy data ask for confirmation "
        "unless given `--yes`."
    )
    page.macro("PP")
    page.text(
        "Output for people fits the terminal's width, 80 columns included: a list drops "
        "its least telling columns first and keeps the others whole, and a long last "
        "column (a last error, event details) gets lines of its own under its row. Text "
        "that did not come from wactl (names, notes, customers' messages, log lines, "
        "paths) is shown as stored: markup in it is not interpreted, and control "
        "characters and bidirectional overrides in it show as escapes such as \\x1b "
        "and \\u202e, so that it cannot drive the terminal."
    )


def _section_options(page: _Roff, root: CommandDoc) -> None:
    page.macro("SH", "OPTIONS")
    page.text(
        "These options go before the command, as in `wactl --config PATH tenant list`. "
        "Every command also accepts "
        + ", ".join(f"`{name}`" for name in root.context.help_option_names)
        + " to print its help."
    )
    _params(page, root)


def _params(page: _Roff, doc: CommandDoc) -> None:
    for param in visible_params(doc):
        tag = _option_tag(param) if isinstance(param, click.Option) else _argument_tag(param)
        page.tagged(tag, param_description(param))


def _section_commands(page: _Roff, docs: list[CommandDoc]) -> None:
    page.macro("SH", "COMMANDS")
    page.text(
        "Options of a command go after its name; the global options (see OPTIONS) go before it."
    )
    for doc in docs[1:]:
        page.macro("SS", doc.path)
        page.text_line(_usage_roff(doc.path, doc.usage_pieces()))
        page.paragraphs(doc.command.help)
        if doc.command.deprecated:
            page.macro("PP")
            page.text("Deprecated: it will be removed in a future version.")
        if doc.is_group:
            page.macro("PP")
            subcommands = ", ".join(f"`{doc.path} {name}`" for name in doc.subcommands())
            page.text(f"Commands: {subcommands}.")
        _params(page, doc)


def _section_completion(page: _Roff, root: CommandDoc) -> None:
    names = {param.name for param in visible_params(root)}
    if not {"install_completion", "show_completion"} <= names:
        return  # the app was built without typer's completion options
    page.macro("SH", "SHELL COMPLETION")
    page.text(
        "wactl completes commands, options and choices in bash, zsh, fish and PowerShell. "
        "`wactl --install-completion` detects the shell it runs in and installs the "
        "completion script for it: for bash, `~/.bash_completions/wactl.sh`, sourced from "
        "`~/.bashrc`; for zsh, `~/.zfunc/_wactl`, added to `~/.zshrc`; for fish, "
        "`~/.config/fish/completions/wactl.fish`; for PowerShell, the user's profile. "
        "It takes effect in shells started afterwards."
    )
    page.macro("PP")
    page.text(
        "`wactl --show-completion` prints the script instead, to install it by hand or "
        "in a system-wide completion directory. The script calls wactl with the "
        "environment variable _WACTL_COMPLETE set; wactl then prints completions and "
        "exits without running a command."
    )


def _toml_value(value: Any) -> str:
    import tomli_w  # ~3 ms; the same serialiser `wactl init` writes the file with

    return tomli_w.dumps({"value": value}).split("=", 1)[1].strip()


_TYPE_NAMES = {str: "string", int: "integer", float: "float", bool: "boolean"}


def _discovery() -> list[str]:
    """The bullet list under "Discovery" in the docstring of `wactl.paths`."""
    doc = inspect.getdoc(paths) or ""
    items: list[str] = []
    in_list = False
    for line in doc.splitlines():
        if line.startswith("Discovery"):
            in_list = True
        elif in_list and line.startswith("- "):
            items.append(line[2:].strip())
        elif in_list and items and line.startswith("  "):
            items[-1] += " " + line.strip()
        elif in_list and items:
            break
    if not items:
        raise RuntimeError("wactl.paths docstring has no 'Discovery' list for the man page")
    return [item.rstrip(";.").replace("``", "`") for item in items]


def _section_configuration(page: _Roff) -> None:
    from wactl.config import loader

    page.macro("SH", "CONFIGURATION")
    page.text(
        "wactl reads one TOML file. Every key is optional and has a default, so a missing "
        "file is not an error; a file that is not TOML, or holds an unknown key or a value "
        "of the wrong type, is. `wactl init` writes the file with every key and its "
        "documentation; `wactl config show` prints the values in effect, `wactl config set` "
        "changes keys (several KEY VALUE pairs at once: all of them, or none when one is "
        "wrong) and `wactl config validate` checks the file. Every number has the range "
        "shown beside it; NaN and infinity are never accepted. The file must be a "
        "regular file of at most 1 MiB."
    )
    page.macro("PP")
    page.text("Where wactl looks:")
    for item in _discovery():
        page.raw(r".IP \(bu 2")
        page.text(item[0].upper() + item[1:] + ".")
    page.macro("PP")
    true_words = ", ".join(sorted(loader._TRUE))
    false_words = ", ".join(sorted(loader._FALSE))
    page.text(
        "Each value comes from the first of: a command-line flag, the environment variable "
        "WACTL_<SECTION>_<KEY> (such as WACTL_DATABASE_URL), the file, the default. "
        f"In the environment a boolean is one of {true_words} or {false_words}."
    )
    for section, cls in SECTIONS.items():
        page.macro("SS", f"[{section}]")
        page.text(cls.__doc__ or "")
        for field in dataclasses.fields(cls):
            type_name = _TYPE_NAMES.get(type(field.default), type(field.default).__name__)
            tag = (
                rf"\fB{escape(section)}.{escape(field.name)}\fR ({type_name}, default "
                rf"\fB{escape(_toml_value(field.default))}\fR)"
            )
            body = f"{field_doc(field.metadata)} Environment: {env_name(section, field.name)}."
            page.tagged(tag, body)


def _section_files(page: _Roff) -> None:
    page.macro("SH", "FILES")
    page.text(
        "Unset XDG variables take the defaults of the XDG Base Directory specification, "
        "shown in parentheses; relative values are ignored, as the specification says."
    )
    for entry in FILES:
        page.tagged(
            rf"\fI{escape(entry.path)}\fR ({escape(entry.fallback)})",
            entry.doc,
        )


def _section_environment(page: _Roff) -> None:
    page.macro("SH", "ENVIRONMENT")
    for name, doc in ENVIRONMENT:
        page.tagged(rf"\fB{escape(name)}\fR", doc)


def _section_json(page: _Roff) -> None:
    page.macro("SH", "JSON OUTPUT")
    page.text(
        "With `--json`, commands print JSON on stdout and nothing else there: two-space "
        "indented, keys in the order listed below. These shapes are stable: a key listed "
        "here keeps its name and meaning, and new keys may be added, so scripts should "
        "ignore keys they do not know. Timestamps are ISO 8601 strings in UTC. Strings "
        "are UTF-8, but DEL, the C1 control characters and bidirectional overrides in them are "
        "written as \\u escapes (JSON already escapes the other control characters)."
    )
    for shape in json_shapes():
        page.macro("SS", shape.title)
        page.text(shape.printed_by)
        for key, doc in shape.keys:
            page.tagged(rf"\fB{escape(key)}\fR", doc)
        if shape.note:
            page.macro("PP")
            page.text(shape.note)


def _section_exit_status(page: _Roff) -> None:
    page.macro("SH", "EXIT STATUS")
    for code in ExitCode:
        page.tagged(rf"\fB{int(code)}\fR ({escape(code.name)})", EXIT_MEANINGS[code].full)
    for status, text in SIGNALLED:
        page.tagged(rf"\fB{status}\fR", text)


def _section_examples(page: _Roff) -> None:
    page.macro("SH", "EXAMPLES")
    for text, lines in EXAMPLES:
        page.macro("PP")
        page.text(text)
        page.verbatim(lines)


def render_man_page() -> str:
    """The complete wactl(1) page in roff."""
    docs = walk_commands()
    root = docs[0]
    page = _Roff()
    page.raw(r".\" Generated by python -m wactl.cli.manpage; do not edit. Run: make docs")
    page.macro("TH", "WACTL", "1", "", f"wactl {wactl.__version__}", "User Commands")
    # No hyphenation and a ragged right edge: options, paths and variable names are
    # long tokens that must not be split or stretched.
    page.macro("nh")
    page.macro("ad", "l")
    _section_name(page, root)
    _section_synopsis(page, docs)
    _section_description(page, docs)
    _section_options(page, root)
    _section_commands(page, docs)
    _section_completion(page, root)
    _section_configuration(page)
    _section_files(page)
    _section_environment(page)
    _section_json(page)
    _section_exit_status(page)
    _section_examples(page)
    return page.render()


def render_example_config() -> str:
    """examples/config.toml: the file `wactl init` writes, with the defaults."""
    return render_config(Config())


def generated_files() -> dict[Path, str]:
    """Each generated file (relative to the repository root) and its text."""
    return {MAN_PAGE: render_man_page(), EXAMPLE_CONFIG: render_example_config()}


def repo_root() -> Path:
    """The source checkout this module is in (src/wactl/cli/manpage.py -> the root)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").is_file():
        raise SystemExit(
            f"error: {root} is not a wactl source checkout; --write and --check only work from one"
        )
    return root


def _stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # `... | head`: the reader has gone; send the rest (and the flush at exit) nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wactl.cli.manpage",
        description=f"Print the wactl(1) man page, or write or check {MAN_PAGE} "
        f"and {EXAMPLE_CONFIG}.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the files that changed")
    mode.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        _stdout(render_man_page())
        return 0
    root = repo_root()
    stale = 0
    for relative, text in generated_files().items():
        target = root / relative
        # Bytes, not text: a file with CRLF line ends is stale too.
        if target.is_file() and target.read_bytes() == text.encode("utf-8"):
            continue
        if args.check:
            sys.stderr.write(f"{relative.as_posix()} is stale; run `{REGENERATE}`\n")
            stale += 1
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(text.encode("utf-8"))
            sys.stderr.write(f"wrote {relative.as_posix()}\n")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())

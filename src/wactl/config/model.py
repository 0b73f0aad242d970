"""The configuration model: every key typed, documented and defaulted.

Each section is a frozen dataclass; each field carries its documentation in
``metadata["doc"]`` (rendered as comments into the file `wactl init` writes and into
examples/config.toml) and ``metadata["secret"]`` when `wactl config show` must redact it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wactl import paths as xdg
from wactl.enums import EngineName, Language, TemplateType

LANGUAGES = tuple(m.value for m in Language)
TEMPLATES = tuple(m.value for m in TemplateType)
ENGINES = tuple(m.value for m in EngineName)


def _doc(text: str, *, secret: bool = False) -> dict[str, Any]:
    return {"doc": text, "secret": secret}


@dataclass(frozen=True)
class DatabaseConfig:
    """Where wactl keeps tenants, sessions, messages and the audit log."""

    url: str = field(
        default="",
        metadata=_doc(
            "SQLAlchemy URL of the database. Empty means SQLite at <paths.data_dir>/wactl.db. "
            'PostgreSQL: "postgresql+psycopg://USER:PASSWORD@HOST:5432/DBNAME". '
            "The password is redacted by `wactl config show` and in error messages.",
            secret=True,
        ),
    )
    busy_timeout_ms: int = field(
        default=5000,
        metadata=_doc(
            "SQLite only: how long a writer waits for a lock held by another process "
            "before failing, in milliseconds."
        ),
    )
    echo: bool = field(
        default=False,
        metadata=_doc("Log every SQL statement to stderr (debugging only; very noisy)."),
    )


@dataclass(frozen=True)
class PathsConfig:
    """Directories wactl writes to."""

    data_dir: str = field(
        default="",
        metadata=_doc(
            "Data directory: the SQLite database, per-tenant logs and browser profiles. "
            "Empty means $XDG_DATA_HOME/wactl (~/.local/share/wactl)."
        ),
    )
    runtime_dir: str = field(
        default="",
        metadata=_doc(
            "Runtime directory: the daemon's socket and pid file. Empty means "
            "$XDG_RUNTIME_DIR/wactl, or $XDG_STATE_HOME/wactl/run without a runtime dir."
        ),
    )


@dataclass(frozen=True)
class DefaultsConfig:
    """Values `wactl tenant create` uses when an option is not given."""

    template: str = field(
        default="generic",
        metadata=_doc("Reply template: " + ", ".join(TEMPLATES) + "."),
    )
    language: str = field(
        default="en",
        metadata=_doc("Language the bot answers in: " + ", ".join(LANGUAGES) + "."),
    )
    timezone: str = field(
        default="UTC",
        metadata=_doc('IANA time zone of the business, such as "Europe/Madrid".'),
    )
    engine: str = field(
        default="sandbox",
        metadata=_doc(
            "How the bot reaches WhatsApp: sandbox (simulated, no phone) or "
            "whatsapp-web (a real phone linked through WhatsApp Web)."
        ),
    )


@dataclass(frozen=True)
class DaemonConfig:
    """The supervising daemon (wactld) and how it watches workers."""

    stop_grace_seconds: float = field(
        default=10.0,
        metadata=_doc(
            "After SIGTERM, how long a worker's process group may take to exit before "
            "it is killed with SIGKILL."
        ),
    )
    heartbeat_interval_seconds: float = field(
        default=5.0,
        metadata=_doc("How often a worker reports that it is alive."),
    )
    heartbeat_timeout_seconds: float = field(
        default=30.0,
        metadata=_doc(
            "A worker silent for this long is hung (for example stopped with SIGSTOP): "
            "it is killed and started again."
        ),
    )
    sample_interval_seconds: float = field(
        default=10.0,
        metadata=_doc(
            "How often the daemon samples each worker tree's CPU and resident memory; the "
            "memory ceiling is checked on each sample. Unique memory (USS, the figure "
            "`wactl ps` shows) is sampled once a minute: it costs ten times more."
        ),
    )
    memory_limit_mb: int = field(
        default=1024,
        metadata=_doc(
            "Memory ceiling of one worker's whole process tree (resident set, MB); over "
            "it the worker is restarted gracefully. 0 turns the check off."
        ),
    )
    start_concurrency: int = field(
        default=4,
        metadata=_doc(
            "How many workers may be starting at the same time (no thundering herd of "
            "browsers at boot)."
        ),
    )
    backoff_initial_seconds: float = field(
        default=1.0,
        metadata=_doc(
            "A crashed worker restarts at once the first time; after that the delay "
            "starts here and doubles on each crash in a row (with 20% jitter)."
        ),
    )
    backoff_max_seconds: float = field(
        default=60.0, metadata=_doc("Upper bound of the restart delay.")
    )
    max_crashes: int = field(
        default=5,
        metadata=_doc(
            "This many crashes within crash_window_seconds quarantine the worker (FATAL, "
            "tenant ERROR) until an operator starts it again."
        ),
    )
    crash_window_seconds: float = field(
        default=300.0, metadata=_doc("The window in which crashes are counted.")
    )
    stable_after_seconds: float = field(
        default=60.0,
        metadata=_doc("A worker up this long has its crash history forgiven."),
    )
    metrics_address: str = field(
        default="",
        metadata=_doc(
            'Also serve Prometheus metrics over TCP at "HOST:PORT" (e.g. '
            '"127.0.0.1:9464"). Empty: only on the socket, at /v1/metrics.'
        ),
    )
    log_max_bytes: int = field(
        default=10_000_000,
        metadata=_doc("Size at which the daemon's and each worker's log file is rotated."),
    )
    log_backups: int = field(default=5, metadata=_doc("How many rotated log files are kept."))


@dataclass(frozen=True)
class SandboxConfig:
    """The sandbox engine: a simulated WhatsApp with no phone and no network."""

    qr_rotate_seconds: float = field(
        default=20.0,
        metadata=_doc("How often an unlinked sandbox tenant shows a new QR (as WhatsApp does)."),
    )


@dataclass(frozen=True)
class BrowserConfig:
    """The whatsapp-web engine: Chromium driven by Playwright on WhatsApp Web."""

    executable_path: str = field(
        default="",
        metadata=_doc(
            "The Chromium (or Chrome) to run. Empty: Playwright's own Chromium when "
            "`playwright install chromium` put one there, else `chromium` on PATH "
            "(Debian: `apt-get install chromium`). `wactl doctor` shows which one is used."
        ),
    )
    url: str = field(
        default="https://web.whatsapp.com/",
        metadata=_doc(
            "The page the engine opens. Change it only to test against a stand-in for "
            "WhatsApp Web (the test suite does); real phones link only on the default."
        ),
    )
    wa_js_path: str = field(
        default="",
        metadata=_doc(
            "The wa-js bundle injected into the page. Empty: the pinned, integrity-checked "
            "bundle `wactl engine install` keeps in the data directory. Set it only to test "
            "against a stand-in."
        ),
    )
    answer_groups: bool = field(
        default=False,
        metadata=_doc(
            "Answer messages in WhatsApp groups too (off: the bot only answers one-to-one "
            "chats, and group messages are not recorded)."
        ),
    )
    ready_timeout_seconds: float = field(
        default=180.0,
        metadata=_doc(
            "How long WhatsApp Web may take to load, and, once the phone is linked, to "
            "become ready (it syncs chats first). Past it the worker exits with an error "
            "and the daemon starts it again."
        ),
    )
    probe_interval_seconds: float = field(
        default=30.0,
        metadata=_doc(
            "How often the engine checks that the page still answers (a tiny wa-js call "
            "inside WhatsApp Web)."
        ),
    )
    probe_timeout_seconds: float = field(
        default=15.0,
        metadata=_doc(
            "A page that does not answer the check within this long is hung: the worker "
            "exits with an error and the daemon starts it again with a fresh browser."
        ),
    )


@dataclass(frozen=True)
class PipelineConfig:
    """How a worker answers: concurrency, rate limits, pacing, pauses, retention."""

    chat_concurrency: int = field(
        default=32,
        metadata=_doc(
            "How many chats one worker answers at the same time; messages of one chat "
            "are always answered one after another, in arrival order."
        ),
    )
    chat_burst: int = field(
        default=5,
        metadata=_doc("Messages one chat may send in a burst before it is rate limited."),
    )
    chat_per_minute: float = field(
        default=12.0,
        metadata=_doc(
            "Messages per minute one chat may send once its burst is used. Over it the "
            "customer gets one polite warning, then silence until the bucket refills."
        ),
    )
    tenant_burst: int = field(
        default=100, metadata=_doc("Messages a whole tenant may receive in a burst.")
    )
    tenant_per_minute: float = field(
        default=600.0,
        metadata=_doc("Messages per minute a whole tenant may receive after its burst."),
    )
    pacing_ms_per_char: float = field(
        default=25.0,
        metadata=_doc(
            "Typing delay before each reply, per character of the reply (0 turns pacing "
            "off). Real WhatsApp accounts that answer instantly look like bots."
        ),
    )
    pacing_max_seconds: float = field(
        default=4.0, metadata=_doc("Upper bound of the typing delay.")
    )
    pacing_jitter: float = field(
        default=0.3,
        metadata=_doc("The typing delay varies randomly by up to this fraction."),
    )
    pacing_in_sandbox: bool = field(
        default=False,
        metadata=_doc("Apply the typing delay to sandbox tenants too (off: instant replies)."),
    )
    handoff_pause_minutes: float = field(
        default=120.0,
        metadata=_doc(
            "After a customer asks for a person, the bot stays quiet in that chat this long."
        ),
    )
    owner_pause_minutes: float = field(
        default=30.0,
        metadata=_doc(
            "After the business answers a chat by hand, the bot stays quiet in that chat this long."
        ),
    )
    retention_days: int = field(
        default=0,
        metadata=_doc(
            "Delete conversation log entries older than this many days (checked hourly "
            "by each worker). 0 keeps everything; `wactl logs prune` does it by hand."
        ),
    )


@dataclass(frozen=True)
class Config:
    """The whole configuration, plus the file it was read from."""

    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    defaults: DefaultsConfig = field(default_factory=DefaultsConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    browser: BrowserConfig = field(default_factory=BrowserConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    #: The file this configuration was read from (it may not exist yet).
    source: Path = field(default_factory=xdg.default_config_file, compare=False)

    @property
    def data_dir(self) -> Path:
        return Path(self.paths.data_dir).expanduser() if self.paths.data_dir else xdg.data_home()

    @property
    def runtime_dir(self) -> Path:
        if self.paths.runtime_dir:
            return Path(self.paths.runtime_dir).expanduser()
        return xdg.runtime_home()

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def database_url(self) -> str:
        """The effective database URL (the SQLite default resolved)."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.data_dir / 'wactl.db'}"


#: Section name -> dataclass, in the order the file lists them.
SECTIONS: dict[str, type[Any]] = {
    "database": DatabaseConfig,
    "paths": PathsConfig,
    "defaults": DefaultsConfig,
    "daemon": DaemonConfig,
    "sandbox": SandboxConfig,
    "browser": BrowserConfig,
    "pipeline": PipelineConfig,
}

"""The configuration model: every key typed, documented and defaulted.

Each section is a frozen dataclass; each field carries its documentation in
``metadata["doc"]`` (rendered as comments into the file `wactl init` writes and into
examples/config.toml), ``metadata["secret"]`` when `wactl config show` must redact it,
and, for every number, ``metadata["bounds"]``: the values the key can use (a number
outside them, NaN or infinity is refused wherever it comes from: file, environment or
`wactl config set`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wactl import paths as xdg
from wactl.enums import EngineName, Language, TemplateType

LANGUAGES = tuple(m.value for m in Language)
TEMPLATES = tuple(m.value for m in TemplateType)
ENGINES = tuple(m.value for m in EngineName)


@dataclass(frozen=True)
class Bounds:
    """The finite numbers a key takes: from ``low`` to ``high``, each end included
    unless ``low_open`` / ``high_open``; ``low_hint`` says why the low end is where it
    is, when that is not obvious."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    low_hint: str | None = None

    def problem(self, value: float) -> str | None:
        """What is wrong with ``value`` ("must be ..."), or None when it is in bounds."""
        # An int is always finite (and math.isfinite of 10**400 raises OverflowError).
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if value < self.low or (self.low_open and value == self.low):
            return f"must be {self._low_text()}"
        if value > self.high or (self.high_open and value == self.high):
            return f"must be {self._high_text()}"
        return None

    def describe(self) -> str:
        """The range in words, for the documentation."""
        return f"{self._low_text()}, {self._high_text()}"

    def _low_text(self) -> str:
        low = _number(self.low)
        return f"greater than {low}" if self.low_open else f"{low} or more"

    def _high_text(self) -> str:
        high = _number(self.high)
        return f"below {high}" if self.high_open else f"at most {high}"


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


#: Common ranges. Durations stop at a day or a week: far beyond any sensible setting,
#: and far below what the clocks and timers that take them can hold.
_POSITIVE_SECONDS_HOUR = Bounds(0, 3600, low_open=True)
_POSITIVE_SECONDS_DAY = Bounds(0, 86400, low_open=True)
_SECONDS_HOUR = Bounds(0, 3600)
_SECONDS_DAY = Bounds(0, 86400)
_RATE = Bounds(0, 1e9, low_open=True)
_BURST = Bounds(1, 1_000_000_000)
_PAUSE_MINUTES = Bounds(0, 525_600)  # a year


def _doc(text: str, *, secret: bool = False, bounds: Bounds | None = None) -> dict[str, Any]:
    return {"doc": text, "secret": secret, "bounds": bounds}


def field_doc(metadata: Any) -> str:
    """A key's documentation as the file and the man page show it, range included."""
    bounds: Bounds | None = metadata.get("bounds")
    text: str = metadata["doc"]
    return f"{text} Range: {bounds.describe()}." if bounds is not None else text


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
            "before failing, in milliseconds.",
            bounds=Bounds(0, 3_600_000),
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
            "it is killed with SIGKILL.",
            bounds=_POSITIVE_SECONDS_HOUR,
        ),
    )
    heartbeat_interval_seconds: float = field(
        default=5.0,
        metadata=_doc(
            "How often a worker reports that it is alive.", bounds=_POSITIVE_SECONDS_HOUR
        ),
    )
    heartbeat_timeout_seconds: float = field(
        default=30.0,
        metadata=_doc(
            "A worker silent for this long is hung (for example stopped with SIGSTOP): "
            "it is killed and started again.",
            bounds=_POSITIVE_SECONDS_DAY,
        ),
    )
    sample_interval_seconds: float = field(
        default=10.0,
        metadata=_doc(
            "How often the daemon samples each worker tree's CPU and resident memory; the "
            "memory ceiling is checked on each sample. Unique memory (USS, the figure "
            "`wactl ps` shows) is sampled once a minute: it costs ten times more.",
            bounds=_POSITIVE_SECONDS_HOUR,
        ),
    )
    memory_limit_mb: int = field(
        default=1024,
        metadata=_doc(
            "Memory ceiling of one worker's whole process tree (resident set, MB); over "
            "it the worker is restarted gracefully. 0 turns the check off.",
            bounds=Bounds(0, 1_048_576),
        ),
    )
    start_concurrency: int = field(
        default=4,
        metadata=_doc(
            "How many workers may be starting at the same time (no thundering herd of "
            "browsers at boot).",
            bounds=Bounds(1, 1000),
        ),
    )
    fork_workers: bool = field(
        default=True,
        metadata=_doc(
            "Fork workers from one process that has loaded wactl and its libraries once "
            "(they share that memory: about 15 MB less per tenant), instead of starting "
            "`python -m wactl.bot SLUG` for each. The fork server is replaced when a file "
            "it loaded changes (an upgrade)."
        ),
    )
    backoff_initial_seconds: float = field(
        default=1.0,
        metadata=_doc(
            "A crashed worker restarts at once the first time; after that the delay "
            "starts here and doubles on each crash in a row (with 20% jitter).",
            bounds=_SECONDS_HOUR,
        ),
    )
    backoff_max_seconds: float = field(
        default=60.0, metadata=_doc("Upper bound of the restart delay.", bounds=_SECONDS_DAY)
    )
    max_crashes: int = field(
        default=5,
        metadata=_doc(
            "This many crashes within crash_window_seconds quarantine the worker (FATAL, "
            "tenant ERROR) until an operator starts it again.",
            bounds=Bounds(1, 1000),
        ),
    )
    crash_window_seconds: float = field(
        default=300.0,
        metadata=_doc(
            "The window in which crashes are counted.", bounds=Bounds(0, 604_800, low_open=True)
        ),
    )
    stable_after_seconds: float = field(
        default=60.0,
        metadata=_doc("A worker up this long has its crash history forgiven.", bounds=_SECONDS_DAY),
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
        metadata=_doc(
            "Size at which the daemon's and each worker's log file is rotated.",
            bounds=Bounds(1, 1 << 40),
        ),
    )
    log_backups: int = field(
        default=5, metadata=_doc("How many rotated log files are kept.", bounds=Bounds(0, 1000))
    )


@dataclass(frozen=True)
class SandboxConfig:
    """The sandbox engine: a simulated WhatsApp with no phone and no network."""

    qr_rotate_seconds: float = field(
        default=20.0,
        metadata=_doc(
            "How often an unlinked sandbox tenant shows a new QR (as WhatsApp does).",
            bounds=_POSITIVE_SECONDS_HOUR,
        ),
    )


@dataclass(frozen=True)
class BrowserConfig:
    """The whatsapp-web engine: Chromium driven by Playwright on WhatsApp Web."""

    executable_path: str = field(
        default="",
        metadata=_doc(
            "The Chromium (or Chrome) to run. Empty: `chromium-headless-shell` on PATH "
            "(Debian: `apt-get install chromium-headless-shell`; about 57 MB less per tenant "
            "than the full browser), else Playwright's own Chromium when `playwright install "
            "chromium` put one there, else `chromium` on PATH. `wactl doctor` shows which "
            "one is used."
        ),
    )
    user_agent: str = field(
        default="",
        metadata=_doc(
            "The User-Agent the browser sends. Empty: desktop Chrome's, with the running "
            "browser's major version (a headless browser says HeadlessChrome, which "
            'WhatsApp Web turns away with an "update your browser" page).'
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
    device_name: str = field(
        default="{name} (wactl)",
        metadata=_doc(
            "The name the linked device shows on the business's phone (WhatsApp > "
            "Linked devices), so the owner recognises the bot: {name} is the tenant's "
            "name, {slug} its slug; cut to 64 characters. Empty: WhatsApp Web's own "
            "(the browser and system)."
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
            "and the daemon starts it again.",
            bounds=_POSITIVE_SECONDS_DAY,
        ),
    )
    probe_interval_seconds: float = field(
        default=30.0,
        metadata=_doc(
            "How often the engine checks that the page still answers (a tiny wa-js call "
            "inside WhatsApp Web).",
            bounds=_POSITIVE_SECONDS_DAY,
        ),
    )
    probe_timeout_seconds: float = field(
        default=15.0,
        metadata=_doc(
            "A page that does not answer the check within this long is hung: the worker "
            "exits with an error and the daemon starts it again with a fresh browser.",
            bounds=_POSITIVE_SECONDS_HOUR,
        ),
    )


@dataclass(frozen=True)
class PipelineConfig:
    """How a worker answers: concurrency, rate limits, pacing, pauses, retention."""

    chat_concurrency: int = field(
        default=32,
        metadata=_doc(
            "How many chats one worker answers at the same time; messages of one chat "
            "are always answered one after another, in arrival order.",
            bounds=Bounds(1, 100_000),
        ),
    )
    chat_burst: int = field(
        default=5,
        metadata=_doc(
            "Messages one chat may send in a burst before it is rate limited.", bounds=_BURST
        ),
    )
    chat_per_minute: float = field(
        default=12.0,
        metadata=_doc(
            "Messages per minute one chat may send once its burst is used. Over it the "
            "customer gets one polite warning, then silence until the bucket refills.",
            bounds=_RATE,
        ),
    )
    tenant_burst: int = field(
        default=100, metadata=_doc("Messages a whole tenant may receive in a burst.", bounds=_BURST)
    )
    tenant_per_minute: float = field(
        default=600.0,
        metadata=_doc(
            "Messages per minute a whole tenant may receive after its burst.", bounds=_RATE
        ),
    )
    pacing_ms_per_char: float = field(
        default=25.0,
        metadata=_doc(
            "Typing delay before each reply, per character of the reply (0 turns pacing "
            "off). Real WhatsApp accounts that answer instantly look like bots.",
            bounds=Bounds(0, 60_000),
        ),
    )
    pacing_max_seconds: float = field(
        default=4.0, metadata=_doc("Upper bound of the typing delay.", bounds=_SECONDS_HOUR)
    )
    pacing_jitter: float = field(
        default=0.3,
        metadata=_doc(
            "The typing delay varies randomly by up to this fraction.",
            bounds=Bounds(0, 1, high_open=True),
        ),
    )
    pacing_in_sandbox: bool = field(
        default=False,
        metadata=_doc("Apply the typing delay to sandbox tenants too (off: instant replies)."),
    )
    handoff_pause_minutes: float = field(
        default=120.0,
        metadata=_doc(
            "After a customer asks for a person, the bot stays quiet in that chat this long.",
            bounds=_PAUSE_MINUTES,
        ),
    )
    owner_pause_minutes: float = field(
        default=30.0,
        metadata=_doc(
            "After the business answers a chat by hand, the bot stays quiet in that chat "
            "this long.",
            bounds=_PAUSE_MINUTES,
        ),
    )
    resume_keyword: str = field(
        default="#bot",
        metadata=_doc(
            "A message the business sends from its phone that starts with this (any case) "
            "hands the chat back to the bot at once, instead of pausing it: the bot "
            "answers the customer's next message. Empty: no keyword (then `wactl chats "
            "resume`)."
        ),
    )
    retry_minutes: float = field(
        default=360.0,
        metadata=_doc(
            "How long a worker keeps trying a message whose handling failed for a reason "
            "that may pass (the database unreachable, locked or full; the disk full; "
            "WhatsApp not reachable), with growing delays of 1 s up to 60 s. Its chat "
            "waits meanwhile (order holds), other chats go on. After that it is marked "
            "FAILED; a redelivery of it, or the worker's next start, tries again.",
            bounds=Bounds(0, 525_600, low_open=True),
        ),
    )
    read_receipts: bool = field(
        default=True,
        metadata=_doc(
            "Mark a customer's message read (blue ticks) when the bot starts answering it "
            "(whatsapp-web). Never for a message the bot stays silent on: a chat paused for "
            "a person stays unread for them. Off: the bot's replies leave the chat unread."
        ),
    )
    retention_days: int = field(
        default=0,
        metadata=_doc(
            "Delete conversation log entries older than this many days (checked hourly "
            "by each worker). 0 keeps everything; `wactl logs prune` does it by hand.",
            bounds=Bounds(0, 36_500),
        ),
    )


#: Google's OpenID Connect discovery document (the default provider of the portal).
GOOGLE_METADATA_URL = "https://accounts.google.com/.well-known/openid-configuration"


@dataclass(frozen=True)
class PortalConfig:
    """The owners' web portal (`wactl portal serve`): sign-in, setup requests, QR, logs."""

    public_base_url: str = field(
        default="",
        metadata=_doc(
            'The address owners open, such as "https://portal.example.com". The sign-in '
            "provider sends them back to <public_base_url>/auth/callback (register that "
            "redirect URI with Google), and under https the session cookie is Secure. "
            "Empty: http://HOST:PORT of `wactl portal serve`."
        ),
    )
    google_client_id: str = field(
        default="",
        metadata=_doc(
            "OAuth client ID of the portal (Google Cloud console, APIs & Services, "
            'Credentials, "OAuth client ID" of type "Web application"). Empty: the portal '
            "starts, and its page and log say what to configure."
        ),
    )
    google_client_secret: str = field(
        default="",
        metadata=_doc("The secret of that OAuth client.", secret=True),
    )
    oidc_metadata_url: str = field(
        default=GOOGLE_METADATA_URL,
        metadata=_doc(
            "OpenID Connect discovery document of the sign-in provider. Google by "
            "default; any OpenID provider works (Keycloak, Authentik, Microsoft...)."
        ),
    )
    session_secret: str = field(
        default="",
        metadata=_doc(
            "Key that signs the portal's session cookie, at least 32 characters. `wactl "
            "init` generates one when it is empty; changing it signs everybody out.",
            secret=True,
        ),
    )
    session_hours: float = field(
        default=168.0,
        metadata=_doc(
            "How long a sign-in lasts before the owner must sign in again. Signing out "
            "ends it at once, in every browser of that account.",
            bounds=Bounds(0, 8760, low_open=True),
        ),
    )
    allowed_email_domains: str = field(
        default="",
        metadata=_doc(
            'Comma-separated email domains allowed to sign in, such as "casapepe.es, '
            'example.com". Empty: any account whose email the provider has verified. '
            "Checked on every request: narrowing it ends the sessions of other domains."
        ),
    )
    trusted_proxies: str = field(
        default="",
        metadata=_doc(
            "Comma-separated addresses or networks of the reverse proxies in front of the "
            'portal, such as "127.0.0.1" or "10.0.0.0/8, ::1". Only a request that comes '
            "from one of them has its X-Forwarded-For (the client's address, which the "
            "sign-in rate limit counts) and X-Forwarded-Proto (https: Secure cookie) "
            "believed. Empty: none; the connection's own address is the client's."
        ),
    )
    signin_per_minute: float = field(
        default=10.0,
        metadata=_doc(
            "Sign-in attempts per minute from one address (after a burst of as many); "
            "over it the portal answers 429 and says when to try again.",
            bounds=_RATE,
        ),
    )
    posts_per_minute: float = field(
        default=30.0,
        metadata=_doc(
            "Form posts and API writes per minute from one signed-in owner (after a "
            "burst of as many).",
            bounds=_RATE,
        ),
    )


@dataclass(frozen=True)
class WajsConfig:
    """The wa-js library the whatsapp-web engine injects into WhatsApp Web.

    `wactl engine install` (and the engine, on first use) fetches the version pinned in
    wactl and checks it against the integrity hash pinned beside that version, so no
    registry or mirror can change what runs.
    """

    npm_registry: str = field(
        default="",
        metadata=_doc(
            "npm registry to fetch @wppconnect/wa-js from, such as a company mirror "
            '("https://npm.example.com/"). Empty: $npm_config_registry when set, else '
            "https://registry.npmjs.org. npm is used when it is on PATH, else the "
            "registry's tarball is downloaded directly."
        ),
    )
    download_timeout_seconds: float = field(
        default=120.0,
        metadata=_doc(
            "How long fetching wa-js (npm pack or the download) may take.",
            bounds=_POSITIVE_SECONDS_HOUR,
        ),
    )


@dataclass(frozen=True)
class TuiConfig:
    """The live dashboard, `wactl tui`."""

    refresh_seconds: float = field(
        default=2.0,
        metadata=_doc(
            "How often the dashboard asks the daemon for fresh CPU, memory and heartbeat "
            "figures, and reads the selected tenant's conversation and worker log; state "
            "changes show at once, from the daemon's events.",
            bounds=Bounds(1, 3600, low_hint="the dashboard polls the daemon at most once a second"),
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
    wajs: WajsConfig = field(default_factory=WajsConfig)
    portal: PortalConfig = field(default_factory=PortalConfig)
    tui: TuiConfig = field(default_factory=TuiConfig)
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
    "wajs": WajsConfig,
    "portal": PortalConfig,
    "tui": TuiConfig,
}

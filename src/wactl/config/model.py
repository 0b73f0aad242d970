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
class Config:
    """The whole configuration, plus the file it was read from."""

    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    defaults: DefaultsConfig = field(default_factory=DefaultsConfig)
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
}

"""Typed configuration: one TOML file, environment overrides, documented defaults.

Discovery order of the file: ``--config PATH`` > ``$WACTL_CONFIG`` >
``$XDG_CONFIG_HOME/wactl/config.toml`` (see `wactl.paths`).

Precedence of a value: command-line flag > environment variable
``WACTL_<SECTION>_<KEY>`` (for example ``WACTL_DATABASE_URL``) > file > default.

A missing file is not an error (every key has a default); a file that is not TOML,
holds an unknown key or a value of the wrong type is, and the error names the file,
the key and the closest valid spelling. Stdlib only at import time.
"""

from wactl.config.loader import (
    ENV_PREFIX,
    apply_setting,
    apply_settings,
    check_portal_credentials,
    load_config,
    parse_config_text,
    redact_url,
    render_config,
    write_config,
)
from wactl.config.model import SECTIONS, Config, DatabaseConfig, DefaultsConfig, PathsConfig

__all__ = [
    "ENV_PREFIX",
    "SECTIONS",
    "Config",
    "DatabaseConfig",
    "DefaultsConfig",
    "PathsConfig",
    "apply_setting",
    "apply_settings",
    "check_portal_credentials",
    "load_config",
    "parse_config_text",
    "redact_url",
    "render_config",
    "write_config",
]

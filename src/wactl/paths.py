"""Where wactl keeps its files, following the XDG base directory specification.

Discovery (DESIGN.md section 6):

- config file: ``--config`` flag > ``$WACTL_CONFIG`` > ``$XDG_CONFIG_HOME/wactl/config.toml``
  (``~/.config/wactl/config.toml`` when XDG_CONFIG_HOME is unset);
- data (SQLite database, per-tenant logs and browser profiles): ``$XDG_DATA_HOME/wactl``;
- runtime (daemon socket and pid file): ``$XDG_RUNTIME_DIR/wactl``, falling back to
  ``$XDG_STATE_HOME/wactl/run`` when there is no runtime dir.

Stdlib only: this module is imported on the fast ``--help`` path.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "wactl"


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable, "")
    # The spec says relative paths in these variables are invalid and must be ignored.
    if value and Path(value).is_absolute():
        return Path(value)
    return Path.home() / fallback


def config_home() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / APP


def data_home() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / APP


def state_home() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / APP


def runtime_home() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and Path(runtime).is_absolute():
        return Path(runtime) / APP
    return state_home() / "run"


def default_config_file() -> Path:
    return config_home() / "config.toml"


def config_file(flag: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use: the flag, then ``$WACTL_CONFIG``, then the XDG default."""
    if flag:
        return Path(flag).expanduser()
    env = os.environ.get("WACTL_CONFIG", "")
    if env:
        return Path(env).expanduser()
    return default_config_file()

"""The daemon as a system service: `wactl daemon install-unit` writes a unit that
systemd accepts (`systemd-analyze verify`), the example in examples/ is that unit, and
a config that would let the service and the CLI disagree on paths is refused.

`systemd-analyze` comes from Debian's systemd package (scripts/ensure-systemd-analyze
installs it, as `make test` does); in CI its absence fails the test, elsewhere it
skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CLI
from wactl.config.model import Config, PathsConfig
from wactl.daemon.systemd_unit import render_unit

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "wactld.service"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found:
        return found
    message = (
        "systemd-analyze is not installed; install it with `apt-get install systemd` "
        "(scripts/ensure-systemd-analyze does)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must verify the unit", pytrace=False)
    pytest.skip(message)


def service_config(cli: CLI, path: Path, *settings: str) -> None:
    for key, value in zip(settings[::2], settings[1::2], strict=True):
        result = cli("--config", str(path), "config", "set", key, value)
        assert result.code == 0, result.err


def test_install_unit_writes_a_unit_systemd_accepts(cli: CLI, tmp_path: Path) -> None:
    analyze = systemd_analyze()
    config = tmp_path / "etc" / "config.toml"
    service_config(
        cli, config, "paths.data_dir", "/var/lib/wactl-test", "paths.runtime_dir", "/run/wactl-test"
    )
    result = cli("--config", str(config), "daemon", "install-unit", "--user", "wactl-test")
    assert result.code == 0, result.err
    unit = tmp_path / "wactld.service"
    unit.write_text(result.out)
    assert f"ExecStart={sys.executable} -m wactl --config {config} daemon run\n" in result.out
    for line in ("User=wactl-test", "RuntimeDirectory=wactl-test", "StateDirectory=wactl-test"):
        assert f"\n{line}\n" in result.out
    checked = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def test_the_example_unit_is_what_install_unit_writes() -> None:
    config = Config(
        paths=PathsConfig(data_dir="/var/lib/wactl", runtime_dir="/run/wactl"),
        source=Path("/etc/wactl/config.toml"),
    )
    rendered = render_unit(config, user="wactl", python="/opt/wactl/.venv/bin/python")
    assert EXAMPLE.read_text() == rendered


def test_install_unit_refuses_paths_the_cli_would_not_share(cli: CLI, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    result = cli("--config", str(config), "daemon", "install-unit")
    assert (result.code, result.out) == (3, "")
    assert result.err == (
        f"error: no config file at {config}; write it first, as wactl: "
        f"`wactl --config {config} init`\n"
    )
    # A runtime directory from the environment (XDG_RUNTIME_DIR) is what went wrong
    # before: the unit's and the operators' differed. It must be in the file, under /run.
    service_config(cli, config, "paths.runtime_dir", "/tmp/wactl")
    result = cli("--config", str(config), "daemon", "install-unit")
    assert result.code == 3
    assert result.err == (
        f"error: {config}: paths.runtime_dir must be a folder of /run, such as /run/wactl; "
        "paths.data_dir must be an absolute path, such as /var/lib/wactl (the service and "
        "every wactl command must agree on them, so they belong in the config file); "
        f"`wactl --config {config} config set paths.runtime_dir /run/wactl` (and "
        "paths.data_dir /var/lib/wactl)\n"
    )

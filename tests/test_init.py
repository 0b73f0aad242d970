"""`wactl init`: writes config, creates directories, migrates; a second run changes nothing."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.conftest import CLI
from wactl.config import parse_config_text
from wactl.db import migrate
from wactl.db.engine import make_engine


def test_init_on_embedded_defaults_then_again(cli: CLI, isolated_env: Path) -> None:
    config_file = isolated_env / ".config/wactl/config.toml"
    database = isolated_env / ".local/share/wactl/wactl.db"
    result = cli("init")
    assert result.code == 0, result.err
    assert f"config: wrote {config_file}" in result.err
    assert f"database: migrated sqlite:///{database} from empty to" in result.err
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    text = config_file.read_text()
    assert text.count("\n# ") > 10  # documented, key by key
    assert parse_config_text(text, source=config_file)["database"]["url"] == ""
    for directory in ("run/wactl", ".local/share/wactl/logs"):
        assert (isolated_env / directory).is_dir()
    engine = make_engine(f"sqlite:///{database}")
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()

    before = config_file.read_bytes()
    result = cli("init")
    assert result.code == 0
    assert result.err.endswith("wactl was already initialised; nothing changed.\n")
    assert config_file.read_bytes() == before
    events = cli("audit", "--json").out
    assert events.count('"db.upgraded"') == 1


def test_init_with_config_flag_and_postgres(cli: CLI, empty_db_url: str, tmp_path: Path) -> None:
    config_file = tmp_path / "etc" / "wactl.toml"
    result = cli("--config", str(config_file), "init")
    assert result.code == 0, result.err
    assert config_file.is_file()
    assert cli("--config", str(config_file), "db", "current").out.endswith("(up to date)\n")
    assert "nothing changed" in cli("--config", str(config_file), "init").err


def test_init_refuses_a_broken_config_and_writes_nothing(cli: CLI, isolated_env: Path) -> None:
    config_file = isolated_env / ".config/wactl/config.toml"
    config_file.parent.mkdir(parents=True)
    config_file.write_text("[database]\nurll = 'sqlite:///x.db'\n")
    result = cli("init")
    assert (result.code, result.err) == (
        3,
        f"error: config file {config_file}: unknown key 'database.urll'; did you mean 'url'?\n",
    )
    assert not (isolated_env / ".local/share/wactl").exists()

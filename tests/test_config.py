"""The config file: discovery, precedence, `wactl config path|show|validate|set`.

Everything runs on real files under tmp_path; the autouse ``isolated_env`` fixture has
pointed HOME and the XDG variables there and removed every outside WACTL_* variable.
"""

from __future__ import annotations

import dataclasses
import json
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI
from tests.support import Result
from wactl import paths
from wactl.config import (
    SECTIONS,
    Config,
    DatabaseConfig,
    DefaultsConfig,
    PathsConfig,
    load_config,
    parse_config_text,
    redact_url,
    render_config,
    write_config,
)
from wactl.config.loader import build_config
from wactl.errors import ConfigError, ExitCode

PG_URL = "postgresql+psycopg://wactl:s3cr3t-pw@db.example.com:5432/wactl"
PG_URL_REDACTED = "postgresql+psycopg://wactl:***@db.example.com:5432/wactl"

#: Every "section.key" in model order: the list `wactl config set` offers for a bad key.
ALL_KEYS = [f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)]

#: The sections these tests are about, as a file with nothing set gives them.
DEFAULT_SECTIONS: dict[str, dict[str, Any]] = {
    "database": {"url": "", "busy_timeout_ms": 5000, "echo": False},
    "paths": {"data_dir": "", "runtime_dir": ""},
    "defaults": {"template": "generic", "language": "en", "timezone": "UTC", "engine": "sandbox"},
}


def error_line(result: Result) -> str:
    """The one stderr line of a failed command, without the ``error: `` prefix."""
    assert result.err.count("\n") == 1, f"expected exactly one stderr line: {result.err!r}"
    assert result.err.startswith("error: ") and result.err.endswith("\n"), result.err
    return result.err.removeprefix("error: ").removesuffix("\n")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """Where a test's own config file goes (passed with --config); not created."""
    return tmp_path / "etc" / "wactl.toml"


@pytest.fixture
def default_file(isolated_env: Path) -> Path:
    """The file wactl finds with no flag and no WACTL_CONFIG (under XDG_CONFIG_HOME)."""
    return isolated_env / ".config" / "wactl" / "config.toml"


# --- discovery ---------------------------------------------------------------------------


def test_default_config_file_is_under_xdg_config_home(default_file: Path) -> None:
    assert paths.config_file() == default_file


def test_config_file_without_xdg_config_home_is_under_dot_config(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert paths.config_file() == isolated_env / ".config" / "wactl" / "config.toml"


def test_wactl_config_beats_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WACTL_CONFIG", str(tmp_path / "from-env.toml"))
    assert paths.config_file() == tmp_path / "from-env.toml"


def test_flag_beats_wactl_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WACTL_CONFIG", str(tmp_path / "from-env.toml"))
    assert paths.config_file(tmp_path / "from-flag.toml") == tmp_path / "from-flag.toml"
    assert paths.config_file(str(tmp_path / "from-flag.toml")) == tmp_path / "from-flag.toml"


def test_empty_flag_and_empty_env_fall_back_to_xdg(
    default_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WACTL_CONFIG", "")
    assert paths.config_file("") == default_file


def test_tilde_is_expanded_in_flag_and_env(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert paths.config_file("~/flag.toml") == isolated_env / "flag.toml"
    monkeypatch.setenv("WACTL_CONFIG", "~/env.toml")
    assert paths.config_file() == isolated_env / "env.toml"


@pytest.mark.parametrize(
    ("variable", "home_of", "fallback"),
    [
        ("XDG_CONFIG_HOME", paths.config_home, ".config/wactl"),
        ("XDG_DATA_HOME", paths.data_home, ".local/share/wactl"),
        ("XDG_STATE_HOME", paths.state_home, ".local/state/wactl"),
    ],
)
def test_relative_xdg_variables_are_ignored(
    variable: str,
    home_of: Callable[[], Path],
    fallback: str,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, "relative/dir")
    assert home_of() == isolated_env / fallback


@pytest.mark.parametrize(
    ("variable", "home_of"),
    [
        ("XDG_CONFIG_HOME", paths.config_home),
        ("XDG_DATA_HOME", paths.data_home),
        ("XDG_STATE_HOME", paths.state_home),
        ("XDG_RUNTIME_DIR", paths.runtime_home),
    ],
)
def test_absolute_xdg_variables_are_used(
    variable: str, home_of: Callable[[], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, str(tmp_path / "xdg"))
    assert home_of() == tmp_path / "xdg" / "wactl"


def test_runtime_dir_falls_back_to_state_home_without_xdg_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert paths.runtime_home() == tmp_path / "state" / "wactl" / "run"


def test_relative_xdg_runtime_dir_falls_back_to_state_home(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "run")
    monkeypatch.delenv("XDG_STATE_HOME")
    assert paths.runtime_home() == isolated_env / ".local" / "state" / "wactl" / "run"


def test_config_directories_follow_xdg_unless_set(isolated_env: Path, tmp_path: Path) -> None:
    config = Config()
    assert config.data_dir == isolated_env / ".local" / "share" / "wactl"
    assert config.runtime_dir == isolated_env / "run" / "wactl"
    assert config.log_dir == config.data_dir / "logs"
    assert config.database_url == f"sqlite:///{config.data_dir / 'wactl.db'}"

    chosen = Config(
        paths=PathsConfig(data_dir="~/data", runtime_dir=str(tmp_path / "rt")),
        database=DatabaseConfig(url=PG_URL),
    )
    assert chosen.data_dir == isolated_env / "data"
    assert chosen.runtime_dir == tmp_path / "rt"
    assert chosen.database_url == PG_URL


def test_missing_file_gives_defaults(config_file: Path) -> None:
    config = load_config(config_file)
    assert config == Config()
    assert config.source == config_file


def test_cli_config_path_default_and_note_when_missing(cli: CLI, default_file: Path) -> None:
    result = cli("config", "path")
    assert result == Result(
        0, f"{default_file}\n", "(it does not exist yet; `wactl init` writes it)\n"
    )


def test_cli_config_path_no_note_when_present(cli: CLI, default_file: Path) -> None:
    write(default_file, "")
    assert cli("config", "path") == Result(0, f"{default_file}\n", "")


def test_cli_config_path_follows_env_then_flag(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = write(tmp_path / "env.toml", "")
    monkeypatch.setenv("WACTL_CONFIG", str(from_env))
    assert cli("config", "path").out == f"{from_env}\n"
    from_flag = tmp_path / "flag.toml"
    assert cli("--config", str(from_flag), "config", "path").out == f"{from_flag}\n"
    assert cli("-c", str(from_flag), "config", "path").out == f"{from_flag}\n"


def test_cli_reads_the_file_the_flag_names(
    cli: CLI, tmp_path: Path, default_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(default_file, '[defaults]\nlanguage = "en"\n')
    monkeypatch.setenv(
        "WACTL_CONFIG", str(write(tmp_path / "env.toml", '[defaults]\nlanguage = "pt"\n'))
    )
    flag = write(tmp_path / "flag.toml", '[defaults]\nlanguage = "es"\n')

    def language(*args: str) -> str:
        result = cli(*args, "config", "show", "--json")
        assert result.code == 0, result.err
        value: str = json.loads(result.out)["defaults"]["language"]
        return value

    assert language("--config", str(flag)) == "es"
    assert language() == "pt"
    monkeypatch.delenv("WACTL_CONFIG")
    assert language() == "en"


# --- precedence: environment over file over default ---------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw", "section", "key", "expected"),
    [
        ("WACTL_DATABASE_URL", PG_URL, "database", "url", PG_URL),
        ("WACTL_DATABASE_BUSY_TIMEOUT_MS", "250", "database", "busy_timeout_ms", 250),
        ("WACTL_DATABASE_BUSY_TIMEOUT_MS", " 0 ", "database", "busy_timeout_ms", 0),
        ("WACTL_DATABASE_ECHO", "true", "database", "echo", True),
        ("WACTL_DATABASE_ECHO", "YES", "database", "echo", True),
        ("WACTL_DATABASE_ECHO", "1", "database", "echo", True),
        ("WACTL_DATABASE_ECHO", "on", "database", "echo", True),
        ("WACTL_DEFAULTS_LANGUAGE", "pt", "defaults", "language", "pt"),
        ("WACTL_PATHS_DATA_DIR", "/srv/wactl", "paths", "data_dir", "/srv/wactl"),
    ],
)
def test_environment_overrides_file(
    variable: str,
    raw: str,
    section: str,
    key: str,
    expected: object,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(
        config_file,
        '[database]\nurl = "sqlite:////srv/file.db"\nbusy_timeout_ms = 9000\necho = true\n'
        '[paths]\ndata_dir = "/srv/file"\n[defaults]\nlanguage = "es"\n',
    )
    monkeypatch.setenv(variable, raw)
    config = load_config(config_file)
    assert getattr(getattr(config, section), key) == expected


@pytest.mark.parametrize("raw", ["false", "0", "no", "OFF", " False "])
def test_environment_switches_a_file_true_off(
    raw: str, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(config_file, "[database]\necho = true\n")
    monkeypatch.setenv("WACTL_DATABASE_ECHO", raw)
    assert load_config(config_file).database.echo is False


def test_file_beats_default_and_env_only_touches_its_key(config_file: Path) -> None:
    write(config_file, "[database]\nbusy_timeout_ms = 9000\necho = true\n")
    config = load_config(config_file, environ={"WACTL_DATABASE_URL": PG_URL})
    assert config.database == DatabaseConfig(url=PG_URL, busy_timeout_ms=9000, echo=True)
    assert config.defaults == DefaultsConfig()


def test_use_env_false_ignores_environment(config_file: Path) -> None:
    write(config_file, "[database]\nbusy_timeout_ms = 9000\n")
    config = load_config(
        config_file,
        environ={"WACTL_DATABASE_BUSY_TIMEOUT_MS": "abc", "WACTL_DATABASE_UR": "x"},
        use_env=False,
    )
    assert config.database.busy_timeout_ms == 9000


def test_unrelated_wactl_variables_are_not_rejected(config_file: Path) -> None:
    environ = {
        "WACTL_DEBUG": "1",
        "WACTL_TEST_PG_URL": "postgresql+psycopg://postgres@127.0.0.1/postgres",
        "WACTL_CONFIG": "/elsewhere.toml",
        "WACTLDATABASE_URL": "not ours",
        "HOME": "/nowhere",
    }
    assert load_config(config_file, environ=environ) == Config()


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        (
            "WACTL_DATABASE_BUSY_TIMEOUT_MS",
            "abc",
            "environment variable WACTL_DATABASE_BUSY_TIMEOUT_MS: expected an integer, not 'abc'",
        ),
        (
            "WACTL_DATABASE_BUSY_TIMEOUT_MS",
            "1.5",
            "environment variable WACTL_DATABASE_BUSY_TIMEOUT_MS: expected an integer, not '1.5'",
        ),
        (
            "WACTL_DATABASE_BUSY_TIMEOUT_MS",
            "",
            "environment variable WACTL_DATABASE_BUSY_TIMEOUT_MS: expected an integer, not ''",
        ),
        (
            "WACTL_DATABASE_ECHO",
            "maybe",
            "environment variable WACTL_DATABASE_ECHO: expected true or false, not 'maybe'",
        ),
        (
            "WACTL_DATABASE_ECHO",
            "2",
            "environment variable WACTL_DATABASE_ECHO: expected true or false, not '2'",
        ),
        (
            "WACTL_DATABASE_UR",
            PG_URL,
            "environment variable WACTL_DATABASE_UR is not a config key; "
            "did you mean WACTL_DATABASE_URL?",
        ),
        (
            "WACTL_DEFAULTS_TIMEZONES",
            "UTC",
            "environment variable WACTL_DEFAULTS_TIMEZONES is not a config key; "
            "did you mean WACTL_DEFAULTS_TIMEZONE?",
        ),
    ],
)
def test_bad_environment_values_name_the_variable(
    variable: str, raw: str, message: str, config_file: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(config_file, environ={variable: raw})
    assert caught.value.one_line() == message
    assert caught.value.exit_code == ExitCode.CONFIG


def test_environment_value_is_validated_like_the_file(config_file: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(config_file, environ={"WACTL_DEFAULTS_LANGUAGE": "fr"})
    assert caught.value.one_line() == (
        f"config file {config_file} (with WACTL_* environment overrides): "
        "defaults.language 'fr' is not one of en, es, pt"
    )


def test_cli_bad_environment_value_is_one_error_line(
    cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WACTL_DATABASE_ECHO", "maybe")
    result = cli("config", "show")
    assert result.code == ExitCode.CONFIG
    assert result.out == ""
    assert error_line(result) == (
        "environment variable WACTL_DATABASE_ECHO: expected true or false, not 'maybe'"
    )


def test_cli_near_miss_environment_variable_is_reported(
    cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WACTL_DATABASE_UR", PG_URL)
    result = cli("config", "show", "--json")
    assert result.code == ExitCode.CONFIG
    assert error_line(result) == (
        "environment variable WACTL_DATABASE_UR is not a config key; "
        "did you mean WACTL_DATABASE_URL?"
    )
    assert "s3cr3t" not in result.err


# --- wactl config validate ----------------------------------------------------------------


def test_validate_valid_file(cli: CLI, config_file: Path) -> None:
    write(
        config_file,
        '[database]\nurl = "postgresql+psycopg://u:pw@h/db"\nbusy_timeout_ms = 0\n'
        'echo = false\n[paths]\ndata_dir = "/srv/wactl"\n'
        '[defaults]\ntemplate = "clinic"\nlanguage = "es"\ntimezone = "Europe/Madrid"\n'
        'engine = "whatsapp-web"\n',
    )
    assert cli("--config", str(config_file), "config", "validate") == Result(
        0, f"{config_file}: valid\n", ""
    )


@pytest.mark.parametrize("text", ["", "# only a comment\n", "[database]\n[paths]\n"])
def test_validate_file_with_nothing_set_is_valid(cli: CLI, config_file: Path, text: str) -> None:
    write(config_file, text)
    assert cli("-c", str(config_file), "config", "validate").code == ExitCode.OK


def test_validate_default_location(cli: CLI, default_file: Path) -> None:
    write(default_file, '[defaults]\ntimezone = "America/Sao_Paulo"\n')
    assert cli("config", "validate") == Result(0, f"{default_file}: valid\n", "")


def test_validate_file_written_by_render_config(cli: CLI, config_file: Path) -> None:
    write(config_file, render_config(Config()))
    assert cli("-c", str(config_file), "config", "validate").code == ExitCode.OK


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('[database]\nurl = "x"\nbusy_timeout_ms = = 5\n', 3),
        ("a = = 1\n", 1),
        ('[database]\nurl = "unterminated\n', 2),
        ("[database\n", 1),
        ("[database]\necho = false\necho = true\n", 3),
        ("\n\n\n\n[defaults]\nlanguage = es\n", 6),
    ],
)
def test_validate_not_toml(cli: CLI, config_file: Path, text: str, line: int) -> None:
    write(config_file, text)
    result = cli("--config", str(config_file), "config", "validate")
    assert result.code == ExitCode.CONFIG
    assert result.out == ""
    message = error_line(result)
    assert message.startswith(f"config file {config_file} is not valid TOML: ")
    assert f"line {line}" in message
    assert message.endswith("; fix that line, or run `wactl config validate` after editing")


def test_validate_unknown_key_suggests_spelling(cli: CLI, config_file: Path) -> None:
    write(config_file, '[database]\nurll = "sqlite:///x.db"\n')
    result = cli("--config", str(config_file), "config", "validate")
    assert result.code == ExitCode.CONFIG
    assert error_line(result) == (
        f"config file {config_file}: unknown key 'database.urll'; did you mean 'url'?"
    )


def test_validate_unknown_key_without_near_miss_lists_keys(cli: CLI, config_file: Path) -> None:
    write(config_file, "[defaults]\nqqqq = 1\n")
    result = cli("--config", str(config_file), "config", "validate")
    assert result.code == ExitCode.CONFIG
    assert error_line(result) == (
        f"config file {config_file}: unknown key 'defaults.qqqq'; "
        "valid keys: template, language, timezone, engine"
    )


def test_validate_unknown_section_suggests_spelling(cli: CLI, config_file: Path) -> None:
    write(config_file, '[databse]\nurl = "sqlite:///x.db"\n')
    result = cli("--config", str(config_file), "config", "validate")
    assert result.code == ExitCode.CONFIG
    assert error_line(result) == (
        f"config file {config_file}: unknown section [databse]; did you mean 'database'?"
    )


def test_validate_unknown_section_without_near_miss(cli: CLI, config_file: Path) -> None:
    write(config_file, "[zzz]\nmax = 3\n")
    result = cli("--config", str(config_file), "config", "validate")
    assert result.code == ExitCode.CONFIG
    assert error_line(result) == (
        f"config file {config_file}: unknown section [zzz]; valid sections: {', '.join(SECTIONS)}"
    )


def test_validate_section_that_is_not_a_table(cli: CLI, config_file: Path) -> None:
    write(config_file, "database = 1\n")
    result = cli("--config", str(config_file), "config", "validate")
    assert error_line(result) == (
        f"config file {config_file}: 'database' must be a table [database]"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[database]\nbusy_timeout_ms = "x"\n',
            "'database.busy_timeout_ms' must be an integer, not 'x'",
        ),
        (
            "[database]\nbusy_timeout_ms = 1.5\n",
            "'database.busy_timeout_ms' must be an integer, not 1.5",
        ),
        # TOML booleans are not numbers, although Python's bool is an int.
        (
            "[database]\nbusy_timeout_ms = true\n",
            "'database.busy_timeout_ms' must be an integer, not True",
        ),
        ("[database]\necho = 1\n", "'database.echo' must be true or false, not 1"),
        ('[database]\necho = "true"\n', "'database.echo' must be true or false, not 'true'"),
        ("[database]\nurl = 5\n", "'database.url' must be a string, not 5"),
        ('[defaults]\nlanguage = ["en"]\n', "'defaults.language' must be a string, not ['en']"),
    ],
)
def test_validate_wrong_type(cli: CLI, config_file: Path, text: str, message: str) -> None:
    write(config_file, text)
    result = cli("--config", str(config_file), "config", "validate")
    assert result.code == ExitCode.CONFIG
    assert result.out == ""
    assert error_line(result) == f"config file {config_file}: {message}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[defaults]\nlanguage = "fr"\n', "defaults.language 'fr' is not one of en, es, pt"),
        (
            '[defaults]\ntemplate = "bakery"\n',
            "defaults.template 'bakery' is not one of restaurant, clinic, salon, retail, generic",
        ),
        (
            '[defaults]\nengine = "telegram"\n',
            "defaults.engine 'telegram' is not one of sandbox, whatsapp-web",
        ),
        (
            '[defaults]\ntimezone = "Mars/X"\n',
            "defaults.timezone 'Mars/X' is not a known time zone; "
            'use an IANA name such as "Europe/Madrid" or "UTC"',
        ),
        (
            '[defaults]\ntimezone = "../../etc/passwd"\n',
            "defaults.timezone '../../etc/passwd' is not a known time zone; "
            'use an IANA name such as "Europe/Madrid" or "UTC"',
        ),
        (
            '[database]\nurl = "mysql://root:hunter2@db.example.com/wactl"\n',
            "database.url must be a sqlite:/// or postgresql+psycopg:// URL, "
            "not 'mysql://root:***@db.example.com/wactl'",
        ),
        (
            "[database]\nbusy_timeout_ms = -1\n",
            "database.busy_timeout_ms must be 0 or more, not -1",
        ),
        (
            '[pipeline]\nresume_keyword = "#bot\\u001b[2J"\n',
            "pipeline.resume_keyword must be one line of printable text of at most 50 "
            'characters, without leading or trailing spaces; e.g. "#bot"; empty for no keyword',
        ),
        (
            '[pipeline]\nresume_keyword = " #bot"\n',
            "pipeline.resume_keyword must be one line of printable text of at most 50 "
            'characters, without leading or trailing spaces; e.g. "#bot"; empty for no keyword',
        ),
        (
            '[browser]\ndevice_name = "{name} {secret}"\n',
            "browser.device_name must be one line of printable text of at most 200 "
            "characters, with no braces but the placeholders {name} and {slug}; "
            'e.g. "{name} (wactl)"; empty for WhatsApp Web\'s own name',
        ),
    ],
)
def test_validate_bad_value(cli: CLI, config_file: Path, text: str, message: str) -> None:
    write(config_file, text)
    result = cli("--config", str(config_file), "config", "validate")
    assert result.code == ExitCode.CONFIG
    assert result.out == ""
    assert error_line(result) == f"config file {config_file}: {message}"
    assert "hunter2" not in result.err


def test_validate_missing_file_points_at_init(cli: CLI, config_file: Path) -> None:
    result = cli("--config", str(config_file), "config", "validate")
    assert result.code == ExitCode.CONFIG
    assert result.out == ""
    assert error_line(result) == f"config file {config_file} does not exist; run `wactl init`"


def test_validate_file_that_is_not_utf8(cli: CLI, config_file: Path) -> None:
    config_file.parent.mkdir(parents=True)
    config_file.write_bytes(b'[defaults]\nlanguage = "\xff"\n')
    result = cli("--config", str(config_file), "config", "validate")
    assert result.code == ExitCode.CONFIG
    assert error_line(result) == f"config file {config_file} is not UTF-8 text"


def test_validate_directory_instead_of_file(cli: CLI, config_file: Path) -> None:
    config_file.mkdir(parents=True)
    result = cli("--config", str(config_file), "config", "validate")
    assert result.code == ExitCode.CONFIG
    assert error_line(result) == (f"config file {config_file} is a directory, not a regular file")


# --- wactl config show --------------------------------------------------------------------


def test_show_redacts_password_in_toml(cli: CLI, config_file: Path) -> None:
    write(config_file, f'[database]\nurl = "{PG_URL}"\n')
    result = cli("--config", str(config_file), "config", "show")
    assert result.code == 0, result.err
    assert result.err == ""
    assert f'url = "{PG_URL_REDACTED}"\n' in result.out
    assert "s3cr3t" not in result.out
    # The output is itself a documented, loadable config file.
    assert result.out.startswith("# wactl configuration.")
    shown = parse_config_text(result.out, source=config_file)
    assert shown["database"]["url"] == PG_URL_REDACTED


def test_show_redacts_password_in_json(cli: CLI, config_file: Path) -> None:
    write(config_file, f'[database]\nurl = "{PG_URL}"\n')
    result = cli("--config", str(config_file), "config", "show", "--json")
    assert result.code == 0, result.err
    assert "s3cr3t" not in result.out
    assert json.loads(result.out)["database"]["url"] == PG_URL_REDACTED


def test_show_json_is_every_effective_value(
    cli: CLI, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        config_file,
        '[database]\nbusy_timeout_ms = 9000\n[defaults]\nlanguage = "es"\n'
        'timezone = "Europe/Madrid"\n',
    )
    monkeypatch.setenv("WACTL_DATABASE_URL", PG_URL)
    monkeypatch.setenv("WACTL_DATABASE_BUSY_TIMEOUT_MS", "250")
    monkeypatch.setenv("WACTL_DATABASE_ECHO", "yes")
    result = cli("--config", str(config_file), "config", "show", "--json")
    assert result.code == 0, result.err
    assert result.err == ""
    shown = json.loads(result.out)
    assert shown["database"] == {"url": PG_URL_REDACTED, "busy_timeout_ms": 250, "echo": True}
    assert shown["paths"] == DEFAULT_SECTIONS["paths"]
    assert shown["defaults"] == {
        **DEFAULT_SECTIONS["defaults"],
        "language": "es",
        "timezone": "Europe/Madrid",
    }
    # Stable order: every section and key, as the model defines them.
    assert [f"{name}.{key}" for name, body in shown.items() for key in body] == ALL_KEYS


def test_show_toml_has_environment_overrides(
    cli: CLI, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(config_file, "[database]\nbusy_timeout_ms = 9000\n")
    monkeypatch.setenv("WACTL_DATABASE_BUSY_TIMEOUT_MS", "250")
    monkeypatch.setenv("WACTL_DATABASE_URL", PG_URL)
    result = cli("--config", str(config_file), "config", "show")
    assert result.code == 0, result.err
    values = tomllib.loads(result.out)
    assert values["database"] == {"url": PG_URL_REDACTED, "busy_timeout_ms": 250, "echo": False}
    assert "s3cr3t" not in result.out


def test_show_without_file_prints_defaults(cli: CLI) -> None:
    result = cli("config", "show")
    assert result.code == 0, result.err
    assert result.out == render_config(Config())
    shown = tomllib.loads(result.out)
    assert list(shown) == list(SECTIONS)
    assert {name: shown[name] for name in DEFAULT_SECTIONS} == DEFAULT_SECTIONS


def test_show_of_invalid_file_is_one_error_line(cli: CLI, config_file: Path) -> None:
    write(config_file, '[database]\nurll = "x"\n')
    result = cli("--config", str(config_file), "config", "show", "--json")
    assert result.code == ExitCode.CONFIG
    assert result.out == ""
    assert error_line(result) == (
        f"config file {config_file}: unknown key 'database.urll'; did you mean 'url'?"
    )


# --- wactl config set ---------------------------------------------------------------------


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_set_creates_missing_file_documented_and_private(cli: CLI, default_file: Path) -> None:
    result = cli("config", "set", "database.busy_timeout_ms", "250")
    assert result == Result(0, "", f"{default_file}: database.busy_timeout_ms = 250\n")
    assert mode_of(default_file) == 0o600
    text = default_file.read_text(encoding="utf-8")
    assert "busy_timeout_ms = 250\n" in text
    # Still documented: the header, each section's and each key's description.
    assert text.startswith("# wactl configuration.")
    assert "# Where wactl keeps tenants, sessions, messages and the audit log.\n" in text
    assert "# Log every SQL statement to stderr (debugging only; very noisy).\n" in text
    assert '# IANA time zone of the business, such as "Europe/Madrid".\n' in text
    assert load_config(default_file, use_env=False).database.busy_timeout_ms == 250
    assert cli("config", "validate").code == ExitCode.OK
    # Nothing left behind by the atomic write.
    assert sorted(p.name for p in default_file.parent.iterdir()) == ["config.toml"]


def test_set_keeps_the_other_keys(cli: CLI, config_file: Path) -> None:
    write(config_file, '[defaults]\nlanguage = "es"\n[database]\necho = true\n')
    result = cli(
        "--config", str(config_file), "config", "set", "defaults.timezone", "Europe/Madrid"
    )
    assert result.code == 0, result.err
    config = load_config(config_file, use_env=False)
    assert config.defaults == DefaultsConfig(language="es", timezone="Europe/Madrid")
    assert config.database.echo is True


def test_set_makes_an_existing_file_private(cli: CLI, config_file: Path) -> None:
    write(config_file, "[database]\necho = false\n")
    config_file.chmod(0o644)
    assert cli("--config", str(config_file), "config", "set", "database.echo", "on").code == 0
    assert mode_of(config_file) == 0o600
    assert load_config(config_file, use_env=False).database.echo is True


def test_set_password_is_stored_but_not_echoed(cli: CLI, config_file: Path) -> None:
    result = cli("--config", str(config_file), "config", "set", "database.url", PG_URL)
    assert result == Result(0, "", f"{config_file}: database.url = '{PG_URL_REDACTED}'\n")
    assert load_config(config_file, use_env=False).database.url == PG_URL
    assert mode_of(config_file) == 0o600


def test_set_value_that_looks_like_markup_is_echoed_verbatim(cli: CLI, config_file: Path) -> None:
    result = cli("--config", str(config_file), "config", "set", "paths.data_dir", "/srv/[b]x[/b]")
    assert result == Result(0, "", f"{config_file}: paths.data_dir = '/srv/[b]x[/b]'\n")
    assert load_config(config_file, use_env=False).paths.data_dir == "/srv/[b]x[/b]"


def test_set_writes_to_file_not_environment(
    cli: CLI, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WACTL_DEFAULTS_LANGUAGE", "pt")
    assert (
        cli("--config", str(config_file), "config", "set", "defaults.engine", "whatsapp-web").code
        == 0
    )
    from_file = load_config(config_file, use_env=False)
    assert from_file.defaults == DefaultsConfig(engine="whatsapp-web")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("defaults.language", "fr"),
            "'defaults.language': defaults.language 'fr' is not one of en, es, pt",
        ),
        (
            ("database.busy_timeout_ms", "abc"),
            "'database.busy_timeout_ms': expected an integer, not 'abc'",
        ),
        (
            ("database.busy_timeout_ms", "--", "-5"),
            "'database.busy_timeout_ms': database.busy_timeout_ms must be 0 or more, not -5",
        ),
        (("database.echo", "maybe"), "'database.echo': expected true or false, not 'maybe'"),
        (
            ("defaults.timezone", "Mars/X"),
            "'defaults.timezone': defaults.timezone 'Mars/X' is not a known time zone; "
            'use an IANA name such as "Europe/Madrid" or "UTC"',
        ),
        (
            ("database.url", "mysql://root:hunter2@db/wactl"),
            "'database.url': database.url must be a sqlite:/// or postgresql+psycopg:// URL, "
            "not 'mysql://root:***@db/wactl'",
        ),
        (
            ("nosuch.key", "x"),
            f"unknown config key 'nosuch.key'; valid keys: {', '.join(ALL_KEYS)}",
        ),
        (
            ("database.urll", "x"),
            "unknown config key 'database.urll'; did you mean 'database.url'?",
        ),
        (("database", "x"), "unknown config key 'database'; did you mean 'database.url'?"),
        (("database.", "x"), "unknown config key 'database.'; did you mean 'database.url'?"),
    ],
)
@pytest.mark.parametrize("file_exists", [True, False], ids=["file", "no-file"])
def test_set_invalid_value_changes_nothing(
    cli: CLI, config_file: Path, args: tuple[str, ...], message: str, file_exists: bool
) -> None:
    # Hand-written, with comments wactl would not write: must survive byte for byte.
    before = b'# mine\n[defaults]\nlanguage = "es"   # Spanish\n'
    if file_exists:
        config_file.parent.mkdir(parents=True)
        config_file.write_bytes(before)
    result = cli("--config", str(config_file), "config", "set", *args)
    assert result.code == ExitCode.CONFIG
    assert result.out == ""
    assert error_line(result) == message
    assert "hunter2" not in result.err
    if file_exists:
        assert config_file.read_bytes() == before
        assert list(config_file.parent.iterdir()) == [config_file]
    else:
        assert not config_file.exists()
        assert not config_file.parent.exists()


def test_set_refuses_to_rewrite_an_invalid_file(cli: CLI, config_file: Path) -> None:
    write(config_file, '[database]\nurll = "x"\n')
    before = config_file.read_bytes()
    result = cli("--config", str(config_file), "config", "set", "database.echo", "true")
    assert result.code == ExitCode.CONFIG
    assert error_line(result) == (
        f"config file {config_file}: unknown key 'database.urll'; did you mean 'url'?"
    )
    assert config_file.read_bytes() == before


# --- render_config / parse_config_text / write_config --------------------------------------

AWKWARD_STRINGS = [
    'say "hi"',
    "C:\\Users\\ana\\wactl",
    "back\\\\slash\\",
    "ünïcødé ☃ 𝄞 日本語",
    "tab\tand\nnewline",
    "'single' and '''triple'''",
    '"""',
    "control \x01 \x1f \x7f chars",
    "line\u2028separator",
    "# not a comment",
    "[not.a.section]",
]


@pytest.mark.parametrize("text", AWKWARD_STRINGS)
def test_render_parse_round_trip_of_strings(text: str, tmp_path: Path) -> None:
    config = Config(paths=PathsConfig(data_dir=text, runtime_dir=text[::-1]))
    source = tmp_path / "c.toml"
    sections = parse_config_text(render_config(config), source=source)
    assert sections["paths"] == {"data_dir": text, "runtime_dir": text[::-1]}
    assert build_config(sections, source=source, where="test") == config


def test_render_parse_round_trip_of_every_key(tmp_path: Path) -> None:
    config = Config(
        database=DatabaseConfig(
            url='postgresql+psycopg://ana:p"a\\ss@db.example.com:5432/wactl',
            busy_timeout_ms=0,
            echo=True,
        ),
        paths=PathsConfig(data_dir="/srv/wactl data", runtime_dir="/run/wactl"),
        defaults=DefaultsConfig(
            template="clinic",
            language="pt",
            timezone="America/Sao_Paulo",
            engine="whatsapp-web",
        ),
    )
    source = tmp_path / "c.toml"
    text = render_config(config)
    sections = parse_config_text(text, source=source)
    assert build_config(sections, source=source, where="test") == config
    assert [line for line in text.splitlines() if line.startswith("[")] == [
        f"[{name}]" for name in SECTIONS
    ]


def test_render_documents_every_key() -> None:
    lines = render_config(Config()).splitlines()
    for name, cls in SECTIONS.items():
        start = lines.index(f"[{name}]")
        assert lines[start - 1].startswith("# "), f"[{name}] has no comment above it"
        for f in dataclasses.fields(cls):
            index = next(i for i in range(start, len(lines)) if lines[i].startswith(f"{f.name} = "))
            assert lines[index - 1].startswith("# "), f"{name}.{f.name} has no comment above it"
    assert all(len(line) <= 88 for line in lines if line.startswith("#"))


def test_render_redacted_hides_password() -> None:
    config = Config(database=DatabaseConfig(url=PG_URL))
    assert "s3cr3t" not in render_config(config, redact=True)
    assert PG_URL in render_config(config)


def test_write_config_creates_directories_and_loads_back(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "config.toml"
    config = Config(source=target, defaults=DefaultsConfig(language="es"))
    write_config(config, target)
    assert mode_of(target) == 0o600
    assert load_config(target, use_env=False) == config
    assert [p.name for p in target.parent.iterdir()] == ["config.toml"]


# --- redact_url ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (PG_URL, PG_URL_REDACTED),
        ("postgresql://u:pw@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("postgresql://u:p%40ss%2Fw%3A@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:@h/db", "postgresql://u:***@h/db"),
        # Unencoded special characters, which SQLAlchemy accepts in a password.
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:pa?ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:pa#ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:pa[ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:pa:ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:ü ß ☃@h/db", "postgresql://u:***@h/db"),
        ("mysql://root:hunter2@h/db", "mysql://root:***@h/db"),
    ],
)
def test_redact_url_hides_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@pytest.mark.parametrize(
    "url",
    [
        "",
        "postgresql+psycopg://wactl@db.example.com:5432/wactl",
        "postgresql+psycopg://db.example.com:5432/wactl",
        "postgresql+psycopg:///wactl",
        "sqlite:///relative.db",
        "sqlite:////var/lib/wactl/wactl.db",
        "sqlite:////home/ana@example.com/wactl.db",
        "postgresql://[::1/db",
    ],
)
def test_redact_url_leaves_url_without_password(url: str) -> None:
    assert redact_url(url) == url


# --- numbers: every key bounded, NaN and infinity refused -----------------------------------

ZONE_HINT = 'use an IANA name such as "Europe/Madrid" or "UTC"'

#: Every number key: (section.key, its field).
NUMBER_FIELDS = [
    (f"{name}.{f.name}", f)
    for name, cls in SECTIONS.items()
    for f in dataclasses.fields(cls)
    if f.type in ("int", "float")
]


def test_every_number_key_has_documented_bounds() -> None:
    assert len(NUMBER_FIELDS) > 30
    comments = " ".join(line.removeprefix("# ") for line in render_config(Config()).splitlines())
    for key, f in NUMBER_FIELDS:
        bounds = f.metadata["bounds"]
        assert bounds is not None, f"{key} declares no bounds"
        assert bounds.problem(f.default) is None, f"{key}: its default is out of bounds"
        assert f"Range: {bounds.describe()}." in comments, key


def _past_the_end(f: dataclasses.Field[Any]) -> tuple[Any, str]:
    """A value just past the key's upper bound, and the words that refuse it."""
    bounds = f.metadata["bounds"]
    high = int(bounds.high) if f.type == "int" else float(bounds.high)
    value = high if bounds.high_open else high + 1
    return value, bounds.problem(value)


@pytest.mark.parametrize(("key", "field"), NUMBER_FIELDS, ids=[k for k, _ in NUMBER_FIELDS])
def test_every_number_key_refuses_values_past_its_bounds_everywhere(
    cli: CLI, config_file: Path, key: str, field: dataclasses.Field[Any]
) -> None:
    """From the file, the environment and `config set`: the same refusal, nothing written."""
    value, problem = _past_the_end(field)
    section, name = key.split(".")
    assert problem.startswith(("must be at most", "must be below"))
    write(config_file, f"[{section}]\n{name} = {value!r}\n")
    result = cli("--config", str(config_file), "config", "validate")
    assert error_line(result) == f"config file {config_file}: {key} {problem}, not {value!r}"
    config_file.unlink()
    result = cli("--config", str(config_file), "config", "set", key, str(value))
    assert (result.code, error_line(result)) == (
        ExitCode.CONFIG,
        f"'{key}': {key} {problem}, not {value!r}",
    )
    assert not config_file.exists()


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        # The example: nan then made every sign-in a 500.
        ("portal.signin_per_minute", "nan", "expected a number, not 'nan'"),
        ("portal.session_hours", "inf", "expected a number, not 'inf'"),
        ("daemon.stop_grace_seconds", "-Infinity", "expected a number, not '-Infinity'"),
        (
            "pipeline.chat_per_minute",
            "1e999",
            "pipeline.chat_per_minute must be a finite number, not inf",
        ),
        ("pipeline.chat_per_minute", "1_000", "expected a number, not '1_000'"),
        ("daemon.max_crashes", "٣", "expected an integer, not '٣'"),
        ("daemon.max_crashes", "0x10", "expected an integer, not '0x10'"),
        ("daemon.max_crashes", "", "expected an integer, not ''"),
        ("daemon.max_crashes", "9" * 5000, "expected an integer, not 5000 characters of text"),
        (
            "daemon.log_max_bytes",
            "1" + "0" * 30,
            "daemon.log_max_bytes must be at most 1099511627776, not " + "1" + "0" * 30,
        ),
        (
            "tui.refresh_seconds",
            "0.5",
            "tui.refresh_seconds must be 1 or more, not 0.5; "
            "the dashboard polls the daemon at most once a second",
        ),
    ],
)
def test_numbers_a_key_cannot_use_are_refused_from_text(
    cli: CLI, config_file: Path, monkeypatch: pytest.MonkeyPatch, key: str, raw: str, message: str
) -> None:
    result = cli("--config", str(config_file), "config", "set", "--", key, raw)
    assert (result.code, error_line(result)) == (ExitCode.CONFIG, f"'{key}': {message}")
    assert not config_file.exists()
    variable = "WACTL_" + key.upper().replace(".", "_")
    monkeypatch.setenv(variable, raw)
    result = cli("--config", str(config_file), "config", "show")
    where = (
        f"config file {config_file} (with WACTL_* environment overrides): "
        if " must be " in message
        else f"environment variable {variable}: "
    )
    assert (result.code, error_line(result), result.out) == (
        ExitCode.CONFIG,
        where + message,
        "",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[portal]\nsignin_per_minute = nan\n",
            "portal.signin_per_minute must be a finite number, not nan",
        ),
        (
            "[portal]\nsession_hours = inf\n",
            "portal.session_hours must be a finite number, not inf",
        ),
        (
            "[pipeline]\ntenant_per_minute = -inf\n",
            "pipeline.tenant_per_minute must be a finite number, not -inf",
        ),
        (
            "[pipeline]\nchat_per_minute = 1" + "0" * 400 + "\n",
            "pipeline.chat_per_minute must be a finite number, not inf",
        ),
        (
            "[daemon]\nmax_crashes = 1" + "0" * 400 + "\n",
            "daemon.max_crashes must be at most 1000, not 1" + "0" * 400,
        ),
        (
            "[daemon]\nmax_crashes = 1" + "0" * 5000 + "\n",
            "is not valid TOML: a number has too many digits; fix that line, or run "
            "`wactl config validate` after editing",
        ),
        (
            '[paths]\ndata_dir = "/srv/\\u0000x"\n',
            "paths.data_dir holds U+0000 at position 6, which no setting can use",
        ),
        (
            '[daemon]\nmetrics_address = "127.0.0.1:\\u00b2"\n',
            "daemon.metrics_address '127.0.0.1:\u00b2' is not HOST:PORT; e.g. \"127.0.0.1:9464\"",
        ),
        (
            '[defaults]\ntimezone = "localtime"\n',
            f"defaults.timezone 'localtime' is not a known time zone; {ZONE_HINT}",
        ),
        (
            '[defaults]\ntimezone = "Factory"\n',
            f"defaults.timezone 'Factory' is not a known time zone; {ZONE_HINT}",
        ),
        (
            "x = " + "[" * 5000 + "]" * 5000 + "\n",
            "is not valid TOML: arrays or tables are nested too deeply; fix that line, or "
            "run `wactl config validate` after editing",
        ),
    ],
)
def test_file_values_a_key_cannot_use_are_one_config_error(
    cli: CLI, config_file: Path, text: str, message: str
) -> None:
    write(config_file, text)
    result = cli("--config", str(config_file), "config", "validate")
    separator = " " if message.startswith("is not valid TOML") else ": "
    assert (result.code, error_line(result), result.out) == (
        ExitCode.CONFIG,
        f"config file {config_file}{separator}{message}",
        "",
    )


def test_text_setting_from_environment_that_is_not_utf8_is_refused(
    cli: CLI, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WACTL_PATHS_DATA_DIR", "/srv/\udcffx")  # os.environ's form of byte 0xff
    result = cli("--config", str(config_file), "config", "show")
    assert (result.code, error_line(result)) == (
        ExitCode.CONFIG,
        f"config file {config_file} (with WACTL_* environment overrides): paths.data_dir "
        "holds U+DCFF at position 6, which no setting can use",
    )


# --- the config file is a regular file of at most 1 MiB -------------------------------------


def test_config_file_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """`--config FIFO` used to block every command forever."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    for args in (["config", "show"], ["tenant", "list"]):
        completed = subprocess.run(
            [sys.executable, "-m", "wactl", "--config", str(fifo), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (completed.returncode, completed.stderr) == (
            ExitCode.CONFIG,
            f"error: config file {fifo} is a named pipe, not a regular file\n",
        )


def test_config_file_over_a_mebibyte_or_a_device_is_refused(cli: CLI, config_file: Path) -> None:
    write(config_file, "# padding\n" * 110_000)
    result = cli("--config", str(config_file), "config", "validate")
    assert (result.code, error_line(result)) == (
        ExitCode.CONFIG,
        f"config file {config_file} is larger than 1 MiB, the limit",
    )
    result = cli("--config", "/dev/zero", "config", "show")
    assert (result.code, error_line(result)) == (
        ExitCode.CONFIG,
        "config file /dev/zero is a character device, not a regular file",
    )


# --- the portal's credentials: a pair, checked by validate and portal serve ----------------


def test_portal_credentials_can_be_set_one_at_a_time(
    cli: CLI, default_file: Path, db_url: str
) -> None:
    """The README's steps: after `wactl init`, the client id alone used to exit 3."""
    assert cli("config", "set", "portal.google_client_id", "1234-abc.apps.example.com").code == 0
    # Meanwhile every other command runs; the pair is checked where it is used.
    assert cli("tenant", "list").code == 0
    assert cli("config", "show").code == 0
    pairing = (
        f"config file {default_file}: portal.google_client_secret is empty while its partner "
        "is set; set both portal.google_client_id and portal.google_client_secret, or neither"
    )
    result = cli("config", "validate")
    assert (result.code, error_line(result), result.out) == (ExitCode.CONFIG, pairing, "")
    result = cli("portal", "serve", "--port", "0")
    assert (result.code, error_line(result)) == (ExitCode.CONFIG, pairing)
    assert cli("config", "set", "portal.google_client_secret", "GOCSPX-x").code == 0
    assert cli("config", "validate") == Result(0, f"{default_file}: valid\n", "")
    # And the other way round.
    assert cli("config", "set", "portal.google_client_id", "").code == 0
    result = cli("config", "validate")
    assert error_line(result) == pairing.replace(
        "google_client_secret is empty", "google_client_id is empty"
    )


def test_set_takes_several_pairs_all_or_nothing(cli: CLI, config_file: Path) -> None:
    result = cli(
        "-c",
        str(config_file),
        "config",
        "set",
        "portal.google_client_id",
        "id.apps.example.com",
        "portal.google_client_secret",
        "GOCSPX-secret",
        "database.echo",
        "on",
    )
    assert result == Result(
        0,
        "",
        f"{config_file}: portal.google_client_id = 'id.apps.example.com'\n"
        f"{config_file}: portal.google_client_secret = '***'\n"
        f"{config_file}: database.echo = True\n",
    )
    config = load_config(config_file, use_env=False)
    assert (config.portal.google_client_secret, config.database.echo) == ("GOCSPX-secret", True)
    before = config_file.read_bytes()
    for args, code, message in (
        (
            ["database.echo", "off", "pipeline.chat_per_minute", "nan"],
            ExitCode.CONFIG,
            "'pipeline.chat_per_minute': expected a number, not 'nan'",
        ),
        (
            ["database.echo", "off", "defaults.language", "fr"],
            ExitCode.CONFIG,
            "'database.echo', 'defaults.language': defaults.language 'fr' is not one of en, es, pt",
        ),
        (
            ["database.echo", "off", "database.echo", "on"],
            ExitCode.CONFIG,
            "'database.echo' is given twice; give each key once",
        ),
        (
            ["database.echo", "off", "defaults.language"],
            ExitCode.USAGE,
            "'defaults.language' has no value; give KEY VALUE pairs, e.g. "
            "`wactl config set database.echo true`",
        ),
    ):
        result = cli("-c", str(config_file), "config", "set", *args)
        assert (result.code, error_line(result)) == (code, message)
        assert config_file.read_bytes() == before

"""The generated docs (man/wactl.1, examples/config.toml) are current and tell the truth.

Staleness is checked by regenerating and comparing bytes; completeness by walking the
command tree, `ExitCode`, the config model and the real `--json` output of commands
on both database backends. Nothing here depends on the terminal width.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import pytest

from tests.conftest import CLI
from tests.support import db_session
from wactl.cli import manpage
from wactl.cli.manpage import escape
from wactl.config import SECTIONS, Config, parse_config_text
from wactl.config.loader import build_config, env_name
from wactl.errors import EXIT_MEANINGS, ExitCode

ROOT = Path(__file__).resolve().parents[1]

#: The man(7) requests the generator may emit; anything else starting with "." is a bug.
ALLOWED_REQUESTS = {"TH", "SH", "SS", "TP", "PP", "IP", "RS", "RE", "nf", "fi", "br", "nh", "ad"}


def _page() -> str:
    return (ROOT / manpage.MAN_PAGE).read_text(encoding="utf-8")


def _split(text: str, request: str) -> dict[str, str]:
    """The body of each ``.SH``/``.SS`` heading, keyed by its (unquoted) title."""
    parts: dict[str, str] = {}
    title: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith(f".{request} "):
            if title is not None:
                parts[title] = "\n".join(body)
            title, body = line[len(request) + 2 :].strip().strip('"'), []
        elif title is not None:
            body.append(line)
    if title is not None:
        parts[title] = "\n".join(body)
    return parts


def _section(title: str) -> str:
    return _split(_page(), "SH")[title]


def _keys(documented: Sequence[tuple[str, str]]) -> list[str]:
    return [key for key, _ in documented]


def _key_paths(data: dict[str, Any], documented: Sequence[tuple[str, str]]) -> list[str]:
    """Keys of ``data`` in order, with ``parent.child`` for objects the docs list inside."""
    nested = {key.split(".", 1)[0] for key in _keys(documented) if "." in key}
    found: list[str] = []
    for key, value in data.items():
        found.append(key)
        if key in nested and isinstance(value, dict):
            found.extend(f"{key}.{sub}" for sub in value)
    return found


# --- staleness and determinism -------------------------------------------------------------


@pytest.mark.parametrize("relative", [manpage.MAN_PAGE, manpage.EXAMPLE_CONFIG], ids=str)
def test_generated_file_is_current(relative: Path) -> None:
    expected = manpage.generated_files()[relative]
    target = ROOT / relative
    assert target.is_file(), f"{relative} is missing; run `make docs`"
    assert target.read_bytes() == expected.encode("utf-8"), f"{relative} is stale; run `make docs`"


def test_output_does_not_depend_on_terminal_or_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    narrow = manpage.generated_files()
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "elsewhere/config"))
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert manpage.generated_files() == narrow


def test_check_and_write(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    monkeypatch.setattr(manpage, "repo_root", lambda: tmp_path)

    assert manpage.main(["--check"]) == 1
    assert capsys.readouterr().err == (
        "man/wactl.1 is stale; run `make docs`\nexamples/config.toml is stale; run `make docs`\n"
    )

    assert manpage.main(["--write"]) == 0
    assert capsys.readouterr().err == "wrote man/wactl.1\nwrote examples/config.toml\n"
    written = (tmp_path / "man/wactl.1").read_text(encoding="utf-8")
    assert written == manpage.render_man_page()

    assert manpage.main(["--check"]) == 0
    assert manpage.main(["--write"]) == 0
    assert capsys.readouterr().err == ""

    config = tmp_path / "examples/config.toml"
    config.write_bytes(config.read_bytes().replace(b"\n", b"\r\n"))
    assert manpage.main(["--check"]) == 1
    assert capsys.readouterr().err == "examples/config.toml is stale; run `make docs`\n"


def test_prints_the_page(capsys: pytest.CaptureFixture[str]) -> None:
    assert manpage.main([]) == 0
    assert capsys.readouterr().out == manpage.render_man_page()


def test_the_cli_never_imports_the_generator() -> None:
    probe = (
        "import contextlib, io, sys\n"
        "from wactl.cli.app import run\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    codes = [run(['--help']), run(['tenant', 'create', '--help']),\n"
        "             run(['config', 'path'])]\n"
        "print(codes, 'wactl.cli.manpage' in sys.modules)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout.strip() == "[0, 0, 0] False"


# --- the page is well-formed roff ---------------------------------------------------------


def test_page_is_plain_ascii_roff() -> None:
    for number, line in enumerate(_page().splitlines(), start=1):
        where = f"man/wactl.1:{number}: {line!r}"
        assert line.isascii(), where
        assert line == line.rstrip() and line, where
        if line.startswith('.\\"'):
            continue  # a comment
        if line.startswith((".", "'")):
            assert line[1:].split(" ", 1)[0] in ALLOWED_REQUESTS, where
        # Every hyphen is \- so that options and paths copy and paste as typed.
        assert not re.search(r"(?<!\\)-", line), where


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_groff_renders_without_warnings() -> None:
    completed = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(ROOT / manpage.MAN_PAGE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (completed.returncode, completed.stderr) == (0, "")


def test_escape() -> None:
    assert escape("--dry-run") == r"\-\-dry\-run"
    assert escape("C:\\path 'x' `y`") == r"C:\epath \(aqx\(aq \(gay\(ga"
    assert escape("caf\u00e9 \u2014 ok") == r"caf\[u00E9] \[u2014] ok"
    assert manpage.inline("run `wactl init` now") == r"run \fBwactl init\fR now"
    assert manpage.inline("a ` alone") == r"a \(ga alone"


# --- completeness -----------------------------------------------------------------------------


def test_every_command_has_its_section() -> None:
    documented = list(_split(_section("COMMANDS"), "SS"))
    expected = [escape(doc.path) for doc in manpage.walk_commands()[1:]]
    assert documented == expected
    synopsis = _section("SYNOPSIS")
    for doc in manpage.walk_commands():
        if not doc.is_group:
            assert rf"\fB{escape(doc.path)}\fR" in synopsis, doc.path


def test_every_parameter_is_documented_with_its_command() -> None:
    docs = manpage.walk_commands()
    bodies = _split(_section("COMMANDS"), "SS")
    bodies[docs[0].path] = _section("OPTIONS")
    for doc in docs:
        body = bodies[escape(doc.path)]
        for param in manpage.visible_params(doc):
            if isinstance(param, click.Option):
                for name in (*param.opts, *param.secondary_opts):
                    assert rf"\fB{escape(name)}\fR" in body, f"{doc.path} {name}"
                if isinstance(param.type, click.Choice):
                    for choice in param.type.choices:
                        assert escape(str(choice)) in body, f"{doc.path} {param.opts} {choice}"
            else:
                assert rf"\fI{escape(manpage._metavar(param))}\fR" in body, doc.path


def test_every_parameter_has_help() -> None:
    missing = [
        f"{doc.path} {param.name}"
        for doc in manpage.walk_commands()
        for param in manpage.visible_params(doc)
        if not getattr(param, "help", None)
    ]
    assert missing == []


def test_every_exit_code_is_documented_in_one_wording() -> None:
    """errors.EXIT_MEANINGS is the one wording: the man page's EXIT STATUS is generated
    from it, and the README's list of codes says its short words, in order."""
    assert set(EXIT_MEANINGS) == set(ExitCode)
    section = _section("EXIT STATUS")
    for code in ExitCode:
        assert rf"\fB{int(code)}\fR ({escape(code.name)})" in section
        assert EXIT_MEANINGS[code].full.strip() and EXIT_MEANINGS[code].short.strip()
    for status, _ in manpage.SIGNALLED:
        assert rf"\fB{status}\fR" in section
    listed = ", ".join(
        f"{int(code)} {EXIT_MEANINGS[code].short}" for code in ExitCode if code is not ExitCode.OK
    )
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8").split())
    assert f"the exit code says what kind of error it was: {listed}." in readme


def test_every_config_key_is_documented() -> None:
    section = _section("CONFIGURATION")
    for name, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            assert escape(f"{name}.{field.name}") in section
            assert escape(env_name(name, field.name)) in section


def test_example_config_parses_to_the_defaults() -> None:
    path = ROOT / manpage.EXAMPLE_CONFIG
    sections = parse_config_text(path.read_text(encoding="utf-8"), source=path)
    assert set(sections) == set(SECTIONS)
    config = build_config(sections, source=path, where=str(path))
    assert config == Config()


def test_files_section_matches_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each FILES entry resolves, with and without the XDG variables, to what wactl uses."""
    import os

    def actual() -> dict[str, Path]:
        config = Config()
        database = config.database_url.removeprefix("sqlite:///")
        return {
            "config": config.source,
            "data": config.data_dir,
            "database": Path(database),
            "logs": config.log_dir,
            "wa-js": config.data_dir / "wa-js",
            "runtime": config.runtime_dir,
        }

    assert [entry.key for entry in manpage.FILES] == list(actual())
    with_xdg = actual()
    for entry in manpage.FILES:
        assert Path(os.path.expandvars(entry.path)) == with_xdg[entry.key], entry.key
    for variable in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(variable)
    without_xdg = actual()
    for entry in manpage.FILES:
        assert Path(entry.fallback).expanduser() == without_xdg[entry.key], entry.key


def test_every_environment_variable_the_source_reads_is_documented() -> None:
    source = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "src").rglob("*.py"))
    read = set(re.findall(r"""["'](WACTL_[A-Z_]+|XDG_[A-Z_]+)["']""", source))
    assert "WACTL_CONFIG" in read and "XDG_DATA_HOME" in read  # the scan itself works
    documented = {name for name, _ in manpage.ENVIRONMENT}
    assert read - documented == set()
    section = _section("ENVIRONMENT")
    for name in documented:
        assert rf"\fB{escape(name)}\fR" in section


def _example_invocations() -> list[list[str]]:
    """The `wactl ...` commands of EXAMPLES and of quickstart's "Next" list as argument
    lists (pipes and redirects cut off; `a && b` is two)."""
    from wactl.cli.quickstart_cmd import NEXT_STEPS

    found: list[list[str]] = []
    examples = [*manpage.EXAMPLES]
    examples += [("", tuple(command.split(" && "))) for command, _ in NEXT_STEPS]
    for _, lines in examples:
        logical: list[str] = []
        pending = ""
        for line in lines:
            if line.endswith("\\"):
                pending += line[:-1]
                continue
            logical.append(pending + line)
            pending = ""
        for line in logical:
            tokens = shlex.split(line)
            if not tokens or tokens[0] != "wactl":
                continue
            cut = [i for i, token in enumerate(tokens) if token in {"|", ">", ";", "&&"}]
            found.append(tokens[1 : cut[0]] if cut else tokens[1:])
    return found


def test_examples_use_real_commands_and_options() -> None:
    invocations = _example_invocations()
    assert len(invocations) >= len(manpage.EXAMPLES)
    root = manpage.walk_commands()[0].command
    takes_value = {
        name
        for param in root.params
        if isinstance(param, click.Option) and not param.is_flag
        for name in param.opts
    }
    for args in invocations:
        # click raises UsageError for an unknown option, a bad choice or value, or a
        # missing argument: first for the global options, then for the leaf command.
        parent = root.make_context("wactl", list(args))
        tokens = list(args)
        while tokens and tokens[0].startswith("-"):
            if tokens.pop(0) in takes_value:
                tokens.pop(0)
        command: click.Command = root
        name = "wactl"
        while isinstance(command, click.Group):
            name = tokens.pop(0)
            sub = command.get_command(parent, name)
            assert sub is not None, f"wactl {' '.join(args)}: no command {name!r}"
            if isinstance(sub, click.Group):
                parent = click.Context(sub, info_name=name, parent=parent)
            command = sub
        command.make_context(name, tokens, parent=parent)


# --- JSON OUTPUT keys match the real output ---------------------------------------------------


def _shape(title: str) -> manpage.JsonShape:
    return next(shape for shape in manpage.json_shapes() if shape.title == title)


def test_tenant_json_keys(cli: CLI, db_url: str) -> None:
    created = cli("tenant", "create", "casa-pepe", "--name", "Casa Pepe", "--json")
    assert created.code == 0, created.err
    assert list(json.loads(created.out)) == _keys(manpage.TENANT_KEYS)

    listed = cli("tenant", "list", "--json")
    assert [list(row) for row in json.loads(listed.out)] == [_keys(manpage.TENANT_KEYS)]

    shown = json.loads(cli("tenant", "show", "casa-pepe", "--json").out)
    documented = manpage.TENANT_KEYS + manpage.TENANT_DETAIL_KEYS
    assert shown["session"] is not None and shown["worker"] is not None
    assert _key_paths(shown, documented) == _keys(documented)

    edited = json.loads(cli("tenant", "edit", "casa-pepe", "--language", "es", "--json").out)
    assert edited == {"language": {"old": "en", "new": "es"}}
    assert json.loads(cli("tenant", "edit", "casa-pepe", "--language", "es", "--json").out) == {}


def test_request_and_event_json_keys(cli: CLI, db_url: str) -> None:
    from wactl.db import requests, tenants

    assert cli("tenant", "create", "casa-pepe", "--name", "Casa Pepe").code == 0
    with db_session(db_url) as session:
        requests.submit_request(
            session,
            tenants.get_tenant(session, "casa-pepe"),
            actor="portal:owner@example.com",
            business_name="Casa Pepe",
            template="restaurant",
            language="es",
            whatsapp_number="+34600123456",
            timezone="Europe/Madrid",
            weekly_hours={"mon": ["09:00-14:00"]},
            holidays=["2026-12-25"],
            notes="Lunch only",
        )

    listed = json.loads(cli("requests", "list", "--json").out)
    assert [list(row) for row in listed] == [_keys(manpage.REQUEST_KEYS)]
    shown = json.loads(cli("requests", "show", str(listed[0]["id"]), "--json").out)
    assert list(shown) == _keys(manpage.REQUEST_KEYS)

    events = json.loads(cli("audit", "--json").out)
    assert len(events) == 2
    assert all(list(event) == _keys(manpage.EVENT_KEYS) for event in events)


def test_db_json_keys(cli: CLI, db_url: str) -> None:
    current = cli("db", "current", "--json")
    assert current.code == 0, current.err
    assert list(json.loads(current.out)) == _keys(manpage.DB_CURRENT_KEYS)

    history = json.loads(cli("db", "history", "--json").out)
    assert history
    assert all(list(row) == _keys(manpage.DB_HISTORY_KEYS) for row in history)


def test_config_show_json_keys(cli: CLI) -> None:
    shown = json.loads(cli("config", "show", "--json").out)
    assert list(shown) == _keys(_shape("Configuration").keys)
    for section, cls in SECTIONS.items():
        assert list(shown[section]) == [field.name for field in dataclasses.fields(cls)]

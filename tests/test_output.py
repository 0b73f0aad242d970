"""`--since` parsing, `wactl.cli.output`'s printing and the words of `wactl.formatting`."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator

import pytest

from tests.conftest import CLI
from wactl.cli.output import emit_json, parse_since
from wactl.errors import ExitCode, UsageError
from wactl.formatting import local_time, or_dash

NOW = dt.datetime(2026, 11, 15, 12, 0, tzinfo=dt.UTC)
HINT = "use e.g. 30m, 12h, 7d, 2w, 2026-11-01 or 2026-11-01T09:00"


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is Asia/Kolkata (UTC+05:30, no DST) for one test."""
    with monkeypatch.context() as patch:
        patch.setenv("TZ", "Asia/Kolkata")
        time.tzset()
        yield
    time.tzset()


@pytest.fixture
def madrid(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The local time zone is Europe/Madrid (UTC+1, UTC+2 in summer) for one test."""
    with monkeypatch.context() as patch:
        patch.setenv("TZ", "Europe/Madrid")
        time.tzset()
        yield
    time.tzset()


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("45s", dt.timedelta(seconds=45)),
        ("30m", dt.timedelta(minutes=30)),
        ("12h", dt.timedelta(hours=12)),
        ("7d", dt.timedelta(days=7)),
        ("2w", dt.timedelta(weeks=2)),
        ("0m", dt.timedelta(0)),
        (" 7d ", dt.timedelta(days=7)),
        ("7 d", dt.timedelta(days=7)),
        ("1000w", dt.timedelta(weeks=1000)),
    ],
)
def test_duration_back_from_now(text: str, back: dt.timedelta) -> None:
    assert parse_since(text, now=NOW) == NOW - back


def test_duration_defaults_to_the_current_time() -> None:
    before = dt.datetime.now(dt.UTC)
    since = parse_since("1h")
    after = dt.datetime.now(dt.UTC)
    assert before - dt.timedelta(hours=1) <= since <= after - dt.timedelta(hours=1)
    assert since.tzinfo is not None


# --- ISO dates and times ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01T09:00+02:00", dt.datetime(2026, 11, 1, 7, 0, tzinfo=dt.UTC)),
        ("2026-11-01T09:00:30-03:00", dt.datetime(2026, 11, 1, 12, 0, 30, tzinfo=dt.UTC)),
        ("2026-11-01T09:00Z", dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)),
        ("2026-11-01 09:00+00:00", dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)),
    ],
)
def test_iso_datetime_with_offset(text: str, expected: dt.datetime) -> None:
    since = parse_since(text, now=NOW)
    assert since == expected
    assert since.utcoffset() == dt.timedelta(0)


@pytest.mark.usefixtures("local_zone")
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A date is midnight at the start of that day, local time.
        ("2026-11-01", dt.datetime(2026, 10, 31, 18, 30, tzinfo=dt.UTC)),
        (" 2026-11-01 ", dt.datetime(2026, 10, 31, 18, 30, tzinfo=dt.UTC)),
        ("2026-11-01T09:00", dt.datetime(2026, 11, 1, 3, 30, tzinfo=dt.UTC)),
        ("2026-11-01 09:00:00", dt.datetime(2026, 11, 1, 3, 30, tzinfo=dt.UTC)),
    ],
)
def test_naive_date_or_time_is_local(text: str, expected: dt.datetime) -> None:
    since = parse_since(text, now=NOW)
    assert since == expected
    assert since.utcoffset() == dt.timedelta(0)


@pytest.mark.usefixtures("madrid")
def test_naive_time_uses_the_offset_of_that_date() -> None:
    assert parse_since("2026-07-01T09:00") == dt.datetime(2026, 7, 1, 7, 0, tzinfo=dt.UTC)
    assert parse_since("2026-01-15T09:00") == dt.datetime(2026, 1, 15, 8, 0, tzinfo=dt.UTC)


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["yesterday", "", "7", "7y", "7D", "-7d", "1.5h", "7 days", "2026-13-01", "2026-11-01T25:00"],
)
def test_garbage_is_a_usage_error_with_hint(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_since(text, now=NOW)
    assert caught.value.one_line() == f"--since: '{text}' is not a duration or a date; {HINT}"
    assert caught.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("text", ["99999999999w", "9999999d", "3000000w"])
def test_duration_too_far_back(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_since(text, now=NOW)
    assert caught.value.one_line() == f"--since: '{text}' is too far back; {HINT}"


@pytest.mark.usefixtures("local_zone")
@pytest.mark.parametrize("text", ["0001-01-01", "9999-12-31T23:00-05:00"])
def test_date_out_of_range(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_since(text, now=NOW)
    assert caught.value.one_line() == f"--since: '{text}' is out of range; {HINT}"


def test_cli_since_error_is_one_stderr_line(cli: CLI) -> None:
    # --since is parsed before the database is opened, so no database is needed.
    result = cli("audit", "--since", "yesterday")
    assert result.code == ExitCode.USAGE
    assert result.out == ""
    assert result.err == (f"error: --since: 'yesterday' is not a duration or a date; {HINT}\n")


# --- printing helpers ---------------------------------------------------------------------


def test_emit_json_is_plain_and_ordered(capsys: pytest.CaptureFixture[str]) -> None:
    emit_json({"z": 1, "a": "ñandú", "when": dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)})
    out = capsys.readouterr().out
    assert out == ('{\n  "z": 1,\n  "a": "ñandú",\n  "when": "2026-01-02 03:04:00+00:00"\n}\n')
    assert list(json.loads(out)) == ["z", "a", "when"]


@pytest.mark.usefixtures("local_zone")
def test_local_time() -> None:
    assert local_time(None) == "-"
    assert local_time(dt.datetime(2026, 11, 1, 3, 30, tzinfo=dt.UTC)) == "2026-11-01 09:00"


@pytest.mark.parametrize(
    ("value", "shown"), [(None, "-"), ("", "-"), (0, "0"), ("x", "x"), (False, "False")]
)
def test_or_dash(value: object, shown: str) -> None:
    assert or_dash(value) == shown

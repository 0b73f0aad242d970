"""Reading, validating, rendering and writing the TOML configuration file."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wactl import paths
from wactl.config.model import ENGINES, LANGUAGES, SECTIONS, TEMPLATES, Bounds, Config, field_doc
from wactl.errors import ConfigError, ValidationError
from wactl.inputs import InputFileError, parse_toml, read_text_file
from wactl.validation import validate_timezone

ENV_PREFIX = "WACTL_"

#: The largest integer that converts to a finite float.
_FLOAT_MAX_INT = int(sys.float_info.max)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _closest(word: str, choices: list[str], noun: str = "keys") -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else f"; valid {noun}: {', '.join(choices)}"


def _field_types(section: str) -> dict[str, type[Any]]:
    cls = SECTIONS[section]
    return {f.name: _python_type(f) for f in dataclasses.fields(cls)}


def _python_type(f: dataclasses.Field[Any]) -> type[Any]:
    default = f.default
    return type(default)


def _coerce(where: str, key: str, value: Any, expected: type[Any]) -> Any:
    """Check a TOML value against the field type; TOML is already typed, so no parsing."""
    # bool is a subclass of int: reject true/false where a number is expected.
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: '{key}' must be an integer, not {value!r}")
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' must be true or false, not {value!r}")
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: '{key}' must be a number, not {value!r}")
        if isinstance(value, int) and abs(value) > _FLOAT_MAX_INT:
            # float() of it would raise OverflowError; the bounds check says what fits.
            return math.inf if value > 0 else -math.inf
        return float(value)
    if expected is str and not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' must be a string, not {value!r}")
    return value


def _parse_text(label: str, raw: str, expected: type[Any]) -> Any:
    """A value given as text (environment, `wactl config set`) converted to its type."""
    if expected is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"{label}: expected true or false, not {raw!r}")
    if expected not in (int, float):
        return raw
    raw = raw.strip()
    if len(raw) > _MAX_NUMBER_TEXT:
        kind = "an integer" if expected is int else "a number"
        raise ConfigError(f"{label}: expected {kind}, not {len(raw)} characters of text")
    # Python's int() and float() also take "1_000", Arabic-Indic digits, "nan" and
    # "inf"; a setting is written in plain ASCII decimal, as TOML writes it back.
    if expected is int:
        if not _INTEGER_RE.fullmatch(raw):
            raise ConfigError(f"{label}: expected an integer, not {raw!r}")
        return int(raw)
    if not _DECIMAL_RE.fullmatch(raw):
        raise ConfigError(f"{label}: expected a number, not {raw!r}")
    return float(raw)


#: Longer text is no number a key can use (and int() refuses 4300 digits and more).
_MAX_NUMBER_TEXT = 64
_INTEGER_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def parse_config_text(text: str, *, source: Path) -> dict[str, dict[str, Any]]:
    """Parse and check the file's structure; returns {section: {key: value}}."""
    try:
        raw = parse_toml(text)
    except ValueError as exc:
        raise ConfigError(
            f"config file {source} is not valid TOML: {exc}",
            hint="fix that line, or run `wactl config validate` after editing",
        ) from exc
    result: dict[str, dict[str, Any]] = {}
    for section, body in raw.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"config file {source}: unknown section [{section}]"
                + _closest(section, list(SECTIONS), "sections")
            )
        if not isinstance(body, dict):
            raise ConfigError(f"config file {source}: '{section}' must be a table [{section}]")
        types = _field_types(section)
        values: dict[str, Any] = {}
        for key, value in body.items():
            if key not in types:
                raise ConfigError(
                    f"config file {source}: unknown key '{section}.{key}'"
                    + _closest(key, list(types))
                )
            values[key] = _coerce(f"config file {source}", f"{section}.{key}", value, types[key])
        result[section] = values
    return result


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    known: dict[str, tuple[str, str]] = {}
    for section in SECTIONS:
        for key in _field_types(section):
            known[env_name(section, key)] = (section, key)
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "WACTL_CONFIG":
            continue
        if name not in known:
            # Other WACTL_ variables (tests, future features) are not ours to reject,
            # but a near miss of a config key is almost certainly a typo.
            near = difflib.get_close_matches(name, list(known), n=1, cutoff=0.85)
            if near:
                raise ConfigError(
                    f"environment variable {name} is not a config key; did you mean {near[0]}?"
                )
            continue
        section, key = known[name]
        value = _parse_text(f"environment variable {name}", raw, _field_types(section)[key])
        overrides.setdefault(section, {})[key] = value
    return overrides


def validate_values(config: Config, *, where: str) -> None:
    """Check values whose validity is more than their type."""
    d = config.defaults
    if d.template not in TEMPLATES:
        raise ConfigError(
            f"{where}: defaults.template '{d.template}' is not one of {', '.join(TEMPLATES)}"
        )
    if d.language not in LANGUAGES:
        raise ConfigError(
            f"{where}: defaults.language '{d.language}' is not one of {', '.join(LANGUAGES)}"
        )
    if d.engine not in ENGINES:
        raise ConfigError(
            f"{where}: defaults.engine '{d.engine}' is not one of {', '.join(ENGINES)}"
        )
    try:
        validate_timezone(d.timezone, "defaults.timezone")
    except ValidationError:
        raise ConfigError(
            f"{where}: defaults.timezone '{d.timezone}' is not a known time zone",
            hint='use an IANA name such as "Europe/Madrid" or "UTC"',
        ) from None
    _validate_fields(config, where)
    _validate_daemon(config, where)
    _validate_registry(config, where)
    _validate_portal(config, where)
    page_url = config.browser.url
    if not page_url.startswith(("https://", "http://")):
        raise ConfigError(
            f"{where}: browser.url must be an http:// or https:// URL, not {page_url!r}",
            hint='the default is "https://web.whatsapp.com/"',
        )
    agent = config.browser.user_agent
    if agent and (len(agent) > 512 or not agent.isprintable() or agent != agent.strip()):
        raise ConfigError(
            f"{where}: browser.user_agent must be one line of printable text, at most 512 "
            "characters, without leading or trailing spaces",
            hint="leave it empty for desktop Chrome's User-Agent",
        )
    _validate_device_name(config.browser.device_name, where)
    keyword = config.pipeline.resume_keyword
    if len(keyword) > 50 or not keyword.isprintable() or keyword != keyword.strip():
        raise ConfigError(
            f"{where}: pipeline.resume_keyword must be one line of printable text of at most "
            "50 characters, without leading or trailing spaces",
            hint='e.g. "#bot"; empty for no keyword',
        )
    url = config.database.url
    if url and not url.startswith(("sqlite:", "sqlite+", "postgresql:", "postgresql+")):
        raise ConfigError(
            f"{where}: database.url must be a sqlite:/// or postgresql+psycopg:// URL, "
            f"not '{redact_url(url)}'"
        )


def _validate_device_name(template: str, where: str) -> None:
    leftover = template.replace("{name}", "").replace("{slug}", "")
    if len(template) > 200 or not template.isprintable() or "{" in leftover or "}" in leftover:
        raise ConfigError(
            f"{where}: browser.device_name must be one line of printable text of at most 200 "
            "characters, with no braces but the placeholders {name} and {slug}",
            hint='e.g. "{name} (wactl)"; empty for WhatsApp Web\'s own name',
        )


def _validate_registry(config: Config, where: str) -> None:
    registry = config.wajs.npm_registry
    if not registry:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(registry)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(
            f"{where}: wajs.npm_registry '{redact_url(registry)}' is not an http:// or "
            "https:// URL",
            hint='e.g. "https://registry.npmjs.org", or empty for the default',
        )


#: No setting is text that cannot be used as text: NUL ends a C string (a path, a URL
#: or a header holding it fails far from here) and a lone surrogate (from an environment
#: variable that is not UTF-8) cannot be written back to the file.
_UNUSABLE_IN_TEXT = re.compile(r"[\x00\ud800-\udfff]")


def _validate_fields(config: Config, where: str) -> None:
    """Every key against its type's limits: numbers within their documented bounds
    (finite), text without characters no setting can hold."""
    for section in SECTIONS:
        values = getattr(config, section)
        for f in dataclasses.fields(values):
            value = getattr(values, f.name)
            key = f"{section}.{f.name}"
            if isinstance(value, str):
                bad = _UNUSABLE_IN_TEXT.search(value)
                if bad is not None:
                    raise ConfigError(
                        f"{where}: {key} holds U+{ord(bad.group()):04X} at position "
                        f"{bad.start() + 1}, which no setting can use"
                    )
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            bounds: Bounds | None = f.metadata.get("bounds")
            problem = (bounds or _ANY_NUMBER).problem(value)
            if problem is not None:
                raise ConfigError(
                    f"{where}: {key} {problem}, not {value!r}",
                    hint=bounds.low_hint if bounds is not None and value <= bounds.low else None,
                )


#: A number key without declared bounds still must be finite and fit in 64 bits.
_ANY_NUMBER = Bounds(-(2**63), 2**63 - 1)


def _validate_daemon(config: Config, where: str) -> None:
    daemon = config.daemon
    if daemon.heartbeat_timeout_seconds <= daemon.heartbeat_interval_seconds:
        raise ConfigError(
            f"{where}: daemon.heartbeat_timeout_seconds must be longer than "
            "daemon.heartbeat_interval_seconds",
            hint="a timeout of 3 or more intervals avoids false alarms",
        )
    address = daemon.metrics_address
    if address:
        host, sep, port = address.rpartition(":")
        if (
            not sep
            or not host
            or not (port.isascii() and port.isdigit())
            or not 0 < int(port) < 65536
        ):
            raise ConfigError(
                f"{where}: daemon.metrics_address '{address}' is not HOST:PORT",
                hint='e.g. "127.0.0.1:9464"',
            )


_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def email_domains(value: str) -> list[str]:
    """`portal.allowed_email_domains` as a list of lowercase domains."""
    return [part.strip().lower() for part in value.split(",") if part.strip()]


def is_domain_name(text: str) -> bool:
    """A lowercase DNS name of two labels or more, such as "casapepe.es"."""
    return _DOMAIN_RE.fullmatch(text) is not None


def trusted_networks(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """`portal.trusted_proxies` as networks (an address is a network of one); raises
    ValueError naming the first entry that is neither."""
    networks = []
    for part in value.split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(part.strip()) from None
    return networks


def _check_web_url(where: str, key: str, url: str, example: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ConfigError(
            f"{where}: {key} '{url}' is not an http:// or https:// address",
            hint=f'e.g. "{example}"',
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{where}: {key} '{url}' must not have a query or fragment")


def _validate_portal(config: Config, where: str) -> None:
    portal = config.portal
    if portal.public_base_url:
        _check_web_url(
            where, "portal.public_base_url", portal.public_base_url, "https://portal.example.com"
        )
    _check_web_url(
        where,
        "portal.oidc_metadata_url",
        portal.oidc_metadata_url,
        "https://accounts.google.com/.well-known/openid-configuration",
    )
    if portal.session_secret and len(portal.session_secret) < 32:
        raise ConfigError(
            f"{where}: portal.session_secret is {len(portal.session_secret)} characters "
            "long; it must have at least 32",
            hint="empty it and run `wactl init`, which generates one",
        )
    for domain in email_domains(portal.allowed_email_domains):
        if not is_domain_name(domain):
            raise ConfigError(
                f"{where}: portal.allowed_email_domains: '{domain}' is not a domain name",
                hint='e.g. "casapepe.es, example.com"',
            )
    try:
        trusted_networks(portal.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(
            f"{where}: portal.trusted_proxies: '{exc}' is not an IP address or network",
            hint='e.g. "127.0.0.1, 10.0.0.0/8"',
        ) from None


def check_portal_credentials(config: Config, *, where: str) -> None:
    """The sign-in credentials come in pairs: both or neither.

    Not part of `validate_values`: `wactl config set` changes one key at a time, so the
    file may hold one of the two between two commands (as the README's steps do), and
    every other command must still run meanwhile. `wactl config validate` and
    `wactl portal serve` check it.
    """
    portal = config.portal
    if bool(portal.google_client_id) != bool(portal.google_client_secret):
        missing = "google_client_secret" if portal.google_client_id else "google_client_id"
        raise ConfigError(
            f"{where}: portal.{missing} is empty while its partner is set",
            hint="set both portal.google_client_id and portal.google_client_secret, or neither",
        )


def build_config(sections: Mapping[str, Mapping[str, Any]], *, source: Path, where: str) -> Config:
    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        built[section] = cls(**dict(sections.get(section, {})))
    config = Config(source=source, **built)
    validate_values(config, where=where)
    return config


def read_file_sections(source: Path) -> dict[str, dict[str, Any]]:
    """The file's sections, or nothing when the file does not exist.

    Only a regular file of at most 1 MiB is read (`wactl.inputs`): `--config` naming
    a FIFO or a device is refused at once instead of blocking or reading forever.
    """
    try:
        text = read_text_file(source)
    except FileNotFoundError:
        return {}
    except InputFileError as exc:
        hint = None
        if "permission denied" in str(exc):
            hint = "check its owner and mode (it should be 0600 and yours)"
        raise ConfigError(f"config file {source} {exc}", hint=hint) from None
    return parse_config_text(text, source=source)


def load_config(
    config_path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    use_env: bool = True,
) -> Config:
    """Load the effective configuration: defaults < file < environment."""
    source = paths.config_file(config_path)
    merged = read_file_sections(source)
    where = f"config file {source}"
    if use_env:
        env = _env_overrides(os.environ if environ is None else environ)
        if env:
            where = f"config file {source} (with WACTL_* environment overrides)"
        for section, values in env.items():
            merged.setdefault(section, {}).update(values)
    return build_config(merged, source=source, where=where)


# "scheme://user:" up to the last "@": the password as SQLAlchemy's URL parser reads it
# (user up to the first ":" with no "/" before it, password anything up to an "@").
# urlsplit is not used because it stops the host part at "/", "?" or "#", so a password
# holding one of them unencoded (SQLAlchemy accepts that) was printed in the clear.
_CREDENTIALS_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/]*):.*@(?=[^@]*$)", re.DOTALL)


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    match = _CREDENTIALS_RE.match(url)
    if match is None:
        return url
    return f"{match[1]}:***@{url[match.end() :]}"


def config_as_dict(config: Config, *, redact: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        obj = getattr(config, section)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if redact and f.metadata.get("secret") and value:
                value = redact_url(value) if f.name == "url" else "***"
            values[f.name] = value
        out[section] = values
    return out


def _comment(text: str, width: int = 88) -> list[str]:
    import textwrap  # only needed when writing the file

    return ["# " + line for line in textwrap.wrap(text, width - 2)]


def render_config(config: Config, *, redact: bool = False) -> str:
    """The documented TOML text of a configuration: every key, commented.

    Values are serialised by tomli-w, one key at a time, so that each can carry the
    documentation from the model as comments above it.
    """
    import tomli_w  # ~3 ms; only needed when writing

    values = config_as_dict(config, redact=redact)
    lines = [
        "# wactl configuration. Every key is optional; the value shown is the default",
        "# unless you changed it. Environment variables WACTL_<SECTION>_<KEY> override",
        "# this file, and command-line flags override both. See wactl(1).",
    ]
    for section, cls in SECTIONS.items():
        lines.append("")
        lines.extend(_comment(cls.__doc__ or section))
        lines.append(f"[{section}]")
        for f in dataclasses.fields(cls):
            lines.extend(_comment(field_doc(f.metadata)))
            lines.append(tomli_w.dumps({f.name: values[section][f.name]}).rstrip("\n"))
    return "\n".join(lines) + "\n"


def write_config(config: Config, path: Path) -> None:
    """Write the documented file atomically with mode 0600 (it may hold secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_config(config)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(tmp).chmod(0o600)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply_setting(config: Config, dotted_key: str, raw_value: str) -> Config:
    """A copy of ``config`` with ``section.key`` set from its text form, validated."""
    return apply_settings(config, [(dotted_key, raw_value)])


def apply_settings(config: Config, settings: list[tuple[str, str]]) -> Config:
    """A copy of the file's configuration with each ``(section.key, text)`` set,
    validated as a whole: all of them, or (an error) none."""
    file_sections = read_file_sections(config.source)
    seen: set[str] = set()
    for dotted_key, raw_value in settings:
        if dotted_key in seen:
            raise ConfigError(f"'{dotted_key}' is given twice", hint="give each key once")
        seen.add(dotted_key)
        section, key = _known_key(dotted_key)
        value = _parse_text(f"'{dotted_key}'", raw_value, _field_types(section)[key])
        file_sections.setdefault(section, {})[key] = value
    where = ", ".join(f"'{dotted_key}'" for dotted_key, _ in settings)
    return build_config(file_sections, source=config.source, where=where)


def _known_key(dotted_key: str) -> tuple[str, str]:
    section, _, key = dotted_key.partition(".")
    if section not in SECTIONS or not key:
        raise ConfigError(
            f"unknown config key '{dotted_key}'"
            + _closest(dotted_key, [f"{s}.{k}" for s in SECTIONS for k in _field_types(s)])
        )
    types = _field_types(section)
    if key not in types:
        raise ConfigError(
            f"unknown config key '{dotted_key}'"
            + _closest(dotted_key, [f"{section}.{k}" for k in types])
        )
    return section, key

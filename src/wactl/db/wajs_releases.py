"""Which wa-js each tenant runs: installed releases, canaries, the fleet default.

Why this module exists: an operator can move tenants to a wa-js version wactl was not
released with, without waiting for a release (issue 12): install it
(`record_release`, from ``wactl engine install --version V --integrity ...``), try it
on one tenant (`set_override`, ``wactl tenant edit SLUG --wa-js V``), then move every
tenant (`rollout`) or go back to the version pinned in the code (`rollback`). The
database is the source of truth, so that a worker on any host resolves the same
version and can fetch and verify it by itself from its pin.

`effective` is the one rule: a tenant runs its override, else the fleet default, else
`wactl.wajs.PINNED`. `vet` is the one gate before a tenant is told to run a version:
it must be the pinned one, or recorded, installed and verified on this host, and pass
the contract check (`wactl.wajs_check`) unless forced.

Functions take an open `Session` (the caller owns the transaction) and write their
audit rows in it. What this module must not do: fetch anything, or signal workers
(the CLI asks the daemon to restart the ones whose version changed).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from wactl import wajs
from wactl.db.base import utcnow
from wactl.db.models import Tenant, WajsFleetDefault, WajsRelease, WajsTenantOverride
from wactl.enums import EngineName
from wactl.errors import ConflictError, UsageError, WactlError

if TYPE_CHECKING:
    from wactl.config import Config

#: What ``tenant edit --wa-js`` takes to clear a tenant's override.
DEFAULT = "default"
#: The single row of `WajsFleetDefault`.
_FLEET_ROW = 1

Source = Literal["tenant", "fleet", "pinned"]


class ContractMismatchError(WactlError):
    """The version's package does not declare what wactl uses (exit code 1)."""


@dataclass(frozen=True)
class Effective:
    """The wa-js a tenant runs, and why."""

    pin: wajs.Pin
    #: "tenant": its own override (a canary); "fleet": the default a rollout set;
    #: "pinned": the version pinned in this wactl.
    source: Source
    #: What the tenants without an override run, to tell a canary from the rest.
    fleet_version: str

    @property
    def version(self) -> str:
        return self.pin.version

    @property
    def is_canary(self) -> bool:
        return self.version != self.fleet_version

    def describe(self) -> str:
        """For people: ``4.7.0 (canary; the fleet runs 4.6.0)``."""
        if self.source == "tenant":
            if self.is_canary:
                return f"{self.version} (canary; the fleet runs {self.fleet_version})"
            return f"{self.version} (set for this tenant; the fleet runs it too)"
        if self.source == "fleet":
            return f"{self.version} (fleet default)"
        return f"{self.version} (pinned in wactl)"


def pin_of(release: WajsRelease) -> wajs.Pin:
    """The pin a host installs and verifies a recorded release with."""
    if release.version == wajs.PINNED.version:
        return wajs.PINNED
    return wajs.Pin(wajs.WAJS_PACKAGE, release.version, release.integrity, release.bundle_sha256)


def effective(override: WajsRelease | None, fleet_default: WajsRelease | None) -> Effective:
    """What a tenant runs: its override, else the fleet default, else `wajs.PINNED`."""
    fleet = pin_of(fleet_default) if fleet_default is not None else wajs.PINNED
    fleet_source: Source = "fleet" if fleet_default is not None else "pinned"
    if override is not None:
        return Effective(pin_of(override), "tenant", fleet.version)
    return Effective(fleet, fleet_source, fleet.version)


def fleet_default(session: Session) -> WajsRelease | None:
    row = session.get(WajsFleetDefault, _FLEET_ROW)
    return session.get(WajsRelease, row.version) if row is not None else None


def tenant_effective(session: Session, tenant_id: uuid.UUID) -> Effective:
    """`effective` for one tenant, read from the database."""
    override = session.get(WajsTenantOverride, tenant_id)
    release = session.get(WajsRelease, override.version) if override is not None else None
    return effective(release, fleet_default(session))


def all_effective(session: Session, tenants: Iterable[Tenant]) -> dict[uuid.UUID, Effective]:
    """`effective` for many tenants, in two queries."""
    default = fleet_default(session)
    releases = {r.version: r for r in session.scalars(select(WajsRelease))}
    overrides = {o.tenant_id: o.version for o in session.scalars(select(WajsTenantOverride))}
    return {t.id: effective(releases.get(overrides.get(t.id, "")), default) for t in tenants}


def release_pin(session: Session, version: str) -> wajs.Pin | None:
    """The pin of ``version``: the code's for the pinned one, else its recorded release."""
    if version == wajs.PINNED.version:
        return wajs.PINNED
    release = session.get(WajsRelease, version)
    return pin_of(release) if release is not None else None


# --- installing ---------------------------------------------------------------------------


def record_release(
    session: Session, pin: wajs.Pin, bundle_sha256: str, *, actor: str
) -> WajsRelease:
    """Record an installed version (once; installing it again changes nothing).

    A version has one tarball: a record with another integrity or bundle is a
    `ConflictError`, whoever installed it.
    """
    release = session.get(WajsRelease, pin.version)
    if release is not None:
        if release.integrity != pin.integrity or release.bundle_sha256 != bundle_sha256:
            raise ConflictError(
                f"wa-js {pin.version} is recorded with integrity {release.integrity} "
                f"(bundle sha256 {release.bundle_sha256[:12]}...), not {pin.integrity} "
                f"(bundle sha256 {bundle_sha256[:12]}...)",
                hint="one version has one tarball: check the integrity you gave "
                f"(`npm view {pin.spec} dist.integrity`)",
            )
        return release
    from wactl.db import audit  # not at the top: workers resolve versions, never audit

    release = WajsRelease(
        version=pin.version, integrity=pin.integrity, bundle_sha256=bundle_sha256, actor=actor
    )
    session.add(release)
    session.flush()
    audit.record(
        session,
        actor=actor,
        event_type="wa_js.installed",
        payload={
            "version": pin.version,
            "integrity": pin.integrity,
            "bundle_sha256": bundle_sha256,
        },
    )
    return release


def _recorded(session: Session, pin: wajs.Pin, *, actor: str) -> None:
    """Make sure a version tenants are told to run by name has its record: the pinned
    one is recorded the first time, so that a host whose wactl pins another version can
    still fetch and verify it."""
    if session.get(WajsRelease, pin.version) is not None:
        return
    if pin.bundle_sha256 is None:
        raise UsageError(f"wa-js {pin.version} is not installed", hint=pin.install_command())
    record_release(session, pin, pin.bundle_sha256, actor=actor)


# --- may tenants run it? --------------------------------------------------------------------


def vet(config: Config, session: Session, version: str, *, force: bool = False) -> wajs.Pin:
    """The pin of ``version`` if tenants may be told to run it; raises otherwise.

    The pinned version always may (a worker installs it on first use). Any other must
    be recorded (`UsageError`), installed and verified on this host (`UsageError`), and
    pass `wactl engine check` (`ContractMismatchError`, unless ``force``).
    """
    from wactl import wajs_check

    pin = release_pin(session, version)
    if pin is None:
        raise UsageError(
            f"wa-js {version} is not installed (no record of it)",
            hint=f"install it first: `wactl engine install --version {version} "
            "--integrity sha512-...`",
        )
    if pin.is_pinned:
        return pin
    found = wajs.installed(config, pin)
    if found is None:
        raise UsageError(
            f"wa-js {version} is not installed on this host", hint=f"run `{pin.install_command()}`"
        )
    if not found.verified:
        raise UsageError(
            f"wa-js {version} on this host fails verification: {found.problem}",
            hint=f"run `{pin.install_command(force=True)}`",
        )
    try:
        report = wajs_check.check_package(wajs.read_tarball(found, pin), version)
    except WactlError as exc:
        raise UsageError(exc.message, hint=exc.hint) from None
    if not report.ok and not force:
        more = len(report.differences) - 1
        raise ContractMismatchError(
            f"wa-js {version} differs from what wactl uses: {report.differences[0].line()}"
            + (f" (and {more} more)" if more else ""),
            hint=f"see `wactl engine check --version {version}`; --force uses it anyway",
        )
    return pin


# --- a canary ---------------------------------------------------------------------------------


def set_override(
    session: Session, tenant: Tenant, version: str, *, actor: str
) -> tuple[str | None, str | None]:
    """Make ``tenant`` run ``version`` (`DEFAULT`: what the fleet runs); returns the old
    and new override (None: none). The caller audits it with the tenant's other edits;
    `vet` the version first."""
    row = session.get(WajsTenantOverride, tenant.id)
    old = row.version if row is not None else None
    new = None if version == DEFAULT else version
    if old == new:
        return old, new
    if new is None:
        assert row is not None
        session.delete(row)
    else:
        pin = release_pin(session, new)
        if pin is None:
            raise UsageError(f"wa-js {new} is not installed (no record of it)")
        _recorded(session, pin, actor=actor)
        if row is None:
            session.add(WajsTenantOverride(tenant_id=tenant.id, version=new, actor=actor))
        else:
            row.version, row.set_at, row.actor = new, utcnow(), actor
    session.flush()
    return old, new


# --- the whole fleet ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """A whatsapp-web tenant whose wa-js changes."""

    slug: str
    old: str
    new: str


@dataclass(frozen=True)
class FleetChange:
    """What a rollout or rollback changed."""

    #: What tenants without an override ran before, and run now.
    old_default: Effective
    new_default: Effective
    #: Overrides cleared: slug -> the version it had.
    cleared: dict[str, str]
    #: whatsapp-web tenants whose version changed (other engines run no wa-js).
    moves: list[Move]
    #: Anything was written (a rollout to the version already the default, with no
    #: override to clear, writes nothing).
    changed: bool

    def as_json(self) -> dict[str, Any]:
        """The stable `wactl engine rollout | rollback --json` object, without the
        ``restarted`` list the CLI adds (keys in wactl(1))."""

        def default(which: Effective) -> dict[str, str]:
            return {"version": which.version, "source": which.source}

        return {
            "fleet_default": {"old": default(self.old_default), "new": default(self.new_default)},
            "cleared": [{"tenant": s, "version": v} for s, v in self.cleared.items()],
            "moves": [{"tenant": m.slug, "from": m.old, "to": m.new} for m in self.moves],
        }


def rollout(session: Session, pin: wajs.Pin, *, actor: str) -> FleetChange:
    """Every tenant runs ``pin`` (the fleet default, overrides cleared); `vet` it first."""
    _recorded(session, pin, actor=actor)
    return _change_fleet(session, pin.version, actor=actor, event_type="wa_js.rolled_out")


def rollback(session: Session, *, actor: str) -> FleetChange:
    """Every tenant runs the version pinned in the code (no default, overrides cleared)."""
    return _change_fleet(session, None, actor=actor, event_type="wa_js.rolled_back")


def _change_fleet(
    session: Session, version: str | None, *, actor: str, event_type: str
) -> FleetChange:
    tenants = list(session.scalars(select(Tenant).order_by(Tenant.slug)))
    before = all_effective(session, tenants)
    old_default = effective(None, fleet_default(session))
    overrides = {o.tenant_id: o for o in session.scalars(select(WajsTenantOverride))}
    cleared = {t.slug: overrides[t.id].version for t in tenants if t.id in overrides}
    for override in overrides.values():
        session.delete(override)
    row = session.get(WajsFleetDefault, _FLEET_ROW)
    changed = bool(cleared) or (row.version if row is not None else None) != version
    if version is None and row is not None:
        session.delete(row)
    elif version is not None and row is None:
        session.add(WajsFleetDefault(id=_FLEET_ROW, version=version, actor=actor))
    elif version is not None and row is not None and row.version != version:
        row.version, row.set_at, row.actor = version, utcnow(), actor
    session.flush()
    session.expire_all()
    after = all_effective(session, tenants)
    moves = [
        Move(t.slug, before[t.id].version, after[t.id].version)
        for t in tenants
        if t.engine == EngineName.WHATSAPP_WEB and before[t.id].version != after[t.id].version
    ]
    new_default = effective(None, fleet_default(session))
    change = FleetChange(old_default, new_default, cleared, moves, changed)
    if change.changed:
        from wactl.db import audit

        audit.record(session, actor=actor, event_type=event_type, payload=change.as_json())
        by_slug = {t.slug: t for t in tenants}
        for move in moves:
            audit.record(
                session,
                actor=actor,
                event_type="wa_js.moved",
                tenant=by_slug[move.slug],
                payload={"from": move.old, "to": move.new, "by": event_type},
            )
    return change

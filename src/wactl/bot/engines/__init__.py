"""The engine registry: builds a tenant's engine from its name.

Each engine module is imported only when a worker asks for it, so a sandbox worker
never loads a browser driver. An engine named in `wactl.enums.EngineName` but not
built yet would fail with `EngineUnavailableError` (exit code 3 of the worker); there
are no placeholder engines that pretend to work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wactl.bot.engines.base import (
    Engine,
    EngineError,
    EngineEvents,
    EngineUnavailableError,
    InboundMessage,
)
from wactl.config.model import Config
from wactl.enums import EngineName
from wactl.errors import ConfigError

if TYPE_CHECKING:
    from wactl.wajs import Pin

__all__ = [
    "Engine",
    "EngineError",
    "EngineEvents",
    "EngineUnavailableError",
    "InboundMessage",
    "create_engine",
]


def create_engine(
    name: str,
    tenant_slug: str,
    config: Config,
    events: EngineEvents,
    *,
    wa_js: Pin | None = None,
) -> Engine:
    """The engine called ``name`` for ``tenant_slug``, reporting to ``events``; the
    whatsapp-web engine injects ``wa_js`` (default: the version pinned in wactl)."""
    if name == EngineName.SANDBOX:
        from wactl.bot.engines.sandbox import SandboxEngine

        return SandboxEngine(tenant_slug, config, events)
    if name == EngineName.WHATSAPP_WEB:
        # Imports nothing of Playwright until the engine starts.
        from wactl.bot.engines.whatsapp_web import WhatsAppWebEngine

        return WhatsAppWebEngine(tenant_slug, config, events, wa_js=wa_js)
    known = ", ".join(member.value for member in EngineName)
    raise ConfigError(f"unknown engine '{name}'", hint=f"engines: {known}")

"""Who is acting: the actor string recorded in the audit trail. Stdlib only."""

from __future__ import annotations

import getpass
import os


def os_login() -> str:
    """The login of the user running this process (``uid-N`` without a passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid-{os.getuid()}"


def operator_actor() -> str:
    """The actor of CLI commands: ``os:<login>`` of the user running wactl."""
    return f"os:{os_login()}"

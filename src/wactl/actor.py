"""Who is acting: the actor string recorded in the audit trail. Stdlib only."""

from __future__ import annotations

import getpass
import os


def operator_actor() -> str:
    """The actor of CLI commands: ``os:<login>`` of the user running wactl."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        login = f"uid-{os.getuid()}"
    return f"os:{login}"

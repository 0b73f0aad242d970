"""``python -m wactl.bot SLUG``: the command line the daemon runs for each tenant.

Only hands over to `wactl.bot.worker.main`; exit codes are documented there.
"""

from __future__ import annotations

import sys

from wactl.bot.worker import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

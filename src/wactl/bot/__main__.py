"""``python -m wactl.bot SLUG``: the command line the daemon runs for each tenant.

Names the process as a forked worker is named (`wactl.worker_names.worker_name`; its
command line already ends in "wactl.bot SLUG"), then hands over to
`wactl.bot.worker.main`; exit codes are documented there.
"""

from __future__ import annotations

import sys

from wactl.bot.worker import main
from wactl.validation import SLUG_RE
from wactl.worker_names import name_worker_process

if __name__ == "__main__":
    if len(sys.argv) == 2 and SLUG_RE.fullmatch(sys.argv[1]):
        name_worker_process(sys.argv[1], title=False)  # its command line says it
    sys.exit(main(sys.argv[1:]))

"""Entry point of the ``wactl`` command and of ``python -m wactl``."""

from __future__ import annotations

import sys


def main() -> None:
    from wactl.cli.fastpath import try_fast

    code = try_fast(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from wactl.cli.app import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()

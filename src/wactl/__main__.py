"""Entry point of the ``wactl`` command and of ``python -m wactl``."""

from __future__ import annotations


def main() -> None:
    from wactl.cli.app import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()

"""wactl: run WhatsApp bots for many small businesses from a terminal.

Importing this package must stay cheap: `wactl --help` and `wactl --version`
import nothing but typer, rich and the stdlib (see tests/test_import_hygiene.py).
"""

__version__ = "0.1.0"

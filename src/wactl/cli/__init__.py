"""The operator CLI: one module per command group, each thin (parse, call, print).

Command modules import only typer and the stdlib at top level; SQLAlchemy, Alembic
and rich tables are imported inside the commands that use them, so `wactl --help`
stays fast (tests/test_import_hygiene.py checks it).
"""

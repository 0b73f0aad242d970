"""The bot worker: one process per running tenant, started as ``python -m wactl.bot SLUG``.

The daemon (`wactl.daemon`) spawns it and talks to it over the worker's control socket
(`wactl.bot.control`); the worker writes its own heartbeat and WhatsApp session state to
the database. A sandbox worker should stay under ~40 MB of unique memory (200 of them
run on one box), so nothing in this package imports typer, rich, textual, starlette,
uvicorn or playwright, and Alembic is only imported in a short-lived child
(see `wactl.bot.worker.check_schema`).
"""

"""`wactl init`: config file, data directories and database, idempotently."""

from __future__ import annotations

import typer

from wactl.cli.context import app_context


def init(ctx: typer.Context) -> None:
    """Write the config file, create the data directories and migrate the database.

    Also generates the portal's session secret when it is empty. Safe to run again:
    it only does what is missing and says so.
    """
    import dataclasses
    import secrets

    from wactl.config import apply_setting, write_config
    from wactl.db import audit, migrate
    from wactl.db.engine import display_url, session_scope, sqlite_path

    app = app_context(ctx)
    config = app.config
    say = app.err_console.print
    changed: list[str] = []
    # 64 URL-safe characters (384 random bits); set from the environment, it is kept there.
    new_secret = None if config.portal.session_secret else secrets.token_urlsafe(48)

    if config.source.exists():
        if new_secret is None:
            say(f"config: {config.source} (exists, kept)")
        else:
            # Only this key changes; the other keys are the file's, not the environment's.
            write_config(apply_setting(config, "portal.session_secret", new_secret), config.source)
            app.changed(f"{config.source} was written")
            changed.append("config")
            say(f"config: generated portal.session_secret in {config.source}")
    else:
        if new_secret is not None:
            portal = dataclasses.replace(config.portal, session_secret=new_secret)
            config = dataclasses.replace(config, portal=portal)
        write_config(config, config.source)
        app.changed(f"{config.source} was written")
        changed.append("config")
        say(f"config: wrote {config.source}")
    if new_secret is not None:
        app.reload_config()
        config = app.config

    directories = [config.data_dir, config.log_dir, config.runtime_dir]
    database_file = sqlite_path(config.database_url)
    if database_file is not None:
        directories.append(database_file.parent)
    for directory in directories:
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            changed.append(str(directory))
            say(f"directory: created {directory}")

    engine = app.engine(check_schema=False)
    before = migrate.current_revision(engine)
    head = migrate.head_revision()
    where = display_url(engine.url)
    if before == head:
        say(f"database: {where} (at revision {head}, kept)")
    else:
        migrate.ensure_known(engine)
        migrate.upgrade(engine)
        changed.append("database")
        say(f"database: migrated {where} from {before or 'empty'} to {head}")
        with session_scope(engine) as session:
            audit.record(
                session,
                actor=audit.operator_actor(),
                event_type="db.upgraded",
                payload={"from": before, "to": head, "by": "init"},
            )

    if changed:
        say("wactl is initialised. Next: `wactl tenant create SLUG --name NAME`.")
    else:
        say("wactl was already initialised; nothing changed.")

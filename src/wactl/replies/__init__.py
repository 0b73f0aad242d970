"""What a bot says: reply templates, business hours in words, and the reply book.

Why this package is not inside `wactl.bot`: the worker answers customers with a
`book.ReplyBook`, and `wactl.db.tenants` builds the same book to check a tenant's
texts, facts and hours before it writes them, so nothing invalid reaches a worker.
Both import it; it imports neither.

Layout: `templates` (the packaged TOML texts, loaded and checked), `hours` (open or
closed, said in the tenant's words) and `book` (one message in, one reply out).

What it must not do: read the clock, touch the database, the network or the daemon,
or keep per-chat state. Imports the stdlib and wactl's base modules (enums, errors,
validation) only.
"""

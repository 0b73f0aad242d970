"""Storage: SQLAlchemy 2 models, the engine factory, sessions, migrations, repositories.

Importing this package costs ~60 ms (SQLAlchemy); the CLI imports it inside the
commands that need the database, never at module level.
"""

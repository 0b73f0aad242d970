"""The owners' web portal: sign-in, setup requests, linking the phone, conversation logs.

A Starlette application (`wactl.portal.app.create_app`) served by uvicorn
(`wactl portal serve`). It reads and writes the database only: it never starts or
signals a worker (DESIGN.md section 1), so it can run on another host than the daemon
against one PostgreSQL. Every page and API call is scoped to the signed-in owner's
tenant (`wactl.db.portal`).

Modules: `app` (factory, middleware, error pages), `auth` (OpenID Connect through
authlib), `security` (CSRF, headers, rate limits, redirects), `forms` (the setup
request form), `views` (status in plain words), `routes` (pages and JSON endpoints),
`server` (uvicorn). Nothing here is imported on the CLI's fast paths.
"""

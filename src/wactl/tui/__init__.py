"""`wactl tui`: the live dashboard operators keep open all day.

Layout: `model` (what the table shows; plain Python, no Textual), `qr` (a QR as
half-block lines), `data` (the database and log file reads of the detail pane, run in
threads), `messages` (what the I/O workers tell the app), `screens` (the dashboard,
QR, confirmation and help screens) and `app` (the `build_app` factory shared by
`wactl tui`, the tests and bench/tui.py). The daemon is reached with the asyncio
client `wactl.ipc.aio`. Nothing here imports the CLI: `wactl tui` hands its context
in (`data.DashboardContext`), and the words both show come from `wactl.formatting`.

Nothing here is imported by the plain CLI path: Textual costs ~180 ms to import.
"""

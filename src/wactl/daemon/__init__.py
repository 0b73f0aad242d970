"""wactld: the supervising daemon (API on a Unix socket, supervisor, event hub, metrics).

The daemon is the only process that starts or signals workers (DESIGN.md section 1).
Nothing here is imported by the plain CLI path; the CLI talks to it through
`wactl.ipc.client`.
"""

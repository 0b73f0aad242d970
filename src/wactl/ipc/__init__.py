"""Talking to the daemon: the protocol constants and a stdlib-only client.

Imported on the CLI's hot path (`wactl ps`), so it uses http.client over AF_UNIX and
nothing heavier (~3 ms).
"""

"""The daemon's end of a worker's control socket (`wactl.daemon.link.WorkerLink`) leaves
no failed future behind for the garbage collector: a request whose caller went away
(cancelled while its request was still being written) and whose connection then broke
was reported as "Future exception was never retrieved". Real Unix socket, no daemon."""

from __future__ import annotations

import asyncio
import gc
import tempfile
from pathlib import Path
from typing import Any

import pytest

from wactl.daemon.link import WorkerLink


async def _cancelled_request_then_broken_connection(path: Path) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    accepted: asyncio.Future[asyncio.StreamWriter] = loop.create_future()

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A worker that stops reading: the daemon's write of a big request blocks.
        accepted.set_result(writer)

    server = await asyncio.start_unix_server(worker, path=str(path))
    link = WorkerLink("alpha", path, lambda slug, message: None)
    link.start()
    await asyncio.wait_for(link.connected.wait(), 10)
    big = {"text": "x" * (8 << 20)}  # far over the socket buffers: drain() waits
    request = loop.create_task(link.request("send", big, timeout=30))
    writer = await asyncio.wait_for(accepted, 10)
    while not link._pending:  # the request is registered and its write is under way
        await asyncio.sleep(0.01)
    request.cancel()  # the API call that made it was cancelled (its client went away)
    with pytest.raises(asyncio.CancelledError):
        await request
    writer.close()  # then the worker's connection breaks
    await asyncio.sleep(0.1)
    await link.close()
    server.close()
    await server.wait_closed()
    del request, writer
    gc.collect()
    await asyncio.sleep(0)
    return reported


def test_a_request_abandoned_before_its_connection_broke_is_not_reported() -> None:
    with tempfile.TemporaryDirectory(prefix="wt", dir="/tmp") as tmp:
        reported = asyncio.run(_cancelled_request_then_broken_connection(Path(tmp) / "w.sock"))
    messages = [str(context.get("message")) for context in reported]
    assert [m for m in messages if "never retrieved" in m] == []

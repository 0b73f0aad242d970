"""The event hub: worker state changes, QR changes and errors, fanned out to SSE clients.

Each subscriber has a bounded queue. A subscriber too slow to keep up loses events
and gets one ``lagged`` event instead of making the daemon buffer without limit; it
can then re-read the state it needs from the API.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Any

QUEUE_SIZE = 1000


class Subscription:
    def __init__(self, hub: EventHub) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.lagged = False

    def close(self) -> None:
        self._hub._subscribers.discard(self)


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._ids = itertools.count(1)
        self.closed = False

    def subscribe(self) -> Subscription:
        subscription = Subscription(self)
        self._subscribers.add(subscription)
        return subscription

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        """Tell every subscriber the daemon is going away (their streams then end)."""
        self.publish("shutdown")
        self.closed = True

    def publish(self, event: str, **data: Any) -> None:
        payload = {
            "id": next(self._ids),
            "event": event,
            "at": dt.datetime.now(dt.UTC).isoformat(),
            **data,
        }
        for subscription in list(self._subscribers):
            try:
                subscription.queue.put_nowait(payload)
                subscription.lagged = False
            except asyncio.QueueFull:
                if not subscription.lagged:
                    subscription.lagged = True
                    # Make room for one marker so the client knows it missed events.
                    subscription.queue.get_nowait()
                    subscription.queue.put_nowait(
                        {"id": payload["id"], "event": "lagged", "at": payload["at"]}
                    )

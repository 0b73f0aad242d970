"""Token buckets: the bot pipeline's rate limits (`RateLimiter`: per chat and per
tenant) and the portal's (per client address and per owner). Stdlib only.

A bucket holds up to ``burst`` tokens and refills at ``per_minute / 60`` tokens per
second; a message (or a request) takes one token. The clock is injected so tests
need not wait. It lives outside `wactl.bot` because the portal uses it too, and the
portal does not import the bot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    burst: float
    per_second: float
    clock: Callable[[], float]
    tokens: float = field(init=False)
    stamp: float = field(init=False)
    #: Set when a message was refused; cleared once the bucket has a token again.
    warned: bool = False

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.stamp = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now

    def take(self) -> bool:
        """Take one token; False when the bucket is empty (the message is over the limit)."""
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            self.warned = False
            return True
        return False


class RateLimiter:
    """One bucket per chat plus one for the tenant; idle chat buckets are forgotten."""

    def __init__(
        self,
        *,
        chat_burst: int,
        chat_per_minute: float,
        tenant_burst: int,
        tenant_per_minute: float,
        clock: Callable[[], float],
    ) -> None:
        self._clock = clock
        self._chat_burst = chat_burst
        self._chat_rate = chat_per_minute / 60.0
        self.tenant = TokenBucket(tenant_burst, tenant_per_minute / 60.0, clock)
        self._chats: dict[str, TokenBucket] = {}

    def check(self, chat: str) -> tuple[bool, bool]:
        """(allowed, warn): whether to answer, and whether this is the first refusal."""
        bucket = self._chats.get(chat)
        if bucket is None:
            if len(self._chats) > 10_000:
                self._forget_full_buckets()
            bucket = self._chats[chat] = TokenBucket(self._chat_burst, self._chat_rate, self._clock)
        was_warned = bucket.warned
        if not bucket.take():
            warn = not bucket.warned
            bucket.warned = True
            return False, warn
        if not self.tenant.take():
            # The tenant's budget is spent: this chat's token is given back.
            bucket.tokens += 1
            warn = not was_warned
            bucket.warned = True
            return False, warn
        return True, False

    def refund(self, chat: str, *, allowed: bool, warned: bool) -> None:
        """Undo a `check` whose message turned out to be a duplicate: give the tokens
        back, or make the next refusal warn again."""
        bucket = self._chats.get(chat)
        if allowed:
            self.tenant.tokens = min(self.tenant.burst, self.tenant.tokens + 1)
            if bucket is not None:
                bucket.tokens = min(bucket.burst, bucket.tokens + 1)
        elif warned and bucket is not None:
            bucket.warned = False

    def _forget_full_buckets(self) -> None:
        for chat, bucket in list(self._chats.items()):
            bucket._refill()
            if bucket.tokens >= bucket.burst:
                del self._chats[chat]

"""Token buckets and the pipeline's rate limiter, driven by a fake clock (no waiting).

The end-to-end behaviour (warning text, IGNORED rows) is in test_pipeline.py; here the
arithmetic: burst, refill, one warning per excess period, and the tenant-wide bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from wactl.ratelimit import RateLimiter, TokenBucket

ALLOWED = (True, False)
WARN = (False, True)
SILENT = (False, False)


@dataclass
class FakeClock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(
    clock: FakeClock,
    *,
    chat_burst: int = 2,
    chat_per_minute: float = 30.0,
    tenant_burst: int = 1_000,
    tenant_per_minute: float = 60_000.0,
) -> RateLimiter:
    return RateLimiter(
        chat_burst=chat_burst,
        chat_per_minute=chat_per_minute,
        tenant_burst=tenant_burst,
        tenant_per_minute=tenant_per_minute,
        clock=clock,
    )


def test_a_bucket_starts_full_and_refuses_once_empty() -> None:
    bucket = TokenBucket(3, 1.0, FakeClock())
    assert [bucket.take() for _ in range(5)] == [True, True, True, False, False]


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, 0.5, clock)  # one token every 2 s
    assert bucket.take() and bucket.take()
    clock.advance(1.5)
    assert not bucket.take()  # 0.75 of a token
    clock.advance(0.5)
    assert bucket.take()  # a refused take loses nothing: 0.75 + 0.25 = 1
    assert not bucket.take()
    clock.advance(3_600)  # a long quiet spell refills to the burst, not beyond
    assert [bucket.take() for _ in range(3)] == [True, True, False]


def test_a_chat_gets_one_warning_per_excess_period() -> None:
    clock = FakeClock()
    limits = limiter(clock, chat_burst=2, chat_per_minute=30.0)  # a token every 2 s
    assert [limits.check("+1555") for _ in range(6)] == [
        ALLOWED,
        ALLOWED,
        WARN,
        SILENT,
        SILENT,
        SILENT,
    ]
    clock.advance(1.9)
    assert limits.check("+1555") == SILENT  # still empty: no second warning
    clock.advance(2.0)
    # Refilled: answered again, and the next excess is a new period with a new warning.
    assert [limits.check("+1555") for _ in range(3)] == [ALLOWED, WARN, SILENT]


def test_chats_are_limited_independently() -> None:
    clock = FakeClock()
    limits = limiter(clock, chat_burst=1, chat_per_minute=0.001)
    assert [limits.check("a") for _ in range(3)] == [ALLOWED, WARN, SILENT]
    assert [limits.check("b") for _ in range(3)] == [ALLOWED, WARN, SILENT]
    assert limits.check("c") == ALLOWED


def test_a_chat_over_its_limit_spends_nothing_of_the_tenant_budget() -> None:
    clock = FakeClock()
    limits = limiter(clock, chat_burst=1, chat_per_minute=0.001, tenant_burst=2)
    assert limits.check("a") == ALLOWED
    assert [limits.check("a") for _ in range(10)] == [WARN] + [SILENT] * 9
    assert limits.check("b") == ALLOWED  # the tenant's second token is still there
    assert limits.check("c") == WARN  # and now it is gone


def test_the_tenant_bucket_gives_the_chat_token_back() -> None:
    clock = FakeClock()
    limits = limiter(
        clock, chat_burst=2, chat_per_minute=0.001, tenant_burst=1, tenant_per_minute=60.0
    )
    assert limits.check("a") == ALLOWED  # chat a: 1 token left; tenant: 0
    assert limits.check("a") == WARN  # the tenant refuses; chat a keeps its token
    clock.advance(1.0)  # the tenant gets one token back (60/min)
    assert limits.check("a") == ALLOWED  # chat a's given-back token
    clock.advance(1.0)
    assert limits.check("a") == WARN  # chat a's own burst is spent now


def test_the_tenant_bucket_warns_each_chat_once_per_excess_period() -> None:
    clock = FakeClock()
    limits = limiter(
        clock, chat_burst=10, chat_per_minute=0.001, tenant_burst=2, tenant_per_minute=0.001
    )
    assert limits.check("a") == ALLOWED
    assert limits.check("a") == ALLOWED
    # The whole tenant is over its budget: each customer is told once, then silence.
    assert [limits.check("b") for _ in range(4)] == [WARN, SILENT, SILENT, SILENT]
    assert [limits.check("a") for _ in range(3)] == [WARN, SILENT, SILENT]


def test_idle_full_buckets_are_forgotten_but_a_limited_chat_is_not() -> None:
    clock = FakeClock()
    limits = limiter(clock, chat_burst=2, chat_per_minute=60.0, tenant_burst=100_000)
    assert [limits.check("busy") for _ in range(3)] == [ALLOWED, ALLOWED, WARN]
    for number in range(10_001):
        assert limits.check(f"chat-{number}") == ALLOWED
    # The other chats' buckets are full again after 1 s; "busy" needs 2 s.
    clock.advance(1.5)
    assert limits.check("new-chat") == ALLOWED  # more than 10,000 chats: full ones go
    # "busy" kept its 1.5 tokens: one answer, then a warning (a new bucket would
    # have answered twice).
    assert [limits.check("busy") for _ in range(2)] == [ALLOWED, WARN]


def test_a_refund_gives_a_duplicate_s_tokens_back() -> None:
    """The pipeline's fast path asks the limiter before it knows the message is a
    redelivery; a duplicate must cost nothing."""
    clock = FakeClock()
    rates = limiter(clock, chat_burst=2, chat_per_minute=0.001, tenant_burst=3)
    assert rates.check("a") == ALLOWED
    assert rates.check("a") == ALLOWED  # a duplicate, it turns out
    rates.refund("a", allowed=True, warned=False)
    assert rates.check("a") == ALLOWED
    assert rates.check("b") == ALLOWED  # the tenant's third token was given back too
    assert rates.check("a") == WARN
    rates.refund("a", allowed=False, warned=True)  # the warning went to a duplicate
    assert rates.check("a") == WARN  # so the next refusal warns
    assert rates.check("a") == SILENT


def test_a_refund_never_fills_a_bucket_beyond_its_burst() -> None:
    rates = limiter(FakeClock(), chat_burst=1, chat_per_minute=0.001, tenant_burst=1)
    rates.check("a")
    rates.refund("a", allowed=True, warned=False)
    rates.refund("a", allowed=True, warned=False)
    assert [rates.check("a"), rates.check("a")] == [ALLOWED, WARN]

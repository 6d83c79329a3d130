"""The pacing limiter, on a fake clock (booking) and a real one (waiting)."""

from __future__ import annotations

import asyncio
import time

import pytest

from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_requests_are_evenly_spaced() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, clock=clock)  # one per second
    waits = [limiter.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0])


def test_no_window_of_a_minute_holds_more_than_the_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=120, clock=clock)
    starts = []
    for step in range(400):
        clock.now = 100.0 + step * 0.1  # callers arrive far faster than allowed
        starts.append(clock.now + limiter.reserve())
    starts.sort()
    for i, t in enumerate(starts):
        in_window = sum(1 for s in starts[i:] if s < t + 60.0)
        assert in_window <= 120


def test_idle_time_is_not_banked_beyond_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    clock.now += 1000.0
    waits = [limiter.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 1.0, 2.0])


def test_cost_pushes_later_callers_back_and_adjust_corrects() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=600, clock=clock)  # 10 tokens/s
    assert limiter.reserve(50) == 0.0
    assert limiter.reserve(10) == pytest.approx(5.0)
    limiter.adjust(-20)  # the first call used 20 tokens fewer than booked
    assert limiter.reserve(10) == pytest.approx(4.0)
    limiter.adjust(-10_000)  # a refund never moves the schedule into the past
    assert limiter.reserve(1) == 0.0


def test_acquire_really_waits() -> None:
    limiter = RateLimiter(per_minute=1200)  # 50 ms apart

    async def run() -> float:
        start = time.monotonic()
        await asyncio.gather(*(limiter.acquire() for _ in range(6)))
        return time.monotonic() - start

    elapsed = asyncio.run(run())
    assert elapsed >= 0.24


def test_bad_settings() -> None:
    with pytest.raises(InputError):
        RateLimiter(per_minute=0)
    with pytest.raises(InputError):
        RateLimiter(per_minute=10, burst=0.5)

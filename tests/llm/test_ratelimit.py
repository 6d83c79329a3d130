"""The pacing limiter, on a fake clock (booking) and a real one (waiting)."""

from __future__ import annotations

import asyncio
import random
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
    limiter = RateLimiter(per_minute=60, clock=clock, start_offset=0.0)  # one per second
    waits = [limiter.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0])


def test_no_window_of_a_minute_holds_more_than_the_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=120, clock=clock, rng=random.Random(5))
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
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock, start_offset=0.0)
    clock.now += 1000.0
    waits = [limiter.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 1.0, 2.0])


def test_cost_pushes_later_callers_back_and_adjust_corrects() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=600, clock=clock, start_offset=0.0)  # 10 tokens/s
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


def test_a_fresh_limiters_first_call_waits_at_most_one_interval() -> None:
    clock = FakeClock()
    firsts = []
    for seed in range(200):
        limiter = RateLimiter(per_minute=60, clock=clock, rng=random.Random(seed))  # 1 s apart
        first = limiter.reserve()
        firsts.append(first)
        assert 0.0 <= first < 1.0
        assert first == pytest.approx(random.Random(seed).random())  # seeded: reproducible
        assert limiter.reserve() == pytest.approx(first + 1.0)  # then evenly spaced
    assert max(firsts) > 0.9 and min(firsts) < 0.1  # spread over the whole interval
    # A first booking of many units (tpm) waits at most the time those units take.
    tokens = RateLimiter(per_minute=6000, clock=clock, start_offset=0.5)  # 100 tokens/s
    assert tokens.reserve(300) == pytest.approx(1.5)


def _starts(limiters: list[RateLimiter], clock: FakeClock, per_limiter: int) -> list[float]:
    """Start times when every limiter's callers all ask at once, ``per_limiter`` each."""
    return sorted(clock.now + limiter.reserve() for limiter in limiters for _ in range(per_limiter))


def _most_in_a_window(starts: list[float], width: float) -> int:
    return max(sum(1 for s in starts[i:] if s < t + width) for i, t in enumerate(starts))


def test_many_fresh_limiters_jointly_keep_the_rate() -> None:
    # A Spark job with rpm=120 over 200 tasks: each task's client gets rpm 0.6
    # (one request per 100 s), and all tasks start at the same moment.
    rate, tasks = 120.0, 200
    interval = 60.0 * tasks / rate
    clock = FakeClock()
    rng = random.Random(11)
    limiters = [
        RateLimiter(per_minute=rate / tasks, clock=clock, rng=random.Random(rng.random()))
        for _ in range(tasks)
    ]
    starts = _starts(limiters, clock, per_limiter=3)
    t0 = clock.now
    # Over whole intervals from the start the job holds the rate exactly.
    for k in (1, 2, 3):
        in_window = sum(1 for s in starts if s < t0 + k * interval)
        assert in_window == k * tasks == rate / 60 * k * interval
    # Any 60 s window holds about rpm starts (random offsets: up to a few more), and
    # never the whole fleet at once.
    assert _most_in_a_window(starts, 60.0) <= rate * 1.25
    assert _most_in_a_window(starts, 1.0) <= 8
    # Without the staggered start every task's first request went out at once.
    clock.now = t0
    unstaggered = [
        RateLimiter(per_minute=rate / tasks, clock=clock, start_offset=0.0) for _ in range(tasks)
    ]
    assert _most_in_a_window(_starts(unstaggered, clock, per_limiter=3), 1.0) == tasks


def test_bad_settings() -> None:
    with pytest.raises(InputError):
        RateLimiter(per_minute=0)
    with pytest.raises(InputError):
        RateLimiter(per_minute=10, burst=0.5)
    with pytest.raises(InputError):
        RateLimiter(per_minute=10, start_offset=1.0)

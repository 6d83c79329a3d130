"""The shareable budget guard: reservations under threads, spent + in-flight accounting."""

from __future__ import annotations

import threading

import pytest

from rlm_pipeline.errors import BudgetExceededError
from rlm_pipeline.llm.budget import BudgetGuard
from rlm_pipeline.llm.config import Budget
from rlm_pipeline.llm.usage import UsageMeter


def test_calls_limit_counts_spent_and_in_flight() -> None:
    meter = UsageMeter()
    guard = BudgetGuard(Budget(max_calls=3), meter)
    first = guard.reserve(tokens=1, cost_usd=0.0)
    meter.record(input_tokens=1, output_tokens=1, cost_usd=0.0)
    guard.release(first)
    held = [guard.reserve(tokens=1, cost_usd=0.0) for _ in range(2)]
    with pytest.raises(BudgetExceededError) as info:
        guard.reserve(tokens=1, cost_usd=0.0)
    assert (info.value.what, info.value.spent, info.value.budget) == ("calls", 3, 3)
    for r in held:
        guard.release(r)
    assert guard.in_flight == 0


def test_cached_calls_cost_nothing() -> None:
    meter = UsageMeter()
    guard = BudgetGuard(Budget(max_calls=1), meter)
    for _ in range(5):
        meter.record(input_tokens=0, output_tokens=0, cost_usd=0.0, cached=True)
    guard.release(guard.reserve(tokens=10, cost_usd=0.0))


def test_tokens_limit_includes_the_projection() -> None:
    meter = UsageMeter()
    guard = BudgetGuard(Budget(max_tokens=100), meter)
    meter.record(input_tokens=50, output_tokens=10, cost_usd=0.0)
    r = guard.reserve(tokens=40, cost_usd=0.0)  # 60 + 40 = 100: allowed
    with pytest.raises(BudgetExceededError) as info:
        guard.reserve(tokens=1, cost_usd=0.0)
    assert info.value.what == "tokens"
    guard.release(r)
    with pytest.raises(BudgetExceededError):
        guard.reserve(tokens=41, cost_usd=0.0)


def test_cost_limit() -> None:
    meter = UsageMeter()
    guard = BudgetGuard(Budget(max_cost_usd=0.01), meter)
    meter.record(input_tokens=1, output_tokens=1, cost_usd=0.008)
    with pytest.raises(BudgetExceededError) as info:
        guard.reserve(tokens=1, cost_usd=0.003)
    assert info.value.what == "cost_usd"
    assert info.value.budget == 0.01
    guard.release(guard.reserve(tokens=1, cost_usd=0.002))


def test_threads_cannot_jointly_overshoot() -> None:
    meter = UsageMeter()
    guard = BudgetGuard(Budget(max_calls=50, max_tokens=10_000), meter)
    granted: list[int] = []
    refused: list[int] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        for _ in range(20):
            try:
                r = guard.reserve(tokens=100, cost_usd=0.0)
            except BudgetExceededError:
                refused.append(1)
                continue
            granted.append(1)
            meter.record(input_tokens=60, output_tokens=40, cost_usd=0.0)
            guard.release(r)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    usage = meter.snapshot()
    assert len(granted) == 50 == usage.calls
    assert len(refused) == 16 * 20 - 50
    assert usage.total_tokens <= 10_000
    assert guard.in_flight == 0


def test_unlimited_budget_never_refuses() -> None:
    guard = BudgetGuard(Budget(), UsageMeter())
    held = [guard.reserve(tokens=10**9, cost_usd=10.0**6) for _ in range(100)]
    assert guard.in_flight == 100
    for r in held:
        guard.release(r)


def test_clients_sharing_a_meter_share_one_guard() -> None:
    from rlm_pipeline.llm.budget import shared_guard

    meter = UsageMeter()
    guard = shared_guard(Budget(max_calls=2), meter)
    assert shared_guard(Budget(max_calls=2), meter) is guard
    assert shared_guard(Budget(max_calls=3), meter) is not guard
    assert shared_guard(Budget(max_calls=2), UsageMeter()) is not guard
    held = guard.reserve(tokens=1, cost_usd=0.0)
    shared_guard(Budget(max_calls=2), meter).reserve(tokens=1, cost_usd=0.0)
    with pytest.raises(BudgetExceededError):
        guard.reserve(tokens=1, cost_usd=0.0)
    guard.release(held)

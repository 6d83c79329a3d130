"""The shareable budget guard: reservations under threads, spent + in-flight accounting.

Every test books through ``reserve_request``, the method the client calls.
"""

from __future__ import annotations

import threading

import pytest

from rlm_pipeline.errors import BudgetExceededError
from rlm_pipeline.llm.budget import BudgetGuard, Reservation
from rlm_pipeline.llm.config import Budget, Price
from rlm_pipeline.llm.usage import UsageMeter

FREE = Price(0.0, 0.0)


def book(guard: BudgetGuard, tokens: int = 1, price: Price = FREE) -> Reservation:
    """Book a request of ``tokens`` tokens (``tokens - 1`` of prompt, one of reply)."""
    return guard.reserve_request(prompt_tokens=tokens - 1, reply_tokens=1, price=price)


def test_calls_limit_counts_spent_and_in_flight() -> None:
    meter = UsageMeter()
    guard = BudgetGuard(Budget(max_calls=3), meter)
    first = book(guard, 1)
    meter.record(input_tokens=1, output_tokens=1, cost_usd=0.0)
    guard.release(first)
    held = [book(guard, 1) for _ in range(2)]
    with pytest.raises(BudgetExceededError) as info:
        book(guard, 1)
    assert (info.value.what, info.value.spent, info.value.budget) == ("calls", 3, 3)
    for r in held:
        guard.release(r)
    assert guard.in_flight == 0


def test_cached_calls_cost_nothing() -> None:
    meter = UsageMeter()
    guard = BudgetGuard(Budget(max_calls=1), meter)
    for _ in range(5):
        meter.record(input_tokens=0, output_tokens=0, cost_usd=0.0, cached=True)
    guard.release(book(guard, 10))


def test_tokens_limit_includes_the_projection() -> None:
    meter = UsageMeter()
    guard = BudgetGuard(Budget(max_tokens=100), meter)
    meter.record(input_tokens=50, output_tokens=10, cost_usd=0.0)
    r = book(guard, 40)  # 60 + 40 = 100: allowed
    with pytest.raises(BudgetExceededError) as info:
        book(guard, 1)
    assert info.value.what == "tokens"
    guard.release(r)
    with pytest.raises(BudgetExceededError):
        book(guard, 41)


def test_cost_limit() -> None:
    meter = UsageMeter()
    guard = BudgetGuard(Budget(max_cost_usd=0.01), meter)
    meter.record(input_tokens=1, output_tokens=1, cost_usd=0.008)
    prompt_priced = Price(input_per_mtok=1_000.0, output_per_mtok=0.0)  # 0.001 USD a prompt token
    with pytest.raises(BudgetExceededError) as info:
        book(guard, 4, prompt_priced)  # 3 prompt tokens: 0.003 USD, 0.002 left
    assert info.value.what == "cost_usd"
    assert info.value.budget == 0.01
    guard.release(book(guard, 3, prompt_priced))


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
                r = book(guard, 100)
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
    price = Price(input_per_mtok=1e6, output_per_mtok=1e6)
    held = [
        guard.reserve_request(prompt_tokens=10**9, reply_tokens=10**9, price=price)
        for _ in range(100)
    ]
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
    held = book(guard, 1)
    book(shared_guard(Budget(max_calls=2), meter))
    with pytest.raises(BudgetExceededError):
        book(guard, 1)
    guard.release(held)


def test_reserve_request_cuts_the_reply_to_what_is_left() -> None:
    from rlm_pipeline.llm.config import Price

    free = Price(0.0, 0.0)
    meter = UsageMeter()
    guard = BudgetGuard(Budget(max_tokens=1_000), meter)
    first = guard.reserve_request(prompt_tokens=100, reply_tokens=256, price=free)
    assert (first.reply_tokens, first.tokens) == (256, 356)
    second = guard.reserve_request(prompt_tokens=100, reply_tokens=5_000, price=free)
    assert (second.reply_tokens, second.tokens) == (544, 644)  # 1000 - 356 - 100
    with pytest.raises(BudgetExceededError) as info:
        guard.reserve_request(prompt_tokens=1, reply_tokens=1, price=free)
    assert info.value.what == "tokens"
    guard.release(first)
    meter.record(input_tokens=100, output_tokens=56, cost_usd=0.0)  # it used less
    third = guard.reserve_request(prompt_tokens=100, reply_tokens=256, price=free)
    assert third.reply_tokens == 1_000 - 156 - 644 - 100


def test_reserve_request_cuts_the_reply_to_the_cost_left() -> None:
    from rlm_pipeline.llm.config import Price

    price = Price(input_per_mtok=1.0, output_per_mtok=10.0)  # 1e-5 USD per reply token
    meter = UsageMeter()
    guard = BudgetGuard(Budget(max_cost_usd=0.001), meter)
    r = guard.reserve_request(prompt_tokens=100, reply_tokens=256, price=price)
    # 0.001 - 100e-6 leaves 0.0009 USD: 90 reply tokens
    assert r.reply_tokens == 90 and r.cost_usd <= 0.001
    with pytest.raises(BudgetExceededError) as info:
        guard.reserve_request(prompt_tokens=1, reply_tokens=1, price=price)
    assert info.value.what == "cost_usd"
    guard.release(r)
    assert guard.limits_reply(price) and not guard.limits_reply(Price(1.0, 0.0))
    assert BudgetGuard(Budget(max_tokens=5), meter).limits_reply(Price(0.0, 0.0))
    assert not BudgetGuard(Budget(max_calls=5), meter).limits_reply(price)
    # An unpriced reply is never cut by a cost limit, and calls-only budgets never cut.
    unpriced = BudgetGuard(Budget(max_cost_usd=0.0), meter)
    assert (
        unpriced.reserve_request(prompt_tokens=9, reply_tokens=300, price=Price(0, 0)).reply_tokens
        == 300
    )

"""Review fixes, against the simulator over real HTTP: a long reply cannot pass the
budget (the reserved reply allowance is sent as ``max_tokens``), fresh clients'
rate limiters start staggered, and cache keys name the endpoint."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_pipeline.errors import BudgetExceededError, LLMResponseParseError
from rlm_pipeline.llm import structured
from rlm_pipeline.llm.cache import ResponseCache
from rlm_pipeline.llm.client import DEFAULT_REPLY_TOKENS, LLMClient
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import Usage
from rlm_pipeline.ops.core import classify_texts
from rlm_pipeline.ops.estimate import estimate_texts
from rlm_pipeline.ops.spec import ClassifySpec
from rlm_pipeline.sim import intended_label

from .helpers import LABEL_SCHEMA, LABELS, classify_messages, ticket

SimFactory = Callable[..., Any]

#: One allowed label of 20,000 characters: the simulator's reply to this schema is
#: about 5,000 tokens while the prompt stays tiny (the schema travels in
#: ``response_format``, which is not part of the prompt's token count).
LONG_LABEL = "x" * 20_000
LONG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"enum": [LONG_LABEL]}},
    "required": ["label"],
}
LONG_MESSAGES = [
    {"role": "user", "content": "Pick the label.\nRows:\n" + '{"id": 0, "text": "hi"}'}
]


@pytest.fixture(autouse=True)
def _fresh_mode_memory() -> Iterator[None]:
    structured.forget_modes()
    yield
    structured.forget_modes()


def _llm(sim: Any, **changes: Any) -> LLM:
    base: dict[str, Any] = {
        "model": "gpt-4.1-mini",  # priced: 0.40 / 1.60 USD per 1M tokens
        "base_url": sim.base_url,
        "api_key": "k",
        "timeout_s": 10.0,
    }
    base.update(changes)
    return LLM(**base)


def _server_tokens(sim: Any) -> int:
    stats = sim.stats()
    return int(stats["input_tokens"]) + int(stats["output_tokens"])


# ------------------------------------------------------------------ budget


def test_the_long_reply_really_is_long_without_a_budget(sim: Any) -> None:
    async def run() -> Any:
        async with LLMClient(_llm(sim)) as client:
            return await client.json(LONG_MESSAGES, LONG_SCHEMA, name="label")

    value, reply = asyncio.run(run())
    assert value == {"label": LONG_LABEL}
    assert reply.output_tokens > 5_000 and reply.finish_reason == "stop"


@pytest.mark.parametrize(
    "budget",
    [
        Budget(max_tokens=1_000, max_cost_usd=0.001),  # the reviewer's case: tokens bind
        Budget(max_cost_usd=0.0005),  # cost binds: at most ~310 reply tokens in all
        Budget(max_tokens=1_000),
    ],
)
def test_long_replies_never_pass_the_budget(sim: Any, tmp_path: Path, budget: Budget) -> None:
    llm = _llm(sim, cache_path=str(tmp_path / "c.sqlite"))

    async def run() -> tuple[list[BaseException], Usage, int]:
        errors: list[BaseException] = []
        async with LLMClient(llm, budget=budget) as client:
            for _ in range(12):  # far more than fit: ask until the budget refuses
                try:
                    await client.json(LONG_MESSAGES, LONG_SCHEMA, name="label")
                except (LLMResponseParseError, BudgetExceededError) as exc:
                    errors.append(exc)
                    if isinstance(exc, BudgetExceededError):
                        break
                # The meter never passes the budget, after any call.
                spent = client.usage
                assert budget.max_tokens is None or spent.total_tokens <= budget.max_tokens
                assert budget.max_cost_usd is None or spent.cost_usd <= budget.max_cost_usd
            assert client.cache is not None
            return errors, client.usage, len(client.cache)

    errors, usage, cached = asyncio.run(run())
    assert isinstance(errors[-1], BudgetExceededError)
    cut = [e for e in errors if isinstance(e, LLMResponseParseError)]
    # Every reply was cut, so none parsed: cut at the full allowance it is a parse
    # error; cut because the budget shrank the allowance (the last call) it is a budget stop.
    assert cut and usage.calls - 1 <= len(cut) <= usage.calls
    assert all("token limit" in str(e) and "finish_reason 'length'" in str(e) for e in cut)
    assert cached == 0  # a cut reply is never cached
    # The server's own counts agree with the meter and stay within the budget.
    assert _server_tokens(sim) == usage.total_tokens
    assert budget.max_tokens is None or usage.total_tokens <= budget.max_tokens
    assert budget.max_cost_usd is None or usage.cost_usd <= budget.max_cost_usd + 1e-12
    # No reply was longer than the default allowance.
    assert sim.stats()["output_tokens"] <= usage.calls * DEFAULT_REPLY_TOKENS


def test_a_callers_larger_limit_is_cut_to_what_is_left(sim: Any) -> None:
    budget = Budget(max_tokens=700)

    async def run() -> tuple[list[str], Usage]:
        outcomes = []
        async with LLMClient(_llm(sim), budget=budget) as client:
            for _ in range(5):
                try:
                    await client.json(LONG_MESSAGES, LONG_SCHEMA, name="label", max_tokens=5_000)
                except LLMResponseParseError:
                    outcomes.append("cut")
                except BudgetExceededError:
                    outcomes.append("refused")
                    break
            return outcomes, client.usage

    outcomes, usage = asyncio.run(run())
    # One call takes everything left after its prompt; its reply, cut by the budget
    # rather than by the caller's limit, is reported as a budget stop.
    assert outcomes == ["refused"]
    assert usage.total_tokens == 700 == _server_tokens(sim)


def test_short_replies_under_a_budget_are_whole_and_cached(sim: Any, tmp_path: Path) -> None:
    llm = _llm(sim, cache_path=str(tmp_path / "c.sqlite"))

    async def run() -> tuple[list[str], int]:
        async with LLMClient(llm, budget=Budget(max_tokens=100_000)) as client:
            labels = []
            for i in range(4):
                value, reply = await client.json(
                    classify_messages(ticket(i)), LABEL_SCHEMA, name="label"
                )
                assert reply.finish_reason == "stop"
                labels.append(value["label"])
            assert client.cache is not None
            return labels, len(client.cache)

    labels, cached = asyncio.run(run())
    assert labels == [intended_label(ticket(i), LABELS) for i in range(4)]
    assert cached == 4


def test_large_batches_under_a_budget_are_not_cut(sim: Any) -> None:
    # A structured reply may be as long as its prompt: a batch of 64 labels (~500
    # tokens) is not cut at the 256-token default and re-asked in pieces.
    spec = ClassifySpec("text", tuple(LABELS), batch_size=64)
    texts = [ticket(i) for i in range(128)]

    async def run() -> list[Any]:
        llm = _llm(sim, model="sim-1")
        async with LLMClient(llm, budget=Budget(max_tokens=10_000_000)) as client:
            return await classify_texts(texts, client, spec)

    rows = asyncio.run(run())
    stats = sim.stats()
    assert rows == [(intended_label(t, LABELS), None) for t in texts]
    assert stats["requests"] == 2 and stats["output_tokens"] > 2 * DEFAULT_REPLY_TOKENS


# -------------------------------------------------------------- rate limit


def test_fresh_clients_rpm_limiters_start_staggered(sim: Any) -> None:
    # A job-wide rpm of 480 shared by 8 fresh clients (8 Spark tasks): 60 rpm each,
    # so each client's limiter has a 1 s interval.  Each client's first request
    # waits its own seeded fraction of that interval instead of going at once.
    clients, interval = 8, 1.0
    offsets = [random.Random(i).random() for i in range(clients)]
    llm = _llm(sim, model="sim-1", rpm=480).share(clients)
    assert llm.rpm == 60

    async def run() -> float:
        started = time.time()

        async def one(i: int) -> None:
            async with LLMClient(llm, rng=random.Random(i)) as client:
                await client.json(classify_messages(ticket(i)), LABEL_SCHEMA, name="label")

        await asyncio.gather(*(one(i) for i in range(clients)))
        return started

    started = asyncio.run(run())
    arrivals = sorted(entry[0] - started for entry in sim.stats()["requests_log"])
    assert len(arrivals) == clients
    for got, offset in zip(arrivals, sorted(offsets), strict=True):
        assert got >= offset * interval - 0.02  # never before its slot
        assert got < interval + 0.5  # and within (about) one interval
    # Not all at once: the first quarter interval holds only the early offsets.
    early = sum(1 for t in arrivals if t < 0.25 * interval - 0.02)
    assert early <= sum(1 for u in offsets if u < 0.25)
    assert early < clients


# ------------------------------------------------------------ cache keys


def test_two_servers_under_one_model_name_do_not_share_the_cache(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    first, second = sim_factory(), sim_factory()
    assert first.base_url != second.base_url
    cache_path = str(tmp_path / "shared.sqlite")
    spec = ClassifySpec("text", tuple(LABELS), batch_size=4)
    texts = [ticket(i) for i in range(8)]

    def config(sim: Any, *, slash: str = "") -> LLM:
        return LLM(model="any", base_url=sim.base_url + slash, api_key="k", cache_path=cache_path)

    async def run(llm: LLM) -> tuple[list[Any], Usage]:
        async with LLMClient(llm) as client:
            rows = await classify_texts(texts, client, spec)
            await client.chat(classify_messages(texts[0]))
            return rows, client.usage

    rows, usage = asyncio.run(run(config(first)))
    assert rows == [(intended_label(t, LABELS), None) for t in texts]
    assert first.stats()["requests"] == 3 and usage.cached_calls == 0
    # The estimate computes the run's keys: everything is cached for the first
    # server, nothing for the second.
    assert estimate_texts(texts, spec, config(first)).cached == 8
    assert estimate_texts(texts, spec, config(first, slash="/")).cached == 8
    assert estimate_texts(texts, spec, config(second)).cached == 0
    assert estimate_texts(texts, spec, config(second)).calls == 2

    # Same model name, another server: neither row answers nor replies are reused.
    rows, usage = asyncio.run(run(config(second)))
    assert rows == [(intended_label(t, LABELS), None) for t in texts]
    assert second.stats()["requests"] == 3 and usage.cached_calls == 0
    assert first.stats()["requests"] == 3

    # Back on the first server (written with a trailing "/"): all served from the cache.
    rows, usage = asyncio.run(run(config(first, slash="/")))
    assert first.stats()["requests"] == 3 and usage.calls == 0 and usage.cached_calls == 3
    with ResponseCache(cache_path) as cache:
        assert cache.row_count() == 16

"""Prompt layout (ops-2): a shared prefix first, rows last and short; cached tokens counted
and priced (real simulator over HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import rlm_pipeline as rp
from rlm_pipeline.datasets import tickets
from rlm_pipeline.llm.config import Price
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops import polars_fanout
from rlm_pipeline.ops.prompts import build_messages
from rlm_pipeline.ops.spec import ClassifySpec, MapSpec
from rlm_pipeline.sim import intended_label

LABELS = ("billing", "technical", "account", "other")


def test_every_call_shares_its_system_message_and_only_the_rows_differ() -> None:
    for spec in (ClassifySpec("q", LABELS, instructions="Refunds are billing."),
                 MapSpec("q", "Count the words", "integer")):
        first = build_messages(spec, ["a", "b"])
        second = build_messages(spec, ['line\nbreak "quoted"'])
        assert first[0] == second[0]  # the cacheable prefix
        assert first[1]["content"] == 'Rows:\n0:"a"\n1:"b"'
        assert second[1]["content"] == 'Rows:\n0:"line\\nbreak \\"quoted\\""'


def test_batch_16_costs_at_most_25_input_tokens_per_row_same_labels_cached_tokens_priced(
    sim_factory: Callable[..., Any],
) -> None:
    sim = sim_factory()
    frame = tickets(800, seed=0).select("question")
    price = Price(1.0, 4.0, cached_input_per_mtok=0.25)
    llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x", prices={"sim-1": price})
    meter = UsageMeter()
    out, _ = polars_fanout.apply(frame, ClassifySpec("question", LABELS, batch_size=16), llm,
                                 meter=meter)
    usage = meter.snapshot()
    texts = out["question"].to_list()
    distinct = len(set(texts))
    assert out["label"].to_list() == [intended_label(t, LABELS) for t in texts]
    assert usage.input_tokens == sim.stats()["input_tokens"]
    assert usage.input_tokens / distinct <= 25.0
    # From the second call on, the system message came from the prefix cache.
    assert usage.cached_tokens == sim.stats()["cached_tokens"] > 0
    per_call_prefix = usage.cached_tokens / (usage.calls - 1)
    assert 10 <= per_call_prefix <= 60
    expected = ((usage.input_tokens - usage.cached_tokens) * 1.0 + usage.cached_tokens * 0.25
                + usage.output_tokens * 4.0) / 1e6
    assert abs(usage.cost_usd - expected) < 1e-9


def test_replies_without_details_count_no_cached_tokens() -> None:
    from rlm_pipeline.llm.completion import read_completion

    body = b'{"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": 5,' \
           b' "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": "many"}}}'
    assert read_completion(body).cached_tokens == 0

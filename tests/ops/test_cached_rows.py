"""The cached-row path at scale: memo bounds, bulk claims, grouped stats, a re-run from the store.

Small inputs, real client over an in-process transport (tests/ops/model.py), real SQLite file.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rlm_pipeline.ops.core import Tally, apply_texts
from rlm_pipeline.ops.memo import MEMO_ENTRY_BYTES, Claim, Memo
from rlm_pipeline.ops.spec import ClassifySpec, MapSpec
from rlm_pipeline.ops.stats import StatsCounter

from .model import Model, run_with, truth

LABELS = ("billing", "technical", "other")


def test_memo_claims_in_bulk_and_drops_only_finished_claims_past_its_byte_bound() -> None:
    loop = asyncio.new_event_loop()
    try:
        memo = Memo(max_bytes=3 * (4 + MEMO_ENTRY_BYTES))  # room for three 4-character texts
        first = Claim(loop.create_future())
        assert memo.claim_new(["aaaa", "bbbb"], first) == (["aaaa", "bbbb"], {})
        second = Claim(loop.create_future())
        fresh, waiting = memo.claim_new(["bbbb", "cccc"], second)
        assert fresh == ["cccc"] and waiting == {"bbbb": first} and len(memo) == 3
        # past the bound while every claim is unfinished: nothing is dropped
        assert memo.claim_new(["dddd"], Claim(loop.create_future()))[0] == ["dddd"]
        assert len(memo) == 4
        first.done.set_result(None)
        third = Claim(loop.create_future())
        assert memo.claim_new(["eeee"], third)[0] == ["eeee"]
        # the finished claim's texts went; a repeat of one is asked again (from the store)
        assert memo.get("aaaa") is None and memo.get("cccc") is second and len(memo) == 3
        assert memo.claim_new(["aaaa"], third) == (["aaaa"], {})
    finally:
        loop.close()


def test_grouped_stats_count_like_row_by_row() -> None:
    labels = [("billing", None), ("other", None), (None, "api_error: 500"), ("billing", None)]
    counter = StatsCounter(ClassifySpec("q", LABELS))
    counter.add(labels * 50)
    stats = counter.stats()
    assert (stats.rows, stats.answered, dict(stats.errors)) == (200, 150, {"api_error": 50})
    assert dict(stats.values) == {"billing": 100, "other": 50}
    # 1, 1.0 and True are equal in Python but written apart: never merged by grouping
    numbers = StatsCounter(MapSpec("q", "how many?", output_type="number"))
    numbers.add(iter([(1, None), (1.0, None), (True, None), ([1], None)]))
    assert dict(numbers.stats().values) == {"1.0": 2, "True": 1, "[1]": 1}


def test_a_rerun_from_the_store_answers_every_row_once_with_a_shared_memo(tmp_path: Path) -> None:
    spec = ClassifySpec("q", LABELS, batch_size=3)
    path = str(tmp_path / "c.sqlite")
    slices = [
        ["refund 1", None, "crash 2", "  ", "refund 1", "x 3", ""],
        ["crash 2", "refund 4", None, "x 3", "refund 4", "\u2028"],
    ]
    want = [
        [(truth(t), None) if t and t.strip() else (None, "empty_input") for t in part]
        for part in slices
    ]

    async def run(client: Any) -> tuple[list[Any], Tally]:
        memo, tally, out = Memo(), Tally(), []
        for part in slices:
            out.append(await apply_texts(part, client, spec, memo=memo, tally=tally))
        return out, tally

    model = Model()
    first, tally = run_with(model, run, cache_path=path)
    assert first == want and tally.cached_rows == 0
    assert sorted(t for call in model.calls for t in call) == ["crash 2", "refund 1", "refund 4", "x 3"]
    again = Model()
    second, tally = run_with(again, run, cache_path=path)
    assert second == want and again.calls == []
    # 4 distinct texts from the store; the 8 non-blank rows count once each
    assert (tally.cached_rows, tally.cached_texts) == (8, 4)

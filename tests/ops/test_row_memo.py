"""Row-level answer memo: answered rows are re-used whatever the batching, partitioning or
slicing of a re-run (real simulator over HTTP, real SQLite file, real Spark)."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import httpx2
import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.llm.cache import ResponseCache, RowKeys, row_key
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops import polars_fanout, spark_fanout
from rlm_pipeline.ops.core import Tally, apply_texts
from rlm_pipeline.ops.memo import RowStore
from rlm_pipeline.ops.progress import RowCounter
from rlm_pipeline.ops.spec import ClassifySpec, MapSpec
from rlm_pipeline.sim import intended_label
from tests.ops.model import Model, run_with
from tests.ops.tickets import FAULTS, LABELS, tickets


def _llm(sim: Any, cache: Path, **kw: Any) -> rp.LLM:
    base = {"model": "sim-1", "base_url": sim.base_url, "api_key": "x", "max_concurrency": 32,
            "cache_path": str(cache)}
    return rp.LLM(**{**base, **kw})


def _labels_ok(out: pl.DataFrame) -> None:
    for text, label in out.select("q", "label").iter_rows():
        assert label == intended_label(text, LABELS)


@pytest.mark.parametrize("text", ["plain", 'quote " and \\ slash', "line\nbreak", "é ü ß",
                                  "\u2028 sep", "emoji \U0001f600", ""])
def test_fast_row_keys_equal_the_reference_recipe(text: str) -> None:
    params = {"op": "classify", "labels": ["a", "b"], "instructions": "say \"a\"\n"}
    fast = RowKeys(model="m", temperature=0.0, prompt_version="ops-1", params=params)
    assert fast.key(text) == row_key(model="m", temperature=0.0, prompt_version="ops-1",
                                     params=params, text=text)
    assert fast.key(text) != fast.key(text + " ")


def test_key_holds_answer_shaping_params_but_not_batch_size(tmp_path: Path) -> None:
    llm = rp.LLM(model="m", cache_path=str(tmp_path / "c.sqlite"))
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        def key(spec: Any, model: str = "m") -> str:
            return RowStore(cache, rp.LLM(model=model), spec).key("refund please")

        base = key(ClassifySpec("q", LABELS, batch_size=16))
        assert key(ClassifySpec("other_col", LABELS, batch_size=7, output_column="x")) == base
        # one-row calls are worded otherwise (ops/prompts.py): their answers are kept apart
        assert key(ClassifySpec("q", LABELS, batch_size=1)) != base
        assert key(ClassifySpec("q", LABELS, instructions="be strict")) != base
        assert key(ClassifySpec("q", (*LABELS, "spam"))) != base
        assert key(ClassifySpec("q", LABELS), model="m2") != base
        assert key(MapSpec("q", "Count the words", "integer")) != key(
            MapSpec("q", "Count the words", "string"))
        assert llm.cache_path  # the store lives in the same file as the response cache


def test_polars_rerun_with_other_batch_size_and_slices_sends_nothing(sim: Any, tmp_path: Path) -> None:
    texts = tickets(2_000, distinct=1_500, seed=41)
    df = pl.DataFrame({"id": range(2_000), "q": texts})
    llm = _llm(sim, tmp_path / "c.sqlite")
    distinct = len(set(texts))
    first, stats = polars_fanout.apply(df, ClassifySpec("q", LABELS, batch_size=16), llm)
    assert sim.stats()["requests"] == -(-distinct // 16) and stats.cached_rows == 0
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert cache.row_count() == distinct
    sim.reset_stats()
    meter, counter = UsageMeter(), RowCounter()
    second, stats = polars_fanout.apply(df, ClassifySpec("q", LABELS, batch_size=5), llm,
                                        meter=meter, progress=counter)
    assert sim.stats()["requests"] == 0
    assert second["label"].to_list() == first["label"].to_list()
    _labels_ok(second)
    assert stats.cached_rows == 2_000 and counter.cached == 2_000 and counter.done == 2_000
    usage = meter.snapshot()
    assert usage.calls == 0 and usage.cached_calls == -(-distinct // 5)  # calls saved
    # a LazyFrame streamed in other slices: still nothing sent
    lazy, stats = polars_fanout.apply(df.lazy(), ClassifySpec("q", LABELS, batch_size=7), llm,
                                      slice_rows=300)
    assert sim.stats()["requests"] == 0 and stats.cached_rows == 2_000
    assert lazy.collect()["label"].to_list() == first["label"].to_list()


def test_new_rows_mixed_in_ask_only_the_new_rows(sim: Any, tmp_path: Path) -> None:
    old = tickets(600, seed=42)
    llm = _llm(sim, tmp_path / "c.sqlite")
    rp.classify(pl.DataFrame({"q": old}), "q", list(LABELS), llm, batch_size=16)
    new = [f"{t} (new)" for t in tickets(50, seed=43)]
    mixed = old + new
    random.Random(0).shuffle(mixed)
    sim.reset_stats()
    out = rp.classify(pl.DataFrame({"q": mixed}), "q", list(LABELS), llm, batch_size=16)
    _labels_ok(out)
    assert sim.stats()["rows_classified"] == 50
    assert sim.stats()["requests"] == -(-50 // 16)


def test_faults_then_rerun_asks_only_failed_rows_and_estimate_agrees(
    sim_factory: Any, tmp_path: Path
) -> None:
    sim = sim_factory(latency_ms=2, **{**FAULTS, "timeout_delay_s": 1.0}, seed=44)
    texts = tickets(1_500, seed=45)  # all distinct: failed rows == failed texts
    df = pl.DataFrame({"id": range(1_500), "q": texts})
    llm = _llm(sim, tmp_path / "c.sqlite", timeout_s=0.5, max_retries=0)
    first = rp.classify(df, "q", list(LABELS), llm, batch_size=16)
    failed = first.filter(pl.col("label").is_null())
    kinds = {e.split(":")[0] for e in failed["label_error"]}
    assert failed.height > 0 and kinds <= {"api_error", "parse_error", "missing_in_reply",
                                           "invalid_label"}
    labelled = 1_500 - failed.height
    # estimate: every labelled row is stored (free), only the failed ones would be sent
    est = rp.estimate(df, "q", list(LABELS), llm, batch_size=16)
    assert (est.cached, est.calls) == (labelled, -(-failed.height // 16))
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert cache.row_count() == labelled  # failures were never stored
    sim.set_config(fault_429=0.0, fault_500=0.0, fault_timeout=0.0, fault_malformed=0.0,
                   fault_wrong_ids=0.0)
    deadline = time.monotonic() + 10  # requests the client gave up on still finish on the server
    while sim.stats(log=False)["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    sim.reset_stats()
    meter = UsageMeter()
    second = rp.classify(df, "q", list(LABELS), llm, batch_size=16, meter=meter)
    assert sim.stats()["rows_classified"] == failed.height
    assert sim.stats()["requests"] == meter.snapshot().calls == -(-failed.height // 16)
    assert second["label"].null_count() == 0
    _labels_ok(second)
    kept = first.filter(pl.col("label").is_not_null())
    assert second.join(kept, on="id").select((pl.col("label") == pl.col("label_right")).all()).item()
    # after the full run: everything stored, nothing to send, whatever the batch size
    for size in (16, 7):
        est = rp.estimate(df, "q", list(LABELS), llm, batch_size=size)
        assert (est.cached, est.calls, est.input_tokens, est.cost_usd) == (1_500, 0, 0, None)


def test_core_stores_only_checked_rows(tmp_path: Path) -> None:
    spec = ClassifySpec("q", LABELS, batch_size=4)
    path = str(tmp_path / "c.sqlite")

    def spoiled(call: int, rows: list[dict[str, Any]], reply: Any) -> Any:
        if any(r["text"].startswith("down") for r in rows):
            return httpx2.Response(400, text="bad request")  # not retried: api_error
        return {"results": [{"id": r["id"], "label": "nope" if r["text"].startswith("bad")
                             else "billing"} for r in rows]}

    texts = ["ok 1", "bad 1", "ok 2", "ok 3", "down 1", "ok 4", "ok 5", "ok 6"]
    tally = Tally()
    out = run_with(Model(spoiled), lambda client: apply_texts(texts, client, spec, tally=tally),
                   cache_path=path)
    errors = {t: (e or "").split(":")[0] for t, (_, e) in zip(texts, out, strict=True)}
    assert errors["bad 1"] == "invalid_label" and errors["down 1"] == "api_error"
    good = [t for t in texts if not errors[t]]
    with ResponseCache(path) as cache:
        assert cache.row_count() == len(good) and tally.cached_rows == 0
    # second run, healthy model, other batch size: only the failed texts are sent
    healthy = Model(lambda call, rows, reply: {
        "results": [{"id": r["id"], "label": "other"} for r in rows]})
    tally = Tally()

    async def again_run(client: Any) -> Any:
        results = await apply_texts([*texts, "ok 1"], client, ClassifySpec("q", LABELS, batch_size=3),
                                    tally=tally)
        return results, client.meter.snapshot()

    again, usage = run_with(healthy, again_run, cache_path=path)
    bad = sorted(t for t in texts if errors[t])
    assert bad == ["bad 1", "down 1", "ok 4", "ok 5", "ok 6"]  # an api_error fails its whole call
    assert sorted(t for batch in healthy.calls for t in batch) == bad
    assert [v for v, _ in again[:-1]] == ["other" if t in bad else "billing" for t in texts]
    assert again[-1] == ("billing", None)
    assert (tally.cached_rows, tally.cached_texts) == (len(good) + 1, len(good))
    assert usage.cached_calls == -(-len(good) // 3)


@pytest.mark.spark
def test_spark_rerun_with_other_partitioning_sends_nothing(
    spark: Any, sim: Any, tmp_path: Path
) -> None:
    texts = tickets(3_000, distinct=2_400, seed=46)
    table = pl.DataFrame({"id": range(3_000), "q": texts}).to_arrow()
    base = spark.createDataFrame(table)
    llm = _llm(sim, tmp_path / "c.sqlite")
    spec = ClassifySpec("q", LABELS)
    first, stats = spark_fanout.apply(base.repartition(3), spec, llm)
    # a text in two partitions may be answered by one task and found stored by the other
    assert sim.stats()["rows_classified"] + stats.cached_rows >= len(set(texts))
    assert sim.stats()["requests"] > 0 and stats.cached_rows < 3_000
    got1 = pl.DataFrame(first.toArrow()).sort("id")
    _labels_ok(got1)
    sim.reset_stats()
    meter, counter = UsageMeter(), RowCounter()
    second, stats = spark_fanout.apply(base.repartition(5), spec, llm, meter=meter,
                                       progress=counter)
    assert sim.stats()["requests"] == 0
    got2 = pl.DataFrame(second.toArrow()).sort("id")
    assert got2.height == 3_000 and got2["id"].to_list() == list(range(3_000))
    assert got2["label"].to_list() == got1["label"].to_list()
    assert stats.cached_rows == 3_000 == counter.cached
    assert meter.snapshot().calls == 0 and meter.snapshot().cached_calls > 0
    est = rp.estimate(base.repartition(5), "q", list(LABELS), llm, batch_size=9)
    assert (est.cached, est.calls) == (len(set(texts)), 0)

"""aggregate, top_k and join hand back frames that outlive their scratch views, on Spark Connect too.

The operators register scratch views (``_rlm_op_*``) and drop them before they
return.  A classic DataFrame holds its analysed plan; a Spark Connect DataFrame
is analysed again by the server at every action, so a result whose plan still
named a dropped view would fail later (``TABLE_OR_VIEW_NOT_FOUND``) when the
caller collects, counts or writes it.  On Connect, top_k and join refuse to run
(their row pass needs accumulators) and aggregate's result is built from Arrow;
on Connect the engine makes no temp views at all (its SQL carries the frames).
Both sessions, over real HTTP against the simulator; the actions run after the
operators have returned.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import InputError
from rlm_pipeline.ops.multi_common import read_input
from rlm_pipeline.sim.folds import (
    SUMMARY_LABELS,
    pair_match,
    parse_summary,
    score_value,
    summary_counts,
)
from tests.ops.tickets import tickets

pytestmark = pytest.mark.spark

FAQS = (
    "Refunds arrive within 5 days of the request.",
    "Reset your password from the login page.",
    "The app crashes: update to the latest version.",
    "Invoices are in the billing tab.",
)
CRITERION = "billing refund problems"
N = 24


def _llm(sim: Any) -> rp.LLM:
    return rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x", max_retries=0)


def _temp_views(session: Any) -> set[str]:
    return {t.name for t in session.catalog.listTables() if t.isTemporary}


def _plan(frame: Any) -> str:
    """The physical plan ``frame.explain()`` prints."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        frame.explain()
    return printed.getvalue()


def _acted(out: Any, path: Path) -> pl.DataFrame:
    """Collect, count and write ``out`` to Parquet; the rows read back (all three must agree)."""
    rows = out.collect()
    assert out.count() == len(rows)
    out.write.mode("overwrite").parquet(str(path))
    written = pl.read_parquet(sorted(path.glob("*.parquet")))
    assert written.height == len(rows)
    assert sorted(map(tuple, written.rows())) == sorted(tuple(r) for r in rows)
    return written


def _inputs(session: Any) -> tuple[pl.DataFrame, pl.DataFrame, Any, Any]:
    texts = tickets(N, seed=17)
    left_rows = pl.DataFrame({"lid": range(N), "user": [i % 3 for i in range(N)],
                              "topic": [i % 4 for i in range(N)], "q": texts})
    right_rows = pl.DataFrame({"rid": range(8), "topic": [i % 4 for i in range(8)],
                               "faq": [FAQS[i % 4] for i in range(8)]})
    left = session.createDataFrame(left_rows.to_arrow()).cache()
    right = session.createDataFrame(right_rows.to_arrow()).cache()
    assert left.count() == N and right.count() == 8
    return left_rows, right_rows, left, right


def _check_summaries(got: pl.DataFrame, left_rows: pl.DataFrame) -> None:
    got = got.sort("user")
    assert got["user"].to_list() == [0, 1, 2] and got["rows"].to_list() == [8, 8, 8]
    for user, summary, error in got.select("user", "summary", "summary_error").iter_rows():
        mine = left_rows.filter(pl.col("user") == user)["q"].to_list()
        assert error is None
        assert parse_summary(summary, SUMMARY_LABELS) == summary_counts(mine)


def test_classic_results_usable_after_the_scratch_views_are_dropped(
    spark: Any, sim: Any, tmp_path: Path
) -> None:
    before = _temp_views(spark)
    left_rows, right_rows, left, right = _inputs(spark)
    summaries = rp.aggregate(left, "q", "main complaints", _llm(sim), by="user")
    best = rp.top_k(left, "q", CRITERION, 3, _llm(sim))
    pairs = rp.join(left, right, "q", "faq", "the FAQ answers the question", _llm(sim),
                    block_on="l.topic = r.topic")
    assert _temp_views(spark) == before  # no scratch view (nor input view) left behind
    assert left.storageLevel.useMemory and right.storageLevel.useMemory  # still cached
    sent = sim.stats()["requests"]

    _check_summaries(_acted(summaries, tmp_path / "summaries"), left_rows)

    got = _acted(best, tmp_path / "best").sort("rank")
    texts = left_rows["q"].to_list()
    scores = {t: score_value(t, CRITERION) for t in texts}
    assert got["q"].to_list() == sorted(texts, key=lambda t: (-scores[t], t))[:3]
    assert got["rank"].to_list() == [1, 2, 3]
    assert got["score"].to_list() == [scores[t] for t in got["q"]]

    got = _acted(pairs, tmp_path / "pairs")
    expected = {(a, b) for a, b, q, f in left_rows.join(right_rows, on="topic")
                .select("lid", "rid", "q", "faq").iter_rows() if pair_match(q, f)}
    assert expected  # the data has matches to find
    assert sorted(zip(got["lid"], got["rid"], strict=True)) == sorted(expected)
    assert got["join_error"].null_count() == got.height
    assert sim.stats()["requests"] == sent  # acting on the results asked the model nothing
    left.unpersist()
    right.unpersist()


def test_connect_aggregate_usable_after_its_views_are_dropped(
    connect: Any, sim: Any, tmp_path: Path
) -> None:
    before = _temp_views(connect)
    left_rows, _, left, right = _inputs(connect)
    summaries = rp.aggregate(left, "q", "main complaints", _llm(sim), by="user")
    # top_k and join need the row pass's accumulators: refused in one line, views dropped
    with pytest.raises(InputError, match="on Spark Connect the answers cannot be counted"):
        rp.top_k(left, "q", CRITERION, 3, _llm(sim))
    with pytest.raises(InputError, match="on Spark Connect the answers cannot be counted"):
        rp.join(left, right, "q", "faq", "the FAQ answers the question", _llm(sim),
                block_on="l.topic = r.topic")
    assert _temp_views(connect) == before
    sent = sim.stats()["requests"]
    _check_summaries(_acted(summaries, tmp_path / "summaries"), left_rows)
    assert sim.stats()["requests"] == sent
    assert left.storageLevel.useMemory and right.storageLevel.useMemory  # still cached
    left.unpersist()
    right.unpersist()


@pytest.mark.parametrize("kind", ["classic", "connect"])
def test_engine_hands_back_frames_that_outlive_its_views(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A view built from SQL over the engine's temp views, handed back, then every view dropped."""
    from rlm_pipeline.engines.spark import SparkEngine

    session = request.getfixturevalue("spark" if kind == "classic" else "connect")
    before = _temp_views(session)
    rows = pl.DataFrame({"id": range(N), "q": tickets(N, seed=17)})
    data = session.createDataFrame(rows.to_arrow()).cache()
    assert data.count() == N
    frame = read_input(data, None)
    try:
        kept = frame.fresh("kept")
        query = "SELECT id, q FROM context WHERE id % 3 = 0 AND q <> '{v0} }{'"  # braces kept
        assert frame.sql(query, kept) == 8
        assert "InMemoryTableScan" in _plan(frame.eng.frame(kept))  # SQL over it reads the cache
        out = frame.back(kept)
    finally:
        frame.release()
    assert isinstance(frame.eng, SparkEngine) and frame.eng.views() == []
    assert _temp_views(session) == before
    got = _acted(out, tmp_path / "kept").sort("id")
    assert got.rows() == rows.filter(pl.col("id") % 3 == 0).rows()
    assert out.where("id > 10").count() == 4  # a new plan over the frame, analysed afresh
    assert data.storageLevel.useMemory  # the caller's cache survives the dropped view
    data.unpersist()


@pytest.mark.parametrize("kind", ["classic", "connect"])
def test_views_redefined_over_themselves(kind: str, request: pytest.FixtureRequest) -> None:
    """The root model's pattern ``a = SELECT .. FROM a``: the new ``a``, and ``b`` built over the
    old one, stay readable (on Connect they named the replaced temp view and failed)."""
    import pyarrow as pa

    from rlm_pipeline.engines.spark import SparkEngine

    session = request.getfixturevalue("spark" if kind == "classic" else "connect")
    before = _temp_views(session)
    eng = SparkEngine(session)
    eng.register("context", pa.table({"id": list(range(10))}))
    assert eng.sql("SELECT * FROM context WHERE id > 3", "a") == 6
    assert eng.sql("SELECT * FROM a", "b") == 6
    assert eng.sql("SELECT * FROM a WHERE id > 5", "a") == 4
    # a self-join: its size is probed first (the probe's SQL reads the views too)
    assert eng.sql("SELECT x.id FROM a AS x JOIN a AS y ON x.id = y.id", "c") == 4
    assert (eng.count("a"), eng.count("b"), eng.count("c")) == (4, 6, 4)
    assert sorted(eng.to_arrow("a").column("id").to_pylist()) == [6, 7, 8, 9]
    eng.close()
    assert _temp_views(session) == before

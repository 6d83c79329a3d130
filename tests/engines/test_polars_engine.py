"""Polars-only guarantees: count and head never collect the whole table."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from rlm_pipeline.engines import open_engine
from rlm_pipeline.engines.polars import PolarsEngine

ROWS = 2_000_000


def _watched(seen: list[int]) -> pl.LazyFrame:
    """A large lazy table whose ``text`` column records how many rows were computed."""

    def record(batch: pl.Series) -> pl.Series:
        seen.append(batch.len())
        return batch.cast(pl.String)

    return pl.LazyFrame({"id": pl.int_range(ROWS, eager=True)}).with_columns(
        text=pl.col("id").map_batches(record, return_dtype=pl.String, is_elementwise=True)
    )


def test_count_computes_no_rows() -> None:
    seen: list[int] = []
    engine = PolarsEngine()
    engine.register("context", _watched(seen))
    assert engine.count("context") == ROWS
    assert sum(seen) == 0


def test_head_computes_only_a_few_rows() -> None:
    seen: list[int] = []
    engine = PolarsEngine()
    engine.register("context", _watched(seen))
    assert engine.head("context", 3).column("text").to_pylist() == ["0", "1", "2"]
    assert 0 < sum(seen) < ROWS // 10


def test_parquet_is_scanned_lazily_with_pushdown(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pl.DataFrame({"user_id": list(range(1000)), "text": ["x"] * 1000}).write_parquet(path)
    engine = open_engine(path)
    frame = engine.frame("context")
    assert isinstance(frame, pl.LazyFrame)
    engine.filter("context", "user_id IN (1, 2, 3)", "picked")
    plan = engine.frame("picked").explain()
    assert "SELECTION" in plan.upper() or "FILTER" in plan.upper()
    assert "parquet" in plan.lower()


def _aggregated_chunks() -> list[tuple[object, ...]]:
    context = pl.DataFrame({"user_id": [(i * 7919) % 5000 for i in range(20_000)]})
    engine = open_engine(context, "polars")
    engine.sql("SELECT user_id, count(*) AS n FROM context GROUP BY user_id", "g")
    engine.sql("SELECT DISTINCT user_id FROM context", "d")
    engine.partition("g", n=4, name="chunks")
    engine.partition("d", n=3, name="chunks_d")
    rows = engine.to_arrow("chunks").to_pylist() + engine.to_arrow("chunks_d").to_pylist()
    return [tuple(r.values()) for r in rows]


def test_chunks_of_an_aggregated_view_are_the_same_at_every_run() -> None:
    """GROUP BY / DISTINCT keep first-appearance order, so each run makes the same chunks."""
    first = _aggregated_chunks()
    assert first == _aggregated_chunks()
    # first appearance: user (i * 7919) % 5000 for i = 0, 1, 2, ...
    assert [r[0] for r in first[:3]] == [0, 7919 % 5000, 2 * 7919 % 5000]


def test_a_chunk_partition_is_collected_once() -> None:
    seen: list[int] = []
    engine = PolarsEngine()
    engine.register("context", _watched(seen).head(1000))
    engine.partition("context", n=4, name="chunks")
    computed = sum(seen)
    assert computed >= 1000
    for label in ("0", "1", "2", "3"):
        assert engine.filter("chunks", f"partition = '{label}'", "one") == 250
        engine.to_arrow("one")
    assert sum(seen) == computed  # the filters read the collected chunks, not the plan

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

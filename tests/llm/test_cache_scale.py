"""The cache at scale: one row-store query per batch of texts (counted on the real path),
the compact row table, stats and prune."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.llm import cache as cache_module
from rlm_pipeline.llm.cache import ResponseCache, RowKeys
from rlm_pipeline.ops import polars_fanout
from rlm_pipeline.ops.spec import ClassifySpec
from rlm_pipeline.sim import intended_label
from tests.ops.tickets import LABELS, tickets


def _traced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement run by any connection the cache module opens from now on."""
    statements: list[str] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(cache_module.sqlite3, "connect", connect)
    return statements


def test_a_cached_run_makes_one_row_store_query_per_slice_not_per_row(
    sim_factory: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = sim_factory()
    texts = tickets(3_000, distinct=1_200, seed=3)
    source = tmp_path / "in.parquet"
    pl.DataFrame({"id": range(len(texts)), "q": texts}).write_parquet(source)
    llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x",
                 cache_path=str(tmp_path / "c.sqlite"))
    spec = ClassifySpec("q", LABELS, batch_size=16)

    def run(out: Path) -> pl.DataFrame:
        polars_fanout.classify_to_parquet(pl.scan_parquet(source), spec, llm, out, slice_rows=1_000)
        return pl.read_parquet(out)

    run(tmp_path / "first.parquet")
    asked = sim.stats()["requests"]
    statements = _traced(monkeypatch)
    out = run(tmp_path / "second.parquet")

    assert sim.stats()["requests"] == asked  # nothing sent: every row from the store
    assert out["id"].to_list() == list(range(len(texts)))
    assert out["label"].to_list() == [intended_label(t, LABELS) for t in texts]
    lookups = [s for s in statements if "FROM row_store" in s]
    assert len(lookups) == 3  # 3 slices of 1,000 rows: one query each, not 3,000
    assert not [s for s in statements if "FROM responses" in s]


def test_row_table_is_keyed_by_the_digest_and_reads_hex_or_bytes(tmp_path: Path) -> None:
    keys = RowKeys(model="m", temperature=0.0, prompt_version="p", params={"op": "x"})
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put_rows({keys.digest("a"): "billing", keys.key("b"): {"n": 1}})
        assert cache.get_rows([keys.key("a"), keys.digest("b"), keys.key("zz")]) == {
            keys.key("a"): "billing",
            keys.digest("b"): {"n": 1},
        }
        conn = sqlite3.connect(tmp_path / "c.sqlite")
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'row_store'").fetchone()[0]
        assert "WITHOUT ROWID" in sql
        assert conn.execute("SELECT length(key) FROM row_store").fetchall() == [(32,), (32,)]
        conn.close()


def test_stats_and_prune_by_age(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    keys = RowKeys(model="m", temperature=0.0, prompt_version="p", params={"op": "x"})
    with ResponseCache(path) as cache:
        cache.put_rows({keys.digest(str(i)): "a" for i in range(100)})
    conn = sqlite3.connect(path)  # age half of them by a day, and add a legacy table
    conn.execute("UPDATE row_store SET created_at = created_at - 86400"
                 " WHERE key IN (SELECT key FROM row_store ORDER BY key LIMIT 50)")
    conn.execute("CREATE TABLE row_answers (key TEXT PRIMARY KEY, value TEXT, created_at REAL)")
    conn.execute("INSERT INTO row_answers VALUES ('k', '\"a\"', ?)", (time.time() - 90_000,))
    conn.commit()
    conn.close()
    with ResponseCache(path) as cache:
        stats = cache.stats()
        assert (stats.row_answers, stats.legacy_row_answers, stats.responses) == (100, 1, 0)
        assert stats.oldest is not None and stats.newest is not None
        assert stats.newest - stats.oldest > 80_000 and stats.file_bytes > 0
        pruned = cache.prune(3_600)
        assert (pruned.row_answers, pruned.legacy_row_answers) == (50, 1)
        assert cache.row_count() == 50 and cache.prune(3_600).removed == 0

"""aggregate, top_k and join leave no view behind: their scratch views (and, on Spark, the
session's temp views) are dropped when the operator ends, also when it fails; the frame
they hand back stays usable.  Both engines, over real HTTP against the simulator."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.engines import load
from rlm_pipeline.errors import InputError, UnansweredRowsError

ENGINES = ["polars", pytest.param("spark", marks=pytest.mark.spark)]
QUESTIONS = ["refund my invoice", "the app crashes", "cannot log in", "refund twice",
             "invoice wrong", "app is slow"]
FAQS = ["Invoices are in the billing tab.", "Reset your password from the login page."]


def _llm(sim: Any) -> rp.LLM:
    return rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x", max_retries=0)


class _Seen:
    """The engines the operators made (through the one place that makes them) and Spark's
    temp views before the operator ran."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, spark: Any) -> None:
        self.engines: list[Any] = []
        self.spark = spark
        self.before = self._temp_views()
        real = load.engine_for

        def keep(*args: Any, **kwargs: Any) -> Any:
            engine = real(*args, **kwargs)
            self.engines.append(engine)
            return engine

        monkeypatch.setattr(load, "engine_for", keep)

    def _temp_views(self) -> set[str]:
        if self.spark is None:
            return set()
        return {t.name for t in self.spark.catalog.listTables() if t.isTemporary}

    def left_behind(self) -> list[Any]:
        views = [v for engine in self.engines for v in engine.views()]
        return views + sorted(self._temp_views() - self.before)


def _data(frame: pl.DataFrame, spark: Any) -> Any:
    return spark.createDataFrame(frame.to_arrow()) if spark is not None else frame


def _rows(out: Any) -> pl.DataFrame:
    return pl.DataFrame(out.toArrow()) if hasattr(out, "toArrow") else out


@pytest.mark.parametrize("engine", ENGINES)
def test_operators_drop_their_scratch_views(
    sim: Any, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    spark = request.getfixturevalue("spark") if engine == "spark" else None
    seen = _Seen(monkeypatch, spark)
    left = _data(pl.DataFrame({"user": [1, 1, 2, 2, 3, 3], "q": QUESTIONS}), spark)
    right = _data(pl.DataFrame({"faq": FAQS}), spark)
    if spark is not None:  # the caller cached its inputs: dropping their views must not uncache
        left, right = left.cache(), right.cache()
        assert left.count() == 6 and right.count() == 2
    summaries = _rows(rp.aggregate(left, "q", "main complaints", _llm(sim), by="user"))
    best = _rows(rp.top_k(left, "q", "billing refund problems", 2, _llm(sim)))
    pairs = rp.join(left, right, "q", "faq", "the FAQ answers the question", _llm(sim))
    rp.estimate(left, "q", llm=_llm(sim), op="aggregate",
                instruction="main complaints", by="user")  # estimates read through views too
    assert len(seen.engines) == 4
    assert seen.left_behind() == []  # no view in the engines, no temp view in the session
    if spark is not None:
        assert left.storageLevel.useMemory and right.storageLevel.useMemory  # still cached
    # what came back is still readable: Spark resolved the dropped views into its plan
    assert summaries["user"].to_list() == [1, 2, 3] and summaries["rows"].sum() == 6
    assert best["rank"].to_list() == [1, 2]
    assert _rows(pairs).height >= 1 and set(_rows(pairs).columns) >= {"q", "faq", "join_error"}


@pytest.mark.parametrize("engine", ENGINES)
def test_scratch_views_dropped_when_the_operator_fails(
    sim: Any, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    spark = request.getfixturevalue("spark") if engine == "spark" else None
    seen = _Seen(monkeypatch, spark)
    left = pl.DataFrame({"topic": [1, 1, 2], "q": ["refund", "crash", "login"]})
    right = pl.DataFrame({"topic": [1, 1, 2], "faq": FAQS + FAQS[:1]})
    # the candidate pairs are a view already when max_pairs refuses them
    with pytest.raises(InputError, match="block_on leaves 5 candidate pairs"):
        rp.join(_data(left, spark), _data(right, spark), "q", "faq", "answers", _llm(sim),
                block_on="l.topic = r.topic", max_pairs=2)
    with pytest.raises(UnansweredRowsError):  # every row too long to score
        long = left.with_columns(pl.Series("q", [t * 40 for t in left["q"]]))
        rp.top_k(_data(long, spark), "q", "urgent", 1, _llm(sim), max_row_tokens=5)
    assert len(seen.engines) == 2 and seen.left_behind() == []

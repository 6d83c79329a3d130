"""A run leaves the caller's Spark session as it found it.

``rp.RLM.run`` registers the table and every view the model makes as temp views
of the session (classic Spark); they are dropped when the run ends, sub-runs'
views when the sub-run ends, and a DataFrame the caller cached stays cached
(dropping a temp view through ``spark.catalog`` would uncache an equal plan).
"""

from __future__ import annotations

from typing import Any

import pytest

import rlm_pipeline as rp
from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.llm.config import LLM

from .truth import USERS, per_user


def _temp_views(session: Any) -> set[str]:
    return {t.name for t in session.catalog.listTables() if t.isTemporary}


@pytest.mark.spark
def test_run_and_sub_runs_drop_their_views_and_keep_the_callers_cache(
    spark: Any, sim_llm: LLM
) -> None:
    frame = tickets(300, seed=2).drop("true_label")
    df = spark.createDataFrame(frame.to_arrow()).cache()
    df.count()
    before = _temp_views(spark)
    question = ("For each of users 12345, 67890 and 11111, how many questions are about "
                "technical? [plan:recurse]")
    res = rp.RLM(sim_llm, engine="spark", spark=spark, max_depth=2).run(
        question, df, text_column="question")
    truth = tickets(300, seed=2)
    assert res.value == per_user(truth, "technical", USERS)
    assert any(step.get("depth", 0) == 1 for step in res.trace)  # sub-runs ran on Spark
    assert _temp_views(spark) == before  # no view of the run or its sub-runs is left
    assert df.storageLevel.useMemory  # the caller's cache is kept
    assert df.count() == 300

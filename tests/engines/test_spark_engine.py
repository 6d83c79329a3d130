"""Spark-only guarantees: private temp view names, nothing else in the session is reachable."""

from __future__ import annotations

from typing import Any

import pytest

from rlm_pipeline.engines import open_engine
from rlm_pipeline.engines.spark import SparkEngine
from rlm_pipeline.errors import EngineError, ExpressionError, InputError

from .data import tickets, users

pytestmark = pytest.mark.spark


def _temp_views(spark: Any) -> set[str]:
    return {t.name for t in spark.catalog.listTables() if t.isTemporary}


def test_views_are_private_temp_views(spark: Any) -> None:
    before = _temp_views(spark)
    engine = open_engine(tickets(), "spark", spark=spark)
    assert isinstance(engine, SparkEngine)
    engine.filter("context", "urgent", "context_copy")
    made = _temp_views(spark) - before
    assert len(made) == 2
    assert all(name.startswith("rlm_") for name in made)
    assert "context" not in made and "context_copy" not in made
    engine.close()
    assert _temp_views(spark) == before


def test_model_sql_cannot_reach_other_session_views(spark: Any) -> None:
    spark.createDataFrame([("top secret",)], "s string").createOrReplaceTempView("secret")
    engine = open_engine(tickets(), "spark", spark=spark)
    try:
        with pytest.raises(ExpressionError, match="secret"):
            engine.sql("SELECT * FROM secret", "leak")
        internal = next(iter(_temp_views(spark) - {"secret"}))
        with pytest.raises(ExpressionError):
            engine.sql(f"SELECT * FROM {internal}", "leak")
        with pytest.raises(ExpressionError):
            engine.filter("context", "ticket_id IN (SELECT 1 FROM secret)", "leak")
        assert engine.views() == ["context"]
    finally:
        engine.close()
        spark.catalog.dropTempView("secret")


def test_two_engines_in_one_session_do_not_clash(spark: Any) -> None:
    first = open_engine(tickets(), "spark", spark=spark)
    second = open_engine(users(), "spark", spark=spark)
    try:
        first.filter("context", "urgent", "picked")
        second.filter("context", "region = 'eu'", "picked")
        assert first.count("picked") == 22
        assert second.count("picked") == 4
        assert first.sql("SELECT count(*) AS n FROM picked", "n") == 1
        assert first.to_arrow("n").column("n").to_pylist() == [22]
    finally:
        first.close()
        second.close()


def test_replacing_a_view_keeps_views_built_on_it(spark: Any) -> None:
    engine = open_engine(tickets(), "spark", spark=spark)
    try:
        engine.filter("context", "urgent", "step")
        engine.sql("SELECT ticket_id FROM step WHERE user_id = 0", "built")
        n = engine.count("built")
        before = _temp_views(spark)
        engine.filter("context", "NOT urgent", "step")  # replaces `step`, drops its old temp view
        assert len(_temp_views(spark)) == len(before)
        assert engine.count("built") == n > 0
    finally:
        engine.close()


def test_spark_failures_become_engine_errors(spark: Any) -> None:
    engine = open_engine(tickets(), "spark", spark=spark)
    try:
        # a valid plan that fails at run time: ANSI mode rejects the cast
        engine.register("bad", spark.sql("SELECT CAST('x' AS INT) AS v"))
        with pytest.raises(EngineError, match="^spark could not collect view 'bad': ") as info:
            engine.to_arrow("bad")
        assert "\n" not in str(info.value)
    finally:
        engine.close()


def test_register_refuses_foreign_objects(spark: Any) -> None:
    engine = SparkEngine(spark)
    with pytest.raises(InputError, match="SparkEngine cannot register dict"):
        engine.register("context", {"a": 1})

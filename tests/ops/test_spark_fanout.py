"""classify on Spark (local[2]) against the simulator over real HTTP."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops import spark_fanout
from rlm_pipeline.ops.arrow_out import to_arrow
from rlm_pipeline.ops.spec import ClassifySpec
from rlm_pipeline.ops.stats import value_text
from rlm_pipeline.sim import intended_label
from tests.ops.tickets import FAULTS, LABELS, tickets

pytestmark = pytest.mark.spark


def _llm(sim: Any, **kw: Any) -> rp.LLM:
    base = {"model": "sim-1", "base_url": sim.base_url, "api_key": "x", "max_concurrency": 32}
    return rp.LLM(**{**base, **kw})


def _frame(spark: Any, texts: list[str | None], partitions: int = 2) -> Any:
    table = pl.DataFrame({"id": range(len(texts)), "q": texts}).to_arrow()
    return (
        spark.createDataFrame(table).repartitionByRange(partitions, "id").sortWithinPartitions("id")
    )


def _check(out: Any, texts: list[str | None], order: list[int] | None = None) -> pl.DataFrame:
    got = pl.DataFrame(out.toArrow())
    assert got.height == len(texts)
    assert got["id"].to_list() == (order if order is not None else list(range(len(texts))))
    assert sorted(got["id"].to_list()) == list(range(len(texts)))
    for row_id, text, label, error in got.select("id", "q", "label", "label_error").iter_rows():
        assert text == texts[row_id]
        if label is None:
            assert error is not None and error.split(":")[0] in rp.ops.stats.ERROR_KINDS  # type: ignore[attr-defined]
        else:
            assert error is None and label == intended_label(text, LABELS)
    return got


def test_20k_rows_with_faults_on_spark(spark: Any, sim_factory: Any) -> None:
    sim = sim_factory(latency_ms=5, **FAULTS, seed=11)
    texts: list[str | None] = list(tickets(20_000, distinct=15_000, seed=12))
    texts[3] = None
    df = spark.createDataFrame(pl.DataFrame({"id": range(20_000), "q": texts}).to_arrow())
    meter = UsageMeter()
    out = rp.classify(df, "q", list(LABELS), _llm(sim, timeout_s=1.0), meter=meter)
    got = _check(out, texts)
    assert got["label"].null_count() < 50
    stats = sim.stats()
    assert stats["errors_by_status"]
    # usage from every executor reached the driver: every answered request, less
    # the slow ones the client had given up on (answered after its timeout)
    slow = stats["faults"].get("timeout", 0)
    assert stats["ok"] - slow <= meter.snapshot().calls <= stats["ok"]


def test_per_task_dedup_and_concurrency_share(spark: Any, sim_factory: Any) -> None:
    sim = sim_factory(latency_ms=30)
    texts: list[str | None] = list(tickets(2_000, distinct=200, seed=14))
    df = _frame(spark, texts, partitions=6)  # 6 tasks, 2 at a time, each with 5 of 10 slots
    out, _ = spark_fanout.apply(df, ClassifySpec("q", LABELS), _llm(sim, max_concurrency=10))
    _check(out, texts)
    assert sim.stats()["peak_in_flight"] <= 10
    # each of the 6 tasks asks its own distinct texts once
    # (without dedup: 2000 / 16 = 125 calls; 200 distinct texts -> at most 13 per task)
    assert sim.stats()["requests"] <= 6 * 13


def _direct_stats(out: Any, spec: Any) -> tuple[int, int, dict[str, int], dict[str, int]]:
    """Rows, answered, errors by kind and values, counted with Spark over the result."""
    from pyspark.sql import functions as F

    value = F.col(f"`{spec.output_column}`").cast("string").alias("v")
    kind = F.split(F.col(f"`{spec.error_column}`"), ":").getItem(0).alias("k")
    rows = answered = 0
    errors: dict[str, int] = {}
    values: dict[str, int] = {}
    for v, k, n in out.groupBy(value, kind).count().collect():
        rows += n
        if k is None:
            answered += n
            values[str(v)] = values.get(str(v), 0) + n
        else:
            errors[k] = errors.get(k, 0) + n
    return rows, answered, errors, values


def _jobs_of(spark: Any, group: str) -> list[int]:
    return list(spark.sparkContext.statusTracker().getJobIdsForGroup(group))


def test_stats_come_from_the_tasks_and_equal_a_count_of_the_result(
    spark: Any, sim_factory: Any
) -> None:
    from rlm_pipeline.ops.spec import MapSpec

    sim = sim_factory(fault_500=0.2, fault_wrong_ids=0.1, seed=21)
    texts: list[str | None] = list(tickets(900, distinct=400, seed=22))
    for i in (5, 77, 400):
        texts[i] = None
    texts[6] = "   "
    df = _frame(spark, texts, partitions=3).localCheckpoint(eager=True)  # no jobs to read it
    llm = _llm(sim, max_concurrency=8, max_retries=0)
    specs = [
        ClassifySpec("q", LABELS, batch_size=8),
        MapSpec("q", "Does it ask a question?", output_type="boolean", batch_size=8),
        MapSpec("q", "Length / 10", output_type="number", batch_size=8),
    ]
    for spec in specs:
        group = f"stats-{spec.output_column}-{getattr(spec, 'output_type', '')}"
        spark.sparkContext.setJobGroup(group, "stats test")
        try:
            out, stats = spark_fanout.apply(df, spec, llm)
            jobs = _jobs_of(spark, group)
        finally:
            spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        rows, answered, errors, values = _direct_stats(out, spec)
        assert (stats.rows, stats.answered, dict(stats.errors), dict(stats.values)) == (
            rows,
            answered,
            errors,
            values,
        )
        assert rows == 900 and errors.get("empty_input") == 4
        assert errors.keys() - {"empty_input"}, "the faults should have failed some rows"
        assert len(jobs) == 1, jobs  # one Spark job, the map; no second job to count the result


def test_both_engines_count_the_same_values(spark: Any, sim: Any) -> None:
    """One stats counter: a boolean / number llm_map counts ``true`` and ``1.0E10`` alike."""
    from rlm_pipeline.ops import polars_fanout
    from rlm_pipeline.ops.spec import MapSpec

    texts: list[str | None] = list(tickets(300, distinct=120, seed=23))
    llm = _llm(sim, max_concurrency=8)
    for spec in (
        MapSpec("q", "Does it ask a question?", output_type="boolean", batch_size=8),
        MapSpec("q", "Length / 10", output_type="number", batch_size=8),
    ):
        _, on_spark = spark_fanout.apply(_frame(spark, texts, partitions=3), spec, llm)
        frame = pl.DataFrame({"id": range(len(texts)), "q": texts})
        _, on_polars = polars_fanout.apply(frame, spec, llm)
        assert on_polars.values == on_spark.values
        assert (on_polars.rows, on_polars.answered) == (on_spark.rows, on_spark.answered)
    assert set(on_polars.values) and "True" not in on_polars.values


def test_spark_text_matches_spark_cast(spark: Any) -> None:
    from pyspark.sql import functions as F

    numbers = [
        0.0,
        -0.0,
        0.5,
        4.2,
        1e-3,
        9.99e-4,
        1234567.0,
        1e7,
        12345678.9,
        1e10,
        -2.5e-7,
        1.0 / 3,
        float("inf"),
        float("-inf"),
        float("nan"),
        1e300,
    ]
    got = [
        r[0]
        for r in spark.createDataFrame([(x,) for x in numbers], "x double")
        .select(F.col("x").cast("string"))
        .collect()
    ]
    assert [value_text(x, "number") for x in numbers] == got
    flags = [
        r[0]
        for r in spark.createDataFrame([(True,), (False,)], "b boolean")
        .select(F.col("b").cast("string"))
        .collect()
    ]
    assert [value_text(b, "boolean") for b in (True, False)] == flags


@pytest.mark.parametrize(
    ("values", "arrow_type"),
    [
        (["a", None, "é", "", "label"], "string"),
        ([1, None, -(2**63), 2**63 - 1], "int64"),
        ([0.5, None, -1e300, 4], "float64"),
        ([True, None, False, True, True, False, True, False, True], "bool"),
        ([], "string"),
        ([None, None], "int64"),
    ],
)
def test_to_arrow_equals_pa_array(values: list[Any], arrow_type: str) -> None:
    import pyarrow as pa

    kind = pa.type_for_alias(arrow_type)
    built = to_arrow(values, kind)
    built.validate(full=True)
    assert built.equals(pa.array(values, type=kind)), built


_NO_PANDAS = """
import sys
import pyarrow as pa
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.ops.arrow_out import to_arrow
from rlm_pipeline.ops.spark_task import task_function
from rlm_pipeline.ops.spec import ClassifySpec, MapSpec

llm = LLM(model="sim-1", base_url=sys.argv[1], api_key="x", max_retries=0)
texts = to_arrow(["Where is my invoice?", None, "The app crashes"], pa.string())
batch = pa.RecordBatch.from_arrays([texts], names=["q"])
assert "pandas" not in sys.modules, "imported before the task ran"
seen = []
for spec in (
    ClassifySpec("q", ("billing", "technical")),
    MapSpec("q", "words", output_type="integer"),
    MapSpec("q", "ask?", output_type="boolean"),
    MapSpec("q", "len", output_type="number"),
):
    run = task_function(spec, llm, None, seen.append)
    out = list(run(iter([batch])))
    assert out[0].num_rows == 3 and out[0].column(1).null_count == 1, out
print("pandas" in sys.modules, seen[0].stats[0].rows, seen[0].stats[0].answered)
"""


def test_the_task_function_does_not_import_pandas(sim: Any) -> None:
    """Run a task's function in a fresh interpreter (as a Python worker does) and look."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _NO_PANDAS, sim.base_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "3", "2"]


def test_library_spark_call_emits_no_pandas_future_warning(spark: Any, sim: Any) -> None:
    """``rp.spark.*`` filters PySpark's pandas-version FutureWarning, as the CLI does."""
    import warnings

    df = _frame(spark, tickets(30, seed=7))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out, stats = spark_fanout.apply(df, ClassifySpec("q", LABELS), _llm(sim))
    _check(out, tickets(30, seed=7))
    assert stats.rows == 30 and stats.cached_rows <= stats.rows
    noisy = [str(w.message) for w in seen if "pandas" in str(w.message)]
    assert noisy == []


def test_unusable_replies_raise_the_reply_breaker_error_on_the_driver(
    spark: Any, sim_factory: Any
) -> None:
    """A task's reply breaker reaches the caller as LLMResponseParseError, not EngineError."""
    from rlm_pipeline.errors import LLMResponseParseError

    sim = sim_factory(fault_malformed=1.0)
    df = _frame(spark, tickets(200, seed=8), partitions=1)
    with pytest.raises(LLMResponseParseError, match="no usable reply in the first 8 calls") as info:
        spark_fanout.apply(df, ClassifySpec("q", LABELS), _llm(sim, max_retries=0))
    assert sim.base_url in str(info.value)

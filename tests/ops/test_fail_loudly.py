"""Issue 12 on the Python API: failures are counted in one warning, existing columns are
not replaced silently, labels given as a string are refused, long cells are not sent.

Real HTTP against the simulator; the Spark tests use the session's ``spark`` fixture.
"""

from __future__ import annotations

import doctest
import importlib
import logging
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.ops import polars_fanout
from rlm_pipeline.ops.spec import DEFAULT_MAX_ROW_TOKENS, TRUNCATED_MARKER, MapSpec
from rlm_pipeline.ops.stats import ERROR_KINDS
from rlm_pipeline.sim import intended_label
from tests.ops.tickets import LABELS, tickets

API_LOGGER = "rlm_pipeline.ops.api"
#: A 200,000-character cell (~50,000 estimated tokens) that starts like a billing ticket.
LONG = "I was charged twice on my invoice, please refund. " + "x" * 200_000


def _llm(sim: Any, **kw: Any) -> rp.LLM:
    base = {"model": "sim-1", "base_url": sim.base_url, "api_key": "x", "max_concurrency": 16}
    return rp.LLM(**{**base, **kw})


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == API_LOGGER and r.levelno == logging.WARNING
    ]


def _kinds(out: pl.DataFrame, column: str = "label_error") -> dict[str, int]:
    kinds: dict[str, int] = {}
    for reason in out[column].drop_nulls():
        kind = reason.split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


# ---------------------------------------------------------------- item 2: one warning


def test_failed_rows_give_one_warning_with_counts_by_reason(
    sim_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sim = sim_factory(fault_500=0.3, seed=11)
    texts: list[str | None] = list(tickets(400, seed=12))
    texts[5] = None  # blank: not a failure, left out of the warning
    texts[6] = LONG  # input_too_long
    df = pl.DataFrame({"id": range(len(texts)), "q": texts})
    caplog.set_level(logging.WARNING, logger=API_LOGGER)
    out = rp.classify(df, "q", list(LABELS), _llm(sim, max_retries=0), batch_size=4)

    assert out.height == 400 and out["id"].to_list() == list(range(400))
    kinds = _kinds(out)
    assert kinds["empty_input"] == 1 and kinds["input_too_long"] == 1
    assert kinds.get("api_error", 0) > 0  # the faults really hit rows
    failed = {k: n for k, n in kinds.items() if k != "empty_input"}
    messages = _warnings(caplog)
    assert len(messages) == 1, messages
    message = messages[0]
    assert message.startswith(f"classify: {sum(failed.values()):,} of 400 rows have no label: ")
    for kind, n in failed.items():
        assert f"{kind} {n:,}" in message
    assert "empty_input" not in message
    assert "re-run" in message and "truncate=True" in message
    assert "\n" not in message


def test_warning_names_the_cache_when_there_is_one(
    sim_factory: Any, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    sim = sim_factory(fault_500=0.5, seed=13)
    df = pl.DataFrame({"q": tickets(60, seed=14)})
    llm = _llm(sim, max_retries=0, cache_path=str(tmp_path / "c.sqlite"))
    caplog.set_level(logging.WARNING, logger=API_LOGGER)
    out = rp.llm_map(df, "q", "Count the words", llm, "integer", batch_size=4)
    api_errors = _kinds(out, "value_error")["api_error"]
    (message,) = _warnings(caplog)
    assert message.startswith(
        f"llm_map: {api_errors} of 60 rows have no value: api_error {api_errors}"
    )
    assert "re-run to re-ask only those rows (failures are not cached)" in message


def test_budget_stop_is_in_the_warning(sim: Any, caplog: pytest.LogCaptureFixture) -> None:
    df = pl.DataFrame({"q": tickets(64, seed=23)})
    caplog.set_level(logging.WARNING, logger=API_LOGGER)
    out = rp.classify(
        df, "q", list(LABELS), _llm(sim, max_concurrency=1), budget=rp.Budget(max_calls=2)
    )
    stopped = _kinds(out)["budget_exceeded"]
    assert stopped == 64 - 32 and sim.stats()["requests"] == 2
    (message,) = _warnings(caplog)
    assert message.startswith(
        f"classify: {stopped} of 64 rows have no label: budget_exceeded {stopped}"
    )
    assert "a larger Budget" in message


def test_no_warning_when_every_row_is_answered_or_blank(
    sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    df = pl.DataFrame({"q": [*tickets(30, seed=15), None, "  "]})
    caplog.set_level(logging.WARNING, logger=API_LOGGER)
    out = rp.classify(df, "q", list(LABELS), _llm(sim))
    assert out["label"].null_count() == 2
    assert _warnings(caplog) == []


def test_polars_expression_warns_once_per_call(sim: Any, caplog: pytest.LogCaptureFixture) -> None:
    df = pl.DataFrame({"q": [*tickets(20, seed=16), LONG, LONG]})
    caplog.set_level(logging.WARNING, logger=API_LOGGER)
    out = df.with_columns(label=pl.col("q").rlm.classify(list(LABELS), llm=_llm(sim)))
    assert out["label"].null_count() == 2
    (message,) = _warnings(caplog)
    assert message.startswith("classify: 2 of 22 rows have no label: input_too_long 2")


# ---------------------------------------------------------------- item 4: existing columns


@pytest.mark.parametrize(
    ("columns", "kwargs", "named"),
    [
        (["label"], {}, "'label'"),
        (["label_error"], {}, "'label_error'"),
        (["label", "label_error"], {}, "'label' and 'label_error'"),
        (["user_id"], {"output_column": "user_id"}, "'user_id'"),
    ],
)
def test_existing_output_column_is_refused_before_any_call(
    sim: Any, columns: list[str], kwargs: dict[str, Any], named: str
) -> None:
    df = pl.DataFrame({"q": tickets(10, seed=17), **{c: ["keep"] * 10 for c in columns}})
    with pytest.raises(rp.InputError) as info:
        rp.classify(df, "q", list(LABELS), _llm(sim), **kwargs)
    message = str(info.value)
    assert named in message and "overwrite=True" in message and "\n" not in message
    with pytest.raises(rp.InputError, match="already exist"):
        rp.classify(df.lazy(), "q", list(LABELS), _llm(sim), **kwargs)
    with pytest.raises(rp.InputError, match="already exist"):
        df.rlm.classify("q", list(LABELS), llm=_llm(sim), **kwargs)
    assert sim.stats()["requests"] == 0


def test_overwrite_true_replaces_the_column(sim: Any) -> None:
    texts = tickets(10, seed=18)
    df = pl.DataFrame({"q": texts, "label": ["old"] * 10})
    out = rp.classify(df, "q", list(LABELS), _llm(sim), overwrite=True)
    assert out.columns == ["q", "label", "label_error"]
    assert out["label"].to_list() == [intended_label(t, LABELS) for t in texts]
    lazy = df.lazy().rlm.classify("q", list(LABELS), llm=_llm(sim), overwrite=True).collect()
    assert lazy["label"].to_list() == out["label"].to_list()


def test_llm_map_existing_value_column(sim: Any) -> None:
    df = pl.DataFrame({"q": ["one two", "three"], "value": [1, 2]})
    with pytest.raises(rp.InputError, match="'value' already exists"):
        rp.llm_map(df, "q", "Count the words", _llm(sim), "integer")
    with pytest.raises(rp.InputError, match="'value' already exists"):
        df.rlm.llm_map("q", "Count the words", llm=_llm(sim), output_type="integer")
    assert sim.stats()["requests"] == 0
    out = rp.llm_map(df, "q", "Count the words", _llm(sim), "integer", overwrite=True)
    assert out["value"].to_list() == [2, 1]


def test_with_columns_keeps_the_users_choice(sim: Any) -> None:
    df = pl.DataFrame({"q": tickets(5, seed=19), "label": ["old"] * 5})
    out = df.with_columns(label=pl.col("q").rlm.classify(list(LABELS), llm=_llm(sim)))
    assert out["label"].to_list() == [intended_label(t, LABELS) for t in df["q"]]


# ---------------------------------------------------------------- item 5: labels as a string


def test_labels_as_a_string_is_a_type_error_with_a_hint(sim: Any) -> None:
    df = pl.DataFrame({"q": ["refund please"]})
    hint = "labels must be a list of strings, e.g. ['a', 'b']; got the string 'a,b'"
    calls: list[Any] = [
        lambda: rp.classify(df, "q", "a,b", _llm(sim)),  # type: ignore[arg-type]
        lambda: rp.estimate(df, "q", "a,b", _llm(sim)),  # type: ignore[arg-type]
        lambda: pl.col("q").rlm.classify("a,b", llm=_llm(sim)),
        lambda: df.rlm.classify("q", "a,b", llm=_llm(sim)),
        lambda: rp.spark.classify("q", "a,b", llm=_llm(sim)),
    ]
    for call in calls:
        with pytest.raises(TypeError) as info:
            call()
        assert str(info.value) == hint
    assert sim.stats()["requests"] == 0


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [(["a", "a"], "unique"), (["a", " "], "non-empty"), ([], "empty"), (["a", 3], "strings")],
)
def test_labels_are_still_validated(sim: Any, labels: list[Any], fragment: str) -> None:
    with pytest.raises(rp.InputError, match=fragment):
        rp.classify(pl.DataFrame({"q": ["x"]}), "q", labels, _llm(sim))


# ---------------------------------------------------------------- item 6: long cells


def test_long_cell_gets_input_too_long_without_a_call(sim: Any) -> None:
    texts = [*tickets(8, seed=20), LONG, None]
    df = pl.DataFrame({"id": range(10), "q": texts})
    out = rp.classify(df, "q", list(LABELS), _llm(sim), batch_size=1)
    assert out["id"].to_list() == list(range(10))
    reason = out["label_error"][8]
    assert reason.startswith("input_too_long: ~50,013 tokens")
    assert f"max_row_tokens is {DEFAULT_MAX_ROW_TOKENS:,}" in reason
    assert out["label"][8] is None and out["label_error"][9] == "empty_input"
    assert out["label"].head(8).to_list() == [intended_label(t, LABELS) for t in texts[:8]]
    stats = sim.stats()
    assert stats["requests"] == 8  # one call per short text; none for the long one
    assert stats["input_tokens"] < 8 * 1_000


def test_truncate_sends_the_cell_cut_to_the_limit(sim: Any) -> None:
    df = pl.DataFrame({"q": [LONG]})
    out = rp.classify(df, "q", list(LABELS), _llm(sim), batch_size=1, truncate=True)
    assert out["label"].to_list() == ["billing"] and out["label_error"].to_list() == [None]
    stats = sim.stats()
    assert stats["requests"] == 1
    assert DEFAULT_MAX_ROW_TOKENS < stats["input_tokens"] < DEFAULT_MAX_ROW_TOKENS + 1_000


def test_custom_limit_and_llm_map(sim: Any) -> None:
    df = pl.DataFrame({"q": ["one two three", "word " * 100]})
    out = rp.llm_map(df, "q", "Count the words", _llm(sim), "integer", max_row_tokens=50)
    assert out["value"].to_list() == [3, None]
    assert out["value_error"][1].startswith("input_too_long: ~125 tokens, max_row_tokens is 50")
    assert sim.stats()["requests"] == 1
    cut = rp.llm_map(df, "q", "Repeat the text", _llm(sim), max_row_tokens=50, truncate=True)
    assert cut["value_error"].to_list() == [None, None]
    expr = df.with_columns(
        n=pl.col("q").rlm.llm_map(
            "Count the words", llm=_llm(sim), output_type="integer", max_row_tokens=50
        )
    )
    assert expr["n"].to_list() == [3, None]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, None])
def test_bad_row_limit_is_refused(sim: Any, bad: Any) -> None:
    with pytest.raises(rp.InputError, match="max_row_tokens"):
        rp.classify(pl.DataFrame({"q": ["x"]}), "q", list(LABELS), _llm(sim), max_row_tokens=bad)


def test_estimate_counts_rows_over_the_limit(sim: Any) -> None:
    texts = [*tickets(32, seed=21), LONG, LONG, LONG + "!", None]
    df = pl.DataFrame({"q": texts})
    est = rp.estimate(df, "q", list(LABELS), _llm(sim), batch_size=16)
    assert (est.rows, est.too_long, est.distinct_texts, est.calls) == (36, 3, 32, 2)
    cut = rp.estimate(df, "q", list(LABELS), _llm(sim), batch_size=16, truncate=True)
    # both long texts cut to the same first 8,000 tokens: one more distinct text, one more call
    assert (cut.too_long, cut.distinct_texts, cut.calls) == (3, 33, 3)
    assert cut.input_tokens > est.input_tokens + DEFAULT_MAX_ROW_TOKENS
    assert est.to_dict()["too_long"] == 3
    # the estimate predicts the run: the calls and input tokens the simulator sees
    rp.classify(df, "q", list(LABELS), _llm(sim), batch_size=16, truncate=True)
    stats = sim.stats()
    assert (stats["requests"], stats["input_tokens"]) == (cut.calls, cut.input_tokens)


def test_truncated_text_ends_with_the_marker_within_the_limit() -> None:
    from rlm_pipeline.llm.tokens import estimate_tokens
    from rlm_pipeline.ops.spec import ClassifySpec, fit_text

    sent, reason = fit_text(LONG, ClassifySpec("q", LABELS, truncate=True))
    assert reason is None and sent is not None
    assert sent.endswith(TRUNCATED_MARKER) and LONG.startswith(sent[: -len(TRUNCATED_MARKER)])
    assert estimate_tokens(sent) == DEFAULT_MAX_ROW_TOKENS


def test_input_too_long_is_a_listed_kind() -> None:
    import json
    from pathlib import Path

    assert "input_too_long" in ERROR_KINDS
    schema = json.loads(
        (Path(__file__).resolve().parents[2] / "schemas/classified.schema.json").read_text()
    )
    assert "input_too_long" in schema["properties"]["label_error"]["pattern"]


@pytest.mark.parametrize(
    "name",
    [
        "rlm_pipeline.ops.spec",
        "rlm_pipeline.ops.stats",
        "rlm_pipeline.ops.estimate",
        "rlm_pipeline.ops.core",
        "rlm_pipeline.ops.memo",
        "rlm_pipeline.ops.pipeline",
        "rlm_pipeline.ops.arrow_out",
        "rlm_pipeline.ops.spark_task",
        "rlm_pipeline.ops.spark_fanout",
        "rlm_pipeline.ops.polars_fanout",
    ],
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- Spark


@pytest.mark.spark
def test_spark_existing_column_and_long_cells(
    spark: Any, sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    texts = [*tickets(12, seed=22), LONG, None]
    rows = [(i, t, "old") for i, t in enumerate(texts)]
    sdf = spark.createDataFrame(rows, "id long, q string, label string").repartition(2)
    llm = _llm(sim)
    with pytest.raises(rp.InputError, match="'label' already exists"):
        sdf.transform(rp.spark.classify("q", list(LABELS), llm=llm))
    assert sim.stats()["requests"] == 0

    caplog.set_level(logging.WARNING, logger=API_LOGGER)
    step = rp.spark.classify("q", list(LABELS), llm=llm, overwrite=True, batch_size=1)
    out = sdf.transform(step).orderBy("id").toArrow()  # lazy: the action runs the calls
    got = pl.DataFrame(out)
    assert got["id"].to_list() == list(range(14))
    assert got["label_error"][12].startswith("input_too_long: ~50,013 tokens")
    assert got["label_error"][13] == "empty_input"
    assert got["label"].head(12).to_list() == [intended_label(t, LABELS) for t in texts[:12]]
    assert sim.stats()["rows_classified"] == 12  # the long row never reached the model
    message = step.failure_summary()  # read after the action (a lazy step logs nothing)
    assert message is not None
    assert message.startswith("classify: 1 of 14 rows have no label: input_too_long 1")

    cut = sdf.transform(
        rp.spark.classify("q", list(LABELS), llm=llm, output_column="topic", truncate=True)
    )
    assert pl.DataFrame(cut.orderBy("id").toArrow())["topic"][12] == "billing"


# ---------------------------------------------------------------- one stats counter


def test_one_counter_writes_values_alike_and_caps_llm_map_values() -> None:
    from rlm_pipeline.ops.spec import ClassifySpec, MapSpec
    from rlm_pipeline.ops.stats import MAX_VALUES, StatsCounter, merge_stats

    flags = StatsCounter(MapSpec("q", "urgent?", output_type="boolean"))
    flags.add([(True, None), (False, None), (True, None), (None, "api_error: 500 after 3 tries")])
    assert flags.stats().values == {"true": 2, "false": 1}  # as Spark casts them, not "True"
    assert flags.stats().errors == {"api_error": 1}
    numbers = StatsCounter(MapSpec("q", "size", output_type="number"))
    numbers.add([(1e10, None), (0.5, None)], weights=[3, 1])
    assert numbers.stats().values == {"1.0E10": 3, "0.5": 1} and numbers.rows == 4
    many = StatsCounter(MapSpec("q", "id", output_type="integer"))
    many.add([(i, None) for i in range(MAX_VALUES + 5)])
    assert len(many.stats().values) == MAX_VALUES and many.answered == MAX_VALUES + 5
    labels = ClassifySpec("q", tuple(f"l{i}" for i in range(MAX_VALUES + 5)))
    parts = []
    for i in range(MAX_VALUES + 5):
        part = StatsCounter(labels)
        part.add([(f"l{i}", None)])
        parts.append(part.stats())
    assert len(merge_stats(parts, labels).values) == MAX_VALUES + 5  # labels are never capped


def test_polars_counts_a_boolean_llm_map_as_spark_does(sim: Any) -> None:
    frame = pl.DataFrame({"q": ["Why is it broken?", "It is broken.", "Why?", None]})
    llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x")
    _, stats = polars_fanout.apply(
        frame, MapSpec("q", "Does it ask a question?", output_type="boolean"), llm
    )
    assert set(stats.values) <= {"true", "false"} and sum(stats.values.values()) == 3

"""The operator protocol is open: a spec class written here runs through the fan-out unchanged.

``WordsSpec`` is a new operator in this file only (no branch for it anywhere in
the package): it asks what llm_map asks for an integer (the simulator answers
a text's word count), checks the answer itself, and writes *two* typed columns
(``words`` integer, ``even`` boolean) plus its error column.  Polars (DataFrame
and streamed LazyFrame), the Arrow columns of the Spark tasks, the stats and
the row store all take it as it is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pyarrow as pa
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import InputError
from rlm_pipeline.ops import polars_fanout
from rlm_pipeline.ops.api import run_op
from rlm_pipeline.ops.arrow_out import attach
from rlm_pipeline.ops.spec import ClassifySpec, MapSpec
from rlm_pipeline.ops.spec_base import OpSpec, SpecBase, check_common, check_typed
from rlm_pipeline.ops.stats import StatsCounter


@dataclass(frozen=True)
class WordsSpec(SpecBase):
    """Word count of a text, and whether it is even: two columns from one answer."""

    column: str
    batch_size: int = 4
    output_column: str = "words"
    max_row_tokens: int = 8_000
    truncate: bool = False

    op_name: ClassVar[str] = "words"

    def __post_init__(self) -> None:
        check_common(
            self.column, self.batch_size, self.output_column, self.max_row_tokens, self.truncate
        )

    @property
    def _wire(self) -> MapSpec:  # the wire format of an integer llm_map
        return MapSpec(self.column, "Count the words", "integer", batch_size=self.batch_size)

    def output_fields(self) -> tuple[tuple[str, str], ...]:
        return (("words", "integer"), ("even", "boolean"))

    def answer_params(self) -> dict[str, Any]:
        return {"op": self.op_name}

    def messages(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        return self._wire.messages(texts)

    def reply_schema(self) -> dict[str, Any]:
        return self._wire.reply_schema()

    def reply_name(self) -> str:
        return self._wire.reply_name()

    def check_value(self, value: Any) -> tuple[Any, str | None]:
        if isinstance(value, dict):  # a stored answer (already checked) is checked again
            value = value.get("words")
        words, error = check_typed(value, "integer")
        if error is not None:
            return None, error
        return {"words": words, "even": words % 2 == 0}, None


def _llm(sim: Any, **kw: Any) -> rp.LLM:
    return rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x", **kw)


TEXTS = ["one", "one two", None, "one two three", "one two"]


def _expected() -> dict[str, list[Any]]:
    return {
        "words": [1, 2, None, 3, 2],
        "even": [False, True, None, False, True],
        "words_error": [None, None, "empty_input", None, None],
    }


def test_a_spec_written_outside_the_package_is_an_opspec() -> None:
    spec: OpSpec = WordsSpec("q")
    assert isinstance(spec, OpSpec)
    assert spec.error_column == "words_error"
    assert spec.output_values({"words": 3, "even": False}) == (3, False)
    assert spec.output_values(None) == (None, None)


def test_polars_frame_and_stream_get_every_column(sim: Any, tmp_path: Path) -> None:
    llm = _llm(sim, cache_path=str(tmp_path / "c.sqlite"))
    frame = pl.DataFrame({"q": TEXTS})
    out, stats = run_op(frame, WordsSpec("q"), llm)
    assert out.schema["words"] == pl.Int64 and out.schema["even"] == pl.Boolean
    assert out.select("words", "even", "words_error").to_dict(as_series=False) == _expected()
    assert (stats.rows, stats.answered, stats.errors) == (5, 4, {"empty_input": 1})
    assert stats.values == {
        '{"words": "1", "even": "false"}': 1,
        '{"words": "2", "even": "true"}': 2,
        '{"words": "3", "even": "false"}': 1,
    }
    calls = sim.stats()["requests"]
    # a stream in slices of 2 rows, answered from the row store of the first run: no call
    lazy, again = polars_fanout.apply(frame.lazy(), WordsSpec("q"), llm, slice_rows=2)
    assert lazy.collect().select("words", "even", "words_error").to_dict(as_series=False) == (
        _expected()
    )
    assert again.cached_rows == 4 and sim.stats()["requests"] == calls


def test_existing_output_columns_are_refused_before_any_call(sim: Any) -> None:
    frame = pl.DataFrame({"q": ["a b"], "even": [True]})
    with pytest.raises(InputError, match="'even' already exists"):
        run_op(frame, WordsSpec("q"), _llm(sim))
    assert sim.stats()["requests"] == 0


def test_arrow_columns_of_the_spark_tasks() -> None:
    batch = pa.RecordBatch.from_pydict({"q": ["a", "b c", None]})
    results = [({"words": 1, "even": False}, None), ({"words": 2, "even": True}, None)]
    out = attach(batch, WordsSpec("q"), [*results, (None, "empty_input")])
    assert out.schema.field("words").type == pa.int64()
    assert out.schema.field("even").type == pa.bool_()
    assert out.to_pydict() == {
        "q": ["a", "b c", None],
        "words": [1, 2, None],
        "even": [False, True, None],
        "words_error": [None, None, "empty_input"],
    }


def test_a_date_column() -> None:
    @dataclass(frozen=True)
    class DaySpec(WordsSpec):
        def output_fields(self) -> tuple[tuple[str, str], ...]:
            return (("day", "date"),)

    day = dt.date(2024, 1, 31)
    out = attach(pa.RecordBatch.from_pydict({"q": ["x"]}), DaySpec("q"), [(day, None)])
    assert out.schema.field("day").type == pa.date32() and out.column(1).to_pylist() == [day]
    frame = polars_fanout.output_series(DaySpec("q"), [(day, None)])
    assert frame[0].dtype == pl.Date and frame[0].to_list() == [day]


def test_builtin_specs_count_as_before() -> None:
    counter = StatsCounter(ClassifySpec("q", ("a", "b")))
    counter.add([("a", None), ("a", None), (None, "parse_error: x")])
    assert counter.stats().values == {"a": 2}
    booleans = StatsCounter(MapSpec("q", "is it?", output_type="boolean"))
    booleans.add([(True, None)])
    assert booleans.stats().values == {"true": 1}

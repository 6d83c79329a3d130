"""One definition of a failed row (``engines.polars.row_failed``) behind every Polars filter form.

The expression form (``pl.col(...).rlm.filter``) and the frame form (through
``Engine.rows_where``) keep the same rows with ``on_error="keep"``: every row
without an answer (an API error, a text too long to send), never a blank one.
"""

from __future__ import annotations

from typing import Any

import polars as pl

import rlm_pipeline as rp
from rlm_pipeline.engines.polars import row_failed

CONDITION = "asks for a refund"
TEXTS = ["Refund my $20 please.", "", None, "x " * 40, "The app crashes.", "   "]


def test_expression_and_frame_forms_keep_the_same_failed_rows(sim_factory: Any) -> None:
    sim = sim_factory(fault_500=1.0)
    llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x", max_retries=0)
    df = pl.DataFrame({"id": range(len(TEXTS)), "q": TEXTS})
    options = {"llm": llm, "on_error": "keep", "max_row_tokens": 10}
    by_expr = df.filter(pl.col("q").rlm.filter(CONDITION, **options))["id"].to_list()
    by_frame = df.rlm.filter("q", CONDITION, **options)["id"].to_list()
    assert by_expr == by_frame == [0, 3, 4]  # id 3: input_too_long is a failure; blanks are not
    assert sim.stats(log=False)["requests"] > 0  # the rows were asked (and failed)


def test_row_failed() -> None:
    why = pl.Series("why", [None, "empty_input", "api_error: 500", "input_too_long", "parse_error"])
    got = pl.DataFrame({"why": why}).select(row_failed(pl.col("why")))["why"].to_list()
    assert got == [False, False, True, True, True]
    custom = pl.DataFrame({"why": why}).select(row_failed(pl.col("why"), "api_error"))
    assert custom["why"].to_list() == [False, True, False, True, True]

"""A tool step's tokens in the trace are its own, also while parallel sub-runs share the meter.

The classify / llm_map / extract / aggregate tools count their own requests
(``ToolOutcome.usage``); the trace records those, not the difference of two
readings of the run's meter (which would also hold what sibling sub-runs spent
meanwhile).  Checked with a recurse whose sub-runs run at once: what the
sub-runs' steps record adds up exactly to what the recurse step spent.
"""

from __future__ import annotations

from typing import Any

import rlm_pipeline as rp
from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.llm.config import LLM

from .truth import USERS, per_user


def test_sub_runs_steps_add_up_to_the_recurse_step(sim_llm: LLM) -> None:
    frame = tickets(600, seed=4)
    question = ("For each of users 12345, 67890 and 11111, how many questions are about "
                "technical? [plan:recurse]")
    res = rp.RLM(sim_llm, max_depth=2, max_parallel=3).run(
        question, frame.drop("true_label"), text_column="question")
    assert res.value == per_user(frame, "technical", USERS)
    (recurse,) = [r for r in res.trace if r.get("tool") == "recurse"]
    inner: list[dict[str, Any]] = [r for r in res.trace if r.get("depth", 0) >= 1]
    tools = [r for r in inner if r.get("tool") == "classify"]
    assert len(tools) >= 2  # parallel sub-runs each classified their rows
    for key in ("input_tokens", "output_tokens"):
        assert sum(r.get(key) or 0 for r in inner) == recurse[key] > 0

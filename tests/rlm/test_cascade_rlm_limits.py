"""``rp.RLM(cascade=...)`` holds the run's limits: budget, cancellation, concurrency.

The root and the oracle (``sub``) are one simulator, the proxy a second one;
the bounds are read from the simulators' own ``/stats`` over real HTTP.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.errors import BudgetExceededError, InputError

from .truth import label_count

QUESTION = "How many questions are about billing?"
CHUNKS = "How many questions are about billing? [plan:chunks]"
PROXY = "gpt-4.1-nano"


def _models(root_sim: Any, proxy_sim: Any, **proxy_limits: Any) -> tuple[rp.LLM, rp.LLM]:
    oracle = rp.LLM(model="sim-1", base_url=root_sim.base_url, api_key="x", max_retries=0)
    proxy = rp.LLM(model=PROXY, base_url=proxy_sim.base_url, api_key="x", max_retries=0,
                   **proxy_limits)
    return oracle, proxy


def _requests(*sims: Any) -> int:
    return sum(int(sim.stats()["requests"]) for sim in sims)


def _trace(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_cascade_stops_at_the_run_budget(sim_factory: Any, tmp_path: Path) -> None:
    root_sim = sim_factory()
    proxy_sim = sim_factory(accuracy=0.85)
    oracle, proxy = _models(root_sim, proxy_sim)
    budget = 30  # the proxy pass alone needs 75 calls (1,200 rows, batch 16)
    rlm = rp.RLM(oracle, max_depth=1, budget=rp.Budget(max_calls=budget),
                 cascade=rp.Cascade(proxy, target=0.9, sample=100))
    trace = tmp_path / "trace.jsonl"
    with pytest.raises(BudgetExceededError):
        rlm.run(QUESTION, tickets(1200, seed=3).drop("true_label"), text_column="question",
                trace_path=str(trace))
    assert 0 < proxy_sim.stats()["requests"] < budget
    assert _requests(root_sim, proxy_sim) <= budget
    steps = [r for r in _trace(trace) if r["kind"] == "tool" and r.get("tool") == "classify"]
    assert len(steps) == 1
    summary = steps[0]["result_summary"]
    assert "rows failed" in summary and "budget_exceeded" in summary, summary


def test_a_cancelled_cascade_makes_no_more_calls(sim_factory: Any) -> None:
    root_sim = sim_factory()
    # 75 proxy calls, 2 at a time, 300 ms each: about 11 s, far past the run's 3 s
    proxy_sim = sim_factory(accuracy=0.85, latency_ms=300)
    oracle, proxy = _models(root_sim, proxy_sim, max_concurrency=2)
    rlm = rp.RLM(oracle, max_depth=1, timeout_s=3,
                 cascade=rp.Cascade(proxy, target=0.9, sample=100))
    with pytest.raises(BudgetExceededError, match="time_s"):
        rlm.run(QUESTION, tickets(1200, seed=3).drop("true_label"), text_column="question")
    time.sleep(1.0)  # calls in flight at the cancel may still reach the server
    after = proxy_sim.stats()["requests"]
    assert 0 < after < 75
    time.sleep(3.0)
    assert proxy_sim.stats()["requests"] == after  # nothing runs on in the background


def test_parallel_sub_runs_share_the_proxy_limits(sim_factory: Any) -> None:
    # 4 chunks of 100 rows, 4 sub-runs at once, each classifying through the cascade
    frame = tickets(400, seed=3)
    root_sim = sim_factory()
    proxy_sim = sim_factory(accuracy=1.0, latency_ms=50)
    oracle, proxy = _models(root_sim, proxy_sim, max_concurrency=2)
    rlm = rp.RLM(oracle, max_depth=2, max_parallel=4,
                 cascade=rp.Cascade(proxy, target=0.9, sample=60))
    res = rlm.run(CHUNKS, frame.drop("true_label"), text_column="question")
    assert res.value == label_count(frame, "billing")
    cascades = [r for r in res.trace if r.get("tool") == "classify" and r["depth"] == 1]
    assert len(cascades) == 4
    assert all(r["extra"]["cascade"]["proxy_rows"] + r["extra"]["cascade"]["oracle_rows"] == 100
               for r in cascades)
    stats = proxy_sim.stats()["by_model"][PROXY]
    # one proxy client for the whole run: its limit holds across the 4 cascades
    assert stats["peak_in_flight"] <= 2, stats
    assert stats["requests"] >= 4 * 7  # every chunk's proxy pass went through it
    # "auto" resolved once for the run
    assert {r["extra"]["cascade"]["confidence"] for r in cascades} == {"logprobs"}
    assert res.usage.calls >= _requests(root_sim, proxy_sim)


def test_parallel_sub_runs_do_not_overspend_the_budget(sim_factory: Any) -> None:
    root_sim = sim_factory()
    proxy_sim = sim_factory(accuracy=0.85, latency_ms=20)
    oracle, proxy = _models(root_sim, proxy_sim)
    budget = 40
    rlm = rp.RLM(oracle, max_depth=2, max_parallel=4, budget=rp.Budget(max_calls=budget),
                 cascade=rp.Cascade(proxy, target=0.9, sample=60))
    with pytest.raises(BudgetExceededError):
        rlm.run(CHUNKS, tickets(800, seed=3).drop("true_label"), text_column="question")
    assert proxy_sim.stats()["requests"] > 0
    assert _requests(root_sim, proxy_sim) <= budget


@pytest.mark.spark
def test_spark_cascade_with_parallel_sub_runs_is_refused(spark: Any, sim: Any) -> None:
    llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x")
    rlm = rp.RLM(llm, engine="spark", spark=spark, max_parallel=2, cascade=rp.Cascade(llm))
    with pytest.raises(InputError, match="on Spark needs max_parallel=1"):
        rlm.run(QUESTION, pl.DataFrame({"question": ["a"]}), text_column="question")
    assert sim.stats()["requests"] == 0


@pytest.mark.spark
def test_spark_cascade_with_one_sub_run_at_a_time(spark: Any, sim_factory: Any) -> None:
    root_sim = sim_factory()
    proxy_sim = sim_factory(accuracy=1.0)
    oracle, proxy = _models(root_sim, proxy_sim)
    frame = tickets(300, seed=3)
    rlm = rp.RLM(oracle, engine="spark", spark=spark, max_depth=1, max_parallel=1,
                 budget=rp.Budget(max_calls=500),
                 cascade=rp.Cascade(proxy, target=0.9, sample=100))
    res = rlm.run(QUESTION, frame.drop("true_label"), text_column="question")
    assert res.value == label_count(frame, "billing")
    step = next(r for r in res.trace if r.get("tool") == "classify")
    record = step["extra"]["cascade"]
    assert record["proxy_rows"] + record["oracle_rows"] == 300
    # both models' calls are on the run's meter
    assert res.usage.calls >= _requests(root_sim, proxy_sim) > 0

"""rp.classify(..., cascade=...) on Polars: a cheap proxy simulator, an always-right oracle simulator."""

from __future__ import annotations

import logging
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.errors import InputError
from rlm_pipeline.ops.api import run_op
from rlm_pipeline.ops.cascade_frames import sample_key
from rlm_pipeline.ops.spec import ClassifySpec
from rlm_pipeline.sim import intended_label

LABELS = ["billing", "technical", "account", "other"]
PROXY_MODEL = "gpt-4.1-nano"
ORACLE_MODEL = "gpt-4.1"


def models(proxy: Any, oracle: Any, **limits: Any) -> tuple[rp.LLM, rp.LLM]:
    """The proxy and oracle LLMs of two simulators (``limits``: ``proxy_*``/``oracle_*`` settings)."""
    own = {k[6:]: v for k, v in limits.items() if k.startswith("proxy_")}
    theirs = {k[7:]: v for k, v in limits.items() if k.startswith("oracle_")}
    small = rp.LLM(model=PROXY_MODEL, base_url=proxy.base_url, api_key="x", **own)
    big = rp.LLM(model=ORACLE_MODEL, base_url=oracle.base_url, api_key="x", **theirs)
    return small, big


def sampled_texts(out: Any, seed: int, n: int) -> set[str]:
    """The calibration sample as the cascade draws it (smallest seeded keys of answered texts)."""
    answered = {
        t for t, c in zip(out["question"], out["label_confidence"], strict=True) if c is not None
    }
    return set(sorted(answered, key=lambda t: sample_key(seed, t))[:n])


def held_out_agreement(out: pl.DataFrame, cascade: rp.Cascade) -> float:
    """Agreement with the oracle (the keyword classifier) on the rows outside the sample."""
    sample = sampled_texts(out, cascade.seed, cascade.sample)
    rows = [
        (q, label)
        for q, label in zip(out["question"], out["label"], strict=True)
        if q not in sample
    ]
    assert len(rows) > len(out) * 0.8
    return sum(label == intended_label(q, LABELS) for q, label in rows) / len(rows)


def test_informative_proxy_meets_the_target_with_few_rows_escalated(sim_factory: Any) -> None:
    proxy, oracle = sim_factory(accuracy=0.85), sim_factory()
    small, big = models(proxy, oracle)
    data = tickets(3000, seed=7).select("ticket_id", "question")
    cascade = rp.Cascade(small, target=0.95, sample=200)
    out, stats = run_op(data, ClassifySpec("question", tuple(LABELS)), big, cascade=cascade)

    assert out.columns == [
        "ticket_id",
        "question",
        "label",
        "label_error",
        "label_source",
        "label_confidence",
    ]
    assert out["ticket_id"].to_list() == data["ticket_id"].to_list()  # every row once, in order
    assert out["label_error"].null_count() == len(out)
    assert held_out_agreement(out, cascade) >= 0.95
    report = stats.cascade
    assert report is not None and report.reached and report.confidence == "logprobs"
    assert report.escalated_share <= 0.40
    assert out["label_source"].value_counts().sort("label_source").rows() == [
        ("oracle", report.oracle_rows),
        ("proxy", report.proxy_rows),
    ]
    kept = out.filter(pl.col("label_source") == "proxy")
    assert kept["label_confidence"].min() >= report.threshold  # type: ignore[operator]
    cal = report.calibration
    assert cal.lower_bound >= 0.95 and cal.kept_agreeing <= cal.kept <= cal.rows <= 200
    # the oracle saw the sample and the escalated rows only; the proxy saw every distinct text
    assert oracle.stats()["rows_classified"] <= report.oracle_rows
    assert proxy.stats()["rows_classified"] >= data["question"].n_unique()
    assert report.cost_all_oracle_usd is not None and report.cost_usd < report.cost_all_oracle_usd
    assert stats.usage.cost_usd == pytest.approx(report.cost_usd)
    assert stats.rows == 3000 and stats.answered == 3000 and sum(stats.values.values()) == 3000
    assert stats.to_dict()["cascade"]["escalated_share"] == report.escalated_share


def test_uninformative_proxy_sends_everything_to_the_oracle_and_says_so(
    sim_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    proxy, oracle = sim_factory(accuracy=0.85, confidence="random"), sim_factory()
    small, big = models(proxy, oracle)
    data = tickets(1000, seed=3).select("question")
    with caplog.at_level(logging.WARNING, logger="rlm_pipeline.ops.cascade"):
        out, stats = run_op(
            data, ClassifySpec("question", tuple(LABELS)), big, cascade=rp.Cascade(small)
        )
    assert out["label_source"].unique().to_list() == ["oracle"]
    assert out["label"].to_list() == [intended_label(q, LABELS) for q in out["question"]]
    assert any("every row went to the oracle" in r.getMessage() for r in caplog.records)
    report = stats.cascade
    assert report is not None and not report.reached and report.threshold is None
    assert report.escalated_share == 1.0 and report.calibration.lower_bound < 0.95
    assert report.escalated_rows + report.calibration.rows <= 1000


def test_verbal_confidence_and_auto_without_logprobs(sim_factory: Any) -> None:
    proxy, oracle = sim_factory(accuracy=0.85, logprobs=False), sim_factory()
    small, big = models(proxy, oracle)
    data = tickets(1500, seed=5).select("question")
    spec = ClassifySpec("question", tuple(LABELS))
    for confidence in ("verbal", "auto"):
        cascade = rp.Cascade(small, confidence=confidence)
        out, stats = run_op(data, spec, big, cascade=cascade)
        assert stats.cascade is not None and stats.cascade.confidence == "verbal"
        assert stats.cascade.reached and stats.cascade.escalated_share <= 0.40
        assert held_out_agreement(out, cascade) >= 0.95
    # logprobs forced on a server without them: no confidence at all, every row escalated
    _, stats = run_op(data, spec, big, cascade=rp.Cascade(small, confidence="logprobs"))
    assert stats.cascade is not None and stats.cascade.oracle_rows == 1500


def test_every_row_once_with_reasons_under_faults(sim_factory: Any) -> None:
    proxy = sim_factory(accuracy=0.85, fault_malformed=0.1, fault_wrong_ids=0.1, fault_500=0.05)
    oracle = sim_factory(fault_malformed=0.2, fault_wrong_ids=0.2, fault_500=0.15, seed=4)
    small, big = models(proxy, oracle, proxy_max_retries=1, oracle_max_retries=0)
    questions = tickets(1200, seed=9)["question"].to_list()
    questions[::97] = [None] * len(questions[::97])
    questions[5] = "   "
    data = pl.DataFrame({"i": range(len(questions)), "question": questions})
    out, stats = run_op(
        data,
        ClassifySpec("question", tuple(LABELS), batch_size=8),
        big,
        cascade=rp.Cascade(small, sample=150),
    )
    assert out["i"].to_list() == list(range(len(questions)))
    assert out["question"].to_list() == questions
    for label, error, source, question in out.select(
        "label", "label_error", "label_source", "question"
    ).rows():
        assert (label is None) == (error is not None)
        if question is None or not question.strip():
            assert error == "empty_input" and source is None
        elif source == "proxy":
            assert error is None  # a failed proxy row always went to the oracle
        else:
            assert source == "oracle"
            assert label in (None, intended_label(question, LABELS))  # never the proxy's answer
    assert stats.rows == len(questions)
    assert stats.answered + sum(stats.errors.values()) == len(questions)
    failed = out.filter(pl.col("label_error").is_not_null() & (pl.col("label_source") == "oracle"))
    assert failed.height > 0 and stats.errors.get("api_error", 0) > 0  # they stay failures
    assert set(failed["label_error"].str.split(":").list.first()) <= {
        "api_error",
        "parse_error",
        "missing_in_reply",
    }


def test_limits_hold_for_each_model(sim_factory: Any) -> None:
    proxy, oracle = sim_factory(accuracy=0.85, latency_ms=5), sim_factory(latency_ms=5)
    small, big = models(proxy, oracle, proxy_max_concurrency=3, oracle_max_concurrency=2)
    data = tickets(600, seed=2).select("question")
    rp.classify(data, "question", LABELS, big, batch_size=4, cascade=rp.Cascade(small, sample=100))
    proxy_peak = proxy.stats()["by_model"][PROXY_MODEL]["peak_in_flight"]
    oracle_peak = oracle.stats()["by_model"][ORACLE_MODEL]["peak_in_flight"]
    assert 1 <= proxy_peak <= 3 and 1 <= oracle_peak <= 2


def test_answers_are_stored_per_model(sim_factory: Any, tmp_path: Any) -> None:
    proxy, oracle = sim_factory(accuracy=0.6), sim_factory()
    cache = str(tmp_path / "answers.sqlite")
    small, big = models(proxy, oracle, proxy_cache_path=cache, oracle_cache_path=cache)
    data = tickets(800, seed=4).select("question")
    first = rp.classify(data, "question", LABELS, big, cascade=rp.Cascade(small, sample=100))
    asked = proxy.stats()["requests"], oracle.stats()["requests"]
    again = rp.classify(data, "question", LABELS, big, cascade=rp.Cascade(small, sample=100))
    assert (proxy.stats()["requests"], oracle.stats()["requests"]) == asked  # all stored
    assert again.equals(first)
    # the oracle alone, same cache file: its own answers, never the proxy's (60% right)
    alone = rp.classify(data, "question", LABELS, big)
    assert alone["label"].to_list() == [intended_label(q, LABELS) for q in data["question"]]


def test_existing_output_columns_are_refused_before_any_call(sim_factory: Any) -> None:
    proxy, oracle = sim_factory(accuracy=0.85), sim_factory()
    small, big = models(proxy, oracle)
    data = pl.DataFrame({"question": ["refund please", "app crashes"], "label_source": ["a", "b"]})
    with pytest.raises(InputError, match="label_source"):
        rp.classify(data, "question", LABELS, big, cascade=rp.Cascade(small))
    assert proxy.stats()["requests"] == oracle.stats()["requests"] == 0
    out = rp.classify(
        data.lazy(), "question", LABELS, big, overwrite=True, cascade=rp.Cascade(small, sample=10)
    )
    assert isinstance(out, pl.LazyFrame)
    assert out.collect()["label_source"].to_list() == [
        "oracle",
        "oracle",
    ]  # 2 rows < 59: no threshold


def test_filter_with_a_cascade(sim_factory: Any) -> None:
    from rlm_pipeline.ops.filter_op import FilterSpec
    from rlm_pipeline.sim.mapper import condition_holds

    proxy, oracle = sim_factory(accuracy=0.85), sim_factory()
    small, big = models(proxy, oracle)
    data = tickets(1500, seed=8).select("ticket_id", "question")
    condition = "is about billing"
    cascade = rp.Cascade(small, sample=200)
    judged, stats = run_op(data, FilterSpec("question", condition), big, cascade=cascade)
    report = stats.cascade
    assert report is not None and report.reached and report.escalated_share <= 0.40
    sample = sampled_texts(judged.rename({"filter_confidence": "label_confidence"}), 0, 200)
    rows = [(q, v) for q, v in judged.select("question", "filter").rows() if q not in sample]
    agree = sum(v == condition_holds(q, condition) for q, v in rows) / len(rows)
    assert agree >= 0.95
    kept = rp.filter(data, "question", condition, big, cascade=cascade)
    assert kept.columns == ["ticket_id", "question", "filter_source", "filter_confidence"]
    assert kept["ticket_id"].to_list() == judged.filter(pl.col("filter"))["ticket_id"].to_list()


def test_budget_and_meter_hold_for_both_models_together(sim_factory: Any) -> None:
    from rlm_pipeline.llm.usage import UsageMeter

    proxy, oracle = sim_factory(accuracy=0.85), sim_factory()
    small, big = models(proxy, oracle, proxy_max_concurrency=4, oracle_max_concurrency=4)
    data = tickets(1200, seed=6).select("question")
    meter = UsageMeter()
    out, stats = run_op(
        data,
        ClassifySpec("question", tuple(LABELS)),
        big,
        cascade=rp.Cascade(small),
        budget=rp.Budget(max_calls=40),
        meter=meter,
    )
    sent = proxy.stats()["requests"] + oracle.stats()["requests"]
    assert sent <= 40 and meter.snapshot().calls == sent == stats.usage.calls
    assert out.height == 1200 and stats.errors.get("budget_exceeded", 0) > 0
    stopped = out.filter(pl.col("label_error").str.starts_with("budget_exceeded"))
    assert stopped["label_source"].unique().to_list() == [
        "oracle"
    ]  # the proxy's stops were escalated


@pytest.mark.parametrize("unpriced", ["proxy", "oracle"])
def test_cost_budget_with_an_unpriced_model_is_refused_before_any_call(
    sim_factory: Any, unpriced: str
) -> None:
    proxy, oracle = sim_factory(accuracy=0.85), sim_factory()
    small, big = models(proxy, oracle)
    if unpriced == "proxy":
        small = rp.LLM(model="no-such-price", base_url=proxy.base_url, api_key="x")
    else:
        big = rp.LLM(model="no-such-price", base_url=oracle.base_url, api_key="x")
    data = tickets(50, seed=3).select("question")
    with pytest.raises(InputError, match="no price for model 'no-such-price'"):
        run_op(
            data,
            ClassifySpec("question", tuple(LABELS)),
            big,
            cascade=rp.Cascade(small),
            budget=rp.Budget(max_cost_usd=1.0),
        )
    assert proxy.stats()["requests"] == 0 and oracle.stats()["requests"] == 0

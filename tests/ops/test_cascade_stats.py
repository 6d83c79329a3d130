"""The cascade's statistics (Clopper–Pearson, threshold choice), its proxy spec and the client's logprobs."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.client import LLMClient
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.ops.cascade import Cascade
from rlm_pipeline.ops.cascade_spec import ConfidenceSpec, span_confidences, value_spans
from rlm_pipeline.ops.cascade_stats import (
    betainc,
    calibrate,
    clopper_pearson_lower,
    min_rows,
    reaches,
)
from rlm_pipeline.ops.spec import ClassifySpec

LABELS = ("billing", "technical", "account", "other")


def test_betainc_matches_exact_binomial_tails() -> None:
    for n in (1, 5, 30, 200):
        for k in range(1, n + 1, max(1, n // 7)):
            for p in (0.01, 0.3, 0.5, 0.9, 0.95, 0.999):
                exact = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
                assert betainc(k, n - k + 1, p) == pytest.approx(exact, rel=1e-9, abs=1e-14)


def test_lower_bound_matches_scipy_beta_quantile() -> None:
    special = pytest.importorskip("scipy.special")
    for n, k, delta in [(200, 190, 0.05), (60, 60, 0.05), (1000, 951, 0.01), (7, 3, 0.2)]:
        expected = special.betaincinv(k, n - k + 1, delta)
        assert clopper_pearson_lower(k, n, delta) == pytest.approx(expected, abs=1e-9)
        assert reaches(k, n, expected - 1e-6, delta) and not reaches(k, n, expected + 1e-6, delta)
    assert clopper_pearson_lower(0, 50, 0.05) == 0.0


def test_min_rows_is_the_first_all_agreeing_count_that_reaches() -> None:
    for target, delta in [(0.95, 0.05), (0.9, 0.1), (0.99, 0.01)]:
        need = min_rows(target, delta)
        assert reaches(need, need, target, delta) and not reaches(need - 1, need - 1, target, delta)


def test_calibration_walks_down_and_stops_at_the_first_failure() -> None:
    # top: 100 agreeing; then a band of 40 disagreeing rows; below it 300 agreeing rows
    # whose pooled agreement would pass again: fixed-sequence testing must not go there.
    pairs = [(0.9 - i * 1e-4, True) for i in range(100)]
    pairs += [(0.5, False)] * 40 + [(0.2 - i * 1e-5, True) for i in range(300)]
    found = calibrate(pairs, target=0.95, delta=0.05)
    assert found.threshold is not None and found.threshold > 0.5
    assert found.kept_agreeing == found.kept and found.kept >= min_rows(0.95, 0.05)
    assert found.rows == 440 and found.agreeing == 400
    assert found.lower_bound == pytest.approx(clopper_pearson_lower(found.kept, found.kept, 0.05))


def test_no_threshold_for_a_sample_too_small_or_uninformative() -> None:
    assert calibrate([(0.9, True)] * 20, 0.95, 0.05).threshold is None  # 20 < 59 rows
    found = calibrate([(0.1 + i / 300, i % 7 != 0) for i in range(200)], 0.95, 0.05)
    assert found.threshold is None and found.lower_bound < 0.95
    assert calibrate([], 0.95, 0.05).threshold is None


def test_cascade_settings_are_checked() -> None:
    proxy = LLM(model="gpt-4.1-nano")
    for bad in (
        {"target": 1.0},
        {"delta": 0},
        {"sample": 0},
        {"sample": 2.5},
        {"confidence": "maybe"},
        {"seed": "x"},
        {"target": True},
    ):
        with pytest.raises(InputError):
            Cascade(proxy, **bad)
    with pytest.raises(InputError, match="proxy must be"):
        Cascade("gpt-4.1-nano")  # type: ignore[arg-type]
    assert Cascade(proxy).min_sample == 59
    with pytest.raises(InputError, match="logprobs"):
        LLM(logprobs=21)


def test_value_spans_and_confidences_of_a_batch_reply() -> None:
    content = '{"results": [{"id": 0, "label": "billing"}, {"id": 1, "label": "other"}]}'
    tokens = []
    for piece in [
        '{"results": [{"id": 0, "label": "',
        "bill",
        "ing",
        '"}, {"id": 1, "label": "',
        "other",
        '"}]}',
    ]:
        logprob = {"bill": math.log(0.8), "ing": math.log(0.9), "other": math.log(0.4)}.get(
            piece, 0.0
        )
        tokens.append((piece, logprob))
    assert [content[a:b] for a, b in value_spans(content, "label")] == ['"billing"', '"other"']
    confs = span_confidences(content, tokens, "label", 2)
    assert confs == pytest.approx([0.72, 0.4])
    assert span_confidences(content, tokens, "label", 3) == [None, None, None]
    assert span_confidences(content, [("nope", -1.0)], "label", 2) == [None, None]
    assert span_confidences(content, None, "label", 2) == [None, None]


def test_confidence_spec_checks_answers_and_keeps_its_answers_apart() -> None:
    base = ClassifySpec("q", LABELS, batch_size=4)
    verbal = ConfidenceSpec(base, "verbal")
    item = verbal.reply_schema()["properties"]["results"]["items"]
    assert "confidence" in item["required"] and "confidence" not in str(base.reply_schema())
    assert "confidence" in verbal.messages(["x"])[0]["content"]
    assert verbal.check_value({"answer": "billing", "confidence": 1.5}) == (
        {"answer": "billing", "confidence": None},
        None,
    )
    assert verbal.check_value({"answer": "nope", "confidence": 0.5})[1].startswith("invalid_label")
    assert verbal.answer_params() != base.answer_params()
    assert ConfidenceSpec(base, "logprobs").answer_params() != verbal.answer_params()
    annotated = verbal.annotate_reply(
        {"results": [{"id": 0, "label": "billing", "confidence": 0.7}]}, None
    )
    assert annotated["results"][0]["label"] == {"answer": "billing", "confidence": 0.7}


def test_client_returns_logprobs_and_keeps_them_in_the_cache(
    sim_factory: Any, tmp_path: Any
) -> None:
    sim = sim_factory(accuracy=0.5)
    spec = ClassifySpec("q", LABELS, batch_size=2)
    cache = str(tmp_path / "cache.sqlite")

    async def ask(llm: LLM) -> Any:
        async with LLMClient(llm) as client:
            _, reply = await client.json(
                spec.messages(["refund me", "app crashes"]), spec.reply_schema(), name="x"
            )
            return reply

    plain = LLM(model="gpt-4.1-nano", base_url=sim.base_url, api_key="x", cache_path=cache)
    first = asyncio.run(ask(plain))
    assert first.logprobs is None and not first.cached
    with_logprobs = LLM(
        model="gpt-4.1-nano", base_url=sim.base_url, api_key="x", cache_path=cache, logprobs=2
    )
    second = asyncio.run(ask(with_logprobs))  # stored without them: asked again
    assert not second.cached and second.logprobs
    assert "".join(token for token, _ in second.logprobs) == second.content
    third = asyncio.run(ask(with_logprobs))
    assert third.cached and third.logprobs == second.logprobs
    assert sim.stats()["requests"] == 2



def test_report_says_cost_unknown_when_a_model_has_no_price() -> None:
    from rlm_pipeline.llm.usage import Usage
    from rlm_pipeline.ops.cascade_report import CascadeReport
    from rlm_pipeline.ops.cascade_stats import Calibration

    def report(oracle_cost: float) -> CascadeReport:
        return CascadeReport(
            proxy_model="small", oracle_model="big", confidence="logprobs", target=0.95,
            delta=0.05, sample=200, calibration=Calibration(0.7, 200, 180, 130, 129, 0.96),
            rows=1000, unsent=0, proxy_rows=700, oracle_rows=300, escalated_rows=280,
            proxy_usage=Usage(calls=1000, cost_usd=0.01),
            oracle_usage=Usage(calls=300, cost_usd=oracle_cost),
        )

    unpriced = report(0.0)
    assert unpriced.cost_all_oracle_usd is None
    assert unpriced.summary().endswith("cost not known (a model has no price)")
    assert "$0.0000" not in unpriced.summary()
    assert report(0.3).summary().endswith("cost $0.3100 vs $1.0000 all through the oracle")

"""The simulator's cheap mode: accuracy, determinism, informative log-probabilities, verbal confidence."""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import pytest

from rlm_pipeline.errors import InputError
from rlm_pipeline.sim import SimConfig, intended_label
from tests.sim.helpers import (
    TICKET_LABELS,
    batch_schema,
    json_schema_format,
    raw_post,
    rows_messages,
)

TEXTS = [
    f"{word} number {i}"
    for i in range(150)
    for word in ("refund my invoice", "the app crashes", "password reset", "office hours")
]


def _ask(
    sim: Any,
    texts: list[str],
    *,
    logprobs: bool = False,
    verbal: bool = False,
    model: str = "gpt-4.1-nano",
) -> dict[str, Any]:
    schema = batch_schema()
    if verbal:
        item = schema["properties"]["results"]["items"]
        item["properties"]["confidence"] = {"type": "number"}
    body: dict[str, Any] = {
        "model": model,
        "messages": rows_messages(texts),
        "response_format": json_schema_format(schema),
    }
    if logprobs:
        body.update(logprobs=True, top_logprobs=2)
    response = raw_post(sim, body)
    assert response.status_code == 200, response.text
    return response.json()


def _labels(reply: dict[str, Any]) -> list[str]:
    content = json.loads(reply["choices"][0]["message"]["content"])
    return [item["label"] for item in sorted(content["results"], key=lambda r: r["id"])]


def _label_logprobs(reply: dict[str, Any]) -> list[float]:
    """The log-probability of each label's first token, read off the token list."""
    tokens = reply["choices"][0]["logprobs"]["content"]
    text = ""
    out: list[float] = []
    for token in tokens:
        if text.endswith('"label": "'):
            out.append(token["logprob"])
        text += token["token"]
    assert text == reply["choices"][0]["message"]["content"]
    return out


def test_cheap_mode_is_right_at_its_rate_and_the_same_for_a_text_in_any_batch(
    sim_factory: Any,
) -> None:
    sim = sim_factory(accuracy=0.85, seed=3)
    labels = [
        label
        for start in range(0, len(TEXTS), 50)
        for label in _labels(_ask(sim, TEXTS[start : start + 50]))
    ]
    right = [
        label == intended_label(text, TICKET_LABELS)
        for text, label in zip(TEXTS, labels, strict=True)
    ]
    assert 0.80 <= sum(right) / len(right) <= 0.90
    # the same texts in other batches (reversed, in pairs) get the same answers
    again = [
        label
        for start in range(0, 40, 2)
        for label in _labels(_ask(sim, TEXTS[start : start + 2][::-1]))[::-1]
    ]
    assert again == labels[:40]


def test_logprobs_only_when_asked_and_informative(sim_factory: Any) -> None:
    sim = sim_factory(accuracy=0.7)
    plain = _ask(sim, TEXTS[:10])
    assert plain["choices"][0]["logprobs"] is None
    confs: dict[bool, list[float]] = {True: [], False: []}
    for start in range(0, 400, 40):
        batch = TEXTS[start : start + 40]
        reply = _ask(sim, batch, logprobs=True)
        logprobs = _label_logprobs(reply)
        assert len(logprobs) == len(batch)
        for text, label, logprob in zip(batch, _labels(reply), logprobs, strict=True):
            confs[label == intended_label(text, TICKET_LABELS)].append(math.exp(logprob))
        assert all(len(t["top_logprobs"]) <= 2 for t in reply["choices"][0]["logprobs"]["content"])
    assert min(confs[True]) >= 0.55 and max(confs[False]) < 0.60
    assert sum(confs[True]) / len(confs[True]) > sum(confs[False]) / len(confs[False]) + 0.3


def test_random_confidence_says_nothing_about_being_right(sim_factory: Any) -> None:
    sim = sim_factory(accuracy=0.7, confidence="random")
    confs: dict[bool, list[float]] = {True: [], False: []}
    for start in range(0, 600, 50):
        batch = TEXTS[start : start + 50]
        reply = _ask(sim, batch, logprobs=True)
        for text, label, logprob in zip(batch, _labels(reply), _label_logprobs(reply), strict=True):
            confs[label == intended_label(text, TICKET_LABELS)].append(math.exp(logprob))
    means = [sum(values) / len(values) for values in confs.values()]
    assert abs(means[0] - means[1]) < 0.1
    assert min(confs[True]) < 0.3  # right answers can be unsure too


def test_verbal_confidence_when_the_schema_asks(sim_factory: Any) -> None:
    sim = sim_factory(accuracy=0.5)
    reply = _ask(sim, TEXTS[:40], verbal=True)
    items = json.loads(reply["choices"][0]["message"]["content"])["results"]
    for item in items:
        assert 0.0 < item["confidence"] < 1.0
        right = item["label"] == intended_label(TEXTS[item["id"]], TICKET_LABELS)
        assert (item["confidence"] >= 0.55) if right else (item["confidence"] < 0.6)
    assert (
        "confidence"
        not in json.loads(_ask(sim, TEXTS[:2])["choices"][0]["message"]["content"])["results"][0]
    )


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InputError, match="accuracy"):
        SimConfig(accuracy=1.5)
    with pytest.raises(InputError, match="confidence"):
        SimConfig(confidence="always")


def test_two_simulators_count_peaks_per_model(sim_factory: Any) -> None:
    proxy = sim_factory(accuracy=0.85, latency_ms=30)
    oracle = sim_factory(latency_ms=30)

    def hit(sim: Any, model: str) -> None:
        _ask(sim, TEXTS[:3], model=model)

    threads = [threading.Thread(target=hit, args=(proxy, "gpt-4.1-nano")) for _ in range(4)]
    threads += [threading.Thread(target=hit, args=(oracle, "gpt-4.1")) for _ in range(2)]
    threads += [threading.Thread(target=hit, args=(oracle, "gpt-4.1-nano"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_model = proxy.stats()["by_model"]
    assert set(by_model) == {"gpt-4.1-nano"} and by_model["gpt-4.1-nano"]["requests"] == 4
    assert 1 <= by_model["gpt-4.1-nano"]["peak_in_flight"] <= 4
    oracle_models = oracle.stats()["by_model"]
    assert oracle_models["gpt-4.1"]["requests"] == 2 and oracle_models["gpt-4.1-nano"]["ok"] == 1
    assert all(entry["in_flight"] == 0 for entry in oracle_models.values())
    oracle.reset_stats()
    assert oracle.stats()["by_model"] == {}

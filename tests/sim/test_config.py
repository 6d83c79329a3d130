"""SimConfig validation and updates."""

from __future__ import annotations

import pickle

import pytest

from rlm_pipeline.errors import InputError
from rlm_pipeline.sim import SimConfig


@pytest.mark.parametrize(
    "knobs",
    [
        {"fault_429": -0.1}, {"fault_500": 1.5}, {"fault_429": 0.6, "fault_500": 0.6},
        {"max_concurrency": 0}, {"latency_ms": -1}, {"structured_mode": "xml"},
        {"retry_after_s": (0.3, 0.1)}, {"timeout_delay_s": float("nan")},
    ],
)
def test_bad_knobs_are_input_errors(knobs: dict[str, object]) -> None:
    with pytest.raises(InputError):
        SimConfig(**knobs)  # type: ignore[arg-type]


def test_frozen_picklable_and_updatable() -> None:
    cfg = SimConfig(latency_ms=5)
    with pytest.raises(AttributeError):
        cfg.latency_ms = 6  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert cfg.updated({"fault_500": 0.2}).fault_500 == 0.2
    with pytest.raises(InputError, match="unknown"):
        cfg.updated({"nope": 1})
    assert cfg.to_dict()["latency_ms"] == 5

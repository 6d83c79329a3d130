"""The ``"auto"`` confidence probe: its reply goes through the operator's row check.

A reply that fails the check (here: the simulator answers with wrong row ids)
is used for its form only and never stored, so the next probe asks again; a
reply that passes is stored and served from the cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import rlm_pipeline as rp
from rlm_pipeline.engines.polars import PolarsEngine
from rlm_pipeline.ops.cascade import EngineCalls, _probe_mode
from rlm_pipeline.ops.runner import run_sync
from rlm_pipeline.ops.spec import ClassifySpec

SPEC = ClassifySpec("question", ("billing", "technical", "account", "other"), batch_size=4)


def _probe(proxy: rp.LLM) -> str:
    calls = EngineCalls(PolarsEngine(), None, None)
    return run_sync(lambda: _probe_mode(SPEC, proxy, calls))


@pytest.mark.parametrize(("wrong_ids", "requests"), [(1.0, 2), (0.0, 1)])
def test_the_probe_reply_is_cached_only_when_it_passes_the_row_check(
    sim_factory: Any, tmp_path: Path, wrong_ids: float, requests: int
) -> None:
    sim = sim_factory(fault_wrong_ids=wrong_ids)
    proxy = rp.LLM(model="gpt-4.1-nano", base_url=sim.base_url, api_key="x",
                   cache_path=str(tmp_path / "cache.sqlite"))
    assert _probe(proxy) == "logprobs"  # the reply's form is read either way
    assert _probe(proxy) == "logprobs"
    assert sim.stats()["requests"] == requests

"""The public surface: DESIGN.md §2 names exist, __all__ is sorted, import is light."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys

import pytest

import rlm_pipeline as rp

DESIGN_NAMES = ["LLM", "RLM", "Budget", "Usage", "classify", "estimate", "extract", "filter",
                "aggregate", "top_k", "join"]


def test_all_is_sorted_and_complete() -> None:
    assert rp.__all__ == sorted(rp.__all__)
    for name in rp.__all__:
        assert getattr(rp, name) is not None, name
    for name in DESIGN_NAMES:
        assert name in rp.__all__


def test_import_starts_no_jvm_and_loads_no_pyspark() -> None:
    code = (
        "import sys, rlm_pipeline as rp, polars as pl; "
        "rp.LLM(); rp.Budget(); pl.col('x').rlm; rp.spark.classify('q', ['a'], llm=rp.LLM()); "
        "print('pyspark' in sys.modules, 'py4j' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_llm_config_is_frozen_and_picklable() -> None:
    llm = rp.LLM(model="m", base_url="http://127.0.0.1:1/v1", rpm=600, max_concurrency=64)
    assert pickle.loads(pickle.dumps(llm)) == llm
    with pytest.raises(dataclasses.FrozenInstanceError):
        llm.model = "x"  # type: ignore[misc]
    share = llm.share(4)
    assert (share.max_concurrency, share.rpm) == (16, 150)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"max_concurrency": 0}, "max_concurrency"), ({"rpm": 0}, "rpm"), ({"timeout_s": 0}, "timeout_s")],
)
def test_llm_rejects_bad_limits(kwargs: dict[str, int], fragment: str) -> None:
    with pytest.raises(rp.InputError, match=fragment):
        rp.LLM(**kwargs)  # type: ignore[arg-type]


def test_errors_share_one_root() -> None:
    for name in ("InputError", "ExpressionError", "UnsupportedExpressionError", "EngineError",
                 "LLMError", "LLMResponseParseError", "BudgetExceededError"):
        assert issubclass(getattr(rp, name), rp.RLMPipelineError)
    err = rp.BudgetExceededError("calls", 11, 10, partial="7")
    assert (err.spent, err.budget, err.partial) == (11, 10, "7")

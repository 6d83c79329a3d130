"""The examples in the llm modules' docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "rlm_pipeline.llm",
    "rlm_pipeline.llm.allowance",
    "rlm_pipeline.llm.budget",
    "rlm_pipeline.llm.cache",
    "rlm_pipeline.llm.client",
    "rlm_pipeline.llm.completion",
    "rlm_pipeline.llm.config",
    "rlm_pipeline.llm.failures",
    "rlm_pipeline.llm.gate",
    "rlm_pipeline.llm.probe",
    "rlm_pipeline.llm.ratelimit",
    "rlm_pipeline.llm.replies",
    "rlm_pipeline.llm.reply",
    "rlm_pipeline.llm.retry",
    "rlm_pipeline.llm.structured",
    "rlm_pipeline.llm.tokens",
    "rlm_pipeline.llm.usage",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0

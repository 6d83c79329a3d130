"""The examples in the trace modules' docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["rlm_pipeline.trace", "rlm_pipeline.trace.records", "rlm_pipeline.trace.writer",
           "rlm_pipeline.trace.outline", "rlm_pipeline.trace.show", "rlm_pipeline.trace.html",
           "rlm_pipeline.trace.figures", "rlm_pipeline.trace.diff", "rlm_pipeline.rlm.steps"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0

"""Both engines implement the one protocol with the same signatures (like ibis's test_signatures)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import pytest

from rlm_pipeline.engines.base import Engine
from rlm_pipeline.engines.polars import PolarsEngine
from rlm_pipeline.engines.spark import SparkEngine

METHODS = sorted(
    name for name, value in vars(Engine).items() if callable(value) and not name.startswith("_")
)


def test_protocol_methods_are_the_seam() -> None:
    assert METHODS == [
        "close",
        "column_texts",
        "count",
        "drop",
        "filter",
        "filter_value",
        "frame",
        "frame_like",
        "head",
        "key_check",
        "map_frame",
        "map_llm",
        "open_child",
        "partition",
        "read",
        "register",
        "rows_where",
        "schema",
        "sql",
        "to_arrow",
        "value_counts",
        "views",
    ]


@pytest.mark.parametrize("cls", [PolarsEngine, SparkEngine])
@pytest.mark.parametrize("method", METHODS)
def test_signatures_match_the_protocol(cls: type, method: str) -> None:
    expected = inspect.signature(getattr(Engine, method))
    got = inspect.signature(getattr(cls, method))
    assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == [
        (p.name, p.kind, p.default) for p in expected.parameters.values()
    ]


def test_engines_are_engines() -> None:
    assert isinstance(PolarsEngine(), Engine)
    assert PolarsEngine.name == "polars" and SparkEngine.name == "spark"


def test_importing_never_starts_a_jvm() -> None:
    """Importing the package and the engines (and using Polars) never imports pyspark."""
    code = textwrap.dedent(
        """
        import sys
        import polars as pl
        import rlm_pipeline
        import rlm_pipeline.engines
        from rlm_pipeline.engines import Engine, PolarsEngine, SparkEngine, open_engine
        import rlm_pipeline.engines.load, rlm_pipeline.engines.spark
        engine = open_engine(pl.DataFrame({"a": [1, 2, 3]}))
        assert engine.filter("context", "a > 1", "big") == 2
        assert engine.partition("context", n=2, name="halves") == {"0": 2, "1": 1}
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("pyspark", "py4j")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr

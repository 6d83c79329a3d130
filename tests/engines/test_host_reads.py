"""The host-side engine methods of the one route, alike on both engines.

``engine_for`` decides the engine once; ``read``, ``column_texts``,
``key_check`` and ``to_arrow(columns)`` answer the same on Polars and Spark
(the CLI's ``--id-column`` check, ``rp.estimate`` and validation use them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.engines import Engine
from rlm_pipeline.engines.load import engine_for
from rlm_pipeline.errors import InputError

FRAME = pl.DataFrame(
    {"id": [1, 2, 2, None, 5], "q": ["a", None, "c", "d", "e"], "n": [1, 2, 3, 4, 5]}
)


def test_engine_for_decides_from_the_data_or_the_argument() -> None:
    assert engine_for(FRAME).name == "polars"
    assert engine_for("tickets.parquet").name == "polars"
    with pytest.raises(InputError, match="engine must be 'polars' or 'spark'"):
        engine_for(FRAME, "duckdb")


def test_polars_read_keeps_the_kind_or_reads_files(tmp_path: Any) -> None:
    engine = engine_for(FRAME)
    assert engine.read(FRAME) is FRAME
    path = tmp_path / "t.parquet"
    FRAME.write_parquet(path)
    assert isinstance(engine.read(str(path)), pl.LazyFrame)
    assert engine.read(str(path), lazy=False).equals(FRAME)


def test_key_check_texts_and_columns(make_engine: Callable[[Any], Engine]) -> None:
    engine = make_engine(FRAME)
    found = engine.key_check("context", "id")
    assert (found.nulls, found.duplicated, found.example) == (1, 2, 2)
    unique = engine.key_check("context", "n")
    assert (unique.nulls, unique.duplicated, unique.example) == (0, 0, None)
    frame = engine.frame("context")
    assert engine.column_texts(frame, "q") == ["a", None, "c", "d", "e"]
    assert engine.column_texts(frame, "n") == ["1", "2", "3", "4", "5"]
    with pytest.raises(InputError, match="column 'nope' not found"):
        engine.column_texts(frame, "nope")
    table = engine.to_arrow("context", ["n"])
    assert table.column_names == ["n"] and table.column("n").to_pylist() == [1, 2, 3, 4, 5]
    with pytest.raises(InputError, match=r"unknown columns \['nope'\] in view 'context'"):
        engine.to_arrow("context", ["nope"])

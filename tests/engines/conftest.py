"""The engine suite's fixtures: one parameter per engine, like ibis's backend suite.

``make_engine(data)`` opens the engine under test over ``data``; ``known_gap``
marks a test as a strict xfail for one engine, so a fix shows up as XPASS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.engines import Engine, open_engine

from .data import tickets, users

ENGINES = [
    pytest.param("polars", id="polars"),
    pytest.param("spark", id="spark", marks=pytest.mark.spark),
]


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def make_engine(
    engine_name: str, request: pytest.FixtureRequest
) -> Iterator[Callable[[Any], Engine]]:
    """Open the engine under test over some data; engines are closed after the test."""
    opened: list[Engine] = []

    def make(data: Any) -> Engine:
        if engine_name == "spark":
            session = request.getfixturevalue("spark")
            engine = open_engine(data, "spark", spark=session)
        else:
            engine = open_engine(data, "polars")
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        engine.close()


@pytest.fixture
def known_gap(engine_name: str, request: pytest.FixtureRequest) -> Callable[..., None]:
    """``known_gap("spark", reason=...)``: strict xfail on that engine only."""

    def mark(*engines: str, reason: str, raises: type[BaseException] | None = None) -> None:
        if engine_name in engines:
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason, raises=raises))

    return mark


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tickets table written in every file format the engines read."""
    root = tmp_path_factory.mktemp("engine_files")
    frame = tickets()
    paths: dict[str, Path] = {}
    paths["parquet"] = root / "tickets.parquet"
    frame.write_parquet(paths["parquet"], row_group_size=8)
    paths["dir"] = root / "tickets_dir"
    paths["dir"].mkdir()
    for i, part in enumerate(frame.iter_slices(24)):
        part.write_parquet(paths["dir"] / f"part-{i:05d}.parquet")
    (paths["dir"] / "_SUCCESS").write_bytes(b"")
    (paths["dir"] / ".hidden.parquet").write_bytes(b"junk: hidden files are not data")
    paths["glob"] = paths["dir"] / "part-*.parquet"
    paths["csv"] = root / "tickets.csv"
    frame.write_csv(paths["csv"])
    paths["jsonl"] = root / "tickets.jsonl"
    frame.with_columns(pl.col("day").cast(pl.String)).write_ndjson(paths["jsonl"])
    paths["users"] = root / "users.parquet"
    users().write_parquet(paths["users"])
    return paths

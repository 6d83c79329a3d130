"""Fixtures for the RLM tests: sample tickets, their Parquet file, a simulator, and truth."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.llm.config import LLM

USERS = (12345, 67890, 11111)


@pytest.fixture(scope="module")
def ticket_frame() -> pl.DataFrame:
    """5,000 tickets with their hidden ``true_label``."""
    return tickets(5000, seed=0)


@pytest.fixture(scope="module")
def ticket_parquet(ticket_frame: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tickets as Parquet, without ``true_label`` (what the model may see)."""
    path = tmp_path_factory.mktemp("tickets") / "tickets.parquet"
    ticket_frame.drop("true_label").write_parquet(path)
    return path


@pytest.fixture(scope="module")
def module_sim() -> Iterator[Any]:
    """One simulator (no latency, no faults) for a test module."""
    from rlm_pipeline.sim import SimConfig, SimServer

    with SimServer(SimConfig()) as server:
        yield server


@pytest.fixture
def sim_llm(module_sim: Any) -> LLM:
    """An LLM config pointing at the module's simulator."""
    return LLM(model="sim-1", base_url=module_sim.base_url, api_key="sim", max_retries=1)


def truth_frame(
    frame: pl.DataFrame,
    users: tuple[int, ...] | None = None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> pl.DataFrame:
    """Rows of ``frame`` matching the users and dates (the hidden labels kept)."""
    out = frame
    if users:
        out = out.filter(pl.col("user_id").is_in(list(users)))
    if date_from is not None:
        out = out.filter(pl.col("date").is_between(date_from, date_to or date_from))
    return out


def label_count(frame: pl.DataFrame, label: str, **where: Any) -> int:
    """How many matching rows have ``true_label == label``."""
    return truth_frame(frame, **where).filter(pl.col("true_label") == label).height


def per_user(frame: pl.DataFrame, label: str, users: tuple[int, ...]) -> dict[str, int]:
    """``{user id: rows with that label}`` for each of ``users`` (zeros included)."""
    sub = truth_frame(frame, users=users).filter(pl.col("true_label") == label)
    counts = dict(sub.group_by("user_id").len().iter_rows())
    return {str(u): int(counts.get(u, 0)) for u in users}


def most_common(frame: pl.DataFrame, *, least: bool = False, **where: Any) -> str:
    """The most (or least) common true label among matching rows; ties by name."""
    counts = truth_frame(frame, **where).group_by("true_label").len().rows()
    key = (lambda r: (r[1], r[0])) if least else (lambda r: (-r[1], r[0]))
    return str(sorted(counts, key=key)[0][0])

"""Fixtures for the RLM tests: sample tickets, their Parquet file, a simulator, and truth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.llm.config import LLM


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

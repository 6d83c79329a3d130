"""Shared fixtures: one session-scoped SparkSession, simulator servers, and a
guard that fails any test trying to reach an address outside 127.0.0.1."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# Spark's Python workers must be this interpreter (it has polars and rlm_pipeline).
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-a-real-key")
os.environ.pop("OPENAI_BASE_URL", None)

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(address: Any) -> None:
    if isinstance(address, tuple) and address:
        host = address[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost":
                raise ConnectionRefusedError(f"tests may not reach {host!r}") from None
            return
        if not ip.is_loopback:
            raise ConnectionRefusedError(f"tests may not reach {host!r}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _fresh_mode_memory() -> Iterator[None]:
    """Each test starts without the process-wide structured-mode and protocol memory.

    Both are caches of what an endpoint can do, keyed by base URL and model; a
    port reused by a later test's simulator would otherwise inherit them, and
    results would depend on the order the tests run in.
    """
    from rlm_pipeline.llm.structured import forget_modes
    from rlm_pipeline.rlm.protocol import forget_protocols

    forget_modes()
    forget_protocols()
    yield


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The one SparkSession of the test run (local[2], bound to 127.0.0.1)."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("rlm_pipeline-tests")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., Any]]:
    """Start simulator servers with given knobs; all are stopped after the test."""
    from rlm_pipeline.sim import SimConfig, SimServer

    servers: list[Any] = []

    def start(**knobs: Any) -> Any:
        server = SimServer(SimConfig(**knobs))
        server.__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def sim(sim_factory: Callable[..., Any]) -> Any:
    """A simulator with no latency and no faults."""
    return sim_factory()

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


# --------------------------------------------------- parallel runs (pytest-xdist)
# `make test` runs `-n 2 --dist loadgroup`.  Every test that starts or uses a JVM
# (the session-scoped `spark` fixture, Spark Connect, a Spark subprocess, the
# standalone cluster, the Spark notebook) goes to one xdist group, so only one
# worker starts Spark and the other runs the rest.  Chosen here, by fixture,
# marker, parameter or name, rather than by marking each test.
_SPARK_FIXTURES = frozenset({"spark", "connect", "_connect_session"})
_SPARK_MARKERS = ("spark", "cluster")


def _uses_spark(item: pytest.Item) -> bool:
    if _SPARK_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    if any(item.get_closest_marker(name) is not None for name in _SPARK_MARKERS):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is not None and any(v == "spark" for v in callspec.params.values()):
        return True
    return "spark" in item.nodeid.lower()


def _uses_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        defs[-1].scope == "module" for defs in info.name2fixturedefs.values() if defs
    )


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers it too; this keeps --strict-markers happy without it.
    config.addinivalue_line("markers", "xdist_group(name): run these tests in one xdist worker")


@pytest.hookimpl(tryfirst=True)  # before xdist turns the group marks into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Spark tests share the group "spark"; the other tests of a module with a
    module-scoped fixture (a venv, a browser run, a simulator) share one group per
    module, so that fixture is built once; all other tests spread one by one."""
    loadgroup = bool(getattr(config.option, "loadgroup", False))
    for item in items:
        if _uses_spark(item):
            group = "spark"
        elif _uses_module_fixture(item):
            group = item.nodeid.split("::", 1)[0]
        else:
            continue
        item.add_marker(pytest.mark.xdist_group(group))
        if loadgroup and hasattr(item, "_id"):
            # pytest-xdist 3.8 tags the group as `item._nodeid += "@group"`, which pytest 9
            # ignores (the id lives in `item._id`): without this, loadgroup groups nothing.
            from _pytest.nodeid import coerce_node_id

            item._id = coerce_node_id(f"{item.nodeid}@{group}")


def _jvm_running() -> bool:
    if "pyspark" not in sys.modules:
        return False
    from pyspark import SparkContext

    return SparkContext._gateway is not None


@pytest.fixture(autouse=True)
def _spark_stays_in_its_group(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under xdist, warn when a test outside the "spark" group starts a JVM in its worker."""
    if "PYTEST_XDIST_WORKER" not in os.environ or _uses_spark(request.node):
        yield
        return
    before = _jvm_running()
    yield
    if not before and _jvm_running():
        import warnings

        warnings.warn(
            f"{request.node.nodeid} started Spark outside the xdist group 'spark'; "
            "make tests/conftest.py:_uses_spark recognise it",
            pytest.PytestWarning,
            stacklevel=1,
        )


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

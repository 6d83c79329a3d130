"""A Spark Connect session for the Spark-native tests, served by the test run's own Spark.

``SparkSession.builder.remote("local[2]")`` would start a second JVM (a
Connect server in a new local Spark), which cannot share the process with the
classic session of ``tests/conftest.py`` and costs tens of seconds on a
loaded 2-core box.  Instead the Connect service is started inside the
existing Spark (``SparkConnectService.start``, the server the ``local``
remote would start too, bound to 127.0.0.1 on a free port) and a real Connect
client session (gRPC) talks to it.

PySpark marks a process as "Connect mode" with an environment variable that
also changes how *classic* UDFs are built; ``connect`` sets it only for the
test that uses the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

_MODE = "SPARK_CONNECT_MODE_ENABLED"


@pytest.fixture(scope="session")
def _connect_session(spark: Any) -> Iterator[Any]:
    from pyspark.sql import SparkSession

    jsc = spark.sparkContext._jsc.sc()
    jsc.conf().set("spark.connect.grpc.binding.address", "127.0.0.1")
    jsc.conf().set("spark.connect.grpc.binding.port", "0")
    service = spark._jvm.org.apache.spark.sql.connect.service
    service.SparkConnectService.start(jsc)
    port = getattr(getattr(service, "SparkConnectService$"), "MODULE$").localPort()
    had = os.environ.get(_MODE)
    try:
        session = SparkSession.builder.remote(f"sc://127.0.0.1:{port}").create()
    finally:
        if had is None:
            os.environ.pop(_MODE, None)
    yield session
    os.environ[_MODE] = "1"
    try:
        session.stop()
    finally:
        if had is None:
            os.environ.pop(_MODE, None)


@pytest.fixture
def connect(_connect_session: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A Spark Connect client session (``pyspark.sql.connect.session.SparkSession``)."""
    monkeypatch.setenv(_MODE, "1")
    return _connect_session

"""Can Spark's Python workers run rlm_pipeline?  One tiny probe job before any model call.

Spark runs Python code in worker processes started with the interpreter named
by ``PYSPARK_PYTHON`` (``spark.pyspark.python`` under ``spark-submit``; the
first ``python3`` on ``PATH`` when unset) — not necessarily the Python the
driver runs.  A worker Python without rlm_pipeline's dependencies used to fail
deep in the first model task, after the whole job was planned, with a
Python-worker traceback whose cause was cut off.  :func:`check_workers` runs
one single-row Spark job (a plain pickled Python UDF: no Arrow, so it runs on
any worker Python of the driver's version) that tries to import what the
tasks need and reports the worker's interpreter.  If anything is missing it
raises :class:`~rlm_pipeline.errors.SparkWorkerError` with one line naming
the worker Python and the fix.  A session that passed is remembered, so the
probe runs once per session (classic or Spark Connect).

Examples
--------
>>> line = worker_problem(
...     {"python": "/usr/bin/python3.11", "version": "3.11", "missing": ["polars", "pyarrow"],
...      "rlm_pipeline": None, "rlm_version": None},
...     driver="/venv/bin/python", configured=None, driver_version="0.1.0")
>>> print(line)  # doctest: +NORMALIZE_WHITESPACE
Spark's Python workers cannot run rlm_pipeline: they run /usr/bin/python3.11 (PYSPARK_PYTHON is not
set, so Spark starts 'python3' from PATH), which lacks polars, pyarrow; this driver runs
/venv/bin/python. Fix: set PYSPARK_PYTHON=/venv/bin/python before the Spark session starts
(spark-submit: --conf spark.pyspark.python=/venv/bin/python); on a cluster, install
'rlm-pipeline[spark]' in the executors' Python or ship it (--py-files, or --archives with a packed venv)
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from rlm_pipeline.errors import SparkWorkerError

__all__ = [
    "WORKER_NEEDS",
    "check_workers",
    "forget_checked",
    "is_connect",
    "task_slots",
    "worker_problem",
]

logger = logging.getLogger(__name__)

#: Modules a task imports: third-party needs first (each reported when missing),
#: then our own task modules (they pull in anything else the tasks need).
WORKER_NEEDS: tuple[str, ...] = (
    "pyarrow",
    "polars",
    "openai",
    "httpx2",
    "jsonschema",
    "rlm_pipeline",
    "rlm_pipeline.llm.client",
    "rlm_pipeline.ops.spark_task",
)

_checked: set[str] = set()
_lock = threading.Lock()


def check_workers(session: Any, *, needs: Sequence[str] = WORKER_NEEDS) -> None:
    """Raise :class:`SparkWorkerError` unless ``session``'s Python workers can import ``needs``.

    Runs one single-row Spark job the first time it is called for a session
    (about a second on a warm session); later calls return at once.

    Parameters
    ----------
    session
        A classic or Spark Connect ``SparkSession``.
    needs
        Modules the workers must import (default :data:`WORKER_NEEDS`).
    """
    key = _session_key(session)
    with _lock:
        if key in _checked:
            return
    report = _probe(session, tuple(needs))
    line = worker_problem(
        report,
        driver=sys.executable,
        configured=_configured_python(session),
        driver_version=_driver_version(),
    )
    if line is not None:
        raise SparkWorkerError(line)
    logger.debug("spark workers run %s; every need imports", report.get("python"))
    with _lock:
        _checked.add(key)


def forget_checked() -> None:
    """Forget which sessions passed (tests)."""
    with _lock:
        _checked.clear()


def worker_problem(
    report: dict[str, Any], *, driver: str, configured: str | None, driver_version: str
) -> str | None:
    """The one-line problem in a probe report, or None when the workers are fine."""
    missing = list(report.get("missing") or [])
    worker = str(report.get("python") or "an unknown Python")
    version = report.get("rlm_version")
    if not missing and version in (None, driver_version):
        return None
    if missing:
        what = f"which lacks {', '.join(missing)}"
    else:
        where = report.get("rlm_pipeline") or "?"
        what = f"which imports rlm_pipeline {version} from {where}, not {driver_version}"
    return (
        f"Spark's Python workers cannot run rlm_pipeline: they run {worker} "
        f"({_named(configured)}), {what}; this driver runs {driver}. {_fix(driver)}"
    )


def _named(configured: str | None) -> str:
    if configured is None:
        return "PYSPARK_PYTHON is not set, so Spark starts 'python3' from PATH"
    return f"PYSPARK_PYTHON / spark.pyspark.python is {configured!r}"


def _fix(driver: str) -> str:
    return (
        f"Fix: set PYSPARK_PYTHON={driver} before the Spark session starts "
        f"(spark-submit: --conf spark.pyspark.python={driver}); on a cluster, install "
        "'rlm-pipeline[spark]' in the executors' Python or ship it "
        "(--py-files, or --archives with a packed venv)"
    )


def _probe(session: Any, needs: tuple[str, ...]) -> dict[str, Any]:
    """Run the probe job; its report, or :class:`SparkWorkerError` if no worker could run it."""
    from pyspark.errors import PySparkException
    from pyspark.sql.functions import udf

    probe = udf(_probe_function(needs), "string", useArrow=False)
    try:
        rows = session.range(1, numPartitions=1).select(probe("id").alias("r")).collect()
    except (PySparkException, OSError) as exc:
        raise SparkWorkerError(_failure_line(str(exc), session)) from exc
    except Exception as exc:  # py4j's Py4JJavaError is not a PySparkException
        if type(exc).__module__.startswith("py4j"):
            raise SparkWorkerError(_failure_line(str(exc), session)) from exc
        raise
    return dict(json.loads(rows[0][0]))


def _probe_function(needs: tuple[str, ...]) -> Callable[[Any], str]:
    """The UDF body: stdlib only, defined in a closure so it is pickled by value.

    (A module-level function would be pickled by reference, and a worker that
    cannot import rlm_pipeline could not even load it.)
    """

    def probe(_: Any) -> str:
        import importlib
        import json
        import sys

        missing: list[str] = []
        for name in needs:
            if name.split(".")[0] in missing:
                continue
            try:
                importlib.import_module(name)
            except ImportError as exc:
                gone = getattr(exc, "name", None) or name
                gone = gone.split(".")[0] if not gone.startswith("rlm_pipeline") else gone
                if gone not in missing:
                    missing.append(gone)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported, not raised
                missing.append(f"{name} ({type(exc).__name__}: {exc})")
        package = sys.modules.get("rlm_pipeline")
        return json.dumps(
            {
                "python": sys.executable,
                "version": f"{sys.version_info[0]}.{sys.version_info[1]}",
                "missing": missing,
                "rlm_pipeline": getattr(package, "__file__", None),
                "rlm_version": getattr(package, "__version__", None),
            }
        )

    return probe


_CAUSES = (
    (re.compile(r"Cannot run program \"([^\"]+)\""), "cannot start {0}"),
    (re.compile(r"different version (\S+) than that in driver (\S+)"), "Python {0} vs driver {1}"),
    (re.compile(r"\b(\w+(?:Error|Exception): [^\n]+)"), "{0}"),
)


def _failure_line(text: str, session: Any) -> str:
    """One line for a probe job that failed outright (no worker Python could run it)."""
    cause = "the probe job failed"
    for pattern, form in _CAUSES:
        found = pattern.search(text)
        if found:
            cause = form.format(*found.groups())
            break
    driver = sys.executable
    return (
        f"Spark could not run a Python worker ({cause}; "
        f"{_named(_configured_python(session))}); this driver runs {driver}. {_fix(driver)}"
    )


def _configured_python(session: Any) -> str | None:
    """The worker Python the session was told to use, or None (``python3`` from PATH)."""
    conf = None
    try:
        conf = session.conf.get("spark.pyspark.python", None)
    except Exception:  # noqa: BLE001 - a Connect server may refuse unknown keys
        conf = None
    return conf or os.environ.get("PYSPARK_PYTHON") or None


def _session_key(session: Any) -> str:
    """Identifies a session: the application id (classic) or the Connect session id."""
    if is_connect(session):
        return f"connect:{session.session_id}"
    return f"classic:{session.sparkContext.applicationId}"


def is_connect(session: Any) -> bool:
    """True for a Spark Connect session (no SparkContext, no accumulators, no RDDs)."""
    return isinstance(getattr(session, "session_id", None), str)


def task_slots(session: Any) -> int:
    """Tasks that can run at once: the default parallelism (classic), or read from the conf.

    On Spark Connect: ``spark.default.parallelism`` if set, else N of a
    ``local[N]`` master, else the cores of this machine.
    """
    if not is_connect(session):
        return max(1, int(session.sparkContext.defaultParallelism))
    conf = session.conf.get("spark.default.parallelism", None)
    if conf:
        return max(1, int(conf))
    master = session.conf.get("spark.master", "") or ""
    found = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]", master)
    if found and found.group(1) != "*":
        return max(1, int(found.group(1)))
    return 1 if master == "local" else (os.cpu_count() or 1)


def _driver_version() -> str:
    """This package's version (already imported: no import statement, no cycle)."""
    return str(getattr(sys.modules.get("rlm_pipeline"), "__version__", "?"))

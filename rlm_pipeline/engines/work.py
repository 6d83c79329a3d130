"""Model-issued engine work under limits: row caps, cancellation and a memory budget.

The root model writes valid SQL that can still cost too much (a self-join on a
low-cardinality key, a chain of CTEs that doubles its rows).  Three guards hold
every engine call a run makes:

- **limits** (:class:`WorkLimits`): rows per view (``max_view_rows``), views per
  run (``max_views``), rows computed into views per run (``max_total_rows``),
  scans of views per query (:data:`MAX_PLAN_SCANS`), a per-tool-call wall clock
  (``tool_timeout_s``) and a memory budget (``max_memory_bytes``).  The engines
  enforce the row, view and scan caps before or while a view is made; the RLM
  loop enforces the clocks.
- **cancellation** (:class:`Work`): each run, and each tool call in it, is a
  :class:`Work` held in a context variable, so the worker threads that run
  engine calls (``asyncio.to_thread`` copies the context) know whose work they
  do.  Spark jobs carry the job tags of their work and its parents
  (``SparkContext.addJobTag``, set in the thread that starts the job: tags are
  thread-local) and :meth:`Work.cancel` calls ``cancelJobsWithTag``.  Polars
  queries go one of two ways (:func:`collect_polars`): a query whose work bound
  is large runs in a worker process
  (:class:`~rlm_pipeline.engines.polars_worker.WorkerQuery`) and
  :meth:`Work.cancel` kills that process, which frees its cores and memory at
  once; a query with a small bound runs here as ``collect(background=True)``
  and is cancelled with ``InProcessQuery.cancel()``.  A cancelled call returns
  once what it started has stopped using the engine (at most :data:`SETTLE_S`:
  the abandoned in-process query ended, the cancelled Spark job's tasks killed).
- **memory**: while engine work runs, the resident memory of the process and
  its children (a local Spark JVM, a Polars worker) is sampled; growth past
  ``max_memory_bytes`` cancels that work with a
  :class:`~rlm_pipeline.errors.ResourceLimitError`.

Polars (2.1, verified): ``InProcessQuery.cancel()`` does not stop a query that
is running -- it is honoured between operators, and a join kernel goes on in
Polars' threads to its end (a triple self-join over 100,000 rows: minutes).
Hence the worker route for every query that may run long: its work bound
(:func:`~rlm_pipeline.engines.polars_worker.plan_work`: rows of its sources plus
rows into and out of each join, group-by, sort and distinct, joins bounded by
the row cap they were estimated against) passes :data:`IN_PROCESS_WORK` and
:data:`WORKER_RATIO` times the rows of the in-memory frames the plan carries
(sending a plan copies them, about 3 µs a row; a Parquet scan goes as its
path).  The rest -- nearly every query the model issues -- runs in this process:
bounded work that ends on its own after a cancel, within seconds for contexts of
up to about a million in-memory rows (a bigger in-memory context allows bigger
bounded queries here; a Parquet-backed one sends them all away).  The row caps still
refuse an exploding join *before* it runs (estimated from the key counts of
each side, see :func:`rlm_pipeline.expr.estimate.join_probes`).

Examples
--------
>>> limits = WorkLimits(max_view_rows=500)
>>> limits.view_rows(100), WorkLimits().view_rows(200_000)
(500, 2000000)
>>> work = Work("run", limits=limits)
>>> work.cancel("timeout_s = 30 s"); work.reason
'timeout_s = 30 s'
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rlm_pipeline.errors import InputError, ResourceLimitError

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "DEFAULT_MAX_VIEWS",
    "DEFAULT_TOOL_TIMEOUT_S",
    "DEFAULT_WORK_LIMITS",
    "IN_PROCESS_WORK",
    "MAX_PLAN_SCANS",
    "MEMORY_SHARE",
    "MIN_TOTAL_ROWS",
    "MIN_VIEW_ROWS",
    "POLARS_ROUTES",
    "SETTLE_S",
    "TOTAL_ROWS_FACTOR",
    "VIEW_ROWS_FACTOR",
    "WORKER_RATIO",
    "ViewLedger",
    "Work",
    "WorkLimits",
    "abandoned_queries",
    "cancelled_error",
    "check_joins",
    "check_new_view",
    "collect_polars",
    "current_work",
    "join_error",
    "limits_now",
    "polars_in_worker",
    "polars_route",
    "process_rss",
    "scans_error",
    "spark_job",
    "total_memory",
    "total_rows_error",
    "view_rows_error",
    "work_scope",
]

logger = logging.getLogger(__name__)

#: Default ``max_view_rows`` = max(VIEW_ROWS_FACTOR × rows of ``context``, MIN_VIEW_ROWS).
VIEW_ROWS_FACTOR = 10
MIN_VIEW_ROWS = 1_000_000
#: Default ``max_total_rows`` = max(TOTAL_ROWS_FACTOR × rows of ``context``, MIN_TOTAL_ROWS).
TOTAL_ROWS_FACTOR = 50
MIN_TOTAL_ROWS = 10_000_000
#: Most views the model may hold in one run (the root run and each sub-run count apart).
DEFAULT_MAX_VIEWS = 64
#: Wall-clock limit of one tool call that runs engine work (peek, filter, partition, sql).
DEFAULT_TOOL_TIMEOUT_S = 120.0
#: Default memory budget: this share of the machine's RAM.
MEMORY_SHARE = 0.25
#: Most scans of registered views one query may make once CTEs and views are expanded.
MAX_PLAN_SCANS = 64
#: How often running work is checked (memory, cancellation), seconds.
_POLL_S = 0.05
_SPARK_POLL_S = 0.2
#: After a cancel, how long a call waits for what it started to stop using the engine
#: (an abandoned in-process Polars query to end, a cancelled Spark job's tasks to be
#: killed) before it raises: the next call then finds the engine free.
SETTLE_S = 10.0


@dataclass(frozen=True)
class WorkLimits:
    """Bounds on the engine work one run (root run or sub-run) may have done for the model.

    Parameters
    ----------
    max_view_rows
        Most rows one view may hold; ``None``: max(10 × rows of ``context``, 1,000,000).
        A join is refused when its estimated output passes it; any other view stops
        counting at ``max_view_rows + 1`` rows and is refused.
    max_views
        Most views the model may hold at once in one run (replacing a view by name is
        always allowed).
    max_total_rows
        Most rows computed into new views over one run; ``None``: max(50 × rows of
        ``context``, 10,000,000).
    tool_timeout_s
        Wall-clock limit of one ``peek``/``filter``/``partition``/``sql`` call, seconds
        (``None``: no limit); on expiry its engine work is cancelled.
    max_memory_bytes
        Memory budget of engine work: growth of the resident memory of the process and
        its children while one engine call runs; ``None``: 25% of the machine's RAM.

    Examples
    --------
    >>> WorkLimits(max_view_rows=0)
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.InputError: max_view_rows must be a positive integer or None, got 0
    """

    max_view_rows: int | None = None
    max_views: int = DEFAULT_MAX_VIEWS
    max_total_rows: int | None = None
    tool_timeout_s: float | None = DEFAULT_TOOL_TIMEOUT_S
    max_memory_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_view_rows", "max_total_rows", "max_memory_bytes"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                msg = f"{name} must be a positive integer or None, got {value!r}"
                raise InputError(msg)
        if isinstance(self.max_views, bool) or not isinstance(self.max_views, int):
            msg = f"max_views must be a positive integer, got {self.max_views!r}"
            raise InputError(msg)
        if self.max_views < 1:
            msg = f"max_views must be a positive integer, got {self.max_views!r}"
            raise InputError(msg)
        timeout = self.tool_timeout_s
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            msg = f"tool_timeout_s must be > 0 or None, got {timeout!r}"
            raise InputError(msg)

    def view_rows(self, context_rows: int) -> int:
        """``max_view_rows``, or its default for a ``context`` of ``context_rows`` rows."""
        if self.max_view_rows is not None:
            return self.max_view_rows
        return max(VIEW_ROWS_FACTOR * context_rows, MIN_VIEW_ROWS)

    def total_rows(self, context_rows: int) -> int:
        """``max_total_rows``, or its default for a ``context`` of ``context_rows`` rows."""
        if self.max_total_rows is not None:
            return self.max_total_rows
        return max(TOTAL_ROWS_FACTOR * context_rows, MIN_TOTAL_ROWS)

    def memory_bytes(self) -> int:
        """``max_memory_bytes``, or 25% of the machine's RAM."""
        if self.max_memory_bytes is not None:
            return self.max_memory_bytes
        return int(total_memory() * MEMORY_SHARE)


DEFAULT_WORK_LIMITS = WorkLimits()


class Work:
    """One unit of engine work that can be cancelled: a run, or one tool call in it.

    A child (a tool call) is cancelled with its parent (the run).  Engines find the
    current work with :func:`current_work`; Spark jobs started for it carry the
    tags of the work and of its parents, Polars queries started for it are
    registered on it.

    Parameters
    ----------
    label
        What the work is (``"run"``, ``"sql"``...), for logs.
    parent
        The enclosing work, if any.
    limits
        The limits; a child without its own takes its parent's.
    """

    def __init__(
        self, label: str, *, parent: Work | None = None, limits: WorkLimits | None = None
    ) -> None:
        self.label = label
        self.parent = parent
        inherited = parent.limits if parent is not None else DEFAULT_WORK_LIMITS
        self.limits: WorkLimits = limits or inherited
        self.tag = f"rlm-{label}-{uuid.uuid4().hex[:12]}"
        self._reason: str | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0
        self._queries: set[Any] = set()
        self._spark: set[Any] = set()
        self._children: weakref.WeakSet[Work] = weakref.WeakSet()
        if parent is not None:
            with parent._lock:
                parent._children.add(self)

    @property
    def reason(self) -> str | None:
        """Why this work (or a parent) was cancelled; ``None`` while it may go on."""
        node: Work | None = self
        while node is not None:
            if node._reason is not None:
                return node._reason
            node = node.parent
        return None

    def tags(self) -> list[str]:
        """The Spark job tags of this work and its parents."""
        out = []
        node: Work | None = self
        while node is not None:
            out.append(node.tag)
            node = node.parent
        return out

    def cancel(self, reason: str) -> None:
        """Cancel this work and its children: running Spark jobs and Polars queries stop
        (as far as the engine allows), and new engine calls raise at once."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
            queries = list(self._queries)
            sparks = list(self._spark)
            children = list(self._children)
        for query in queries:
            with contextlib.suppress(Exception):
                query.cancel()
        for spark in sparks:
            _cancel_spark(spark, self.tag)
        for child in children:
            child.cancel(reason)
        if queries or sparks:
            logger.info("cancelled %s work (%s)", self.label, reason)

    def check(self) -> None:
        """Raise :class:`ResourceLimitError` if this work was cancelled."""
        reason = self.reason
        if reason is not None:
            raise cancelled_error(reason)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no engine call of this work (or its children) runs; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._active > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # -- bookkeeping used by the engines ----------------------------------------------

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Count an engine call as running on this work and its parents."""
        chain = self._chain()
        for node in chain:
            with node._lock:
                node._active += 1
        try:
            yield
        finally:
            for node in chain:
                with node._idle:
                    node._active -= 1
                    if node._active == 0:
                        node._idle.notify_all()

    def _chain(self) -> list[Work]:
        out = []
        node: Work | None = self
        while node is not None:
            out.append(node)
            node = node.parent
        return out

    def _add_query(self, query: Any) -> None:
        with self._lock:
            self._queries.add(query)

    def _drop_query(self, query: Any) -> None:
        with self._lock:
            self._queries.discard(query)

    def _add_spark(self, spark: Any) -> None:
        # Every work of the chain can cancel the job: its tags include theirs.
        for node in self._chain():
            with node._lock:
                node._spark.add(spark)


def cancelled_error(reason: str) -> ResourceLimitError:
    """The error an engine call raises when its work was cancelled for ``reason``."""
    limit = reason.split(" ", 1)[0].split("=", 1)[0]
    return ResourceLimitError(f"cancelled: {reason}", limit=limit or "cancelled")


_CURRENT: contextvars.ContextVar[Work | None] = contextvars.ContextVar(
    "rlm_pipeline_work", default=None
)


def current_work() -> Work | None:
    """The work the calling thread or task does, if any (see :func:`work_scope`)."""
    return _CURRENT.get()


@contextlib.contextmanager
def work_scope(work: Work) -> Iterator[Work]:
    """Make ``work`` the current work inside the block (threads started with
    ``asyncio.to_thread`` inside it inherit it).

    Examples
    --------
    >>> with work_scope(Work("run")) as w:
    ...     current_work() is w
    True
    >>> current_work() is None
    True
    """
    token = _CURRENT.set(work)
    try:
        yield work
    finally:
        _CURRENT.reset(token)


def limits_now() -> WorkLimits:
    """The limits of the current work, or the defaults outside any."""
    work = current_work()
    return work.limits if work is not None else DEFAULT_WORK_LIMITS


# ---------------------------------------------------------------------- memory


def total_memory() -> int:
    """Bytes of RAM of the machine (``/proc/meminfo``; 8 GiB if unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _children_of(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as handle:
                found.extend(int(p) for p in handle.read().split())
        except (OSError, ValueError):
            continue
    return found


def process_rss(pid: int | None = None, *, children: bool = True) -> int:
    """Resident memory in bytes of process ``pid`` (default: this one) and, with
    ``children``, of all its descendants (a local Spark JVM is one).  0 where
    ``/proc`` is missing.

    Examples
    --------
    >>> process_rss() > 0
    True
    """
    root = os.getpid() if pid is None else pid
    total = 0
    todo = [root]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _rss_of(current)
        if children:
            todo.extend(_children_of(current))
    return total


def _memory_error(limit: int) -> ResourceLimitError:
    gib = limit / (1 << 30)
    return ResourceLimitError(
        f"the query used more memory than the budget (max_memory_bytes = {gib:.2f} GiB) and "
        "was cancelled: filter the views first, or aggregate before joining or sorting",
        limit="max_memory_bytes",
    )


# ---------------------------------------------------------------------- Polars

#: Most work (rows, see :func:`~rlm_pipeline.engines.polars_worker.plan_work`) a
#: model-issued Polars query may have to run in this process whatever it holds.
IN_PROCESS_WORK = 4_000_000
#: Above :data:`IN_PROCESS_WORK`, a query runs in a worker process (that a cancel
#: kills) when its work bound is over this many times the rows of the in-memory
#: frames it holds (which sending it copies, at some µs a row); below, the query's
#: own work is of the order of sending it, bounded, and it runs here.
WORKER_RATIO = 50
#: Where model-issued Polars queries run: ``"auto"`` (by the two numbers above),
#: ``"process"`` (always here) or ``"worker"`` (always in a worker process).
POLARS_ROUTES = ("auto", "process", "worker")
_ROUTE: contextvars.ContextVar[str] = contextvars.ContextVar("rlm_polars_route", default="auto")


@contextlib.contextmanager
def polars_route(route: str) -> Iterator[None]:
    """Run the model-issued Polars queries of the block by ``route`` (one of
    :data:`POLARS_ROUTES`; tests and benchmarks force a route with it).

    Examples
    --------
    >>> import polars as pl
    >>> with polars_route("worker"), work_scope(Work("run")):
    ...     collect_polars(pl.LazyFrame({"x": [1, 2]}).select(pl.col("x").sum())).item()
    3
    """
    if route not in POLARS_ROUTES:
        msg = f"route must be one of {', '.join(POLARS_ROUTES)}, got {route!r}"
        raise InputError(msg)
    token = _ROUTE.set(route)
    try:
        yield
    finally:
        _ROUTE.reset(token)


def polars_in_worker(frame: pl.LazyFrame, limits: WorkLimits) -> bool:
    """Whether ``frame``, issued for the model under ``limits``, runs in a worker process.

    ``"auto"``: when its work bound passes :data:`IN_PROCESS_WORK` and
    :data:`WORKER_RATIO` times the rows its in-memory frames hold; joins are counted
    up to the row cap they were checked against (``max_view_rows``, or its default
    for the largest source of the plan, standing in for ``context``).

    Examples
    --------
    >>> import polars as pl
    >>> lf = pl.LazyFrame({"k": range(3000)})
    >>> polars_in_worker(lf.join(lf, on="k"), WorkLimits())
    False
    >>> polars_in_worker(lf.join(lf, on="k"), WorkLimits(max_view_rows=10**15))
    True
    """
    from rlm_pipeline.engines.polars_worker import plan_work

    route = _ROUTE.get()
    if route != "auto":
        return route == "worker"

    def cap(largest: float) -> float:
        return float(limits.view_rows(int(min(largest, 1e15))))

    cost = plan_work(frame, join_rows=cap)
    logger.debug("polars query: work %.3g rows, %.3g rows in memory", cost.rows, cost.embedded_rows)
    return cost.rows > max(IN_PROCESS_WORK, WORKER_RATIO * cost.embedded_rows)


def collect_polars(frame: pl.LazyFrame) -> pl.DataFrame:
    """``frame.collect()`` under the current work: cancellable and memory-watched.

    Outside any work it is a plain ``collect()``.  Inside, a query whose work
    bound is small (:func:`polars_in_worker`) runs here as
    ``collect(background=True)``; a larger one runs in a worker process
    (:class:`~rlm_pipeline.engines.polars_worker.WorkerQuery`).  This thread
    polls the query and raises :class:`ResourceLimitError` when the work is
    cancelled or the process and its children grow past the memory budget.  A
    worker query is then killed with its process; an in-process one is
    cancelled, which polars 2.1 honours only between operators (a running
    operator goes on to its end -- a small one, by the route's bound), so on a
    cancel this thread waits for it to end (at most :data:`SETTLE_S`) before it
    raises: the run's next query finds the cores free.
    """
    work = current_work()
    if work is None:
        return frame.collect()
    work.check()
    budget = work.limits.memory_bytes()
    in_worker = polars_in_worker(frame, work.limits)
    with work.active():
        query: Any = _worker_query(frame) if in_worker else None
        if query is None:
            query = frame.collect(background=True)
        base = process_rss()
        work._add_query(query)
        try:
            wait = 0.001
            while True:
                if work.reason is not None:
                    _give_up(query)
                    _settle_polars(query)
                    raise cancelled_error(work.reason)
                result: pl.DataFrame | None = query.fetch()
                if result is not None:
                    return result
                if wait >= _POLL_S and process_rss() - base > budget:
                    _give_up(query)
                    raise _memory_error(budget)
                time.sleep(wait)
                wait = min(wait * 2, _POLL_S)
        except _polars_error() as exc:
            if work.reason is not None:  # the worker was killed by a cancel
                raise cancelled_error(work.reason) from exc
            raise
        finally:
            work._drop_query(query)


def _worker_query(frame: pl.LazyFrame) -> Any:
    """``frame`` started in a worker process, or ``None`` when its plan cannot go there
    (Python code in it: it then runs in this process)."""
    from rlm_pipeline.engines.polars_worker import UnportablePlanError, WorkerQuery

    try:
        return WorkerQuery(frame)
    except UnportablePlanError:
        logger.debug("plan holds Python code: run in this process", exc_info=True)
        return None


def _polars_error() -> type[Exception]:
    """Polars' base error type (imported late: this module loads without Polars)."""
    import polars as pl

    return pl.exceptions.PolarsError


def _settle_polars(query: Any, within: float = SETTLE_S) -> bool:
    """Wait (at most ``within`` seconds) until an abandoned in-process query has ended.

    Polars finishes a running operator after a cancel, on its threads: until then
    the next query of the run would share the cores with it (and a tight
    ``tool_timeout_s`` would expire on a count).  A killed worker query is over at once.
    """
    if hasattr(query, "pid"):
        return True
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with _ABANDONED_LOCK:
            if not any(q is query for q in _ABANDONED):
                return True
        time.sleep(_POLL_S)
    return False


def _give_up(query: Any) -> None:
    """Stop ``query``: a worker query is killed, an in-process one abandoned."""
    if hasattr(query, "pid"):
        query.cancel()
    else:
        _abandon(query)


# Queries given up before they finished.  polars 2.1 aborts the process (a Rust panic:
# "SendError" in exitable.rs) when a background query finishes after its handle was
# freed, so a given-up query's handle is kept until the query has ended: a reaper
# thread fetches (and drops) its result, and at exit the handles still running are
# leaked on purpose, never freed.
_ABANDONED: list[Any] = []
_ABANDONED_LOCK = threading.Lock()
_REAPER: list[threading.Thread] = []


def _abandon(query: Any) -> None:
    """Cancel ``query`` and keep its handle alive until it has ended (see above)."""
    with contextlib.suppress(Exception):
        query.cancel()
    with _ABANDONED_LOCK:
        _ABANDONED.append(query)
        if not _REAPER:
            thread = threading.Thread(target=_reap, name="rlm-polars-reaper", daemon=True)
            _REAPER.append(thread)
            thread.start()


def _reap() -> None:
    while True:
        time.sleep(0.2)
        with _ABANDONED_LOCK:
            queries = list(_ABANDONED)
        for query in queries:
            try:
                ended = query.fetch() is not None
            except Exception:  # noqa: BLE001 - it ended with an error
                ended = True
            if ended:
                with _ABANDONED_LOCK:
                    _ABANDONED.remove(query)


@atexit.register
def _keep_running_queries() -> None:
    import ctypes

    with _ABANDONED_LOCK:
        for query in _ABANDONED:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(query))


def abandoned_queries() -> int:
    """Polars queries given up (cancelled) that have not ended yet."""
    with _ABANDONED_LOCK:
        return len(_ABANDONED)


# ---------------------------------------------------------------------- Spark


def _cancel_spark(spark: Any, tag: str) -> None:
    try:
        context = getattr(spark, "_rlm_context", None) or _spark_context(spark)
        if context is not None:
            context.cancelJobsWithTag(tag)
        else:
            spark.interruptTag(tag)
    except Exception:  # noqa: BLE001 - best effort: the session may be stopping
        logger.debug("could not cancel spark jobs tagged %s", tag, exc_info=True)


def _running_tasks(context: Any) -> int | None:
    """Tasks running on the executors now (classic sessions; None when unknown)."""
    if context is None:
        return None
    try:
        infos = context._jsc.sc().statusTracker().getExecutorInfos()
        return int(sum(info.numRunningTasks() for info in infos))
    except Exception:  # noqa: BLE001 - best effort (py4j, a stopping session)
        return None


def _settle_spark(context: Any, before: int | None, within: float = SETTLE_S) -> bool:
    """Wait (at most ``within`` seconds) until the executors run no more tasks than ``before``.

    A cancelled job ends on the driver at once, while its tasks are being killed
    on the executors; the next job would queue behind them.
    """
    if before is None:
        return True
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        now = _running_tasks(context)
        if now is None or now <= before:
            return True
        time.sleep(_POLL_S)
    return False


def _spark_context(session: Any) -> Any:
    """The classic ``SparkContext`` of ``session``, or ``None`` (Spark Connect)."""
    try:
        return session.sparkContext
    except Exception:  # noqa: BLE001 - Spark Connect sessions have none
        return None


@contextlib.contextmanager
def spark_job(session: Any) -> Iterator[None]:
    """Run the Spark jobs started in the block under the current work.

    The jobs carry the work's tags (``SparkContext.addJobTag`` in this thread;
    ``SparkSession.addTag`` on Spark Connect), so :meth:`Work.cancel` stops them
    with ``cancelJobsWithTag``.  A watchdog thread cancels them when the process
    (and its children: the local JVM) grows past the memory budget, and repeats
    a cancellation that raced with the job's start.  A job that fails because it
    was cancelled raises :class:`ResourceLimitError` naming the limit.
    """
    work = current_work()
    if work is None:
        yield
        return
    work.check()
    context = _spark_context(session)
    job_tag = f"{work.tag}-job-{uuid.uuid4().hex[:8]}"  # this block's jobs only (memory)
    tags = [job_tag, *work.tags()]
    for tag in tags:
        if context is not None:
            context.addJobTag(tag)
        else:
            session.addTag(tag)
    if context is not None:  # a cancel interrupts the tasks' threads (a join stops at once)
        context.setInterruptOnCancel(True)
    work._add_spark(session)
    running = _running_tasks(context)  # tasks of other work, when this block starts
    budget = work.limits.memory_bytes()
    done = threading.Event()
    over = threading.Event()
    base = process_rss()

    def watch() -> None:
        while not done.wait(_SPARK_POLL_S):
            if work.reason is not None:
                _cancel_spark(session, work.tag)
            elif not over.is_set() and process_rss() - base > budget:
                over.set()
                _cancel_spark(session, job_tag)

    watchdog = threading.Thread(target=watch, name=f"rlm-watch-{work.label}", daemon=True)
    try:
        with work.active():
            watchdog.start()
            work.check()  # a cancel that came before the tags were set
            try:
                yield
            except Exception as exc:
                if over.is_set():
                    _settle_spark(context, running)
                    raise _memory_error(budget) from exc
                if work.reason is not None:
                    _settle_spark(context, running)
                    raise cancelled_error(work.reason) from exc
                raise
    finally:
        done.set()
        if context is not None:
            with contextlib.suppress(Exception):
                context.setInterruptOnCancel(False)
        for tag in tags:
            with contextlib.suppress(Exception):
                if context is not None:
                    context.removeJobTag(tag)
                else:
                    session.removeTag(tag)


# ---------------------------------------------------------------------- the refusals


def check_new_view(names: list[str], name: str, limits: WorkLimits) -> None:
    """Refuse a *new* model view when the run holds ``limits.max_views`` of them already.

    Views are counted without ``context`` and the library's scratch views (``_rlm…``);
    replacing a view by its name is always allowed.

    Examples
    --------
    >>> check_new_view(["context", "a", "b"], "c", WorkLimits(max_views=2))
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.ResourceLimitError: this run holds 2 views already (max_views = 2): reuse the name of a view you no longer need (it is replaced), or aggregate into one view instead of making one view per value
    """
    if name in names:
        return
    made = [v for v in names if v.lower() != "context" and not v.startswith("_rlm")]
    if len(made) >= limits.max_views:
        raise ResourceLimitError(
            f"this run holds {len(made)} views already (max_views = {limits.max_views}): "
            "reuse the name of a view you no longer need (it is replaced), or aggregate into "
            "one view instead of making one view per value",
            limit="max_views",
        )


def view_rows_error(name: str, cap: int) -> ResourceLimitError:
    """The refusal of a view that would pass ``max_view_rows`` (counting stopped at cap + 1).

    Examples
    --------
    >>> print(view_rows_error("big", 1000))  # doctest: +NORMALIZE_WHITESPACE
    view `big` would have more than 1,000 rows (max_view_rows = 1,000; counting stopped at
    1,001 rows): filter first (fewer rows in), or aggregate (GROUP BY) so the view holds fewer
    rows, or add LIMIT
    """
    return ResourceLimitError(
        f"view `{name}` would have more than {cap:,} rows (max_view_rows = {cap:,}; counting "
        f"stopped at {cap + 1:,} rows): filter first (fewer rows in), or aggregate (GROUP BY) "
        "so the view holds fewer rows, or add LIMIT",
        limit="max_view_rows",
    )


def join_error(joined: str, on: str, estimate: float, cap: int) -> ResourceLimitError:
    """The refusal of a join whose estimated output passes ``max_view_rows``.

    Examples
    --------
    >>> print(join_error("context", "a.date = b.date", 2.5e9, 1_000_000))  # doctest: +NORMALIZE_WHITESPACE
    the join with `context` ON a.date = b.date would make about 2,500,000,000 rows (estimated
    from the key counts of each side), more than max_view_rows = 1,000,000; nothing was run.
    Filter each side first (filter, or WHERE in a subquery) so fewer rows share a key, or
    aggregate before joining (GROUP BY the key on each side, then join the aggregates), or
    join on a more selective key
    """
    shown = on if len(on) <= 200 else on[:197] + "..."
    return ResourceLimitError(
        f"the join with `{joined}` ON {shown} would make about {int(estimate):,} rows "
        f"(estimated from the key counts of each side), more than max_view_rows = {cap:,}; "
        "nothing was run. Filter each side first (filter, or WHERE in a subquery) so fewer "
        "rows share a key, or aggregate before joining (GROUP BY the key on each side, then "
        "join the aggregates), or join on a more selective key",
        limit="max_view_rows",
    )


def scans_error(scans: int) -> ResourceLimitError:
    """The refusal of a query that reads views more than :data:`MAX_PLAN_SCANS` times.

    Examples
    --------
    >>> print(scans_error(1024))  # doctest: +NORMALIZE_WHITESPACE
    the query reads views 1,024 times once its CTEs and views are expanded (limit 64): a CTE
    or view used twice is computed twice, so a chain of CTEs that each use the previous one
    twice doubles at every step. Use each CTE once, or make the shared part a small view
    first (sql with GROUP BY or filter), then query that view
    """
    return ResourceLimitError(
        f"the query reads views {scans:,} times once its CTEs and views are expanded (limit "
        f"{MAX_PLAN_SCANS}): a CTE or view used twice is computed twice, so a chain of CTEs "
        "that each use the previous one twice doubles at every step. Use each CTE once, or "
        "make the shared part a small view first (sql with GROUP BY or filter), then query "
        "that view",
        limit="max_plan_scans",
    )


def total_rows_error(total: int, rows: int, cap: int) -> ResourceLimitError:
    """The refusal of a view that would bring the run past ``max_total_rows``."""
    return ResourceLimitError(
        f"this view has {rows:,} rows and the run's views hold {total:,} rows already; "
        f"together more than max_total_rows = {cap:,}: work on smaller views (filter or "
        "aggregate first) and reuse view names",
        limit="max_total_rows",
    )


class ViewLedger:
    """What one engine's model views cost so far: rows computed, scans per view.

    One per engine (so per run: the root run and each sub-run have their own).
    """

    def __init__(self) -> None:
        self.total_rows = 0
        self.context_rows: int | None = None
        self.scans: dict[str, int] = {}
        self._lock = threading.Lock()

    def add_rows(self, rows: int, limits: WorkLimits) -> None:
        """Count ``rows`` more computed into a new view; refuse past ``max_total_rows``."""
        cap = limits.total_rows(self.context_rows or 0)
        with self._lock:
            if self.total_rows + rows > cap:
                raise total_rows_error(self.total_rows, rows, cap)
            self.total_rows += rows


def check_joins(
    checked: Any,
    schemas: dict[str, dict[str, str]],
    view_cap: Callable[[], int],
    run_probe: Callable[[Any, str], Any],
) -> None:
    """Refuse a query if one of its joins would pass ``max_view_rows``: each join probed first.

    The one loop of both engines.  ``checked`` is the compiled query;
    ``view_cap()`` gives ``max_view_rows`` (asked only when the query joins);
    ``run_probe(probe, joined)`` runs one probe query (a compiled SELECT, see
    :func:`rlm_pipeline.expr.estimate.join_probes`) on the engine and returns
    its one value, the estimated rows of the join with view ``joined``.

    Raises
    ------
    ResourceLimitError
        The first join estimated above the cap (:func:`join_error`); nothing was run.
    """
    from rlm_pipeline.expr import compile_select
    from rlm_pipeline.expr.estimate import PROBE_LIMITS, join_probes

    probes = join_probes(checked)
    if not probes:
        return
    cap = view_cap()
    for probe in probes:
        value = run_probe(compile_select(probe.sql, schemas, limits=PROBE_LIMITS), probe.joined)
        estimate = float(value or 0.0)
        logger.debug("join with %s: about %d rows", probe.joined, estimate)
        if estimate > cap:
            raise join_error(probe.joined, probe.on, estimate, cap)

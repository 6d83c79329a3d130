"""Polars queries in a worker process that can be killed: the cancellable route.

polars 2.1 cannot stop a query that is already running in this process:
``InProcessQuery.cancel()`` is honoured between operators only, and a join
kernel goes on in Polars' threads to its end (minutes, for a join that
explodes).  A query run by :class:`WorkerQuery` runs in a separate Python
process instead: the plan goes there as ``LazyFrame.serialize()`` bytes, the
result comes back as ``DataFrame.serialize()`` bytes (Polars' own format: every
dtype round-trips), and :meth:`WorkerQuery.cancel` kills the process
(``SIGKILL``), which frees its cores and its memory at once.

The workers are fresh interpreters (``python -P this_file``: nothing but the
standard library and Polars is imported there, and no thread of this process is
copied, unlike a plain ``os.fork``).  One idle worker is kept for the next
query; a killed one is replaced at the next query that needs it.  A worker exits
when this process ends (its request pipe closes, and it checks its parent).

Cost: the plan carries the in-memory frames it reads (about 2.8 ms per 1,000
rows of text-heavy tickets to serialize, about half that to read back in the
worker; a Parquet scan is carried as its path only), plus a pipe round trip of
about a millisecond and the result's bytes.  :func:`plan_work` estimates what a
plan will cost so that only queries that may run long take this route (see
:func:`rlm_pipeline.engines.work.collect_polars`).

Examples
--------
>>> import polars as pl
>>> query = WorkerQuery(pl.LazyFrame({"x": [1, 2, 3]}).select(pl.col("x").sum()))
>>> query.fetch_blocking().item()
6
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import json
import math
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, BinaryIO

import polars as pl

__all__ = [
    "UnportablePlanError",
    "WorkerQuery",
    "PlanWork",
    "plan_work",
    "shutdown_workers",
    "worker_pids",
]

#: Idle workers kept for the next queries.
MAX_IDLE = 1
_HEADER = struct.Struct("<cQ")  # kind (b"P" plan, b"R" result, b"E" error), payload bytes


# ---------------------------------------------------------------------- the parent side


class _Worker:
    """One worker process and its pipes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and file
            [sys.executable, "-P", os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self.killed = False

    @property
    def alive(self) -> bool:
        return not self.killed and self.proc.poll() is None

    def kill(self) -> None:
        self.killed = True
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                if pipe is not None:
                    pipe.close()


_LOCK = threading.Lock()
_IDLE: list[_Worker] = []
_ALL: set[_Worker] = set()


def _acquire() -> _Worker:
    with _LOCK:
        while _IDLE:
            worker = _IDLE.pop()
            if worker.alive:
                return worker
            _ALL.discard(worker)
    worker = _Worker()
    with _LOCK:
        _ALL.add(worker)
    return worker


def _release(worker: _Worker) -> None:
    with _LOCK:
        if worker.alive and len(_IDLE) < MAX_IDLE:
            _IDLE.append(worker)
            return
        _ALL.discard(worker)
    worker.kill()


def _discard(worker: _Worker) -> None:
    worker.kill()
    with _LOCK:
        _ALL.discard(worker)


@atexit.register
def shutdown_workers() -> None:
    """Kill every worker process (idle or running a query)."""
    with _LOCK:
        workers = list(_ALL)
        _ALL.clear()
        _IDLE.clear()
    for worker in workers:
        worker.kill()


def worker_pids() -> list[int]:
    """Process ids of the live workers (for tests and diagnostics)."""
    with _LOCK:
        return [w.proc.pid for w in _ALL if w.alive]


def _read_exact(pipe: IO[bytes], size: int) -> bytes:
    chunks = []
    left = size
    while left:
        chunk = pipe.read(min(left, 1 << 24))
        if not chunk:
            msg = "the worker's pipe closed"
            raise EOFError(msg)
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _ended(worker: _Worker) -> pl.exceptions.ComputeError:
    code = worker.proc.poll()
    return pl.exceptions.ComputeError(
        f"the Polars worker process ended before answering (exit code {code})"
    )


def _error_of(payload: bytes) -> Exception:
    """The exception a worker reported, as the Polars exception type it was."""
    info = json.loads(payload.decode("utf-8"))
    kind = getattr(pl.exceptions, str(info.get("type")), None)
    message = str(info.get("message"))
    if isinstance(kind, type) and issubclass(kind, Exception):
        with contextlib.suppress(Exception):
            return kind(message)
    return pl.exceptions.ComputeError(message)


class UnportablePlanError(ValueError):
    """The plan cannot be sent to a worker (it holds Python code: a UDF, a Python source)."""


class WorkerQuery:
    """A query running in a worker process; the same calls as Polars' ``InProcessQuery``.

    The plan is serialized and sent in the constructor (in the calling thread);
    :meth:`fetch` does not block while the worker computes, :meth:`cancel` kills
    the worker.  Errors the query raises in the worker are raised again here as
    the same Polars exception types; a plan that cannot be serialized raises
    :class:`UnportablePlanError` before any worker is involved.
    """

    def __init__(self, frame: pl.LazyFrame) -> None:
        try:
            plan = frame.serialize()
        except Exception as exc:  # noqa: BLE001 - Polars raises ComputeError for UDFs
            msg = f"the plan cannot be sent to a worker: {exc}"
            raise UnportablePlanError(msg) from exc
        self._worker = _acquire()
        self._done = False
        self._cancelled = False
        self._lock = threading.Lock()
        stdin = self._worker.proc.stdin
        assert stdin is not None
        try:
            stdin.write(_HEADER.pack(b"P", len(plan)))
            stdin.write(plan)
            stdin.flush()
        except (OSError, ValueError) as exc:
            self._finish(ok=False)
            if self._cancelled:
                raise pl.exceptions.ComputeError("the query was cancelled") from exc
            raise _ended(self._worker) from exc

    @property
    def pid(self) -> int:
        """Process id of the worker running the query."""
        return self._worker.proc.pid

    def cancel(self) -> None:
        """Stop the query now: its worker process is killed."""
        with self._lock:
            if self._done:
                return
            self._cancelled = True
        _discard(self._worker)

    def fetch(self) -> pl.DataFrame | None:
        """The result if the query has ended, else ``None`` (raises what the query raised)."""
        return self._fetch(0.0)

    def fetch_blocking(self) -> pl.DataFrame:
        """Wait for the result."""
        while True:
            result = self._fetch(1.0)
            if result is not None:
                return result

    def _fetch(self, wait: float) -> pl.DataFrame | None:
        stdout = self._worker.proc.stdout
        if self._done:
            msg = "the query's result was fetched already, or it was cancelled"
            raise pl.exceptions.ComputeError(msg)
        try:
            assert stdout is not None
            ready, _, _ = select.select([stdout], [], [], wait)
            if not ready:
                return None
            kind, size = _HEADER.unpack(_read_exact(stdout, _HEADER.size))
            payload = _read_exact(stdout, size)
        except (OSError, ValueError, EOFError, struct.error) as exc:
            self._finish(ok=False)
            if self._cancelled:
                raise pl.exceptions.ComputeError("the query was cancelled") from exc
            raise _ended(self._worker) from exc
        self._finish(ok=True)
        if kind == b"E":
            raise _error_of(payload)
        return pl.DataFrame.deserialize(io.BytesIO(payload))

    def _finish(self, *, ok: bool) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            cancelled = self._cancelled
        if ok and not cancelled:
            _release(self._worker)
        else:
            _discard(self._worker)


# ---------------------------------------------------------------------- how much work


#: Operators whose cost is more than a pass over their input.
_HEAVY = frozenset({"Join", "GroupBy", "Sort", "Distinct", "MergeSorted"})
#: Operators whose output rows are (a subset of) their input's rows, one for one.
_SAME_ROWS = frozenset({"Select", "SimpleProjection", "Filter", "HStack", "Cache", "Slice"})
#: Parquet footers remembered (path, mtime, size -> rows), least recently used dropped first.
PARQUET_ROWS_CACHED = 256


@functools.lru_cache(maxsize=PARQUET_ROWS_CACHED)
def _footer_rows(path: str, mtime_ns: int, size: int) -> int:
    """Rows in a Parquet file's footer (cached per version of the file; errors are not cached)."""
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _parquet_rows(paths: list[str]) -> float:
    total = 0
    for path in paths:
        try:
            stat = os.stat(path)
        except (OSError, TypeError):
            return math.inf
        try:
            total += _footer_rows(str(path), stat.st_mtime_ns, stat.st_size)
        except Exception:  # noqa: BLE001 - unreadable here: unknown size
            return math.inf
    return float(total)


def _source_rows(ir: object) -> float:
    kind = type(ir).__name__
    if kind == "DataFrameScan":
        return float(ir.df.height())  # type: ignore[attr-defined]
    if kind == "Scan":
        scan_type = ir.scan_type  # type: ignore[attr-defined]
        if scan_type and str(scan_type[0]) == "parquet":
            return _parquet_rows(list(ir.paths))  # type: ignore[attr-defined]
        return math.inf
    return 0.0


def _largest_source(visitor: object) -> float:
    """Rows of the largest source (in-memory frame or file scan) under the current node."""
    largest = 0.0
    todo = [visitor.get_node()]  # type: ignore[attr-defined]
    seen: set[int] = set()
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        visitor.set_node(node)  # type: ignore[attr-defined]
        largest = max(largest, _source_rows(visitor.view_current_node()))  # type: ignore[attr-defined]
        todo.extend(visitor.get_inputs())  # type: ignore[attr-defined]
    return largest


@dataclass(frozen=True)
class PlanWork:
    """What a plan will cost: a bound on its work, and what sending it would carry.

    Attributes
    ----------
    rows
        Upper bound on the rows the plan's operators handle (see :func:`plan_work`).
    embedded_rows
        Rows of the in-memory frames the plan holds: ``LazyFrame.serialize()``
        copies them into the plan (a Parquet scan is sent as its path).
    """

    rows: float
    embedded_rows: float


def plan_work(
    frame: pl.LazyFrame, *, join_rows: float | Callable[[float], float] = math.inf
) -> PlanWork:
    """An upper bound on the work of ``frame``, in rows: the rows its sources hold plus
    the rows into and out of each join, group-by, sort and distinct.

    A join's output is bounded by the product of its inputs and by ``join_rows``
    (the row cap the engine checked every join against before it ran; a callable
    gets the rows of the plan's largest source), or by the sum of its inputs when
    one side is grouped by at most the join's keys (a key is then met once on
    that side).  Sources of unknown size (a non-Parquet file scan, a Python
    source) count as infinite, as does a plan that cannot be inspected.  Costs
    about a millisecond (Parquet footers are read once per file version).

    Examples
    --------
    >>> lf = pl.LazyFrame({"k": [1, 1, 2]})
    >>> plan_work(lf.filter(pl.col("k") > 1))
    PlanWork(rows=3.0, embedded_rows=3.0)
    >>> plan_work(lf.join(lf, on="k")).rows, plan_work(lf.join(lf, on="k"), join_rows=4).rows
    (21.0, 16.0)
    """
    try:
        visitor = frame._ldf.visit()
        top = visitor.get_node()
        sources = _largest_source(visitor)
        visitor.set_node(top)
    except Exception:  # noqa: BLE001 - an inspection this Polars cannot do: assume the worst
        return PlanWork(math.inf, math.inf)
    cap = join_rows(sources) if callable(join_rows) else join_rows
    rows: dict[int, float] = {}  # node -> bound on its output rows
    grouped: dict[int, int] = {}  # node -> its rows are unique on this many key columns
    work: dict[int, float] = {}  # node -> bound on the work of its subtree
    embedded: dict[int, float] = {}  # in-memory frame (node) -> its rows

    def visit(node: int) -> tuple[float, float]:
        if node in rows:
            return rows[node], work[node]
        visitor.set_node(node)
        ir = visitor.view_current_node()
        kind = type(ir).__name__
        inputs = list(visitor.get_inputs())
        outs = [visit(child) for child in inputs]
        below = sum(w for _, w in outs)
        sizes = [r for r, _ in outs]
        if kind in ("GroupBy", "Distinct"):
            grouped[node] = len(ir.keys) if kind == "GroupBy" else 1 << 30
        elif kind in _SAME_ROWS and inputs and inputs[0] in grouped:
            grouped[node] = grouped[inputs[0]]
        if kind in ("DataFrameScan", "Scan"):
            out = _source_rows(ir)
            cost = out
            if kind == "DataFrameScan":
                embedded[node] = out
        elif kind == "Join":
            left, right = sizes if len(sizes) == 2 else (math.inf, math.inf)
            product = left * right if left and right else 0.0
            keys = len(ir.left_on)
            if any(0 < grouped.get(side, 0) <= keys for side in inputs):
                # one side holds each key once (grouped by the join keys): a row of the
                # other side meets at most one of its rows
                out = min(product, left + right)
            else:
                out = min(product, max(cap, left, right))
            cost = left + right + out
        elif kind == "Slice":
            length = getattr(ir, "len", None)
            out = sizes[0] if sizes else math.inf
            out = min(out, float(length)) if isinstance(length, int) else out
            cost = 0.0
        elif kind == "Union":
            out = sum(sizes)
            cost = 0.0
        else:
            out = max(sizes) if sizes else math.inf
            cost = (sum(sizes) + out) if kind in _HEAVY else 0.0
        rows[node], work[node] = out, below + cost
        return out, below + cost

    try:
        bound = visit(top)[1]
    except Exception:  # noqa: BLE001 - a node this inspection does not know
        return PlanWork(math.inf, math.inf)
    return PlanWork(bound, sum(embedded.values()))


# ---------------------------------------------------------------------- the worker side


def _watch_parent(parent: int) -> None:
    """End this worker when the process that started it is gone."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _reply(out: BinaryIO, kind: bytes, payload: bytes) -> None:
    out.write(_HEADER.pack(kind, len(payload)))
    out.write(payload)
    out.flush()


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """Answer plans read from ``inp`` until it closes (the worker's main loop)."""
    while True:
        head = inp.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return
        _, size = _HEADER.unpack(head)
        plan = _read_exact(inp, size)
        try:
            frame = pl.LazyFrame.deserialize(io.BytesIO(plan))
            buffer = io.BytesIO()
            frame.collect().serialize(buffer)
            result = buffer.getvalue()
        except BaseException as exc:  # noqa: BLE001 - a Rust panic is a BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            info = {"type": type(exc).__name__, "message": str(exc) or text}
            _reply(out, b"E", json.dumps(info).encode("utf-8"))
            continue
        _reply(out, b"R", result)


def main() -> None:
    """Entry point of a worker process (``python -P polars_worker.py``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a worker ends
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()

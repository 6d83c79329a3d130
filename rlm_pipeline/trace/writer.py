"""Write trace records as JSON Lines, and read them back.

One :class:`TraceWriter` per top-level run; share it with sub-RLMs (it is
thread-safe).  Each :meth:`TraceWriter.write` appends one JSON line and flushes,
so a trace survives a crash up to its last step.  With ``path=None`` records
are kept in memory only (``writer.records``).

Examples
--------
>>> import tempfile, os
>>> from rlm_pipeline.trace.records import TraceRecord
>>> from rlm_pipeline.trace.writer import TraceWriter, read_trace
>>> path = os.path.join(tempfile.mkdtemp(), "run.jsonl")
>>> with TraceWriter(path) as writer:
...     writer.write(TraceRecord(run_id="r1", seq=0, depth=0, path="root", kind="run_start"))
>>> read_trace(path)[0]["kind"]
'run_start'
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from rlm_pipeline.errors import InputError
from rlm_pipeline.trace.records import TraceRecord

__all__ = ["TraceWriter", "dumps_record", "read_trace"]

logger = logging.getLogger(__name__)


def dumps_record(record: TraceRecord | dict[str, Any]) -> str:
    """One record as a compact JSON line (no trailing newline).

    Values JSON cannot hold (e.g. a ``date`` the model's tool produced) are
    written as their ``str()``.
    """
    data = record.to_dict() if isinstance(record, TraceRecord) else record
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)


class TraceWriter:
    """Append-only, thread-safe JSONL trace writer.

    Parameters
    ----------
    path
        File to write; its parent folder is created.  ``None`` keeps records in
        memory only.
    append
        Add to an existing file instead of replacing it.

    Examples
    --------
    >>> from rlm_pipeline.trace.records import TraceRecord
    >>> writer = TraceWriter(None)
    >>> writer.write(TraceRecord(run_id="r", seq=0, depth=0, path="root", kind="run_end"))
    >>> len(writer.records)
    1
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, append: bool = False) -> None:
        self.path: Path | None = None if path is None else Path(path)
        self._lock = threading.Lock()
        self._records: list[TraceRecord] = []
        self._file: IO[str] | None = None
        self._closed = False
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a" if append else "w", encoding="utf-8")
            except OSError as exc:
                msg = f"cannot write trace file {self.path}: {exc.strerror or exc}"
                raise InputError(msg) from exc
            logger.debug("writing trace to %s", self.path)

    @property
    def records(self) -> list[TraceRecord]:
        """A copy of every record written so far, in write order."""
        with self._lock:
            return list(self._records)

    def write(self, record: TraceRecord) -> None:
        """Keep ``record`` and append it to the file as one flushed JSON line."""
        line = dumps_record(record)
        with self._lock:
            self._records.append(record)
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()
            elif self.path is not None and self._closed:
                # A record after close() is a caller bug, but losing it would be worse.
                logger.warning("trace record seq=%s written after close(); appending to %s",
                               record.seq, self.path)
                with self.path.open("a", encoding="utf-8") as late:
                    late.write(line + "\n")

    def close(self) -> None:
        """Close the file (records stay readable in memory).  Safe to call twice."""
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_trace(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of a JSONL trace file, as dicts, in file order.

    Blank lines are ignored.  A missing file, a line that is not JSON, or a
    line that is not a JSON object raises :class:`~rlm_pipeline.errors.InputError`
    naming the file and line.

    Examples
    --------
    >>> read_trace("/no/such/trace.jsonl")
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.InputError: trace file not found: /no/such/trace.jsonl
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        msg = f"trace file not found: {file}"
        raise InputError(msg) from exc
    except IsADirectoryError as exc:
        msg = f"trace path is a folder, not a file: {file}"
        raise InputError(msg) from exc
    except UnicodeDecodeError as exc:
        msg = f"trace file is not UTF-8 text: {file}"
        raise InputError(msg) from exc
    except OSError as exc:
        msg = f"cannot read trace file {file}: {exc.strerror or exc}"
        raise InputError(msg) from exc
    records: list[dict[str, Any]] = []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 is data
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            msg = f"trace file {file} line {number} is not valid JSON: {exc.msg}"
            raise InputError(msg) from exc
        if not isinstance(value, dict):
            msg = f"trace file {file} line {number} is not a JSON object"
            raise InputError(msg)
        records.append(value)
    return records

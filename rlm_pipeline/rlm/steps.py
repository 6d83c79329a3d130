"""The step log of one run: numbered trace records, written and reported as they happen.

Records are :class:`rlm_pipeline.trace.records.TraceRecord` instances; the
writer appends them to the JSONL trace file (when one is asked for) and the
optional ``on_step`` callback receives each one as a plain dict (the CLI uses
it to print steps live).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from rlm_pipeline.trace.records import RecordKind, TraceRecord
from rlm_pipeline.trace.writer import TraceWriter

__all__ = ["StepCallback", "StepLog"]

logger = logging.getLogger(__name__)

StepCallback = Callable[[dict[str, Any]], None]


class StepLog:
    """Numbers, stores, writes and reports the records of one run.

    Examples
    --------
    >>> log = StepLog("run1", None, None)
    >>> rec = log.record(depth=0, path="root", kind="tool", tool="peek")
    >>> rec["seq"], rec["tool"]
    (0, 'peek')
    """

    def __init__(self, run_id: str, trace_path: str | None, on_step: StepCallback | None):
        self.run_id = run_id
        self._writer = TraceWriter(trace_path)
        self._on_step = on_step
        self._seq = 0
        self.dicts: list[dict[str, Any]] = []

    def record(
        self,
        *,
        depth: int,
        path: str,
        kind: RecordKind,
        tool: str | None = None,
        arguments: dict[str, Any] | None = None,
        result_summary: str | None = None,
        rows_in: int | None = None,
        rows_out: int | None = None,
        sub_calls: int = 0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        seconds: float = 0.0,
        error: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Add one record; returns it as a dict."""
        record = TraceRecord(
            run_id=self.run_id,
            seq=self._seq,
            depth=depth,
            path=path,
            kind=kind,
            tool=tool,
            arguments=arguments,
            result_summary=result_summary,
            rows_in=rows_in,
            rows_out=rows_out,
            sub_calls=sub_calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            seconds=round(seconds, 4),
            error=error,
            extra=extra or {},
        )
        self._seq += 1
        self._writer.write(record)
        as_dict = _as_dict(record)
        self.dicts.append(as_dict)
        if self._on_step is not None:
            try:
                self._on_step(as_dict)
            except Exception:  # a broken callback must not break the run
                logger.exception("on_step callback failed")
        return as_dict

    def close(self) -> None:
        """Flush and close the trace file, if any."""
        close = getattr(self._writer, "close", None)
        if callable(close):
            close()


def _as_dict(record: TraceRecord) -> dict[str, Any]:
    to_dict = getattr(record, "to_dict", None)
    if callable(to_dict):
        result: dict[str, Any] = to_dict()
        return result
    return asdict(record)

"""Traces of RLM runs: frozen records, a JSONL writer, a terminal tree and an HTML page.

Examples
--------
>>> from rlm_pipeline.trace import TraceRecord, TraceWriter
>>> writer = TraceWriter(None)
>>> writer.write(TraceRecord(run_id="r", seq=0, depth=0, path="root", kind="run_start"))
>>> writer.records[0].kind
'run_start'
"""

from __future__ import annotations

from rlm_pipeline.trace.records import KINDS, MAX_SUMMARY_CHARS, TraceRecord, summarize
from rlm_pipeline.trace.writer import TraceWriter, dumps_record, read_trace

__all__ = [
    "KINDS",
    "MAX_SUMMARY_CHARS",
    "TraceRecord",
    "TraceWriter",
    "dumps_record",
    "read_trace",
    "summarize",
]

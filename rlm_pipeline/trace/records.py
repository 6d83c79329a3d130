"""Frozen trace records: one per step of an RLM run.

A run writes, in ``seq`` order: one ``run_start`` record (``extra`` holds the
question, engine and views), then a ``model`` record per root-model turn, a
``tool`` record per tool call, ``error`` records for mistakes the model can
correct, an ``answer`` record, and one ``run_end`` record (``extra`` holds the
answer, value and usage).  A sub-RLM started by ``recurse`` writes records
with ``depth + 1`` and a ``path`` such as ``"root/p3"``.

Each record serialises to one JSON object that validates against
``schemas/trace.schema.json``.

Examples
--------
>>> from rlm_pipeline.trace.records import TraceRecord
>>> rec = TraceRecord(run_id="r1", seq=1, depth=0, path="root", kind="tool",
...                   tool="filter", arguments={"view": "context", "where": "user_id = 7"},
...                   result_summary="12 rows", rows_in=5000, rows_out=12)
>>> rec.to_dict()["rows_out"]
12
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal, get_args

from rlm_pipeline.errors import InputError

__all__ = [
    "KINDS",
    "MAX_ERROR_CHARS",
    "MAX_SUMMARY_CHARS",
    "RecordKind",
    "TraceRecord",
    "summarize",
]

RecordKind = Literal["run_start", "tool", "model", "answer", "error", "run_end"]

#: Every record kind, in the order they usually appear in a run.
KINDS: Final[tuple[str, ...]] = get_args(RecordKind)
#: Longest ``result_summary`` kept in a record.
MAX_SUMMARY_CHARS: Final = 500
#: Longest ``error`` text kept in a record.
MAX_ERROR_CHARS: Final = 1000

_PATH_RE: Final = re.compile(r"^root(/[^/]+)*$")


def summarize(text: str | None, limit: int = MAX_SUMMARY_CHARS) -> str | None:
    """``text`` cut to at most ``limit`` characters, marking what was cut.

    Examples
    --------
    >>> summarize("x" * 30, limit=20)
    'xxxx… [+26 chars]'
    >>> summarize("short")
    'short'
    """
    if text is None or len(text) <= limit:
        return text
    marker_room = 16
    keep = max(0, limit - marker_room)
    return f"{text[:keep]}… [+{len(text) - keep} chars]"


@dataclass(frozen=True)
class TraceRecord:
    """One step of an RLM run, as written to the JSONL trace.

    Parameters
    ----------
    run_id
        Identifier shared by every record of one top-level run.
    seq
        Position in the run (0-based, increasing in the order records were written).
    depth
        Recursion depth: 0 for the root, 1 for a sub-RLM started by ``recurse``, ...
    path
        ``"root"`` or the partition path of a sub-RLM, e.g. ``"root/p3"``.
    kind
        ``"run_start"``, ``"tool"``, ``"model"``, ``"answer"``, ``"error"`` or ``"run_end"``.
    tool
        Tool name for ``tool`` / ``error`` / ``answer`` records.
    arguments
        Tool arguments as parsed from the model's call.
    result_summary
        Bounded text of what the tool returned (cut to :data:`MAX_SUMMARY_CHARS`).
    rows_in, rows_out
        Rows of the input view and of the view the tool created, when known.
    sub_calls
        Model sub-calls this step caused (classify / llm_map / recurse fan-out).
    input_tokens, output_tokens
        Tokens spent by this step (its own model call plus its sub-calls).
    seconds
        Wall-clock seconds of the step.
    error
        What went wrong, if anything (cut to :data:`MAX_ERROR_CHARS`).
    extra
        Free-form details: ``run_start`` holds ``question``, ``engine``, ``views``;
        ``run_end`` holds ``answer``, ``value`` and ``usage``.

    Examples
    --------
    >>> TraceRecord(run_id="r1", seq=0, depth=0, path="root", kind="run_start",
    ...             extra={"question": "How many?"}).extra["question"]
    'How many?'
    """

    run_id: str
    seq: int
    depth: int
    path: str
    kind: RecordKind
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    result_summary: str | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    sub_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            msg = f"trace record kind must be one of {', '.join(KINDS)}; got {self.kind!r}"
            raise InputError(msg)
        if not _PATH_RE.match(self.path):
            msg = f"trace record path must look like 'root' or 'root/p3'; got {self.path!r}"
            raise InputError(msg)
        for name in ("seq", "depth", "sub_calls", "input_tokens", "output_tokens"):
            if getattr(self, name) < 0:
                msg = f"trace record {name} must be >= 0; got {getattr(self, name)}"
                raise InputError(msg)
        if self.seconds < 0:
            msg = f"trace record seconds must be >= 0; got {self.seconds}"
            raise InputError(msg)
        object.__setattr__(self, "result_summary", summarize(self.result_summary))
        object.__setattr__(self, "error", summarize(self.error, MAX_ERROR_CHARS))

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain, JSON-ready dict (one line of the trace file)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceRecord:
        """Rebuild a record from :meth:`to_dict` output (unknown keys are an error).

        Examples
        --------
        >>> rec = TraceRecord(run_id="r", seq=0, depth=0, path="root", kind="run_end")
        >>> TraceRecord.from_dict(rec.to_dict()) == rec
        True
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"trace record has unknown fields: {', '.join(unknown)}"
            raise InputError(msg)
        try:
            return cls(**data)
        except TypeError as exc:
            msg = f"trace record is incomplete: {exc}"
            raise InputError(msg) from exc

"""What one run of a semantic operator did: :class:`OpStats`.

Examples
--------
>>> stats = OpStats.from_results([("a", None), (None, "empty_input"), ("a", None)])
>>> stats.rows, stats.answered, stats.errors
(3, 2, {'empty_input': 1})
>>> failure_summary("classify", OpStats(rows=5000, answered=4988, errors={"api_error": 10, "parse_error": 2}), "label")
'classify: 12 of 5,000 rows have no label: api_error 10, parse_error 2 — re-run to ask them again (set LLM(cache_path=...) so a re-run re-asks only those rows)'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rlm_pipeline.llm.usage import Usage

__all__ = ["ERROR_KINDS", "OpStats", "error_kind", "failure_summary"]

#: Every reason in an error column starts with one of these.
ERROR_KINDS = (
    "empty_input",
    "input_too_long",
    "parse_error",
    "invalid_label",
    "missing_in_reply",
    "api_error",
    "budget_exceeded",
)


def error_kind(reason: str) -> str:
    """The kind a reason starts with (``"api_error: 500 after 7 tries"`` -> ``"api_error"``)."""
    return reason.split(":", 1)[0].strip()


@dataclass(frozen=True)
class OpStats:
    """Counts of one classify / llm_map run.

    Attributes
    ----------
    rows
        Input rows (every one is in the output).
    answered
        Rows that got a value.
    errors
        Rows without a value, by error kind (see :data:`ERROR_KINDS`).
    values
        Rows per value (label counts; for llm_map only when values are few).
    usage
        What the run spent (calls, tokens, cached calls, cost).  ``cached_calls``
        counts calls: response-cache hits plus the calls that stored row
        answers saved (one per ``batch_size`` stored texts of a chunk).
    cached_rows
        Rows answered from stored row answers (an earlier run's checked
        answers, no call); with Spark's ``global_dedup`` it counts distinct texts.
    """

    rows: int = 0
    answered: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    values: Mapping[str, int] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    cached_rows: int = 0

    @property
    def failed(self) -> int:
        """Rows without a value."""
        return self.rows - self.answered

    @classmethod
    def from_results(cls, results: Iterable[tuple[Any, str | None]]) -> OpStats:
        """Counts from ``(value, error)`` pairs."""
        errors: Counter[str] = Counter()
        values: Counter[str] = Counter()
        rows = 0
        for value, error in results:
            rows += 1
            if error is not None:
                errors[error_kind(error)] += 1
            elif len(values) < 1000 or str(value) in values:
                values[str(value)] += 1
        answered = rows - sum(errors.values())
        return cls(rows=rows, answered=answered, errors=dict(errors), values=dict(values))

    def with_usage(self, usage: Usage) -> OpStats:
        """A copy carrying ``usage``."""
        return replace(self, usage=usage)

    def with_cached_rows(self, rows: int) -> OpStats:
        """A copy with ``cached_rows`` set."""
        return replace(self, cached_rows=rows)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON output."""
        return {
            "rows": self.rows,
            "answered": self.answered,
            "failed": self.failed,
            "cached_rows": self.cached_rows,
            "errors": dict(self.errors),
            "values": dict(self.values),
            "usage": self.usage.to_dict(),
        }


#: Reasons that asking again can clear (failures are never cached, so a re-run re-asks them).
_ASK_AGAIN = ("parse_error", "invalid_label", "missing_in_reply", "api_error", "budget_exceeded")


def failure_summary(op: str, stats: OpStats, noun: str, *, cached: bool = False) -> str | None:
    """One line on the rows that failed, with counts by reason and what to do; None if none did.

    Blank inputs (``empty_input``) are not failures and are left out.
    ``noun`` names the missing value (the output column); ``cached`` says
    whether the run had a cache file (so a re-run re-asks only the failed rows).

    Examples
    --------
    >>> failure_summary("llm_map", OpStats(rows=3, answered=2, errors={"empty_input": 1}), "value")
    >>> failure_summary("classify", OpStats(rows=9, answered=8, errors={"input_too_long": 1}), "label")
    'classify: 1 of 9 rows have no label: input_too_long 1 — pass truncate=True or a larger max_row_tokens'
    """
    failed = {kind: n for kind, n in sorted(stats.errors.items()) if kind != "empty_input" and n}
    if not failed:
        return None
    counts = ", ".join(f"{kind} {n:,}" for kind, n in failed.items())
    hints = []
    if any(kind in _ASK_AGAIN for kind in failed):
        if cached:
            hints.append("re-run to re-ask only those rows (failures are not cached)")
        else:
            hints.append(
                "re-run to ask them again (set LLM(cache_path=...) so a re-run "
                "re-asks only those rows)"
            )
    if "budget_exceeded" in failed:
        hints.append("a larger Budget lets the re-run finish them")
    if "input_too_long" in failed:
        hints.append("pass truncate=True or a larger max_row_tokens")
    line = f"{op}: {sum(failed.values()):,} of {stats.rows:,} rows have no {noun}: {counts}"
    return line + (" — " + "; ".join(hints) if hints else "")

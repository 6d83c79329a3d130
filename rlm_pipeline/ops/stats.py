"""What one run of a semantic operator did: :class:`OpStats`, counted by :class:`StatsCounter`.

Both engines count rows with the one :class:`StatsCounter` as they are
answered (on Spark in each task; the tasks' counts are then merged with
:func:`merge_stats`).  Values are counted as text in one form on both engines,
the way a SQL ``CAST(value AS STRING)`` writes them on Spark
(:func:`value_text`: ``true``, ``1.0E10``), so the same answers give the same
counts whichever engine ran.

Examples
--------
>>> from rlm_pipeline.ops.spec import MapSpec
>>> counter = StatsCounter(MapSpec("q", "is it urgent?", output_type="boolean"))
>>> counter.add([(True, None), (None, "empty_input"), (True, None)])
>>> stats = counter.stats()
>>> stats.rows, stats.answered, stats.errors, stats.values
(3, 2, {'empty_input': 1}, {'true': 2})
>>> failure_summary("classify", OpStats(rows=5000, answered=4988, errors={"api_error": 10, "parse_error": 2}), "label")
'classify: 12 of 5,000 rows have no label: api_error 10, parse_error 2 — re-run to ask them again (set LLM(cache_path=...) so a re-run re-asks only those rows)'
"""

from __future__ import annotations

import decimal
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rlm_pipeline.llm.usage import Usage
from rlm_pipeline.ops.spec_base import OpSpec

__all__ = [
    "EMPTY_INPUT",
    "ERROR_KINDS",
    "MAX_VALUES",
    "OpStats",
    "StatsCounter",
    "error_kind",
    "failure_summary",
    "merge_stats",
    "value_text",
]

#: llm_map stats count at most this many distinct values (classify counts every label).
MAX_VALUES = 1000

#: The reason of a row whose text is null or blank (never sent; not a failure).
EMPTY_INPUT = "empty_input"
#: Every reason in an error column starts with one of these.
ERROR_KINDS = (
    EMPTY_INPUT,
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
        answers, no call).
    cascade
        With a cascade (``classify(..., cascade=...)``): its
        :class:`~rlm_pipeline.ops.cascade_report.CascadeReport` (threshold,
        sample agreement and bound, escalated share, usage and cost per model,
        cost with vs without the cascade); else None.
    """

    rows: int = 0
    answered: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    values: Mapping[str, int] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    cached_rows: int = 0
    #: A ``CascadeReport`` (typed ``Any``: this module is a leaf and does not import it).
    cascade: Any = None

    @property
    def failed(self) -> int:
        """Rows without a value."""
        return self.rows - self.answered

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
            **({"cascade": self.cascade.to_dict()} if self.cascade is not None else {}),
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
    failed = {kind: n for kind, n in sorted(stats.errors.items()) if kind != EMPTY_INPUT and n}
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


class StatsCounter:
    """Counts rows as they are answered: rows, answered, errors by kind, values.

    The one counter of both engines (Polars in the driver, Spark in each
    task).  Values are counted as :func:`value_text` writes them; an operator
    whose ``values_capped`` is true (llm_map) keeps at most :data:`MAX_VALUES`
    distinct values.

    Parameters
    ----------
    spec
        The operator (its output columns' kinds and whether values are capped).
    """

    def __init__(self, spec: OpSpec) -> None:
        self.spec = spec
        fields = spec.output_fields()
        self.names = [name for name, _ in fields]
        self.kinds = [kind for _, kind in fields]
        self.capped = spec.values_capped
        self.rows = 0
        self.answered = 0
        self.errors: Counter[str] = Counter()
        self.values: Counter[str] = Counter()

    def add(
        self, results: Iterable[tuple[Any, str | None]], weights: Sequence[int] | None = None
    ) -> None:
        """Count ``(value, error)`` results, each ``weights[i]`` times when given."""
        if weights is None:
            if not isinstance(results, Sequence):
                results = list(results)
            grouped = _grouped(results)
            if grouped is not None:  # few distinct results (labels): count each once
                results, weights = list(grouped), list(grouped.values())
        for i, (value, error) in enumerate(results):
            n = 1 if weights is None else weights[i]
            self.rows += n
            if error is not None:
                self.errors[error_kind(error)] += n
                continue
            self.answered += n
            self._count(self.key(value), n)

    def key(self, value: Any) -> str:
        """How an answer is counted: its :func:`value_text`.

        An operator writing several columns is counted by a JSON object of
        the columns' texts.
        """
        if len(self.kinds) == 1:
            return value_text(value, self.kinds[0])
        parts = self.spec.output_values(value)
        texts = [value_text(v, kind) for v, kind in zip(parts, self.kinds, strict=True)]
        return json.dumps(dict(zip(self.names, texts, strict=True)), ensure_ascii=False)

    def _count(self, key: str, n: int) -> None:
        if not self.capped or key in self.values or len(self.values) < MAX_VALUES:
            self.values[key] += n

    def merge(self, part: OpStats) -> None:
        """Add the counts of another counter's :class:`OpStats`."""
        self.rows += part.rows
        self.answered += part.answered
        self.errors.update(part.errors)
        for key, n in part.values.items():
            self._count(key, n)

    def stats(self) -> OpStats:
        """The counts so far (no usage, no cached rows)."""
        return OpStats(
            rows=self.rows,
            answered=self.answered,
            errors=dict(self.errors),
            values=dict(self.values),
        )


def _grouped(results: Sequence[tuple[Any, str | None]]) -> Counter[tuple[Any, str | None]] | None:
    """``results`` counted by equal result, when grouping keeps every value apart; else None.

    Only text values (and None) are grouped: ``1``, ``1.0`` and ``True`` are
    equal in Python but counted apart, so a run holding other values is
    counted row by row.
    """
    try:
        grouped = Counter(results)
    except TypeError:  # a list or dict value
        return None
    if all(type(value) is str or value is None for value, _ in grouped):
        return grouped
    return None


def merge_stats(parts: Iterable[OpStats], spec: OpSpec) -> OpStats:
    """One :class:`OpStats` from parts counted apart (slices, Spark partitions), in order.

    Examples
    --------
    >>> from rlm_pipeline.ops.spec import ClassifySpec
    >>> a, b = OpStats(rows=2, answered=2, values={"x": 2}), OpStats(rows=1, errors={"api_error": 1})
    >>> merge_stats([a, b], ClassifySpec("q", ("x", "y"))).to_dict()["failed"]
    1
    """
    counter = StatsCounter(spec)
    for part in parts:
        counter.merge(part)
    return counter.stats()


def value_text(value: Any, kind: str) -> str:
    """``value`` as Spark's ``CAST(... AS STRING)`` writes it (Java's number format).

    Doubles use the shortest repr in Java's layout; Java before 19 prints a few
    values (subnormals such as ``4.9E-324``) with one digit more or less.

    Examples
    --------
    >>> value_text(True, "boolean"), value_text(1e10, "number"), value_text(0.5, "number")
    ('true', '1.0E10', '0.5')
    >>> value_text(float("nan"), "number"), value_text(-0.0001, "number")
    ('NaN', '-1.0E-4')
    """
    if value is None:
        return "None"
    if kind == "boolean" and isinstance(value, bool):
        return "true" if value else "false"
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return _java_double(float(value))
    return str(value)


def _java_double(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0.0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    if 1e-3 <= abs(x) < 1e7:
        text = repr(x)
        return text if "." in text else text + ".0"
    sign, digits, exponent = decimal.Decimal(repr(x)).as_tuple()
    shown = "".join(map(str, digits)).rstrip("0") or "0"
    power = len(digits) - 1 + int(exponent)
    mantissa = shown[0] + "." + (shown[1:] or "0")
    return ("-" if sign else "") + f"{mantissa}E{power}"

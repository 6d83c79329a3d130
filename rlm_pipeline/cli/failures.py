"""Rows without an answer, after a run: the per-reason summary and whether to accept the output.

A row keeps a null and a reason when it has no trustworthy answer.  Some
reasons are **transient** — a re-run can fix them (``api_error``: the endpoint
failed after every retry; ``budget_exceeded``: the row was never asked) — and
the others are final for these settings (``empty_input``, ``input_too_long``,
``parse_error``, ``invalid_label``, ``missing_in_reply``).  The CLI refuses an
output with transient failures (exit 1, nothing written) unless the user
accepts it with ``--allow-errors`` or ``--max-error-rate R``; the jobs in
``jobs/`` never publish one.  An output in which every non-blank row failed,
whatever the reasons (:attr:`FailureReport.all_failed`), is refused too unless
``--allow-errors``: it holds no answer at all.

Examples
--------
>>> report = FailureReport(rows=100, errors={"api_error": 3, "empty_input": 2})
>>> report.transient, report.accepted(None), report.accepted(0.05), report.all_failed
(3, False, True, False)
>>> FailureReport(rows=3, errors={"parse_error": 2, "empty_input": 1}).all_failed
True
>>> report.lines()
['  api_error: 3 (transient: a re-run asks these rows again)', '  empty_input: 2']
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rlm_pipeline.ops.stats import EMPTY_INPUT

__all__ = ["TRANSIENT", "FailureReport", "rerun_command"]

#: Reasons a re-run can fix; an output holding any is refused unless accepted.
TRANSIENT = ("api_error", "budget_exceeded")

_NOTES = {
    "api_error": "transient: a re-run asks these rows again",
    "budget_exceeded": "transient: a re-run asks these rows again",
    "input_too_long": "pass --truncate or a larger --max-row-tokens",
}


@dataclass(frozen=True)
class FailureReport:
    """Failed rows of one run, by reason kind.

    Attributes
    ----------
    rows
        Rows in the output.
    errors
        Rows without a value, by reason kind (``OpStats.errors``).
    """

    rows: int
    errors: Mapping[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """Rows without a value."""
        return sum(self.errors.values())

    @property
    def transient(self) -> int:
        """Rows whose reason a re-run can fix."""
        return sum(count for kind, count in self.errors.items() if kind in TRANSIENT)

    @property
    def all_failed(self) -> bool:
        """True when there are non-blank rows and none of them got a value."""
        blank = self.errors.get(EMPTY_INPUT, 0)
        return self.rows > blank and self.failed - blank >= self.rows - blank

    def accepted(self, max_error_rate: float | None) -> bool:
        """True when no row failed for a transient reason, or at most ``max_error_rate`` of rows."""
        if self.transient == 0:
            return True
        if max_error_rate is None:
            return False
        return self.transient <= max_error_rate * self.rows

    def lines(self) -> list[str]:
        """One line per reason kind, most rows first; transient kinds say so."""
        out = []
        for kind, count in sorted(self.errors.items(), key=lambda kv: (-kv[1], kv[0])):
            note = f" ({_NOTES[kind]})" if kind in _NOTES else ""
            out.append(f"  {kind}: {count:,}{note}")
        return out


def rerun_command(argv: Sequence[str], prog: str = "rlm-pipeline") -> str:
    """The command line that ran, quoted for a POSIX shell.

    Examples
    --------
    >>> rerun_command(["classify", "in.parquet", "--labels", 'a,"b, c"'])
    'rlm-pipeline classify in.parquet --labels \\'a,"b, c"\\''
    """
    return shlex.join([prog, *argv])

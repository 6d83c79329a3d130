"""What a cascade did: :class:`CascadeReport` (in ``OpStats.cascade``, logs and JSON output).

A leaf module (only :mod:`rlm_pipeline.llm.usage` and the calibration
dataclass), so :mod:`rlm_pipeline.ops.stats` can name it.

Examples
--------
>>> from rlm_pipeline.llm.usage import Usage
>>> from rlm_pipeline.ops.cascade_stats import Calibration
>>> report = CascadeReport(
...     proxy_model="small", oracle_model="big", confidence="logprobs", target=0.95,
...     delta=0.05, sample=200, calibration=Calibration(0.7, 200, 180, 130, 129, 0.96),
...     rows=1000, unsent=0, proxy_rows=700, oracle_rows=300, escalated_rows=280,
...     proxy_usage=Usage(calls=1000, cost_usd=0.01), oracle_usage=Usage(calls=300, cost_usd=0.3))
>>> report.escalated_share, round(report.cost_usd, 2), round(report.cost_all_oracle_usd, 2)
(0.3, 0.31, 1.0)
>>> report.summary()
'cascade small -> big: 300 of 1,000 rows (30.0%) from the oracle; threshold 0.7 (logprobs), sample agreement 129/130 above it, lower bound 0.960 >= target 0.95 (delta 0.05); cost $0.3100 vs $1.0000 all through the oracle'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlm_pipeline.llm.usage import Usage
from rlm_pipeline.ops.cascade_stats import Calibration

__all__ = ["CascadeReport"]


@dataclass(frozen=True)
class CascadeReport:
    """The cascade's part of an operator's stats.

    Attributes
    ----------
    proxy_model, oracle_model
        The two models' names.
    confidence
        Where the proxy's confidences came from: ``"logprobs"`` or ``"verbal"``.
    target, delta, sample
        The :class:`~rlm_pipeline.ops.cascade.Cascade` settings used.
    calibration
        The threshold and the sample's agreement (:class:`~rlm_pipeline.ops.cascade_stats.Calibration`).
    rows
        Input rows.
    unsent
        Rows sent to neither model (blank, or longer than ``max_row_tokens``).
    proxy_rows
        Rows whose output (value or failure) is the proxy's.
    oracle_rows
        Rows whose output is the oracle's: the calibration sample's rows and
        the escalated ones.
    escalated_rows
        Rows sent to the oracle after calibration (below the threshold, no
        confidence, or a failed proxy answer).
    proxy_usage, oracle_usage
        Calls, tokens and cost of each model.
    """

    proxy_model: str
    oracle_model: str
    confidence: str
    target: float
    delta: float
    sample: int
    calibration: Calibration
    rows: int = 0
    unsent: int = 0
    proxy_rows: int = 0
    oracle_rows: int = 0
    escalated_rows: int = 0
    proxy_usage: Usage = field(default_factory=Usage)
    oracle_usage: Usage = field(default_factory=Usage)

    @property
    def threshold(self) -> float | None:
        """The confidence threshold, or None when every row went to the oracle."""
        return self.calibration.threshold

    @property
    def reached(self) -> bool:
        """Whether a threshold reached the target (else everything went to the oracle)."""
        return self.calibration.threshold is not None

    @property
    def escalated_share(self) -> float:
        """Share of the rows sent to a model whose output is the oracle's."""
        sent = self.proxy_rows + self.oracle_rows
        return self.oracle_rows / sent if sent else 0.0

    @property
    def cost_usd(self) -> float:
        """What both models cost."""
        return self.proxy_usage.cost_usd + self.oracle_usage.cost_usd

    @property
    def cost_all_oracle_usd(self) -> float | None:
        """Estimated cost of sending every row to the oracle alone.

        The oracle's cost per row it answered in this run, times the rows sent
        to any model.  None when the oracle answered no row.
        """
        if not self.oracle_rows or _unpriced(self.oracle_usage):
            return None
        return self.oracle_usage.cost_usd / self.oracle_rows * (self.proxy_rows + self.oracle_rows)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        sent = self.proxy_rows + self.oracle_rows
        head = (
            f"cascade {self.proxy_model} -> {self.oracle_model}: {self.oracle_rows:,} of "
            f"{sent:,} rows ({self.escalated_share:.1%}) from the oracle; "
        )
        cal = self.calibration
        if self.reached:
            middle = (
                f"threshold {cal.threshold:.3g} ({self.confidence}), sample agreement "
                f"{cal.kept_agreeing}/{cal.kept} above it, lower bound {cal.lower_bound:.3f} "
                f">= target {self.target:g} (delta {self.delta:g})"
            )
        else:
            middle = (
                f"no confidence threshold reached target {self.target:g} (delta {self.delta:g}; "
                f"sample agreement {cal.agreeing}/{cal.rows}, best lower bound "
                f"{cal.lower_bound:.3f}): every row went to the oracle"
            )
        without = self.cost_all_oracle_usd
        if _unpriced(self.proxy_usage) or _unpriced(self.oracle_usage):
            tail = "; cost not known (a model has no price)"
        elif without is not None:
            tail = f"; cost ${self.cost_usd:.4f} vs ${without:.4f} all through the oracle"
        else:
            tail = ""
        return head + middle + tail

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON output."""
        return {
            "proxy_model": self.proxy_model,
            "oracle_model": self.oracle_model,
            "confidence": self.confidence,
            "target": self.target,
            "delta": self.delta,
            "sample": self.sample,
            "reached": self.reached,
            "threshold": self.threshold,
            "calibration": self.calibration.to_dict(),
            "rows": self.rows,
            "unsent": self.unsent,
            "proxy_rows": self.proxy_rows,
            "oracle_rows": self.oracle_rows,
            "escalated_rows": self.escalated_rows,
            "escalated_share": self.escalated_share,
            "proxy_usage": self.proxy_usage.to_dict(),
            "oracle_usage": self.oracle_usage.to_dict(),
            "cost_usd": self.cost_usd,
            "cost_all_oracle_usd": self.cost_all_oracle_usd,
        }


def _unpriced(usage: Usage) -> bool:
    """True when ``usage`` holds model calls (``calls`` counts no cache hits) that cost nothing."""
    return usage.calls > 0 and usage.cost_usd == 0.0

"""The statistics of a cascade: Clopper–Pearson bounds and the choice of the confidence threshold.

Pure Python (``math`` only), no SciPy at run time.

Agreement bound
---------------
On ``n`` calibration rows the proxy agreed with the oracle on ``k``.  The
one-sided Clopper–Pearson lower bound at level ``1 − delta`` is the
``delta`` quantile of ``Beta(k, n − k + 1)`` (0 when ``k = 0``): the true
agreement is at least that with probability ``≥ 1 − delta``.  Deciding whether
the bound reaches a target ``p`` needs no quantile: the bound is ``≥ p``
exactly when ``P(Binomial(n, p) ≥ k) ≤ delta``, and that tail is the
regularised incomplete beta function ``I_p(k, n − k + 1)`` (:func:`betainc`,
a continued fraction).

Choosing the threshold (fixed-sequence testing)
-----------------------------------------------
Candidates are the distinct confidences of the calibration rows, from the
highest down.  A candidate ``t`` keeps the rows with confidence ``≥ t``.
Fewer than :func:`min_rows` kept rows can never reach the target (even with
every row agreeing), so the sequence starts at the first candidate with
enough rows.  Walking down, each candidate is tested ("agreement of the kept
rows ≥ target" at level ``delta``); the walk stops at the first failure, and
the threshold is the last candidate that passed.  The order depends only on
the confidences, never on the agreements, so testing in a fixed sequence
keeps the overall error at ``delta`` without a multiple-testing correction.
No candidate passing means no threshold: the cascade sends every row to the
oracle.

Examples
--------
>>> round(clopper_pearson_lower(95, 100, 0.05), 4)
0.8977
>>> min_rows(0.95, 0.05)
59
>>> pairs = [(0.9, True)] * 150 + [(0.3, False)] * 30 + [(0.2, True)] * 20
>>> found = calibrate(pairs, target=0.95, delta=0.05)
>>> found.threshold, found.kept, found.kept_agreeing, round(found.lower_bound, 3)
(0.9, 150, 150, 0.98)
>>> calibrate([(0.5, True)] * 170 + [(0.5, False)] * 30, 0.95, 0.05).threshold is None
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Calibration",
    "betainc",
    "calibrate",
    "clopper_pearson_lower",
    "min_rows",
    "reaches",
]

_EPS = 3e-16
_TINY = 1e-300


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)`` (``a, b > 0``, ``0 ≤ x ≤ 1``).

    Examples
    --------
    >>> round(betainc(2, 3, 0.4), 6)  # P(Binomial(4, 0.4) >= 2)
    0.5248
    >>> betainc(1, 1, 0.25)
    0.25
    """
    if not 0.0 <= x <= 1.0:
        msg = f"x must be in [0, 1], got {x}"
        raise ValueError(msg)
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return min(1.0, front * _betacf(a, b, x) / a)
    return max(0.0, 1.0 - front * _betacf(b, a, 1.0 - x) / b)


def _tail(k: int, n: int, p: float) -> float:
    """``P(Binomial(n, p) >= k)``."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return betainc(k, n - k + 1, p)


def reaches(k: int, n: int, target: float, delta: float) -> bool:
    """Whether the Clopper–Pearson lower bound of ``k`` of ``n`` at ``1 − delta`` is ``≥ target``.

    Examples
    --------
    >>> reaches(59, 59, 0.95, 0.05), reaches(58, 58, 0.95, 0.05)
    (True, False)
    """
    return n > 0 and _tail(k, n, target) <= delta


def clopper_pearson_lower(k: int, n: int, delta: float) -> float:
    """One-sided lower bound at level ``1 − delta`` on a proportion seen as ``k`` of ``n``.

    The ``delta`` quantile of ``Beta(k, n − k + 1)``, found by bisection
    (60 halvings: exact to ~1e-18); 0 when ``k`` is 0, and 0 for ``n = 0``.

    Examples
    --------
    >>> round(clopper_pearson_lower(10, 10, 0.05), 4)  # 0.05 ** (1 / 10)
    0.7411
    >>> clopper_pearson_lower(0, 10, 0.05)
    0.0
    """
    if not 0 <= k <= n:
        msg = f"need 0 <= k <= n, got k={k}, n={n}"
        raise ValueError(msg)
    if k == 0:
        return 0.0
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        if _tail(k, n, mid) <= delta:  # the tail grows with p: the bound is above mid
            low = mid
        else:
            high = mid
    return low


def min_rows(target: float, delta: float) -> int:
    """The fewest kept rows whose bound can reach ``target`` (all agreeing): ``⌈ln δ / ln target⌉``."""
    return max(1, math.ceil(math.log(delta) / math.log(target) - 1e-12))


@dataclass(frozen=True)
class Calibration:
    """The outcome of :func:`calibrate`.

    Attributes
    ----------
    threshold
        The lowest confidence that passed (rows at or above it keep the proxy's
        answer), or None when no candidate reached the target.
    rows, agreeing
        Calibration rows, and those where proxy and oracle agreed.
    kept, kept_agreeing
        At the threshold (or at the first candidate tested when none passed):
        the rows at or above it, and those agreeing.
    lower_bound
        Clopper–Pearson lower bound of the kept rows' agreement.
    """

    threshold: float | None
    rows: int
    agreeing: int
    kept: int
    kept_agreeing: int
    lower_bound: float

    @property
    def agreement(self) -> float | None:
        """Agreement of all calibration rows (None without rows)."""
        return self.agreeing / self.rows if self.rows else None

    @property
    def kept_agreement(self) -> float | None:
        """Agreement of the kept rows (None without any)."""
        return self.kept_agreeing / self.kept if self.kept else None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON output."""
        return {
            "threshold": self.threshold,
            "rows": self.rows,
            "agreeing": self.agreeing,
            "agreement": self.agreement,
            "kept": self.kept,
            "kept_agreeing": self.kept_agreeing,
            "kept_agreement": self.kept_agreement,
            "lower_bound": self.lower_bound,
        }


def calibrate(pairs: Iterable[tuple[float, bool]], target: float, delta: float) -> Calibration:
    """Choose the threshold (see the module docstring) from ``(confidence, agreed)`` pairs."""
    rows = sorted(pairs, key=lambda pair: -pair[0])
    agreeing = sum(1 for _, agreed in rows if agreed)
    need = min_rows(target, delta)
    best: tuple[float, int, int] | None = None
    tested: tuple[int, int] | None = None
    kept = kept_agreeing = 0
    i = 0
    while i < len(rows):
        conf = rows[i][0]
        while i < len(rows) and rows[i][0] == conf:  # ties are kept together
            kept += 1
            kept_agreeing += rows[i][1]
            i += 1
        if kept < need:
            continue
        if tested is None:
            tested = (kept, kept_agreeing)
        if not reaches(kept_agreeing, kept, target, delta):
            break
        best = (conf, kept, kept_agreeing)
    if best is None:
        n, k = tested if tested is not None else (kept, kept_agreeing)
        return Calibration(None, len(rows), agreeing, n, k, clopper_pearson_lower(k, n, delta))
    threshold, n, k = best
    return Calibration(threshold, len(rows), agreeing, n, k, clopper_pearson_lower(k, n, delta))

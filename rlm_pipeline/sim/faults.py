"""Seeded fault injection: which request fails how.

Every request takes the same number of draws from one ``random.Random(seed)``,
so a given seed yields the same fault sequence in arrival order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from rlm_pipeline.sim.config import SimConfig

__all__ = ["FaultDraw", "FaultInjector", "malform", "scramble_ids"]


@dataclass(frozen=True)
class FaultDraw:
    """The faults drawn for one request.

    ``http`` is ``"429"``, ``"500"``, ``"timeout"`` or ``None``; ``malformed`` and
    ``wrong_ids`` apply to structured replies only; ``variant`` picks how ids go
    wrong (0 drop, 1 duplicate, 2 unknown id) and ``pick`` which row.
    """

    http: str | None = None
    malformed: bool = False
    wrong_ids: bool = False
    retry_after_s: float = 0.1
    variant: int = 0
    pick: float = 0.0


class FaultInjector:
    """Draws :class:`FaultDraw` values from a seeded generator.

    Examples
    --------
    >>> injector = FaultInjector(seed=1)
    >>> draws = [injector.draw(SimConfig(fault_500=0.5)).http for _ in range(1000)]
    >>> 400 < draws.count("500") < 600
    True
    """

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        """Restart the fault sequence from ``seed``."""
        self._rng = random.Random(seed)

    def draw(self, cfg: SimConfig) -> FaultDraw:
        """The faults of the next request under ``cfg``."""
        rng = self._rng
        u_http, u_malformed, u_ids, u_after, u_variant, u_pick = (rng.random() for _ in range(6))
        http: str | None = None
        if u_http < cfg.fault_429:
            http = "429"
        elif u_http < cfg.fault_429 + cfg.fault_500:
            http = "500"
        elif u_http < cfg.fault_429 + cfg.fault_500 + cfg.fault_timeout:
            http = "timeout"
        low, high = cfg.retry_after_s
        return FaultDraw(
            http=http,
            malformed=u_malformed < cfg.fault_malformed,
            wrong_ids=u_ids < cfg.fault_wrong_ids,
            retry_after_s=low + (high - low) * u_after,
            variant=int(u_variant * 3),
            pick=u_pick,
        )


def malform(text: str) -> str:
    """``text`` cut in the middle: a proper prefix of a JSON object never parses.

    Examples
    --------
    >>> malform('{"label": "billing"}')
    '{"label": '
    """
    return text[: max(1, len(text) // 2)]


def scramble_ids(results: list[dict[str, Any]], draw: FaultDraw) -> list[dict[str, Any]]:
    """A batch reply with one id dropped, duplicated, or replaced by an unknown one.

    Examples
    --------
    >>> rows = [{"id": 0, "label": "a"}, {"id": 1, "label": "b"}]
    >>> [r["id"] for r in scramble_ids(rows, FaultDraw(variant=1, pick=0.9))]
    [0, 1, 1]
    """
    if not results:
        return [{"id": 10**6}]
    index = min(int(draw.pick * len(results)), len(results) - 1)
    out = list(results)
    if draw.variant == 0:
        del out[index]
    elif draw.variant == 1:
        out.insert(index + 1, dict(out[index]))
    else:
        ids = [r["id"] for r in results if isinstance(r.get("id"), int)]
        unknown = (max(ids) if ids else 0) + 1000
        out.append({**out[index], "id": unknown})
    return out

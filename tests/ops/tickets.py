"""Synthetic support tickets for the operator tests (keywords per label, see datasets.templates)."""

from __future__ import annotations

import random

from rlm_pipeline.datasets.templates import FILLERS, TEMPLATES

LABELS = ("billing", "technical", "account", "other")


def tickets(n: int, *, distinct: int | None = None, seed: int = 0) -> list[str]:
    """``n`` ticket texts with about ``distinct`` different ones (default: all different)."""
    rng = random.Random(seed)
    pool_size = distinct if distinct is not None else n
    pool = []
    for i in range(pool_size):
        label = rng.choice(LABELS)
        template = rng.choice(TEMPLATES[label])
        text = template.format(**{k: rng.choice(v) for k, v in FILLERS.items()})
        pool.append(f"{text} (ref {i})")
    if distinct is None:
        return pool
    return [pool[rng.randrange(pool_size)] for _ in range(n)]


#: Fault mix with 20% of requests failing one way or another.
FAULTS = {
    "fault_429": 0.05,
    "fault_500": 0.05,
    "fault_timeout": 0.02,
    "timeout_delay_s": 2.0,
    "fault_malformed": 0.04,
    "fault_wrong_ids": 0.04,
}

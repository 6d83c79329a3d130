"""Synthetic data sets for demos, tests and benchmarks.

Examples
--------
>>> from rlm_pipeline.datasets import tickets
>>> tickets(5).height
5
"""

from __future__ import annotations

from rlm_pipeline.datasets.tickets import (
    KNOWN_USERS,
    LABELS,
    TICKETS_SCHEMA,
    tickets,
    write_tickets,
)

__all__ = ["KNOWN_USERS", "LABELS", "TICKETS_SCHEMA", "tickets", "write_tickets"]

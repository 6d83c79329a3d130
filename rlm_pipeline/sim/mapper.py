"""Deterministic answers of the simulator to ``llm_map`` sub-calls.

The simulated model ignores the instruction and answers by output type, so
tests can compute the expected value of every row themselves.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OUTPUT_TYPES", "map_value"]

OUTPUT_TYPES = ("string", "integer", "number", "boolean")


def map_value(text: str, output_type: str = "string") -> Any:
    """The simulator's ``llm_map`` answer for ``text``.

    ``integer``: number of words; ``boolean``: whether the text contains ``?``;
    ``number``: length in characters / 10; ``string`` (and anything else): the
    first three words.

    Examples
    --------
    >>> map_value("Where is my invoice?", "integer")
    4
    >>> map_value("Where is my invoice?", "boolean")
    True
    >>> map_value("Where is my invoice?", "number")
    2.0
    >>> map_value("Where is my invoice?", "string")
    'Where is my'
    """
    if output_type == "integer":
        return len(text.split())
    if output_type == "boolean":
        return "?" in text
    if output_type == "number":
        return len(text) / 10
    return " ".join(text.split()[:3])

"""OpenAI's strict structured-output rules, as the simulator's ``strict`` mode applies them.

A ``json_schema`` request with ``"strict": true`` is refused (HTTP 400, the
message naming ``response_format``, as OpenAI words it) unless the schema
follows the rules of strict mode: the root is an object schema (not an
``anyOf``); every object schema has ``additionalProperties: false`` and lists
every one of its properties in ``required``; no schema is empty (``{}``).
Written apart from the client's own check
(:func:`rlm_pipeline.llm.structured.strict_problems`) so a test against the
simulator does not grade the client with its own code.

Examples
--------
>>> strict_refusal({"anyOf": [{"type": "object"}]}, "x").startswith("Invalid schema")
True
>>> strict_refusal({"type": "object", "properties": {}, "additionalProperties": False}, "x")
"""

from __future__ import annotations

from typing import Any

__all__ = ["strict_refusal"]

_SCHEMA_KEYS = ("type", "anyOf", "enum", "const", "$ref")


def strict_refusal(schema: Any, name: str) -> str | None:
    """OpenAI's 400 message for a strict ``schema`` it would refuse, or None."""
    prefix = f"Invalid schema for response_format '{name}': "
    if not isinstance(schema, dict) or schema.get("type") != "object":
        got = schema.get("type") if isinstance(schema, dict) else None
        return prefix + f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{got}\"'."
    problem = _first_problem(schema, ())
    return None if problem is None else prefix + problem


def _first_problem(schema: Any, context: tuple[str, ...]) -> str | None:
    where = f"In context=({', '.join(repr(c) for c in context)}{',' if len(context) == 1 else ''})"
    if not isinstance(schema, dict) or not any(k in schema for k in _SCHEMA_KEYS):
        return f"{where}, schema must have a 'type' key."
    if schema.get("type") == "object":
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return f"{where}, 'additionalProperties' is required to be supplied and to be false."
        required = schema.get("required") or []
        for key in properties:
            if key not in required:
                return (
                    f"{where}, 'required' is required to be supplied and to be an array "
                    f"including every key in properties. Missing '{key}'."
                )
        for key, sub in properties.items():
            found = _first_problem(sub, (*context, "properties", key))
            if found is not None:
                return found
    if "items" in schema:
        found = _first_problem(schema["items"], (*context, "items"))
        if found is not None:
            return found
    for i, sub in enumerate(schema.get("anyOf") or ()):
        found = _first_problem(sub, (*context, "anyOf", str(i)))
        if found is not None:
            return found
    return None

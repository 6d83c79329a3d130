"""Schema limits that grammar engines cannot take, and schemas without them.

llama.cpp turns a JSON Schema into a grammar; ``"maxLength": 2000`` becomes a
rule repeated 2,000 times, which fails grammar construction (and has crashed
the server).  Every schema this package sends to a server goes through
:func:`wire_schema`, which leaves out ``maxLength`` / ``minLength`` /
``maxItems`` / ``minItems`` above :data:`SCHEMA_LIMIT`; the real limits are
enforced after parsing.

Examples
--------
>>> over_limit(wire_schema({"type": "string", "maxLength": 2000}))
[]
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["LIMIT_KEYS", "SCHEMA_LIMIT", "over_limit", "wire_schema"]

#: Largest length/count limit left in a schema sent to a server.
SCHEMA_LIMIT = 64
#: Schema keywords that grammar engines expand into repeated rules.
LIMIT_KEYS: tuple[str, ...] = ("maxLength", "minLength", "maxItems", "minItems")


def wire_schema(schema: Any, *, descriptions: bool = True) -> Any:
    """A copy of ``schema`` without limits above :data:`SCHEMA_LIMIT` (and, optionally,
    without ``description`` texts).

    Examples
    --------
    >>> wire_schema({"type": "string", "maxLength": 2000, "description": "d"}, descriptions=False)
    {'type': 'string'}
    >>> wire_schema({"type": "array", "maxItems": 50})
    {'type': 'array', 'maxItems': 50}
    """
    if isinstance(schema, list):
        return [wire_schema(item, descriptions=descriptions) for item in schema]
    if not isinstance(schema, dict):
        return copy.deepcopy(schema)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in LIMIT_KEYS and isinstance(value, int) and value > SCHEMA_LIMIT:
            continue
        if key == "description" and not descriptions and isinstance(value, str):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: wire_schema(v, descriptions=descriptions) for k, v in value.items()}
        else:
            out[key] = wire_schema(value, descriptions=descriptions)
    return out


def over_limit(schema: Any, path: str = "") -> list[str]:
    """Where ``schema`` holds a limit above :data:`SCHEMA_LIMIT` (``"path: key=value"``).

    Examples
    --------
    >>> over_limit({"properties": {"q": {"type": "string", "maxLength": 2000}}})
    ['/properties/q: maxLength=2000']
    """
    found: list[str] = []
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            found.extend(over_limit(item, f"{path}/{i}"))
    elif isinstance(schema, dict):
        for key, value in schema.items():
            if key in LIMIT_KEYS and isinstance(value, int) and value > SCHEMA_LIMIT:
                found.append(f"{path or '/'}: {key}={value}")
            elif isinstance(value, dict | list):
                found.extend(over_limit(value, f"{path}/{key}"))
    return found

"""Structured (JSON) output: request modes, endpoint capability memory, parsing, validation.

Servers differ in how they take a JSON Schema:

* ``"json_schema"`` — OpenAI, vLLM: ``response_format={"type": "json_schema", ...}``;
* ``"json_object"`` — llama.cpp's server: ``{"type": "json_object", "schema": {...}}``
  (it rejects ``json_schema`` with HTTP 500);
* ``"text"`` — neither; the schema goes into the system message after
  :data:`STRUCTURED_PROMPT_PREFIX`.

:class:`LLMClient.json` tries them in that order.  ``json_schema`` is sent
with ``"strict": true`` only when the schema follows OpenAI's strict rules
(:func:`strict_problems`: a root object, every object closed with
``additionalProperties: false`` and listing all its properties in ``required``,
no empty schema); other schemas (the RLM's action schema: a root ``anyOf``,
optional arguments) go with ``"strict": false``, which a strict-mode server
does not refuse for their shape.  The mode that worked is remembered per
``(base_url, model, kind)`` in a process-wide table (:func:`known_mode` /
:func:`remember_mode`, guarded by a lock), where the kind
(:func:`schema_kind`) is ``"strict"`` or ``"loose"``: a server refusing one
kind of schema does not downgrade the calls with the other.  It is a cache of
what an endpoint can do, not of any reply, so a fallback costs one rejected
call per endpoint, kind and mode per process, not one per row.

Replies are untrusted: :func:`parse_json_object` takes the first top-level
JSON object in the text (tolerating code fences and prose around it) and never
"repairs" broken JSON; :func:`validate` checks it against the schema with a
validator compiled once per schema (cached by sha256 of the schema's JSON).
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from typing import Any, Literal

import jsonschema
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator

from rlm_pipeline.errors import InputError, LLMResponseParseError

__all__ = [
    "MODES",
    "STRUCTURED_PROMPT_PREFIX",
    "SchemaKind",
    "StructuredMode",
    "build_request",
    "forget_modes",
    "is_format_rejection",
    "known_mode",
    "next_mode",
    "parse_json_object",
    "remember_mode",
    "schema_kind",
    "schema_validator",
    "strict_problems",
    "validate",
]

STRUCTURED_PROMPT_PREFIX = "Reply with only a JSON object that matches this JSON Schema: "

StructuredMode = Literal["json_schema", "json_object", "text"]
#: ``"strict"``: the schema follows OpenAI's strict rules; ``"loose"``: it does not.
SchemaKind = Literal["strict", "loose"]
#: Modes in the order they are tried.
MODES: tuple[StructuredMode, ...] = ("json_schema", "json_object", "text")
#: Statuses with which servers reject a ``response_format`` they do not support.
REJECTION_STATUSES = frozenset({400, 422, 500})
#: Most ``{`` positions tried when looking for the JSON object in a reply.
MAX_OBJECT_STARTS = 32

_MODE_LOCK = threading.Lock()
_MODE_BY_ENDPOINT: dict[tuple[str, str, SchemaKind], StructuredMode] = {}

_VALIDATOR_LOCK = threading.Lock()
_VALIDATORS: dict[str, Validator] = {}

_DECODER = json.JSONDecoder()


def known_mode(base_url: str, model: str, kind: SchemaKind = "strict") -> StructuredMode | None:
    """The mode that last worked for this endpoint, model and schema kind in this process, if any."""
    with _MODE_LOCK:
        return _MODE_BY_ENDPOINT.get((base_url, model, kind))


def remember_mode(
    base_url: str, model: str, mode: StructuredMode, kind: SchemaKind = "strict"
) -> None:
    """Record that ``mode`` works for this endpoint and model, for schemas of ``kind``."""
    with _MODE_LOCK:
        _MODE_BY_ENDPOINT[(base_url, model, kind)] = mode


def forget_modes() -> None:
    """Clear the endpoint capability table (for tests and long-lived processes)."""
    with _MODE_LOCK:
        _MODE_BY_ENDPOINT.clear()


def next_mode(mode: StructuredMode) -> StructuredMode | None:
    """The mode to try after ``mode`` was rejected, or None after ``"text"``.

    Examples
    --------
    >>> next_mode("json_schema"), next_mode("text")
    ('json_object', None)
    """
    index = MODES.index(mode)
    return MODES[index + 1] if index + 1 < len(MODES) else None


def strict_problems(schema: Any, where: str = "(root)") -> list[str]:
    """Why ``schema`` would be refused by OpenAI's strict mode (empty when it would not).

    The rules checked: the root is ``{"type": "object", ...}`` (not an
    ``anyOf``); every object schema has ``additionalProperties: false`` and
    lists every property in ``required``; no empty schema ``{}`` (each says
    its ``type``, or is an ``anyOf`` / ``enum`` / ``const`` / ``$ref``).

    Examples
    --------
    >>> strict_problems({"type": "object", "properties": {"a": {"type": "string"}},
    ...                  "required": ["a"], "additionalProperties": False})
    []
    >>> strict_problems({"anyOf": [{"type": "object"}]})[0]
    '(root): the root must be a schema of type object'
    """
    problems: list[str] = []
    if where == "(root)" and (not isinstance(schema, dict) or schema.get("type") != "object"):
        problems.append("(root): the root must be a schema of type object")
    _strict_walk(schema, where, problems)
    return problems


def _strict_walk(schema: Any, where: str, problems: list[str]) -> None:
    if not isinstance(schema, dict):
        problems.append(f"{where}: not a schema")
        return
    if not any(k in schema for k in ("type", "anyOf", "enum", "const", "$ref")):
        problems.append(f"{where}: an empty schema (no type)")
    types = schema.get("type")
    is_object = types == "object" or (isinstance(types, list) and "object" in types)
    if is_object:
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            problems.append(f"{where}: additionalProperties must be false")
        missing = sorted(set(properties) - set(schema.get("required") or ()))
        if missing:
            problems.append(f"{where}: every property must be required, missing {missing}")
        for name, sub in properties.items():
            _strict_walk(sub, f"{where}/{name}", problems)
    if "items" in schema:
        _strict_walk(schema["items"], f"{where}/items", problems)
    for i, sub in enumerate(schema.get("anyOf") or ()):
        _strict_walk(sub, f"{where}/anyOf/{i}", problems)
    for name, sub in (schema.get("$defs") or {}).items():
        _strict_walk(sub, f"{where}/$defs/{name}", problems)


def schema_kind(schema: dict[str, Any]) -> SchemaKind:
    """``"strict"`` when ``schema`` follows OpenAI's strict rules (:func:`strict_problems`), else ``"loose"``.

    Examples
    --------
    >>> schema_kind({"anyOf": [{"type": "object"}, {"type": "string"}]})
    'loose'
    """
    return "loose" if strict_problems(schema) else "strict"


def is_format_rejection(status: int | None, body_text: str) -> bool:
    """Whether an error response says the server does not take our ``response_format``.

    Examples
    --------
    >>> is_format_rejection(500, "Input should be 'text' or 'json_object' (response_format)")
    True
    >>> is_format_rejection(500, "internal error")
    False
    """
    if status not in REJECTION_STATUSES:
        return False
    text = body_text.lower()
    return "response_format" in text or "json_schema" in text


def build_request(
    mode: StructuredMode, messages: list[dict[str, Any]], schema: dict[str, Any], name: str
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Messages and ``response_format`` to send for ``mode``.

    ``"json_schema"`` is marked ``strict`` only for a schema of the strict kind
    (:func:`schema_kind`).  In ``"text"`` mode the schema is appended to the
    system message (one is added in front when there is none) and no
    ``response_format`` is sent.
    The caller's list is not changed.

    Examples
    --------
    >>> msgs, fmt = build_request("text", [{"role": "user", "content": "hi"}], {"type": "object"}, "r")
    >>> fmt is None, msgs[0]["role"], msgs[0]["content"].startswith(STRUCTURED_PROMPT_PREFIX)
    (True, 'system', True)
    """
    if mode == "json_schema":
        strict = schema_kind(schema) == "strict"
        fmt = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": strict},
        }
        return messages, fmt
    if mode == "json_object":
        return messages, {"type": "json_object", "schema": schema}
    instruction = STRUCTURED_PROMPT_PREFIX + json.dumps(schema)
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
        out[0]["content"] = f"{out[0]['content']}\n\n{instruction}"
    else:
        out.insert(0, {"role": "system", "content": instruction})
    return out, None


def parse_json_object(text: str | None) -> dict[str, Any]:
    """The first top-level JSON object in a model reply.

    Tolerates code fences and prose around the object; never repairs broken
    JSON.  Raises :class:`LLMResponseParseError` carrying the raw text when no
    object parses.

    Examples
    --------
    >>> parse_json_object('Sure! ```json\\n{"label": "billing"}\\n```')
    {'label': 'billing'}
    >>> parse_json_object('{"label": "bill')
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.LLMResponseParseError: no JSON object in reply; raw reply: '{"label": "bill'
    """
    if text is None:
        raise LLMResponseParseError("reply has no text content", raw="")
    start = text.find("{")
    tries = 0
    while start != -1 and tries < MAX_OBJECT_STARTS:
        tries += 1
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    raise LLMResponseParseError("no JSON object in reply", raw=text)


def schema_validator(schema: dict[str, Any]) -> Validator:
    """A compiled validator for ``schema``, built once per distinct schema.

    Raises :class:`InputError` when the schema itself is invalid.
    """
    digest = hashlib.sha256(
        json.dumps(schema, sort_keys=True, separators=(",", ":")).encode("utf-8")
    ).hexdigest()
    with _VALIDATOR_LOCK:
        found = _VALIDATORS.get(digest)
    if found is not None:
        return found
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        msg = f"invalid JSON Schema: {exc.message}"
        raise InputError(msg) from exc
    validator: Validator = cls(copy.deepcopy(schema))
    with _VALIDATOR_LOCK:
        return _VALIDATORS.setdefault(digest, validator)


def validate(value: dict[str, Any], schema: dict[str, Any] | Validator, *, raw: str) -> None:
    """Raise :class:`LLMResponseParseError` (with ``raw``) unless ``value`` matches ``schema``.

    ``schema`` may be a JSON Schema or a validator from :func:`schema_validator`
    (saves hashing the schema again on hot paths).

    Examples
    --------
    >>> validate({"label": "a"}, {"type": "object", "required": ["label"]}, raw="")
    """
    validator = schema_validator(schema) if isinstance(schema, dict) else schema
    if validator.is_valid(value):
        return
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    where = "/".join(str(p) for p in error.absolute_path) if error is not None else ""
    detail = error.message if error is not None else "invalid"
    msg = f"reply does not match the schema at {where or '(root)'}: {detail}"
    raise LLMResponseParseError(msg, raw=raw)

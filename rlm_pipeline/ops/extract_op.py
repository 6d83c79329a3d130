"""The ``extract`` operator's spec: typed fields read off each row's text.

:class:`ExtractSpec` says what to ask and how to check each row's answer.
Field types: ``string``, ``integer``, ``number``, ``boolean``, ``date``
(``YYYY-MM-DD``) and enums (a list of allowed strings).  Every field may be
null: the model says null when the text does not state it.

The schema is enforced per row and nothing is cast: a row whose object lacks
a field, or has a value of the wrong type (``"19"`` for a number, ``9.99``
for an integer, ``"Open"`` for the enum ``["open", "closed"]``, ``"March
3rd"`` for a date) gets ``parse_error`` naming the field, and no value for
any of its fields.  Whole numbers written as ``3.0`` are taken as the integer
3 (exact, not a guess).

Wire format (``ops-2``, as classify and filter): the system message holds
the task, the fields, the caller's instructions and the reply rule (the same
for every call: a prefix the provider can cache); the user message holds only
the rows, ``Rows:`` then ``0:"text"`` per row.  The batch reply is
``{"results": [{"id": 0, "value": {"amount": 19.0, "order_id": null}}]}``
(:func:`~rlm_pipeline.ops.spec_base.row_reply_schema`).  One-row calls
(``batch_size=1``) keep the ``extract-1`` wording (user message ``Extract the
fields from each row.``, ``Rows:`` and a ``{"id", "text"}`` JSON line) and
reply ``{"value": {...}}``.  Dates travel and are stored as ``YYYY-MM-DD`` strings; the
date columns get :class:`datetime.date` values (:meth:`ExtractSpec.output_values`).

Examples
--------
>>> spec = ExtractSpec("q", {"amount": "number", "status": ["open", "closed"]})
>>> spec.fields
(('amount', 'number'), ('status', ('open', 'closed')))
>>> spec.check_value({"amount": 19, "status": None})
({'amount': 19.0, 'status': None}, None)
>>> spec.check_value({"amount": "19", "status": "open"})
(None, "parse_error: field 'amount': expected number, got '19'")
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Union

from rlm_pipeline.errors import InputError
from rlm_pipeline.ops.filter_op import batch_line, short, spec_messages
from rlm_pipeline.ops.spec_base import SpecBase, check_common

__all__ = [
    "DEFAULT_EXTRACT_COLUMN",
    "EXTRACT_PROMPT_VERSION",
    "FIELD_TYPES",
    "MAX_FIELDS",
    "SINGLE_PROMPT_VERSION",
    "ExtractSpec",
    "FieldType",
    "check_field",
    "check_fields",
    "field_type_text",
    "parse_fields",
]

#: Version of the prompt texts below; part of every row-answer key (bump it with them).
EXTRACT_PROMPT_VERSION = "extract-2"
#: The one-row wording's version (unchanged since ``extract-1``: its stored answers stay valid).
SINGLE_PROMPT_VERSION = "extract-1"
#: Name of the (internal) struct column; the reason column is ``extract_error``.
DEFAULT_EXTRACT_COLUMN = "extract"
#: Scalar field types.
FIELD_TYPES: tuple[str, ...] = ("string", "integer", "number", "boolean", "date")
#: Most fields one call extracts (each is a column and part of every reply).
MAX_FIELDS = 32
#: Most values an enum field allows.
MAX_ENUM_VALUES = 100

#: A field's type: one of :data:`FIELD_TYPES`, or a tuple of allowed strings (an enum).
FieldType = Union[str, tuple[str, ...]]  # noqa: UP007 - a runtime alias, read by mypy too

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT64 = 2**63


def check_fields(fields: Any) -> tuple[tuple[str, FieldType], ...]:
    """``fields`` (``{name: type}``) checked and frozen: ``((name, type), ...)`` in the given order.

    Names are identifiers (letters, digits, ``_``; at most 64 characters) so
    that SQL can name the columns; types are one of :data:`FIELD_TYPES` or a
    list of unique, non-empty allowed strings.

    Raises
    ------
    InputError
        Not a mapping, empty, more than :data:`MAX_FIELDS`, a bad name or type.

    Examples
    --------
    >>> check_fields({"amount": "number", "kind": ["a", "b"]})
    (('amount', 'number'), ('kind', ('a', 'b')))
    >>> check_fields({"amount": "float"})
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.InputError: field 'amount': type must be one of string, integer, number, boolean, date or a list of allowed strings, got 'float'
    """
    if isinstance(fields, str):
        fields = parse_fields(fields)
    if not isinstance(fields, Mapping):
        msg = f"fields must be a dict of name -> type, e.g. {{'amount': 'number'}}; got {short(fields)}"
        raise InputError(msg)
    if not fields:
        msg = "fields must name at least one field"
        raise InputError(msg)
    if len(fields) > MAX_FIELDS:
        msg = f"fields names {len(fields)} fields; at most {MAX_FIELDS}"
        raise InputError(msg)
    out: list[tuple[str, FieldType]] = []
    for name, kind in fields.items():
        if not isinstance(name, str) or not _NAME.match(name):
            msg = (
                f"field name {name!r} must be an identifier (letters, digits, _; "
                "not starting with a digit; at most 64 characters)"
            )
            raise InputError(msg)
        out.append((name, _check_type(name, kind)))
    return tuple(out)


def _check_type(name: str, kind: Any) -> FieldType:
    if isinstance(kind, str):
        if kind in FIELD_TYPES:
            return kind
        msg = (
            f"field {name!r}: type must be one of {', '.join(FIELD_TYPES)} or a list of "
            f"allowed strings, got {kind!r}"
        )
        raise InputError(msg)
    if isinstance(kind, Sequence) and not isinstance(kind, bytes):
        values = tuple(kind)
        if (
            values
            and len(values) <= MAX_ENUM_VALUES
            and all(isinstance(v, str) and v.strip() for v in values)
            and len(set(values)) == len(values)
        ):
            return values
        msg = (
            f"field {name!r}: an enum must be a list of 1 to {MAX_ENUM_VALUES} unique, "
            f"non-empty strings, got {short(kind)}"
        )
        raise InputError(msg)
    msg = f"field {name!r}: type must be a string or a list of allowed strings, got {short(kind)}"
    raise InputError(msg)


def parse_fields(text: str) -> dict[str, FieldType]:
    """Fields written as text: ``"amount:number, order_id:string, status:open|closed"``.

    SQL's column-list form ``"amount number, order_id string"`` (a space for the
    colon, as in Spark SQL's ``rlm_extract``) is read the same way.  A type with
    ``|`` is an enum of its parts.  A JSON object
    (``'{"amount": "number", "status": ["open", "closed"]}'``) is read as JSON.

    Examples
    --------
    >>> parse_fields("amount:number, status:open|closed")
    {'amount': 'number', 'status': ('open', 'closed')}
    >>> parse_fields("amount number, order_id string")
    {'amount': 'number', 'order_id': 'string'}
    """
    import json

    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except ValueError as exc:
            msg = f"fields: not a JSON object: {exc}"
            raise InputError(msg) from None
        if not isinstance(value, dict):
            msg = "fields: expected a JSON object of name -> type"
            raise InputError(msg)
        return value
    out: dict[str, FieldType] = {}
    for part in stripped.split(","):
        if not part.strip():
            continue
        name, sep, kind = part.partition(":")
        if not sep:
            name, sep, kind = part.strip().partition(" ")
        if not sep or not name.strip() or not kind.strip():
            msg = f"fields: {part.strip()!r} is not name:type (e.g. amount:number)"
            raise InputError(msg)
        name, kind = name.strip(), kind.strip()
        if name in out:
            msg = f"fields: {name!r} is given twice"
            raise InputError(msg)
        out[name] = tuple(v.strip() for v in kind.split("|")) if "|" in kind else kind
    return out


def field_type_text(kind: FieldType) -> str:
    """How a field's type is written in prompts and errors.

    Examples
    --------
    >>> field_type_text("date"), field_type_text(("open", "closed"))
    ('date (YYYY-MM-DD)', 'one of: open, closed')
    """
    if isinstance(kind, tuple):
        return "one of: " + ", ".join(kind)
    return "date (YYYY-MM-DD)" if kind == "date" else kind


_TYPICAL: dict[str, Any] = {
    "string": "two words",
    "integer": 12,
    "number": 4.5,
    "boolean": False,
    "date": "2024-01-31",
}


def _output_kind(kind: FieldType) -> str:
    """The output column kind of a field: enums are strings."""
    return "string" if isinstance(kind, tuple) else kind


def _date(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(value) if isinstance(value, str) else None


def _field_schema(kind: FieldType) -> dict[str, Any]:
    if isinstance(kind, tuple):
        return {"type": ["string", "null"], "enum": [*kind, None]}
    if kind == "date":
        return {"type": ["string", "null"], "format": "date"}
    return {"type": [kind, "null"]}


def check_field(value: Any, kind: FieldType) -> tuple[Any, bool]:
    """One field's value checked against its type: ``(value, True)`` or ``(None, False)``.

    Nothing is cast, except whole numbers for ``integer`` (``3.0`` -> 3) and
    integers for ``number`` (``3`` -> 3.0).

    Examples
    --------
    >>> check_field(3.0, "integer"), check_field(9.99, "integer"), check_field("2024-03-01", "date")
    ((3, True), (None, False), ('2024-03-01', True))
    """
    if value is None:
        return None, True
    if isinstance(kind, tuple):
        return (value, True) if isinstance(value, str) and value in kind else (None, False)
    if kind == "string":
        return (value, True) if isinstance(value, str) else (None, False)
    if kind == "boolean":
        return (value, True) if isinstance(value, bool) else (None, False)
    if isinstance(value, bool):
        return None, False
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        ok = isinstance(value, int) and -_INT64 <= value < _INT64
        return (value, True) if ok else (None, False)
    if kind == "number":
        ok = isinstance(value, int | float) and math.isfinite(value) and abs(value) < 1e308
        return (float(value), True) if ok else (None, False)
    if kind == "date" and isinstance(value, str) and _DATE.match(value):
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return None, False
        return value, True
    return None, False


@dataclass(frozen=True)
class ExtractSpec(SpecBase):
    """Read typed ``fields`` off the text in ``column``: one object of values per row.

    Parameters
    ----------
    column
        Input text column.
    fields
        ``{name: type}``; types ``string``, ``integer``, ``number``,
        ``boolean``, ``date`` or a list of allowed strings.  Stored as a tuple
        of ``(name, type)`` pairs (see :func:`check_fields`).
    instructions
        Extra guidance (what a field means, units, edge cases).
    batch_size
        Rows per call (use 1 for small local models).
    output_column
        Name of the struct column the fan-out adds (the callers unnest it
        into one column per field); reasons go to ``<output_column>_error``
        (``extract_error``).
    max_row_tokens, truncate
        Per-row input limit, as for :class:`~rlm_pipeline.ops.spec.ClassifySpec`.

    Examples
    --------
    >>> ExtractSpec("q", {"n": "integer"}).names
    ('n',)
    """

    column: str
    fields: tuple[tuple[str, FieldType], ...]
    instructions: str | None = None
    batch_size: int = 16
    output_column: str = DEFAULT_EXTRACT_COLUMN
    max_row_tokens: int = 8_000
    truncate: bool = False

    def __post_init__(self) -> None:
        check_common(
            self.column, self.batch_size, self.output_column, self.max_row_tokens, self.truncate
        )
        fields: Any = self.fields
        if not isinstance(fields, Mapping | str):
            try:
                fields = dict(fields)
            except (TypeError, ValueError):
                pass  # check_fields names the problem
        object.__setattr__(self, "fields", check_fields(fields))
        if self.instructions is not None and not isinstance(self.instructions, str):
            msg = f"instructions must be a string or None, got {short(self.instructions)}"
            raise InputError(msg)

    #: The operator's name (warnings, logs, errors).
    op_name: ClassVar[str] = "extract"
    #: Key of one row's answer in the reply.
    answer_key: ClassVar[str] = "value"
    #: Answers are objects of many values: the stats keep at most MAX_VALUES of them.
    values_capped: ClassVar[bool] = True

    @property
    def names(self) -> tuple[str, ...]:
        """The field names, in order."""
        return tuple(name for name, _ in self.fields)

    @property
    def single_row(self) -> bool:
        """True when each call carries one row and the reply is ``{"value": {...}}``."""
        return self.batch_size == 1

    def output_fields(self) -> tuple[tuple[str, str], ...]:
        """One column per field: enums are strings, dates ``date``."""
        return tuple((name, _output_kind(kind)) for name, kind in self.fields)

    def output_values(self, value: Any) -> tuple[Any, ...]:
        """One row's checked object split into the field columns (all None without one).

        Dates, checked ``YYYY-MM-DD`` strings in the answer, become :class:`datetime.date`.
        """
        if not isinstance(value, dict):
            return (None,) * len(self.fields)
        return tuple(
            _date(value.get(name)) if kind == "date" else value.get(name)
            for name, kind in self.fields
        )

    def typical_answer(self) -> Any:
        """A typical answer (estimates the size of a reply)."""
        return {name: _TYPICAL[_output_kind(kind)] for name, kind in self.fields}

    def answer_params(self) -> dict[str, Any]:
        """What shapes a row's answer (part of its row-store key); batch size left out.

        One-row calls are worded otherwise (``extract-1``), so their answers are
        kept apart from batched ones.
        """
        return {
            "op": "extract",
            "prompt": SINGLE_PROMPT_VERSION if self.single_row else EXTRACT_PROMPT_VERSION,
            "fields": [
                [name, list(kind) if isinstance(kind, tuple) else kind]
                for name, kind in self.fields
            ],
            "instructions": self.instructions,
        }

    @cached_property
    def _system(self) -> str:
        first = (
            "You extract fields from the text of each row of a table."  # extract-1 wording
            if self.single_row
            else "Extract the fields from each row's text."
        )
        lines = [
            first,
            "Fields:",
            *(f"- {name} ({field_type_text(kind)})" for name, kind in self.fields),
            "Give each field's value as the text states it, with the field's type; "
            "give null when the text does not state it. Do not guess.",
        ]
        if self.instructions:
            lines.append(f"Instructions: {self.instructions}")
        lines.append(batch_line(self.batch_size))
        return "\n".join(lines)

    def messages(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Chat messages asking for the rows ``texts`` (numbered 0, 1, ... in this call)."""
        head = "Extract the fields from each row."
        return spec_messages(self._system, head, texts, self.single_row)

    def answer_schema(self) -> dict[str, Any]:
        """One row's answer: an object with every field, required and nullable; no length limits."""
        return {
            "type": "object",
            "properties": {name: _field_schema(kind) for name, kind in self.fields},
            "required": list(self.names),
            "additionalProperties": False,
        }

    def check_value(self, value: Any) -> tuple[dict[str, Any] | None, str | None]:
        """One row's object checked: ``({name: value}, None)`` or ``(None, "parse_error: ...")``.

        Every field must be present (null allowed); keys beyond the fields are
        ignored.
        """
        if not isinstance(value, dict):
            return None, f"parse_error: expected an object of fields, got {short(value)}"
        out: dict[str, Any] = {}
        for name, kind in self.fields:
            if name not in value:
                return None, f"parse_error: field {name!r} missing"
            checked, ok = check_field(value[name], kind)
            if not ok:
                expected = field_type_text(kind)
                return (
                    None,
                    f"parse_error: field {name!r}: expected {expected}, got {short(value[name])}",
                )
            out[name] = checked
        return out, None

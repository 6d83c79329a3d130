"""The operator protocol: what a semantic operator's spec tells the fan-out, and its shared parts.

Every row-wise semantic operator (classify, llm_map, and the ones to come)
is one frozen spec class satisfying :class:`OpSpec`.  The fan-out
(:mod:`rlm_pipeline.ops.core`), both engines' adapters, the row store, the
stats and the estimate only call the spec's members; none of them asks which
operator it is.  So a new operator is one new spec class, usually a frozen
dataclass deriving from :class:`SpecBase` (which fills in the members with a
common default), and no new branch anywhere else.

This module is a leaf: the engines may import it (``OpSpec`` for their
signatures), and :mod:`rlm_pipeline.ops.prompts` takes the data of the two
built-in operators (:class:`ClassifyFields`, :class:`MapFields`) from here.
The built-in spec classes themselves, :class:`~rlm_pipeline.ops.spec.ClassifySpec`
and :class:`~rlm_pipeline.ops.spec.MapSpec`, live in :mod:`rlm_pipeline.ops.spec`
(they call the prompt builders).

Output kinds
------------
An operator's output columns are typed with a neutral kind, one of
:data:`OUTPUT_KINDS` (``string``, ``integer``, ``number``, ``boolean``); each
engine maps a kind to its own type (Polars ``Int64``, Spark ``bigint``,
Arrow ``int64``, ...).

Examples
--------
>>> check_typed(3.0, "integer"), check_typed("x", "boolean")
((3, None), (None, "parse_error: expected boolean, got 'x'"))
>>> row_reply_schema("label", {"type": "string"}, single=True)["required"]
['label']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, get_args, runtime_checkable

from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.tokens import CHARS_PER_TOKEN, estimate_tokens

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_ROW_TOKENS",
    "OUTPUT_KINDS",
    "TRUNCATED_MARKER",
    "TYPICAL_VALUES",
    "BuiltinFields",
    "ClassifyFields",
    "MapFields",
    "OpSpec",
    "OutputType",
    "SpecBase",
    "check_common",
    "check_labels",
    "check_output_columns",
    "check_run_args",
    "check_typed",
    "columns_of",
    "fit_text",
    "output_names",
    "row_reply_schema",
    "short_repr",
]

#: Rows per model call.  Use ``batch_size=1`` for small local models (see :class:`ClassifyFields`).
DEFAULT_BATCH_SIZE = 16
#: Longest cell sent, in estimated tokens (:func:`rlm_pipeline.llm.tokens.estimate_tokens`).
#: :class:`~rlm_pipeline.llm.config.LLM` has no context size, so this is a fixed default.
DEFAULT_MAX_ROW_TOKENS = 8_000
#: Appended to a cell cut to ``max_row_tokens`` when ``truncate=True``.
TRUNCATED_MARKER = "… [truncated]"

#: The value types of llm_map.
OutputType = Literal["string", "integer", "number", "boolean"]
#: The neutral kinds of an output column (each engine maps them to its own types).  A
#: ``date`` column's values are :class:`datetime.date` (from :meth:`OpSpec.output_values`).
OUTPUT_KINDS: tuple[str, ...] = (*get_args(OutputType), "date")
#: A typical answer of each kind, for estimating a reply's size.
TYPICAL_VALUES: dict[str, Any] = {
    "string": "three word answer",
    "integer": 12,
    "number": 4.5,
    "boolean": False,
    "date": "2024-01-31",
}


@runtime_checkable
class OpSpec(Protocol):
    """What the fan-out needs from a row-wise semantic operator (one frozen, hashable spec).

    A spec holds no client and no data: it is pickled to Spark executors and
    used as a cache key, so it must be a frozen, hashable value.  One row's
    answer is the value :meth:`check_value` returns; it fills the columns of
    :meth:`output_fields` (through :meth:`output_values`), and a row without
    one gets nulls there and a reason in :attr:`error_column`.
    """

    @property
    def column(self) -> str:
        """The input text column."""
        ...

    @property
    def batch_size(self) -> int:
        """Rows per call (1: one row per call, the reply is a single object)."""
        ...

    @property
    def max_row_tokens(self) -> int:
        """Longest cell sent, in estimated tokens (see :func:`fit_text`)."""
        ...

    @property
    def truncate(self) -> bool:
        """Cut a longer cell to ``max_row_tokens`` instead of leaving it unsent."""
        ...

    @property
    def op_name(self) -> str:
        """The operator's name in warnings, logs and errors (``"classify"``)."""
        ...

    @property
    def output_column(self) -> str:
        """The name a failed row lacks (the value column, or the prefix of several)."""
        ...

    @property
    def error_column(self) -> str:
        """The reason column (``<output_column>_error``)."""
        ...

    @property
    def answer_key(self) -> str:
        """The key of one row's answer in the reply (``"label"``)."""
        ...

    @property
    def values_capped(self) -> bool:
        """True: the stats keep at most ``MAX_VALUES`` distinct values (False: all, e.g. labels)."""
        ...

    def output_fields(self) -> tuple[tuple[str, str], ...]:
        """The value columns added, in order: ``(name, kind)``, ``kind`` in :data:`OUTPUT_KINDS`."""
        ...

    def output_values(self, value: Any) -> tuple[Any, ...]:
        """One row's checked answer (or None) split into the :meth:`output_fields` columns."""
        ...

    def answer_params(self) -> dict[str, Any]:
        """The parameters that shape a row's answer: part of the stored row answers' key."""
        ...

    def reply_schema(self) -> dict[str, Any]:
        """JSON Schema of the reply to one call (do not mutate the result)."""
        ...

    def reply_name(self) -> str:
        """The name given to the structured-output schema."""
        ...

    def messages(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Chat messages asking for the rows ``texts`` (numbered 0, 1, ... in this call)."""
        ...

    def check_value(self, value: Any) -> tuple[Any, str | None]:
        """One row's raw answer checked: ``(value, None)`` or ``(None, reason)``.

        The reason starts with an error kind (``parse_error``, ``invalid_label``).
        A checked value must pass again as it is: the row store keeps checked
        values (as JSON) and checks them again when it serves them.
        """
        ...

    def typical_answer(self) -> Any:
        """A typical answer for one row (estimates the size of a reply)."""
        ...


class SpecBase:
    """Common defaults of the :class:`OpSpec` members, for a spec class to derive from.

    A subclass (a frozen dataclass) provides the fields ``column``,
    ``batch_size``, ``output_column``, ``max_row_tokens`` and ``truncate``,
    the class attributes ``op_name`` and ``answer_key``, and the methods
    :meth:`output_fields`, :meth:`answer_params`, :meth:`answer_schema`,
    :meth:`messages` and :meth:`check_value`; the rest has a default here.
    """

    column: str
    batch_size: int
    output_column: str
    max_row_tokens: int
    truncate: bool
    #: The operator's name.
    op_name: ClassVar[str] = "op"
    #: Key of one row's answer in the reply.
    answer_key: ClassVar[str] = "value"
    #: The stats keep at most ``MAX_VALUES`` distinct values.
    values_capped: ClassVar[bool] = True

    @property
    def error_column(self) -> str:
        """Name of the reason column, ``<output_column>_error``."""
        return f"{self.output_column}_error"

    def output_fields(self) -> tuple[tuple[str, str], ...]:
        """One string column named ``output_column`` (override for other kinds or more columns)."""
        return ((self.output_column, "string"),)

    def output_values(self, value: Any) -> tuple[Any, ...]:
        """``(value,)`` for one column; a dict's values by column name for several."""
        fields = self.output_fields()
        if len(fields) == 1:
            return (value,)
        if not isinstance(value, dict):
            return (None,) * len(fields)
        return tuple(value.get(name) for name, _ in fields)

    def answer_schema(self) -> dict[str, Any]:
        """JSON Schema of one row's answer (default: a string)."""
        return {"type": "string"}

    def reply_schema(self) -> dict[str, Any]:
        """The reply to one call, from :meth:`answer_schema` (:func:`row_reply_schema`)."""
        return row_reply_schema(self.answer_key, self.answer_schema(), single=self.batch_size == 1)

    def reply_name(self) -> str:
        """``<op_name>_row`` or ``<op_name>_batch``."""
        return f"{self.op_name}_{'row' if self.batch_size == 1 else 'batch'}"

    def typical_answer(self) -> Any:
        """A typical value of each output column (one column: the value itself)."""
        fields = self.output_fields()
        if len(fields) == 1:
            return TYPICAL_VALUES[fields[0][1]]
        return {name: TYPICAL_VALUES[kind] for name, kind in fields}


def row_reply_schema(key: str, answer: dict[str, Any], *, single: bool) -> dict[str, Any]:
    """The reply schema of one call: ``{key: answer}`` for one row, else ``{"results": [...]}``.

    Each item of ``results`` is ``{"id": int, key: answer}`` (ids 0-based in
    the call), as :func:`~rlm_pipeline.ops.reply.check_reply` reads it.
    """
    if single:
        return {
            "type": "object",
            "properties": {key: answer},
            "required": [key],
            "additionalProperties": False,
        }
    item = {
        "type": "object",
        "properties": {"id": {"type": "integer"}, key: answer},
        "required": ["id", key],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"results": {"type": "array", "items": item}},
        "required": ["results"],
        "additionalProperties": False,
    }


def check_typed(value: Any, kind: str) -> tuple[Any, str | None]:
    """``value`` checked against an output kind: ``(value, None)`` or ``(None, parse_error ...)``.

    An integer given as a whole float is turned into an int, a number into a
    float; booleans are not numbers; NaN and infinities are refused.
    """
    if kind == "string" and isinstance(value, str):
        return value, None
    if kind == "boolean" and isinstance(value, bool):
        return value, None
    if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return value, None
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value), None
    if (
        kind == "number"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    ):
        return float(value), None
    return None, f"parse_error: expected {kind}, got {short_repr(value)}"


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to 60 characters (for reasons quoting the model's answer)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def output_names(spec: OpSpec) -> list[str]:
    """Every column the operator adds: its value columns, then the error column.

    Examples
    --------
    >>> output_names(ClassifyFields("q", ("a", "b")))
    ['label', 'label_error']
    """
    return [name for name, _ in spec.output_fields()] + [spec.error_column]


def columns_of(spec: OpSpec, results: Sequence[tuple[Any, str | None]]) -> list[list[Any]]:
    """The value columns of ``(value, error)`` results: one list per :meth:`OpSpec.output_fields`.

    Examples
    --------
    >>> columns_of(ClassifyFields("q", ("a", "b")), [("a", None), (None, "empty_input")])
    [['a', None]]
    """
    n = len(spec.output_fields())
    own = getattr(type(spec), "output_values", SpecBase.output_values)
    if n == 1 and own is SpecBase.output_values:  # the answer is the column's value
        return [[value for value, _ in results]]
    split = [spec.output_values(value) for value, _ in results]
    return [[row[i] for row in split] for i in range(n)]


def check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """``labels`` as a tuple, checked: a list of unique, non-empty strings.

    Raises
    ------
    TypeError
        ``labels`` is one string (``"a,b"``) instead of a list of strings.
    InputError
        Empty, not strings, blank or repeated labels.

    Examples
    --------
    >>> check_labels(["a", "b"])
    ('a', 'b')
    >>> check_labels("a,b")
    Traceback (most recent call last):
    ...
    TypeError: labels must be a list of strings, e.g. ['a', 'b']; got the string 'a,b'
    """
    if isinstance(labels, str):
        msg = f"labels must be a list of strings, e.g. ['a', 'b']; got the string {labels!r}"
        raise TypeError(msg)
    try:
        out = tuple(labels)
    except TypeError:
        msg = f"labels must be a list of strings, e.g. ['a', 'b']; got {type(labels).__name__}"
        raise TypeError(msg) from None
    if not out:
        msg = "labels must not be empty"
        raise InputError(msg)
    if any(not isinstance(label, str) or not label.strip() for label in out):
        msg = f"labels must be non-empty strings, got {list(out)!r}"
        raise InputError(msg)
    if len(set(out)) != len(out):
        msg = f"labels must be unique, got {list(out)!r}"
        raise InputError(msg)
    return out


def check_output_columns(columns: Sequence[str], spec: OpSpec, *, overwrite: bool = False) -> None:
    """Refuse to replace an input column with the answer unless ``overwrite``.

    ``columns`` are the input's column names; the spec's output columns
    (:func:`output_names`) must not be among them.  Called before any model
    call.

    Raises
    ------
    InputError
        One clear line naming the column(s) and the two ways out.

    Examples
    --------
    >>> check_output_columns(["q", "label"], ClassifyFields("q", ("a", "b")))
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.InputError: column 'label' already exists in the input; choose another output_column, or pass overwrite=True (CLI: --overwrite-column) to replace it
    >>> check_output_columns(["q", "label"], ClassifyFields("q", ("a", "b")), overwrite=True)
    """
    if overwrite:
        return
    taken = [name for name in output_names(spec) if name in columns]
    if not taken:
        return
    names = " and ".join(repr(name) for name in taken)
    noun = "column" if len(taken) == 1 else "columns"
    verb = "exists" if len(taken) == 1 else "exist"
    msg = (
        f"{noun} {names} already {verb} in the input; choose another output_column, "
        "or pass overwrite=True (CLI: --overwrite-column) to replace it"
    )
    raise InputError(msg)


def check_run_args(llm: Any, overwrite: Any = False) -> None:
    """The run arguments every operator front-end checks before reading any data.

    One checker for :func:`rlm_pipeline.ops.api.run_op` (``rp.classify``,
    ``rp.llm_map``, ``rp.filter``, ``rp.extract``, the namespaces) and
    :class:`~rlm_pipeline.ops.spark_step.SparkStep` (``rp.spark.*``).

    Raises
    ------
    InputError
        ``llm`` is not an :class:`~rlm_pipeline.llm.config.LLM`, or
        ``overwrite`` is not a bool.

    Examples
    --------
    >>> check_run_args("gpt-4o")
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.InputError: llm must be an rlm_pipeline.LLM, got str
    """
    from rlm_pipeline.llm.config import LLM

    if not isinstance(llm, LLM):
        msg = f"llm must be an rlm_pipeline.LLM, got {type(llm).__name__}"
        raise InputError(msg)
    if not isinstance(overwrite, bool):
        msg = f"overwrite must be True or False, got {overwrite!r}"
        raise InputError(msg)


def fit_text(text: str, spec: OpSpec) -> tuple[str, None] | tuple[None, str]:
    """What to send for ``text`` under the spec's row limit: ``(text, None)`` or ``(None, reason)``.

    A text of at most ``spec.max_row_tokens`` estimated tokens is sent as is.
    A longer one is cut to the limit, ending with :data:`TRUNCATED_MARKER`,
    when ``spec.truncate``; otherwise it is not sent and the reason starts
    with ``input_too_long``.

    Examples
    --------
    >>> spec = ClassifyFields("q", ("a", "b"), max_row_tokens=5)
    >>> fit_text("short", spec)
    ('short', None)
    >>> fit_text("x" * 100, spec)
    (None, 'input_too_long: ~25 tokens, max_row_tokens is 5')
    >>> sent, _ = fit_text("x" * 100, ClassifyFields("q", ("a", "b"), max_row_tokens=5, truncate=True))
    >>> sent
    'xxxxxxx… [truncated]'
    """
    limit = spec.max_row_tokens
    if len(text) <= limit * CHARS_PER_TOKEN:
        return text, None
    if spec.truncate:
        keep = max(0, limit * CHARS_PER_TOKEN - len(TRUNCATED_MARKER))
        return text[:keep] + TRUNCATED_MARKER, None
    return None, f"input_too_long: ~{estimate_tokens(text):,} tokens, max_row_tokens is {limit:,}"


def check_common(
    column: str, batch_size: int, output_column: str, max_row_tokens: int, truncate: bool
) -> None:
    """The checks every spec's fields pass (call it from ``__post_init__``).

    Raises
    ------
    InputError
        A blank column name, a batch size or row limit below 1, a non-bool
        ``truncate``, or an output column equal to the input column.
    """
    if not isinstance(column, str) or not column:
        msg = f"column must be a non-empty string, got {column!r}"
        raise InputError(msg)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        msg = f"batch_size must be an integer >= 1, got {batch_size!r}"
        raise InputError(msg)
    if not isinstance(output_column, str) or not output_column:
        msg = f"output_column must be a non-empty string, got {output_column!r}"
        raise InputError(msg)
    if output_column == column:
        msg = f"output_column {output_column!r} would overwrite the input column"
        raise InputError(msg)
    if (
        isinstance(max_row_tokens, bool)
        or not isinstance(max_row_tokens, int)
        or max_row_tokens < 1
    ):
        msg = f"max_row_tokens must be an integer >= 1, got {max_row_tokens!r}"
        raise InputError(msg)
    if not isinstance(truncate, bool):
        msg = f"truncate must be True or False, got {truncate!r}"
        raise InputError(msg)


@dataclass(frozen=True)
class ClassifyFields:
    """The data of a classify spec (see :class:`~rlm_pipeline.ops.spec.ClassifySpec`).

    Checked on construction; the operator's behaviour is added by the
    subclass :class:`~rlm_pipeline.ops.spec.ClassifySpec`.
    """

    column: str
    labels: tuple[str, ...]
    instructions: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    output_column: str = "label"
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS
    truncate: bool = False

    def __post_init__(self) -> None:
        check_common(
            self.column, self.batch_size, self.output_column, self.max_row_tokens, self.truncate
        )
        object.__setattr__(self, "labels", check_labels(self.labels))

    @property
    def error_column(self) -> str:
        """Name of the reason column, ``<output_column>_error``."""
        return f"{self.output_column}_error"

    #: Key of the answer in the model's reply.
    answer_key: ClassVar[str] = "label"

    def output_fields(self) -> tuple[tuple[str, str], ...]:
        """One string column, ``output_column``."""
        return ((self.output_column, "string"),)


@dataclass(frozen=True)
class MapFields:
    """The data of an llm_map spec (see :class:`~rlm_pipeline.ops.spec.MapSpec`)."""

    column: str
    instruction: str
    output_type: OutputType = "string"
    batch_size: int = DEFAULT_BATCH_SIZE
    output_column: str = "value"
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS
    truncate: bool = False

    def __post_init__(self) -> None:
        check_common(
            self.column, self.batch_size, self.output_column, self.max_row_tokens, self.truncate
        )
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            msg = "instruction must be a non-empty string"
            raise InputError(msg)
        if self.output_type not in get_args(OutputType):
            msg = (
                f"output_type must be one of {list(get_args(OutputType))}, got {self.output_type!r}"
            )
            raise InputError(msg)

    @property
    def error_column(self) -> str:
        """Name of the reason column, ``<output_column>_error``."""
        return f"{self.output_column}_error"

    #: Key of the answer in the model's reply.
    answer_key: ClassVar[str] = "value"

    def output_fields(self) -> tuple[tuple[str, str], ...]:
        """One column of ``output_type``, ``output_column``."""
        return ((self.output_column, self.output_type),)


#: The data of the two built-in operators (what :mod:`rlm_pipeline.ops.prompts` reads).
BuiltinFields = ClassifyFields | MapFields

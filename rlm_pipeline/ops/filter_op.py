"""The ``filter`` operator's spec: one condition, one boolean answer per row.

:class:`FilterSpec` says what to ask (prompt text, reply schema) and how to
check each row's answer; it holds no client and no data and is shipped as is
to Spark executors.  The wire format is the one of classify (``ops-2``, see
:mod:`rlm_pipeline.ops.prompts`): everything the same for every call — the
task, the ``Condition:`` line, the reply rule — is in the system message (a
prefix the provider can cache), and the user message holds only the rows,
``Rows:`` then ``0:"text"`` per row.  The batch reply is
``{"results": [{"id": 0, "value": true}]}``
(:func:`~rlm_pipeline.ops.spec_base.row_reply_schema`).  One-row calls
(``batch_size=1``, for small local models) keep the ``filter-1`` wording
(``Condition:`` and ``{"id": 0, "text": "..."}`` lines in the user message),
and reply ``{"value": true}``.  Anything but a JSON boolean is a
``parse_error`` for that row (no ``"yes"``, no ``1``).

Which rows come out, and what happens to rows without an answer, is decided
by the callers (:mod:`rlm_pipeline.ops.semantic`), never here.

Examples
--------
>>> spec = FilterSpec("question", "asks for a refund")
>>> spec.error_column, spec.answer_key
('filter_error', 'value')
>>> spec.messages(["Refund me"])[0]["content"].splitlines()[1]
'Condition: asks for a refund'
>>> spec.messages(["Refund me"])[1]["content"].splitlines()
['Rows:', '0:"Refund me"']
>>> spec.check_value(True), spec.check_value("yes")
((True, None), (None, "parse_error: expected a boolean (true or false), got 'yes'"))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Literal

from rlm_pipeline.errors import InputError
from rlm_pipeline.ops.prompts import row_lines
from rlm_pipeline.ops.spec_base import SpecBase, check_common, short_repr

__all__ = [
    "DEFAULT_FILTER_COLUMN",
    "FILTER_PROMPT_VERSION",
    "MAX_CONDITION_CHARS",
    "SINGLE_PROMPT_VERSION",
    "FilterSpec",
    "OnError",
    "batch_line",
    "check_on_error",
    "rows_message",
    "short",
    "spec_messages",
]

#: Version of the prompt texts below; part of every row-answer key (bump it with them).
#: One-row calls keep the ``filter-1`` wording, and its key (:data:`SINGLE_PROMPT_VERSION`).
FILTER_PROMPT_VERSION = "filter-2"
#: The one-row wording's version (unchanged since ``filter-1``: its stored answers stay valid).
SINGLE_PROMPT_VERSION = "filter-1"
#: Name of the (internal) answer column; the reason column is ``filter_error``.
DEFAULT_FILTER_COLUMN = "filter"
#: Longest condition accepted (it is sent with every call).
MAX_CONDITION_CHARS = 2_000

OnError = Literal["raise", "keep", "drop"]
_ON_ERROR: tuple[str, ...] = ("raise", "keep", "drop")


def check_on_error(on_error: Any) -> OnError:
    """``on_error`` checked: ``"raise"``, ``"keep"`` or ``"drop"``.

    Examples
    --------
    >>> check_on_error("keep")
    'keep'
    >>> check_on_error("ignore")
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.InputError: on_error must be 'raise', 'keep' or 'drop', got 'ignore'
    """
    if on_error not in _ON_ERROR:
        msg = f"on_error must be 'raise', 'keep' or 'drop', got {on_error!r}"
        raise InputError(msg)
    return on_error  # type: ignore[no-any-return]


#: ``repr(value)``, cut to 60 characters (for reasons in error columns).
short = short_repr


def rows_message(head: Sequence[str], texts: Sequence[str]) -> str:
    """The one-row wording's user message: ``head`` lines, ``Rows:``, ``{"id", "text"}`` JSON lines."""
    rows = [json.dumps({"id": i, "text": text}, ensure_ascii=False) for i, text in enumerate(texts)]
    return "\n".join([*head, "Rows:", *rows])


def batch_line(batch_size: int) -> str:
    """The system prompt's last line: one row, or every row by its id."""
    if batch_size == 1:
        return "There is one row; answer for it alone."
    return "Answer each row once by id."


def spec_messages(system: str, head: str, texts: Sequence[str], single: bool) -> list[dict[str, Any]]:
    """The chat messages of a filter / extract call.

    Batches: ``system`` (every call's prefix), then the rows alone (``ops-2``
    framing, :func:`~rlm_pipeline.ops.prompts.row_lines`).  One row: the
    ``filter-1`` / ``extract-1`` wording, ``head`` then ``{"id", "text"}`` lines.
    """
    user = rows_message([head], texts) if single else "\n".join(row_lines(texts))
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class FilterSpec(SpecBase):
    """Ask, for the text in ``column``, whether ``condition`` holds: one boolean per row.

    Parameters
    ----------
    column
        Input text column.
    condition
        The condition in plain words, e.g. ``"asks for a refund"``.
    batch_size
        Rows per call (use 1 for small local models).
    output_column
        Name of the answer column the fan-out adds (the filter drops it);
        reasons go to ``<output_column>_error`` (``filter_error``).
    max_row_tokens, truncate
        Per-row input limit, as for :class:`~rlm_pipeline.ops.spec.ClassifySpec`.

    Examples
    --------
    >>> FilterSpec("q", "  is urgent ").condition
    'is urgent'
    """

    column: str
    condition: str
    batch_size: int = 16
    output_column: str = DEFAULT_FILTER_COLUMN
    max_row_tokens: int = 8_000
    truncate: bool = False

    def __post_init__(self) -> None:
        check_common(
            self.column, self.batch_size, self.output_column, self.max_row_tokens, self.truncate
        )
        if not isinstance(self.condition, str) or not self.condition.strip():
            msg = "condition must be a non-empty string, e.g. 'asks for a refund'"
            raise InputError(msg)
        condition = " ".join(self.condition.split())  # one line: it is the Condition: line
        if len(condition) > MAX_CONDITION_CHARS:
            msg = f"condition is {len(condition):,} characters; at most {MAX_CONDITION_CHARS:,}"
            raise InputError(msg)
        object.__setattr__(self, "condition", condition)

    #: The operator's name (warnings, logs, errors).
    op_name: ClassVar[str] = "filter"
    #: Key of one row's answer in the reply.
    answer_key: ClassVar[str] = "value"
    #: Answers are true / false: the stats count both, never capped.
    values_capped: ClassVar[bool] = False

    @property
    def single_row(self) -> bool:
        """True when each call carries one row and the reply is ``{"value": ...}``."""
        return self.batch_size == 1

    def output_fields(self) -> tuple[tuple[str, str], ...]:
        """One boolean column, ``output_column`` (the callers turn it into kept / dropped rows)."""
        return ((self.output_column, "boolean"),)

    def answer_params(self) -> dict[str, Any]:
        """What shapes a row's answer (part of its row-store key); batch size left out.

        One-row calls are worded otherwise (``filter-1``), so their answers are
        kept apart from batched ones.
        """
        prompt = SINGLE_PROMPT_VERSION if self.single_row else FILTER_PROMPT_VERSION
        return {"op": "filter", "prompt": prompt, "condition": self.condition}

    @cached_property
    def _system(self) -> str:
        if self.single_row:  # the filter-1 wording (the condition goes with the row)
            return "\n".join(
                [
                    "You check whether the text of each row of a table meets a condition.",
                    "Answer true when the text meets the condition, false when it does not.",
                    batch_line(1),
                ]
            )
        return "\n".join(
            [
                "Say for each row whether its text meets the condition: true or false.",
                f"Condition: {self.condition}",
                batch_line(self.batch_size),
            ]
        )

    def messages(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Chat messages asking for the rows ``texts`` (numbered 0, 1, ... in this call)."""
        head = f"Condition: {self.condition}"
        return spec_messages(self._system, head, texts, self.single_row)

    def answer_schema(self) -> dict[str, Any]:
        """One row's answer: a JSON boolean."""
        return {"type": "boolean"}

    def check_value(self, value: Any) -> tuple[bool | None, str | None]:
        """One row's answer checked: ``(True/False, None)`` or ``(None, "parse_error: ...")``."""
        if isinstance(value, bool):
            return value, None
        return None, f"parse_error: expected a boolean (true or false), got {short(value)}"

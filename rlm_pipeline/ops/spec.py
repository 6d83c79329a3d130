"""The built-in operators' specs, :class:`ClassifySpec` and :class:`MapSpec`: what to ask, where to put the answer.

A spec holds no client and no data; it is shipped as-is to Spark executors.
Both satisfy the operator protocol :class:`~rlm_pipeline.ops.spec_base.OpSpec`
(defined in :mod:`rlm_pipeline.ops.spec_base`, re-exported here with its
helpers): the fan-out only calls the spec's members, so a new operator is one
new spec class of the same shape (see ``docs/internals.md``).  Their prompts
and reply schemas are built by :mod:`rlm_pipeline.ops.prompts`.

Examples
--------
>>> spec = ClassifySpec(column="question", labels=("billing", "other"))
>>> spec.error_column, spec.op_name, spec.output_fields()
('label_error', 'classify', (('label', 'string'),))
>>> MapSpec(column="q", instruction="Count the words", output_type="integer").output_fields()
(('value', 'integer'),)
>>> spec.max_row_tokens, spec.truncate
(8000, False)
>>> spec.check_value("billing"), spec.check_value("x")
(('billing', None), (None, "invalid_label: 'x'"))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rlm_pipeline.ops import prompts
from rlm_pipeline.ops.spec_base import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_ROW_TOKENS,
    TRUNCATED_MARKER,
    TYPICAL_VALUES,
    ClassifyFields,
    MapFields,
    OpSpec,
    OutputType,
    SpecBase,
    check_labels,
    check_output_columns,
    check_typed,
    fit_text,
    short_repr,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_ROW_TOKENS",
    "TRUNCATED_MARKER",
    "ClassifySpec",
    "MapSpec",
    "OpSpec",
    "OutputType",
    "check_labels",
    "check_output_columns",
    "fit_text",
]


class ClassifySpec(ClassifyFields, SpecBase):
    """Classify the text in ``column`` into one of ``labels``.

    Parameters
    ----------
    column
        Input text column.
    labels
        Allowed labels (non-empty, unique strings).  Lists are turned into tuples.
    instructions
        Extra guidance for the model (label definitions, edge cases).
    batch_size
        Rows per call.  Rows are numbered inside a call and the reply is
        checked id by id.  **Use 1 for small local models** (e.g. a 0.5B model
        on llama.cpp): given a 4-row batch such a model returned the labels in
        the order of the label list instead of the rows'.  With ``batch_size=1``
        each call carries one row and the reply schema is ``{"label": ...}``.
    output_column
        Name of the new label column; the reason column is ``<output_column>_error``.
    max_row_tokens
        Longest cell sent, in estimated tokens (4 characters per token).  A
        longer cell is not sent: it gets a null and ``input_too_long``, unless
        ``truncate``.
    truncate
        Cut a longer cell to ``max_row_tokens`` (ending with
        :data:`TRUNCATED_MARKER`) and send that instead.

    Examples
    --------
    >>> ClassifySpec("text", ["a", "b"], batch_size=1).labels
    ('a', 'b')
    """

    op_name: ClassVar[str] = "classify"
    #: Every label is counted in the stats.
    values_capped: ClassVar[bool] = False

    def answer_params(self) -> dict[str, Any]:
        """:func:`rlm_pipeline.ops.prompts.answer_params`."""
        return prompts.answer_params(self)

    def reply_schema(self) -> dict[str, Any]:
        """:func:`rlm_pipeline.ops.prompts.reply_schema`."""
        return prompts.reply_schema(self)

    def reply_name(self) -> str:
        """:func:`rlm_pipeline.ops.prompts.reply_name`."""
        return prompts.reply_name(self)

    def messages(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """:func:`rlm_pipeline.ops.prompts.build_messages`."""
        return prompts.build_messages(self, texts)

    def check_value(self, value: Any) -> tuple[Any, str | None]:
        """A label of the set, spelled exactly; else ``invalid_label``."""
        if isinstance(value, str) and value in self.labels:
            return value, None
        return None, f"invalid_label: {short_repr(value)}"

    def typical_answer(self) -> Any:
        """A label of average length."""
        return "x" * round(sum(len(label) for label in self.labels) / len(self.labels))


class MapSpec(MapFields, SpecBase):
    """Apply ``instruction`` to the text in ``column``, one typed value per row.

    Parameters
    ----------
    column
        Input text column.
    instruction
        What to compute from each row, e.g. ``"the product named, or empty"``.
    output_type
        ``"string"``, ``"integer"``, ``"number"`` or ``"boolean"``.
    batch_size
        Rows per call (1 for small local models, as for :class:`ClassifySpec`).
    output_column
        Name of the new value column; the reason column is ``<output_column>_error``.
    max_row_tokens, truncate
        Per-row input limit, as for :class:`ClassifySpec`.

    Examples
    --------
    >>> MapSpec("text", "Is it a question?", output_type="boolean").output_type
    'boolean'
    """

    op_name: ClassVar[str] = "llm_map"

    def answer_params(self) -> dict[str, Any]:
        """:func:`rlm_pipeline.ops.prompts.answer_params`."""
        return prompts.answer_params(self)

    def reply_schema(self) -> dict[str, Any]:
        """:func:`rlm_pipeline.ops.prompts.reply_schema`."""
        return prompts.reply_schema(self)

    def reply_name(self) -> str:
        """:func:`rlm_pipeline.ops.prompts.reply_name`."""
        return prompts.reply_name(self)

    def messages(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """:func:`rlm_pipeline.ops.prompts.build_messages`."""
        return prompts.build_messages(self, texts)

    def check_value(self, value: Any) -> tuple[Any, str | None]:
        """A value of ``output_type`` (:func:`~rlm_pipeline.ops.spec_base.check_typed`)."""
        return check_typed(value, self.output_type)

    def typical_answer(self) -> Any:
        """A typical value of ``output_type``."""
        return TYPICAL_VALUES[self.output_type]

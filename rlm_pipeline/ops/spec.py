"""Frozen descriptions of a semantic operator: what to ask and where to put the answer.

A spec holds no client and no data; it is shipped as-is to Spark executors.

Examples
--------
>>> spec = ClassifySpec(column="question", labels=("billing", "other"))
>>> spec.error_column
'label_error'
>>> MapSpec(column="q", instruction="Count the words", output_type="integer").error_column
'value_error'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from rlm_pipeline.errors import InputError

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ClassifySpec",
    "MapSpec",
    "OpSpec",
    "OutputType",
]

#: Rows per model call.  Use ``batch_size=1`` for small local models (see :class:`ClassifySpec`).
DEFAULT_BATCH_SIZE = 16

OutputType = Literal["string", "integer", "number", "boolean"]
_OUTPUT_TYPES: tuple[str, ...] = get_args(OutputType)


def _check_common(column: str, batch_size: int, output_column: str) -> None:
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


@dataclass(frozen=True)
class ClassifySpec:
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

    Examples
    --------
    >>> ClassifySpec("text", ["a", "b"], batch_size=1).labels
    ('a', 'b')
    """

    column: str
    labels: tuple[str, ...]
    instructions: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    output_column: str = "label"

    def __post_init__(self) -> None:
        _check_common(self.column, self.batch_size, self.output_column)
        if isinstance(self.labels, str):
            msg = "labels must be a list of strings, not one string"
            raise InputError(msg)
        labels = tuple(self.labels)
        if not labels:
            msg = "labels must not be empty"
            raise InputError(msg)
        if any(not isinstance(label, str) or not label.strip() for label in labels):
            msg = f"labels must be non-empty strings, got {list(labels)!r}"
            raise InputError(msg)
        if len(set(labels)) != len(labels):
            msg = f"labels must be unique, got {list(labels)!r}"
            raise InputError(msg)
        object.__setattr__(self, "labels", labels)

    @property
    def error_column(self) -> str:
        """Name of the reason column, ``<output_column>_error``."""
        return f"{self.output_column}_error"

    @property
    def answer_key(self) -> str:
        """Key of the answer in the model's reply (``"label"``)."""
        return "label"


@dataclass(frozen=True)
class MapSpec:
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

    Examples
    --------
    >>> MapSpec("text", "Is it a question?", output_type="boolean").output_type
    'boolean'
    """

    column: str
    instruction: str
    output_type: OutputType = "string"
    batch_size: int = DEFAULT_BATCH_SIZE
    output_column: str = "value"

    def __post_init__(self) -> None:
        _check_common(self.column, self.batch_size, self.output_column)
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            msg = "instruction must be a non-empty string"
            raise InputError(msg)
        if self.output_type not in _OUTPUT_TYPES:
            msg = f"output_type must be one of {list(_OUTPUT_TYPES)}, got {self.output_type!r}"
            raise InputError(msg)

    @property
    def error_column(self) -> str:
        """Name of the reason column, ``<output_column>_error``."""
        return f"{self.output_column}_error"

    @property
    def answer_key(self) -> str:
        """Key of the answer in the model's reply (``"value"``)."""
        return "value"


OpSpec = ClassifySpec | MapSpec

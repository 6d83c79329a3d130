"""Frozen descriptions of a semantic operator: what to ask and where to put the answer.

A spec holds no client and no data; it is shipped as-is to Spark executors.

Examples
--------
>>> spec = ClassifySpec(column="question", labels=("billing", "other"))
>>> spec.error_column
'label_error'
>>> MapSpec(column="q", instruction="Count the words", output_type="integer").error_column
'value_error'
>>> spec.max_row_tokens, spec.truncate
(8000, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.tokens import CHARS_PER_TOKEN, estimate_tokens

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

#: Rows per model call.  Use ``batch_size=1`` for small local models (see :class:`ClassifySpec`).
DEFAULT_BATCH_SIZE = 16
#: Longest cell sent, in estimated tokens (:func:`rlm_pipeline.llm.tokens.estimate_tokens`).
#: :class:`~rlm_pipeline.llm.config.LLM` has no context size, so this is a fixed default.
DEFAULT_MAX_ROW_TOKENS = 8_000
#: Appended to a cell cut to ``max_row_tokens`` when ``truncate=True``.
TRUNCATED_MARKER = "… [truncated]"

OutputType = Literal["string", "integer", "number", "boolean"]
_OUTPUT_TYPES: tuple[str, ...] = get_args(OutputType)


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

    ``columns`` are the input's column names; the spec's ``output_column`` and
    ``<output_column>_error`` must not be among them.  Called before any model
    call.

    Raises
    ------
    InputError
        One clear line naming the column(s) and the two ways out.

    Examples
    --------
    >>> check_output_columns(["q", "label"], ClassifySpec("q", ("a", "b")))
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.InputError: column 'label' already exists in the input; choose another output_column, or pass overwrite=True (CLI: --overwrite-column) to replace it
    >>> check_output_columns(["q", "label"], ClassifySpec("q", ("a", "b")), overwrite=True)
    """
    if overwrite:
        return
    taken = [name for name in (spec.output_column, spec.error_column) if name in columns]
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


def fit_text(text: str, spec: OpSpec) -> tuple[str, None] | tuple[None, str]:
    """What to send for ``text`` under the spec's row limit: ``(text, None)`` or ``(None, reason)``.

    A text of at most ``spec.max_row_tokens`` estimated tokens is sent as is.
    A longer one is cut to the limit, ending with :data:`TRUNCATED_MARKER`,
    when ``spec.truncate``; otherwise it is not sent and the reason starts
    with ``input_too_long``.

    Examples
    --------
    >>> spec = ClassifySpec("q", ("a", "b"), max_row_tokens=5)
    >>> fit_text("short", spec)
    ('short', None)
    >>> fit_text("x" * 100, spec)
    (None, 'input_too_long: ~25 tokens, max_row_tokens is 5')
    >>> sent, _ = fit_text("x" * 100, ClassifySpec("q", ("a", "b"), max_row_tokens=5, truncate=True))
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


def _check_row_limit(max_row_tokens: int, truncate: bool) -> None:
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

    column: str
    labels: tuple[str, ...]
    instructions: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    output_column: str = "label"
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS
    truncate: bool = False

    def __post_init__(self) -> None:
        _check_common(self.column, self.batch_size, self.output_column)
        _check_row_limit(self.max_row_tokens, self.truncate)
        object.__setattr__(self, "labels", check_labels(self.labels))

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
    max_row_tokens, truncate
        Per-row input limit, as for :class:`ClassifySpec`.

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
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS
    truncate: bool = False

    def __post_init__(self) -> None:
        _check_common(self.column, self.batch_size, self.output_column)
        _check_row_limit(self.max_row_tokens, self.truncate)
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

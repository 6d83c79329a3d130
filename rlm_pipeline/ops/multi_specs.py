"""The row-wise passes of top_k and join as operator specs (:class:`~rlm_pipeline.ops.spec_base.OpSpec`).

Both run through the one fan-out (:func:`rlm_pipeline.ops.api.run_op`): dedup,
batches, the row store, limits, re-asks and both engines come with it.

- :class:`ScoreSpec`: one integer 0-100 per row, how well it fits a criterion.
- :class:`PairSpec`: one boolean per candidate pair (the row text is
  :func:`~rlm_pipeline.ops.multi_wire.pair_text`): does the condition hold.

The system message carries everything fixed (an ``Instruction:`` line starting
with :data:`~rlm_pipeline.ops.multi_wire.SCORE_PREFIX` or
:data:`~rlm_pipeline.ops.multi_wire.JOIN_PREFIX`, which the simulator reads);
the user message holds only the rows: ``0:"text"`` for scores, and for pairs
each left text once (``LEFT: "..."``) above its numbered right texts
(:func:`~rlm_pipeline.ops.multi_wire.pair_lines`; one pair:
:func:`~rlm_pipeline.ops.multi_wire.single_pair_lines`).

Examples
--------
>>> spec = ScoreSpec("q", "most urgent")
>>> spec.check_value(101), spec.check_value(7.0)
((None, 'parse_error: score 101 is outside 0-100'), (7, None))
>>> PairSpec("the FAQ answers it").output_fields()
(('__rp_match', 'boolean'),)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rlm_pipeline.errors import InputError
from rlm_pipeline.ops.multi_wire import (
    JOIN_PREFIX,
    MULTI_PROMPT_VERSION,
    PAIR_BATCH_HEAD,
    PAIR_PROMPT_VERSION,
    PAIR_SINGLE_HEAD,
    SCORE_PREFIX,
    pair_lines,
    single_pair_lines,
)
from rlm_pipeline.ops.prompts import row_lines
from rlm_pipeline.ops.spec_base import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_ROW_TOKENS,
    SpecBase,
    check_common,
    check_typed,
)

__all__ = ["PAIR_COLUMN", "PairSpec", "ScoreSpec"]

#: The pair-text column join builds.
PAIR_COLUMN = "__rp_pair"


def _messages(system: str, texts: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": "\n".join(row_lines(texts))},
    ]


def _one_line(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class ScoreSpec(SpecBase):
    """Score each row 0-100 for ``criterion`` (top_k's first pass)."""

    column: str
    criterion: str
    batch_size: int = DEFAULT_BATCH_SIZE
    output_column: str = "__rp_score"
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS
    truncate: bool = False
    op_name: ClassVar[str] = "top_k"

    def __post_init__(self) -> None:
        check_common(self.column, self.batch_size, self.output_column, self.max_row_tokens,
                     self.truncate)
        if not isinstance(self.criterion, str) or not self.criterion.strip():
            msg = "criterion must be a non-empty string"
            raise InputError(msg)

    def output_fields(self) -> tuple[tuple[str, str], ...]:
        return ((self.output_column, "integer"),)

    def answer_params(self) -> dict[str, Any]:
        return {"op": "top_k_score", "criterion": self.criterion, "prompt": MULTI_PROMPT_VERSION}

    def answer_schema(self) -> dict[str, Any]:
        return {"type": "integer"}

    def messages(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        one = "There is one row; answer for it alone." if self.batch_size == 1 else (
            "Answer each row once by id."
        )
        system = "\n".join(
            [
                "Give each row an integer score from 0 to 100.",
                f"Instruction: {SCORE_PREFIX}{_one_line(self.criterion)}",
                one,
            ]
        )
        return _messages(system, texts)

    def check_value(self, value: Any) -> tuple[Any, str | None]:
        score, error = check_typed(value, "integer")
        if error is not None:
            return None, error
        if not 0 <= score <= 100:
            return None, f"parse_error: score {score} is outside 0-100"
        return score, None


@dataclass(frozen=True)
class PairSpec(SpecBase):
    """Does ``condition`` hold for a candidate pair (join's question per pair)."""

    condition: str
    column: str = PAIR_COLUMN
    batch_size: int = DEFAULT_BATCH_SIZE
    output_column: str = "__rp_match"
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS
    truncate: bool = False
    op_name: ClassVar[str] = "join"

    def __post_init__(self) -> None:
        check_common(self.column, self.batch_size, self.output_column, self.max_row_tokens,
                     self.truncate)
        if not isinstance(self.condition, str) or not self.condition.strip():
            msg = "condition must be a non-empty string"
            raise InputError(msg)

    def output_fields(self) -> tuple[tuple[str, str], ...]:
        return ((self.output_column, "boolean"),)

    def answer_params(self) -> dict[str, Any]:
        return {"op": "join_pair", "condition": self.condition, "prompt": PAIR_PROMPT_VERSION}

    def answer_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}

    def messages(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Each left text once above its numbered right texts; one pair: ``LEFT:`` / ``RIGHT:``.

        Ids stay the positions in ``texts`` (``0..n-1``), so the reply is
        checked as every batched reply is.
        """
        single = self.batch_size == 1 and len(texts) == 1
        system = "\n".join(
            [
                PAIR_SINGLE_HEAD if single else PAIR_BATCH_HEAD,
                f"Instruction: {JOIN_PREFIX}{_one_line(self.condition)}",
            ]
        )
        lines = single_pair_lines(texts[0]) if single else pair_lines(texts)
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": "\n".join(lines)},
        ]

    def check_value(self, value: Any) -> tuple[Any, str | None]:
        return check_typed(value, "boolean")

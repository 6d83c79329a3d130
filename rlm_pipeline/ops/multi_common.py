"""What aggregate, top_k and join share: the input read once, the output in the caller's kind.

The engine is decided once, from the data (or ``engine=``) by
:func:`rlm_pipeline.engines.load.engine_for`; these operators then work on a
Polars ``LazyFrame`` or a Spark ``DataFrame`` and hand back the same kind of
frame they got (a Polars ``DataFrame`` for other inputs).

Examples
--------
>>> import polars as pl
>>> frame = read_input(pl.DataFrame({"q": ["a"]}), None)
>>> frame.engine, frame.lazy
('polars', False)
>>> type(frame.back(pl.DataFrame({"x": [1]}))).__name__
'DataFrame'
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl

from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops.runner import run_sync

if TYPE_CHECKING:
    from rlm_pipeline.llm.client import LLMClient

__all__ = ["InputFrame", "check_llm", "read_input", "run_spec", "with_client"]

T = TypeVar("T")


@dataclass(frozen=True)
class InputFrame:
    """The caller's table on its engine.

    Attributes
    ----------
    engine
        ``"polars"`` or ``"spark"``.
    frame
        A Polars ``LazyFrame`` or a Spark ``DataFrame``.
    lazy
        The caller gave a Polars ``LazyFrame`` (a ``LazyFrame`` goes back).
    """

    engine: str
    frame: Any
    lazy: bool = False

    @property
    def columns(self) -> list[str]:
        """The input's column names."""
        if self.engine == "spark":
            return [str(name) for name in self.frame.columns]
        names: list[str] = self.frame.collect_schema().names()
        return names

    def require(self, names: Sequence[str], what: str = "column") -> None:
        """Raise :class:`InputError` (one line) unless every name is a column."""
        have = self.columns
        for name in names:
            if not isinstance(name, str) or name not in have:
                msg = f"{what} {name!r} not found; columns: {have}"
                raise InputError(msg)

    def back(self, out: pl.DataFrame) -> Any:
        """``out`` as the kind of frame the caller gave."""
        if self.engine == "spark":
            return self.frame.sparkSession.createDataFrame(out.to_arrow())
        return out.lazy() if self.lazy else out


def read_input(data: Any, engine: str | None) -> InputFrame:
    """The caller's ``data`` on its engine, chosen by :func:`rlm_pipeline.engines.load.engine_for`."""
    from rlm_pipeline.engines.load import engine_for

    chosen = engine_for(data, engine)
    native = chosen.read(data)
    if isinstance(native, pl.DataFrame):
        native = native.lazy()
    return InputFrame(chosen.name, native, lazy=isinstance(data, pl.LazyFrame))


def check_llm(llm: Any) -> LLM:
    """``llm`` when it is an :class:`~rlm_pipeline.llm.config.LLM`, else one-line ``InputError``."""
    if not isinstance(llm, LLM):
        msg = f"llm must be an rlm_pipeline.LLM, got {type(llm).__name__}"
        raise InputError(msg)
    return llm


def with_client(
    llm: LLM,
    meter: UsageMeter,
    budget: Budget | None,
    work: Callable[[LLMClient], Coroutine[Any, Any, T]],
) -> T:
    """Run ``work(client)`` to completion with one client for ``llm`` (from sync code)."""
    from rlm_pipeline.llm.client import LLMClient

    async def run() -> T:
        async with LLMClient(llm, meter=meter, budget=budget) as client:
            return await work(client)

    return run_sync(run)


def run_spec(
    frame: InputFrame,
    data: Any,
    spec: Any,
    llm: LLM,
    *,
    meter: UsageMeter | None,
    budget: Budget | None,
) -> tuple[Any, Any]:
    """Run the row-wise ``spec`` over ``data`` (a native frame) on ``frame``'s engine.

    The one fan-out entry (``Engine.map_frame``, as :func:`rlm_pipeline.ops.api.run_op`):
    every row back once with the spec's columns; ``(frame, OpStats)``.
    """
    from rlm_pipeline.engines.load import engine_for
    from rlm_pipeline.ops.fanout import FANOUT

    engine = engine_for(data, frame.engine)
    return engine.map_frame(
        engine.read(data, lazy=False), spec, llm, fanout=FANOUT, meter=meter, budget=budget,
        overwrite=True,
    )

"""What aggregate, top_k and join share: the input read once, the output in the caller's kind.

The engine is decided once, from the data (or ``engine=``) by
:func:`rlm_pipeline.engines.load.engine_for`; these operators then work on a
Polars ``LazyFrame`` or a Spark ``DataFrame`` and hand back the same kind of
frame they got (a Polars ``DataFrame`` for other inputs).

Scratch views (groups, candidates, pairs, ...) are named by
:meth:`InputFrame.fresh` (``_rlm_op_<what>_<random>``: hidden from the root
model's view list and not counted in its ``max_views``) and dropped when the
operator ends, also on error (:meth:`InputFrame.release`; on classic Spark that
drops the session's temp views).  A frame handed back stays usable: its plan names
no temp view (a classic Spark DataFrame resolved them when it was built; on
Spark Connect, where the server analyses a plan again at every action, the
engine's SQL carries the views' frames instead of their names).

Examples
--------
>>> import polars as pl
>>> frame = read_input(pl.DataFrame({"q": ["a"]}), None)
>>> frame.engine, frame.columns
('polars', ['q'])
>>> type(frame.back(pl.DataFrame({"x": [1]}))).__name__
'DataFrame'
>>> frame.release()
>>> frame.eng.views()
[]
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl

from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops.runner import run_sync

if TYPE_CHECKING:
    from rlm_pipeline.llm.client import LLMClient

__all__ = ["SCRATCH_PREFIX", "InputFrame", "check_llm", "read_input", "run_spec", "with_client"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: Start of the operators' scratch view names (``_rlm``: the library's, hidden from the model).
SCRATCH_PREFIX = "_rlm_op_"


@dataclass(frozen=True)
class InputFrame:
    """The caller's table, registered as a view of its engine.

    Everything engine-specific goes through the engine's own methods: the
    operators ask it checked SQL (:meth:`sql`, compiled by
    :mod:`rlm_pipeline.expr` for Polars or Spark), read small results as
    Arrow (:meth:`arrow`) and hand results back (:meth:`back`).

    Attributes
    ----------
    eng
        The engine (:func:`rlm_pipeline.engines.load.engine_for` chose it).
    view
        The view holding the input.
    given
        The caller's data: :meth:`back` hands results back as its kind of frame
        (``Engine.frame_like``; None: a Polars ``DataFrame`` or a Spark ``DataFrame``).
    owned
        The engine was made for this operator (:func:`read_input`): :meth:`release`
        closes it.  False for an engine the caller keeps (the RLM run's).
    scratch
        The scratch views :meth:`fresh` named so far (:meth:`release` drops them).
    """

    eng: Any
    view: str = "context"
    given: Any = field(default=None, compare=False, repr=False)
    owned: bool = field(default=False, compare=False)
    scratch: list[str] = field(default_factory=list, compare=False, repr=False)

    @property
    def engine(self) -> str:
        """``"polars"`` or ``"spark"``."""
        return str(self.eng.name)

    @property
    def frame(self) -> Any:
        """The input's native plan (Polars ``LazyFrame`` or Spark ``DataFrame``)."""
        return self.eng.frame(self.view)

    @property
    def columns(self) -> list[str]:
        """The input's column names."""
        return list(self.eng.schema(self.view))

    def require(self, names: Sequence[str], what: str = "column") -> None:
        """Raise :class:`InputError` (one line) unless every name is a column."""
        have = self.columns
        for name in names:
            if not isinstance(name, str) or name not in have:
                msg = f"{what} {name!r} not found; columns: {have}"
                raise InputError(msg)

    def text_sql(self, column: str, alias: str | None = None) -> str:
        """SQL reading ``column`` as text: as is for strings, cast for integers, booleans, dates.

        Raises
        ------
        InputError
            Any other type (one line naming it).
        """
        from rlm_pipeline.expr.sqltext import ident

        ref = f"{alias}.{ident(column)}" if alias else ident(column)
        kind = self.eng.schema(self.view).get(column, "string")
        if kind == "string":
            return ref
        if kind in ("int64", "bool", "date"):
            return f"CAST({ref} AS VARCHAR)"
        msg = (
            f"column {column!r} holds {kind} values; the text column must be a string "
            "column (or integers, booleans or dates, read as text)"
        )
        raise InputError(msg)

    def sql(self, query: str, name: str) -> int:
        """Run a checked SELECT on the engine, registered as view ``name``; its row count."""
        return int(self.eng.sql(query, name))

    def arrow(self, view: str) -> pl.DataFrame:
        """All rows of ``view`` as a Polars DataFrame (for small results)."""
        table = pl.from_arrow(self.eng.to_arrow(view))
        assert isinstance(table, pl.DataFrame)
        return table

    def fresh(self, what: str) -> str:
        """A new scratch view name (``_rlm_op_<what>_<random>``), never one the model can use.

        The name is remembered: :meth:`release` drops the view.
        """
        name = f"{SCRATCH_PREFIX}{what}_{uuid.uuid4().hex[:10]}"
        self.scratch.append(name)
        return name

    def release(self) -> None:
        """Drop the scratch views (every view of the engine when :attr:`owned`); never raises.

        Called when the operator ends, also on error.  Frames already handed
        back stay usable (a Polars plan holds its data; a Spark plan names no
        temp view, on Spark Connect too), and a DataFrame the caller cached
        stays cached (``Engine.drop`` drops names only).
        """
        names, self.scratch[:] = list(self.scratch), []
        if self.owned:
            names = [v for v in self.eng.views() if v not in names] + names
        try:
            for name in reversed(names):
                self.eng.drop(name)
        except Exception:  # noqa: BLE001 - the operator's result or error stands
            logger.warning("could not drop the scratch views %s", names, exc_info=True)

    def put(self, name: str, data: Any) -> None:
        """Register ``data`` (a native frame or an Arrow table) as view ``name``."""
        self.eng.register(name, data, replace=True)

    def back(self, out: pl.DataFrame | str) -> Any:
        """``out`` (a frame, or a view's name) as the kind of frame the caller gave."""
        if isinstance(out, pl.DataFrame):
            name = self.fresh("out")
            self.put(name, out.to_arrow())
            out = name
        return self.eng.frame_like(out, self.given)


def read_input(data: Any, engine: str | None) -> InputFrame:
    """The caller's ``data`` on a new engine, chosen by :func:`rlm_pipeline.engines.load.engine_for`.

    The frame owns that engine: call :meth:`InputFrame.release` when the operator ends.
    """
    from rlm_pipeline.engines.load import engine_for

    chosen = engine_for(data, engine)
    chosen.register("context", chosen.read(data), replace=True)
    return InputFrame(chosen, "context", given=data, owned=True)


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
    """Run the row-wise ``spec`` over ``data`` (a native frame of ``frame``'s engine).

    The one fan-out entry (``Engine.map_frame``, as :func:`rlm_pipeline.ops.api.run_op`):
    every row back once with the spec's columns; ``(frame, OpStats)``.
    """
    from rlm_pipeline.ops.fanout import FANOUT

    return frame.eng.map_frame(  # type: ignore[no-any-return]
        data, spec, llm, fanout=FANOUT, meter=meter, budget=budget, overwrite=True
    )

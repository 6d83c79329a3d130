"""The operators' fan-outs as the engines take them (:class:`~rlm_pipeline.engines.base.Fanout`).

The engines never import the fan-out modules: a caller hands :data:`FANOUT` to
:meth:`Engine.map_llm <rlm_pipeline.engines.base.Engine.map_llm>`, and the engine
calls the methods of its own kind (:meth:`Engine.map_llm` in the caller's loop,
:meth:`Engine.map_frame` for a frame on the host).  So the engine, chosen once,
is what decides Polars vs Spark; this module only adapts the fan-outs to one shape.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from rlm_pipeline.llm.config import LLM, Budget
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.ops.core import OpsClient, RowProgress
    from rlm_pipeline.ops.spec_base import OpSpec
    from rlm_pipeline.ops.stats import OpStats

__all__ = ["FANOUT", "OpsFanout"]


class OpsFanout:
    """:mod:`rlm_pipeline.ops`' fan-outs behind the engines' ``Fanout`` protocol."""

    async def polars(
        self, frame: pl.LazyFrame | pl.DataFrame, spec: OpSpec, client: OpsClient
    ) -> tuple[pl.DataFrame, OpStats]:
        """:func:`rlm_pipeline.ops.polars_fanout.apply_with_client`: in the caller's loop."""
        from rlm_pipeline.ops import polars_fanout

        return await polars_fanout.apply_with_client(frame, spec, client)

    def polars_frame(
        self,
        frame: pl.LazyFrame | pl.DataFrame,
        spec: OpSpec,
        llm: LLM,
        *,
        meter: UsageMeter | None,
        budget: Budget | None,
        progress: RowProgress | None,
    ) -> tuple[pl.LazyFrame | pl.DataFrame, OpStats]:
        """:func:`rlm_pipeline.ops.polars_fanout.apply`: one client, a loop of its own."""
        import polars as pl

        from rlm_pipeline.ops import polars_fanout

        options: dict[str, Any] = {"meter": meter, "budget": budget, "progress": progress}
        if isinstance(frame, pl.LazyFrame):
            return polars_fanout.apply(frame, spec, llm, **options)
        return polars_fanout.apply(frame, spec, llm, **options)

    def polars_parquet(
        self,
        frame: pl.LazyFrame,
        spec: OpSpec,
        llm: LLM,
        path: str | os.PathLike[str],
        *,
        meter: UsageMeter | None,
        budget: Budget | None,
        progress: RowProgress | None,
    ) -> OpStats:
        """:func:`rlm_pipeline.ops.polars_fanout.classify_to_parquet`: streamed, bounded memory."""
        from rlm_pipeline.ops import polars_fanout

        return polars_fanout.classify_to_parquet(
            frame, spec, llm, path, meter=meter, budget=budget, progress=progress
        )

    def spark(
        self,
        frame: Any,
        spec: OpSpec,
        llm: LLM,
        *,
        meter: UsageMeter | None,
        budget: Budget | None,
        progress: RowProgress | None = None,
    ) -> tuple[Any, OpStats]:
        """:func:`rlm_pipeline.ops.spark_fanout.apply`: as Spark tasks sharing ``llm`` out."""
        from rlm_pipeline.ops import spark_fanout

        return spark_fanout.apply(frame, spec, llm, meter=meter, budget=budget, progress=progress)


#: The one instance callers pass to ``Engine.map_llm``.
FANOUT = OpsFanout()

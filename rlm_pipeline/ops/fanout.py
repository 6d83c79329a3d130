"""The operators' fan-outs as the engines take them (:class:`~rlm_pipeline.engines.base.Fanout`).

The engines never import the fan-out modules: a caller hands :data:`FANOUT` to
:meth:`Engine.map_llm <rlm_pipeline.engines.base.Engine.map_llm>`, and the engine
calls the method for its own kind.  So the engine, chosen once, is what decides
Polars vs Spark; this module only adapts the two fan-outs to one shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from rlm_pipeline.llm.config import LLM, Budget
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.ops.core import OpsClient
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

    def spark(
        self,
        frame: Any,
        spec: OpSpec,
        llm: LLM,
        *,
        meter: UsageMeter | None,
        budget: Budget | None,
    ) -> tuple[Any, OpStats]:
        """:func:`rlm_pipeline.ops.spark_fanout.apply`: as Spark tasks sharing ``llm`` out."""
        from rlm_pipeline.ops import spark_fanout

        return spark_fanout.apply(frame, spec, llm, meter=meter, budget=budget)


#: The one instance callers pass to ``Engine.map_llm``.
FANOUT = OpsFanout()

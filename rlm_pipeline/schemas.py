"""Arrow schemas matching the JSON Schemas in the repository's ``schemas/`` folder.

The JSON Schemas describe one row / one document for people and for
validation in tests; these Arrow schemas are what the code writes:

- tickets input: :data:`rlm_pipeline.datasets.TICKETS_SCHEMA` (``tickets.schema.json``);
- classified output: :func:`classified_schema` (``classified.schema.json``);
- the ``ask`` answer: ``answer.schema.json`` (a JSON document, no Arrow form);
- trace records: ``trace.schema.json`` (JSON Lines, no Arrow form).

Examples
--------
>>> import pyarrow as pa
>>> classified_schema(pa.schema([("question", pa.string())])).names
['question', 'label', 'label_error']
"""

from __future__ import annotations

import pyarrow as pa

from rlm_pipeline.ops.stats import ERROR_KINDS

__all__ = ["ERROR_KINDS", "classified_schema"]


def classified_schema(input_schema: pa.Schema, output_column: str = "label") -> pa.Schema:
    """The schema of ``classify``'s output: the input's fields plus label and error."""
    return pa.schema(
        [
            *input_schema,
            pa.field(output_column, pa.string()),
            pa.field(f"{output_column}_error", pa.string()),
        ]
    )

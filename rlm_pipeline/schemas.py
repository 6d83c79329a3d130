"""Arrow schemas matching the JSON Schemas in ``schemas/``.

The JSON Schemas describe one row / one document for people and for
validation in tests; these Arrow schemas are what the code writes.

Examples
--------
>>> import pyarrow as pa
>>> classified_schema(pa.schema([("question", pa.string())])).names
['question', 'label', 'label_error']
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["ERROR_REASONS", "classified_schema"]

#: Every ``<output_column>_error`` value starts with one of these.
ERROR_REASONS = (
    "empty_input",
    "parse_error",
    "invalid_label",
    "missing_in_reply",
    "api_error",
    "budget_exceeded",
)


def classified_schema(input_schema: pa.Schema, output_column: str = "label") -> pa.Schema:
    """The schema of ``classify``'s output: the input's fields plus label and error."""
    return pa.schema(
        [
            *input_schema,
            pa.field(output_column, pa.string()),
            pa.field(f"{output_column}_error", pa.string()),
        ]
    )

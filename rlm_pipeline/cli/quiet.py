"""Known third-party warnings the CLI filters: :mod:`rlm_pipeline._quiet`, re-exported.

The helper lives in the library (the Spark fan-out uses it too; the library
never imports the CLI).

Examples
--------
>>> import warnings
>>> with known_warnings_filtered():
...     warnings.warn("PySpark does not yet fully support pandas >= 3.0.0.", FutureWarning)
"""

from __future__ import annotations

from rlm_pipeline._quiet import PYSPARK_PANDAS_WARNING, known_warnings_filtered

__all__ = ["PYSPARK_PANDAS_WARNING", "known_warnings_filtered"]

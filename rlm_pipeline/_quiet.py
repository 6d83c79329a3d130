"""Known third-party warnings filtered around our own calls (never globally).

PySpark 4.3 warns on every ``mapInArrow`` plan, and on some imports, that
pandas >= 3 is not fully supported (``FutureWarning``).  rlm_pipeline moves
data through Arrow, not pandas, so the warning says nothing about our runs;
the Spark fan-out (``rp.spark.*``, :func:`rlm_pipeline.ops.spark_fanout.apply`),
the CLI and the jobs filter exactly that message while their Spark calls run.
The filter is scoped with :func:`warnings.catch_warnings`, so nothing outside
those calls changes.

Examples
--------
>>> import warnings
>>> with known_warnings_filtered():
...     warnings.warn("PySpark does not yet fully support pandas >= 3.0.0.", FutureWarning)
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

__all__ = ["PYSPARK_PANDAS_WARNING", "known_warnings_filtered"]

#: Start of the message PySpark warns with when pandas >= 3 is installed.
PYSPARK_PANDAS_WARNING = r"PySpark does not yet fully support pandas"


@contextlib.contextmanager
def known_warnings_filtered() -> Iterator[None]:
    """Ignore PySpark's pandas-version ``FutureWarning`` inside the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PYSPARK_PANDAS_WARNING, category=FutureWarning)
        yield

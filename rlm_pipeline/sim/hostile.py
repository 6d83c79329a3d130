"""Scripted root plans that issue valid but too expensive work (simulator, for tests).

Selected by a marker in the question (see :mod:`rlm_pipeline.sim.planner`):

- ``[adversarial:heavy]`` -- the hostile-but-valid set, one call per turn: a
  triple self-join on the date column, a self-join on a low-cardinality key
  (another string column, else the month of the date),
  ``GROUP BY`` a near-unique expression over the whole table, ``ORDER BY`` over
  every row, a chain of 30 CTEs that each read the previous one twice,
  ``partition`` with ``n = 1,000,000``, then 100 ``filter`` calls that each make
  a new view (8 per turn);
- ``[adversarial:slow]`` -- only the triple self-join (a query that runs for
  minutes when nothing stops it); ``[adversarial:group]`` -- only the GROUP BY
  on a near-unique expression;
- ``[adversarial:legit]`` -- large but legitimate work: a 1,000-row lookup
  view joined to ``context``, and a ``GROUP BY`` over every row.

Each plan then counts the rows of ``context`` with a plain ``sql`` (view
``total``; ``heavy`` reuses the name ``f0``, its view limit being reached) and
answers that number, so a test sees that the run went on and
answered after its refused calls.

Examples
--------
>>> from rlm_pipeline.sim.planner import Meta
>>> meta = Meta({"ticket_id": "int64", "date": "date", "question": "string"}, 100)
>>> turns = hostile_script("heavy", meta)
>>> turns[0][0][0], len(turns)
('sql', 20)
>>> hostile_value([("sql", {"name": "total"}, 'view `total`: 1 rows\\n{"n": 7}')])
7
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["HOSTILE_MODES", "TRIPLE_JOIN", "hostile_script", "hostile_value"]

#: The modes this module scripts.
HOSTILE_MODES = frozenset({"heavy", "slow", "group", "legit"})
#: The triple self-join, with ``{d}`` for the date column.
TRIPLE_JOIN = (
    "SELECT COUNT(*) AS n FROM context a JOIN context b ON a.{d} = b.{d} "
    "JOIN context c ON b.{d} = c.{d}"
)
_FILTERS = 100
_PER_TURN = 8

Call = tuple[str, dict[str, Any]]


def _columns(meta: Any) -> tuple[str, str, str, str]:
    """(date-like column, text column, low-cardinality column, integer id column)."""
    columns: dict[str, str] = dict(meta.columns)
    names = list(columns)
    date = meta.date_column or names[0]
    text = meta.text or names[0]
    strings = [c for c, t in columns.items() if t.lower() in ("string", "str") and c != text]
    dated = columns.get(date, "").lower() in ("date", "timestamp")
    # a key with few values: another string column, else the month of the date
    low = (
        "{t}." + strings[0]
        if strings
        else (f"extract(month FROM {{t}}.{date})" if dated else "{t}." + date)
    )
    ints = [c for c, t in columns.items() if t.lower().startswith("int")]
    ident = next((c for c in ints if "id" in c.lower()), ints[0] if ints else date)
    return date, text, low, ident


def _cte_chain(length: int) -> str:
    ctes = ["c1 AS (SELECT * FROM context)"]
    ctes += [
        f"c{i} AS (SELECT * FROM c{i - 1} UNION ALL SELECT * FROM c{i - 1})"
        for i in range(2, length + 1)
    ]
    return "WITH " + ", ".join(ctes) + f" SELECT COUNT(*) AS n FROM c{length}"


def hostile_script(mode: str, meta: Any) -> list[list[Call]]:
    """The turns of a scripted plan: each a list of tool calls, the count of ``context`` last."""
    date, text, low, ident = _columns(meta)
    total: list[Call] = [("sql", {"query": "SELECT COUNT(*) AS n FROM context", "name": "total"})]
    unique = f"{text} || CAST({ident} AS VARCHAR)"
    if mode == "slow":
        return [[("sql", {"query": TRIPLE_JOIN.format(d=date), "name": "slow"})], total]
    if mode == "group":
        grouping = f"SELECT {unique} AS k, COUNT(*) AS n FROM context GROUP BY {unique}"
        return [[("sql", {"query": grouping, "name": "slow"})], total]
    if mode == "legit":
        lookup = f"SELECT {ident}, {ident} % 7 AS bucket FROM context ORDER BY {ident} LIMIT 1000"
        joined = (
            f"SELECT l.bucket, COUNT(*) AS n FROM context c JOIN lookup l ON c.{ident} = "
            f"l.{ident} GROUP BY l.bucket"
        )
        grouped = f"SELECT {date}, COUNT(*) AS n FROM context GROUP BY {date}"
        return [
            [("sql", {"query": lookup, "name": "lookup"})],
            [("sql", {"query": joined, "name": "joined"})],
            [("sql", {"query": grouped, "name": "grouped"})],
            total,
        ]
    turns: list[list[Call]] = [
        [("sql", {"query": TRIPLE_JOIN.format(d=date), "name": "triple"})],
        [
            (
                "sql",
                {
                    "query": f"SELECT COUNT(*) AS n FROM context a JOIN context b "
                    f"ON {low.format(t='a')} = {low.format(t='b')}",
                    "name": "lowcard",
                },
            )
        ],
        [
            (
                "sql",
                {
                    "query": f"SELECT {unique} AS k, COUNT(*) AS n FROM context GROUP BY {unique}",
                    "name": "nearunique",
                },
            )
        ],
        [("sql", {"query": f"SELECT * FROM context ORDER BY {text}, {ident}", "name": "sorted"})],
        [("sql", {"query": _cte_chain(30), "name": "ctes"})],
        [("partition", {"view": "context", "n": 1_000_000, "name": "parts"})],
    ]
    filters: list[Call] = [
        ("filter", {"view": "context", "where": f"{ident} % 100 = {i}", "name": f"f{i}"})
        for i in range(_FILTERS)
    ]
    turns += [filters[i : i + _PER_TURN] for i in range(0, _FILTERS, _PER_TURN)]
    # the view limit is reached by now: the count reuses the name of a view (as told to)
    return [*turns, [("sql", {"query": "SELECT COUNT(*) AS n FROM context", "name": "f0"})]]


def hostile_value(calls: list[tuple[str, dict[str, Any], str]]) -> Any:
    """The ``n`` of the last successful ``total`` view, or a note when there is none."""
    for name, args, result in reversed(calls):
        if name != "sql" or args.get("name") not in ("total", "f0") or result.startswith("error"):
            continue
        for line in result.splitlines():
            if line.startswith("{"):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and "n" in row:
                    return row["n"]
    return "no count"

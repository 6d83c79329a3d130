"""Reading many row answers at once: digests only, labels shared, bad entries skipped."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rlm_pipeline.llm.cache import ResponseCache, RowKeys


def test_get_rows_by_digest_shares_labels_and_skips_unreadable_entries(tmp_path: Path) -> None:
    keys = RowKeys(model="m", temperature=0.0, prompt_version="p", params={"op": "x"})
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.put_rows({keys.digest(f"t{i}"): ("billing" if i % 2 else 3) for i in range(10)})
        cache.put_rows({keys.digest("d1"): {"n": 1}, keys.digest("d2"): {"n": 1}})
    conn = sqlite3.connect(path)
    conn.execute("UPDATE row_store SET value = '{not json' WHERE key = ?", (keys.digest("t0"),))
    conn.commit()
    conn.close()
    with ResponseCache(path) as cache:
        good = {keys.digest(f"t{i}"): ("billing" if i % 2 else 3) for i in range(1, 10)}
        assert cache.get_rows([*good, keys.digest("nope")]) == good  # every key a digest
        # with an unreadable entry among them (t0): that one is a miss, the rest are read
        assert cache.get_rows([keys.digest("t0"), *good]) == good
        dicts = cache.get_rows([keys.digest("d1"), keys.key("d2")])  # a list or dict answer:
        assert dicts == {keys.digest("d1"): {"n": 1}, keys.key("d2"): {"n": 1}}
        assert dicts[keys.digest("d1")] is not dicts[keys.key("d2")]  # never one shared object

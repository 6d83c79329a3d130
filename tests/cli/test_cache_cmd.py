"""``rlm-pipeline cache stats|prune`` on a real cache file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from rlm_pipeline.cli.main import main
from rlm_pipeline.llm.cache import ResponseCache, RowKeys
from rlm_pipeline.llm.reply import ChatReply


def _cache(path: Path) -> None:
    keys = RowKeys(model="m", temperature=0.0, prompt_version="p", params={"op": "x"})
    with ResponseCache(path) as cache:
        cache.put_rows({keys.digest(str(i)): "billing" for i in range(20)})
        cache.put("ab" * 32, ChatReply(content="{}"))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE row_store SET created_at = created_at - 10 * 86400"
                 " WHERE key IN (SELECT key FROM row_store ORDER BY key LIMIT 5)")
    conn.commit()
    conn.close()


def test_stats_then_prune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.sqlite"
    _cache(path)
    assert main(["cache", "stats", "--cache", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["row_answers"], stats["responses"], stats["entries"]) == (20, 1, 21)
    assert main(["cache", "stats", "--cache", str(path)]) == 0
    assert "row answers" in capsys.readouterr().out
    assert main(["cache", "prune", "--cache", str(path), "--older-than", "7d"]) == 0
    assert "removed 5 entries older than 7d" in capsys.readouterr().out
    with ResponseCache(path) as cache:
        assert cache.row_count() == 15 and len(cache) == 1


@pytest.mark.parametrize("argv", [["prune", "--older-than", "soon"], ["stats"]])
def test_bad_duration_or_missing_file_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    path = tmp_path / ("c.sqlite" if argv[0] == "prune" else "absent.sqlite")
    if argv[0] == "prune":
        _cache(path)
    assert main(["cache", *argv, "--cache", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rlm-pipeline: error:")

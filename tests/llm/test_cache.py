"""The SQLite response cache: keys, round trips, and several processes at once."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from rlm_pipeline.llm.cache import (
    ResponseCache,
    RowKeys,
    chat_key,
    endpoint_id,
    json_key,
    request_key,
    row_key,
)
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.reply import ChatReply, ToolCall

MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]


def _key(**changes: object) -> str:
    base: dict[str, object] = {
        "model": "m",
        "messages": MESSAGES,
        "temperature": 0.0,
        "tools": None,
        "tool_choice": None,
        "response_format": None,
        "max_tokens": None,
        "prompt_version": None,
    }
    base.update(changes)
    return request_key(**base)  # type: ignore[arg-type]


def test_key_ignores_dict_order_but_not_content() -> None:
    reordered = [{"content": "s", "role": "system"}, {"content": "u", "role": "user"}]
    assert _key() == _key(messages=reordered)
    variants = [
        _key(model="m2"),
        _key(messages=[{"role": "user", "content": "u"}]),
        _key(temperature=0.5),
        _key(tools=[{"type": "function", "function": {"name": "f"}}]),
        _key(tool_choice="required"),
        _key(response_format={"type": "json_object"}),
        _key(max_tokens=10),
        _key(prompt_version="v2"),
    ]
    assert len({_key(), *variants}) == len(variants) + 1


def test_chat_and_json_keys_follow_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    llm = LLM(model="m", temperature=0.0)
    schema = {"type": "object"}
    assert chat_key(llm, MESSAGES) == _key()
    assert json_key(llm, MESSAGES, schema, name="r") != chat_key(llm, MESSAGES)
    assert json_key(llm, MESSAGES, schema, name="r") != json_key(
        llm, MESSAGES, {"type": "object", "required": ["a"]}, name="r"
    )


def test_keys_name_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two servers under one model name ("any", as llama.cpp serves) never share keys."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    schema = {"type": "object"}
    a = LLM(model="any", base_url="http://127.0.0.1:8080/v1")
    a_slash = LLM(model="any", base_url="http://127.0.0.1:8080/v1/")
    b = LLM(model="any", base_url="http://127.0.0.1:8081/v1")
    default = LLM(model="any")
    for make in (
        lambda llm: chat_key(llm, MESSAGES),
        lambda llm: json_key(llm, MESSAGES, schema, name="r"),
    ):
        assert make(a) == make(a_slash)  # a trailing "/" is the same endpoint
        assert len({make(a), make(b), make(default)}) == 3
    assert chat_key(default, MESSAGES) == _key(model="any", base_url=None)
    assert chat_key(a, MESSAGES) == _key(model="any", base_url="http://127.0.0.1:8080/v1")
    # OPENAI_BASE_URL is the endpoint when base_url is not given.
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8081/v1/")
    assert chat_key(LLM(model="any"), MESSAGES) == chat_key(b, MESSAGES)

    def row(base_url: str | None) -> str:
        return row_key(
            model="any",
            temperature=0.0,
            prompt_version="p",
            params={"op": "classify"},
            text="t",
            base_url=base_url,
        )

    assert row("http://127.0.0.1:8080/v1") == row("http://127.0.0.1:8080/v1/")
    assert len({row("http://127.0.0.1:8080/v1"), row("http://127.0.0.1:8081/v1"), row(None)}) == 3
    fast = RowKeys(
        model="any",
        temperature=0.0,
        prompt_version="p",
        params={"op": "classify"},
        base_url="http://127.0.0.1:8081/v1/",
    )
    assert fast.key("t") == row("http://127.0.0.1:8081/v1")
    assert endpoint_id(None) == "openai" and endpoint_id("http://127.0.0.1:1/v1//") == "http://127.0.0.1:1/v1"


def test_round_trip_and_parent_dirs(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "cache.sqlite"
    reply = ChatReply(
        content=None,
        tool_calls=[ToolCall("c1", "peek", '{"view": "context", "n": 3}')],
        input_tokens=12,
        output_tokens=7,
        finish_reason="tool_calls",
    )
    with ResponseCache(path) as cache:
        assert cache.get("k") is None
        assert not cache.contains("k")
        cache.put("k", reply)
        assert cache.contains("k")
    with ResponseCache(path) as cache:
        got = cache.get("k")
        assert got is not None and got.cached
        assert got.tool_calls == reply.tool_calls
        assert (got.input_tokens, got.output_tokens, got.finish_reason) == (12, 7, "tool_calls")
        assert len(cache) == 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_unreadable_entry_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.put("k", ChatReply(content="x"))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE responses SET value = 'not json'")
    conn.commit()
    conn.close()
    with ResponseCache(path) as cache:
        assert cache.contains("k")
        assert cache.get("k") is None


def _writer(path: str, worker: int, n: int) -> None:
    cache = ResponseCache(path)
    for i in range(n):
        cache.put(f"w{worker}-{i}", ChatReply(content=f"{worker}:{i}", input_tokens=i))
        # Read the other writer's keys while it writes.
        cache.get(f"w{1 - worker}-{i}")
        cache.put("shared", ChatReply(content=f"{worker}:{i}"))
    cache.close()


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_two_processes_write_one_file(tmp_path: Path, start_method: str) -> None:
    path = str(tmp_path / "shared" / "cache.sqlite")
    n = 300
    ctx: Any = multiprocessing.get_context(start_method)
    procs = [ctx.Process(target=_writer, args=(path, w, n)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with ResponseCache(path) as cache:
        assert len(cache) == 2 * n + 1
        for w in (0, 1):
            for i in range(n):
                got = cache.get(f"w{w}-{i}")
                assert got is not None and got.content == f"{w}:{i}" and got.input_tokens == i
        shared = cache.get("shared")
        assert shared is not None and shared.content in {f"0:{n - 1}", f"1:{n - 1}"}


def test_connection_reopens_after_fork(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sqlite")
    cache = ResponseCache(path)
    cache.put("parent", ChatReply(content="p"))
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_child_put, args=(cache,))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 0
    assert cache.contains("child")
    assert cache.get("parent") is not None
    cache.close()


def _child_put(cache: ResponseCache) -> None:
    cache.put("child", ChatReply(content=str(os.getpid())))


def test_delete_removes_an_entry(tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put("a", ChatReply(content="x"))
        cache.put("b", ChatReply(content="y"))
        cache.delete("a")
        cache.delete("never-there")
        assert not cache.contains("a") and cache.get("a") is None
        assert cache.contains("b") and len(cache) == 1

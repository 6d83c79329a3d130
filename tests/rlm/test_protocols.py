"""The root's action protocols (tools / json / text / auto) against simulator modes that
behave like real servers: native tool calls, calls written as text, ``tools`` refused,
and llama.cpp's grammar engine.  Every protocol gives the same answers to the planner's
question shapes; auto switches and remembers; no schema we send trips the grammar limit;
a server failure on any turn ends with a typed error carrying the partial result.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import InputError, LLMError, RootModelError
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.rlm.protocol import forget_protocols

from .truth import USERS, label_count, most_common, per_user

DEMO_Q = "Among users 12345, 67890 and 11111, how many questions are about billing?"
SCHEMA = Path(__file__).parents[2] / "schemas" / "trace.schema.json"
MARCH = {"date_from": dt.date(2024, 3, 1), "date_to": dt.date(2024, 3, 31)}

#: (question, truth) for every question shape the planner knows (see test_questions.py).
SHAPES: dict[str, tuple[str, Callable[[pl.DataFrame], Any]]] = {
    "count": (DEMO_Q, lambda f: label_count(f, "billing", users=USERS)),
    "per-user": (
        "For each of users 12345, 67890 and 11111, how many questions are about technical?",
        lambda f: per_user(f, "technical", USERS),
    ),
    "most-common": (
        "What is the most common label among users 12345, 67890 and 11111?",
        lambda f: most_common(f, users=USERS),
    ),
    "month": (
        "How many questions about account were asked in March 2024?",
        lambda f: label_count(f, "account", **MARCH),
    ),
    "date-range": (
        "How many billing questions were asked between 2024-06-10 and 2024-06-20?",
        lambda f: label_count(
            f, "billing", date_from=dt.date(2024, 6, 10), date_to=dt.date(2024, 6, 20)
        ),
    ),
    "least-common": (
        "Which label is least common in February 2024?",
        lambda f: most_common(
            f, least=True, date_from=dt.date(2024, 2, 1), date_to=dt.date(2024, 2, 29)
        ),
    ),
    "top-user": (
        "Which of users 12345, 67890 and 11111 asked the most billing questions?",
        lambda f: _top_user(per_user(f, "billing", USERS)),
    ),
    "words": (
        "How many words do the questions of users 12345, 67890 and 11111 have?",
        lambda f: sum(
            len(q.split()) for q in f.filter(pl.col("user_id").is_in(list(USERS)))["question"]
        ),
    ),
    "chunks": (
        "How many billing questions were asked in March 2024? [plan:chunks]",
        lambda f: label_count(f, "billing", **MARCH),
    ),
}


def _top_user(counts: dict[str, int]) -> int:
    """The planner's pick: most questions, ties to the smallest user id."""
    best = max(counts.values())
    return min(int(u) for u, n in counts.items() if n == best)


#: (protocol, simulator knobs): every protocol against the servers it is meant for.
MODES: dict[str, tuple[str, dict[str, Any]]] = {
    "tools-native": ("tools", {}),
    "json-strict": ("json", {}),
    "json-llamacpp": ("json", {"structured_mode": "json_object", "grammar_limit": 64}),
    "json-prompt": ("json", {"structured_mode": "text"}),
    "text-cycle": ("text", {}),
    "text-several": ("text", {"text_several": True, "text_style": "bare"}),
    "auto-native": ("auto", {}),
    "auto-text-replies": ("auto", {"tool_mode": "text", "text_style": "tag"}),
    "auto-tools-rejected": ("auto", {"tool_mode": "rejected"}),
    # what llama.cpp's server does with a small model: tools taken but answered in text
    # (several calls per reply, fenced), json_schema refused, grammar limits
    "auto-llamacpp": (
        "auto",
        {
            "tool_mode": "text",
            "text_style": "fenced",
            "text_several": True,
            "structured_mode": "json_object",
            "grammar_limit": 64,
        },
    ),
}


@pytest.fixture(autouse=True)
def _fresh_protocol_memory() -> Iterator[None]:
    forget_protocols()
    yield
    forget_protocols()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Any]]:
    """One simulator per mode, for the module."""
    from rlm_pipeline.sim import SimConfig, SimServer

    started = {name: SimServer(SimConfig(**knobs)) for name, (_, knobs) in MODES.items()}
    for server in started.values():
        server.__enter__()
    yield started
    for server in started.values():
        server.__exit__(None, None, None)


def _llm(server: Any, **kwargs: Any) -> LLM:
    return LLM(model="sim-1", base_url=server.base_url, api_key="sim", max_retries=1, **kwargs)


def _validate_trace(trace: list[dict[str, Any]]) -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    for record in trace:
        validator.validate(record)


def _model_turns(res: rp.RLMResult) -> list[dict[str, Any]]:
    return [r for r in res.trace if r["kind"] == "model" and "step" in r["extra"]]


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("mode", list(MODES))
def test_every_protocol_gives_the_same_answers(
    servers: dict[str, Any],
    ticket_parquet: Path,
    ticket_frame: pl.DataFrame,
    mode: str,
    shape: str,
) -> None:
    protocol, _ = MODES[mode]
    question, truth = SHAPES[shape]
    res = rp.RLM(_llm(servers[mode]), protocol=protocol).run(
        question, str(ticket_parquet), text_column="question"
    )
    assert res.value == truth(ticket_frame)
    assert res.stop_reason == "answer"
    assert res.errors == 0
    _validate_trace(res.trace)
    turns = _model_turns(res)
    assert all(t["extra"]["protocol"] in ("tools", "json", "text") for t in turns)
    expected = {
        "tools-native": "tools",
        "auto-native": "tools",
        "auto-text-replies": "text",
        "auto-tools-rejected": "json",
        "auto-llamacpp": "text",
    }.get(mode, protocol)
    assert res.protocol == expected
    if shape == "count":
        tools = [r["tool"] for r in res.trace if r["kind"] == "tool"]
        assert tools == ["peek", "filter", "classify", "sql"]
        # several actions per reply: fewer model turns for the same work
        assert res.steps == (3 if MODES[mode][1].get("text_several") else 5)


def test_auto_switches_to_text_at_once_and_wastes_no_turn(
    servers: dict[str, Any], ticket_parquet: Path, ticket_frame: pl.DataFrame
) -> None:
    res = rp.RLM(_llm(servers["auto-text-replies"])).run(
        DEMO_Q, str(ticket_parquet), text_column="question"
    )
    assert res.value == label_count(ticket_frame, "billing", users=USERS)
    turns = _model_turns(res)
    assert turns[0]["extra"]["protocol"] == "tools"
    assert turns[0]["extra"]["switched_to"] == "text"
    assert [t["extra"]["protocol"] for t in turns[1:]] == ["text"] * (len(turns) - 1)
    # the first reply's action ran in the same step: nothing was nudged
    first_tool = next(r for r in res.trace if r["kind"] == "tool")
    assert first_tool["tool"] == "peek" and first_tool["extra"]["step"] == 1
    assert res.errors == 0 and res.steps == 5
    # remembered in this process: the next run starts in text
    again = rp.RLM(_llm(servers["auto-text-replies"])).run(
        DEMO_Q, str(ticket_parquet), text_column="question"
    )
    start = next(r for r in again.trace if r["kind"] == "run_start")
    assert start["extra"]["start_protocol"] == "text"
    assert all(t["extra"]["protocol"] == "text" for t in _model_turns(again))


def test_auto_switches_to_json_when_tools_are_refused(
    servers: dict[str, Any], ticket_parquet: Path, ticket_frame: pl.DataFrame
) -> None:
    server = servers["auto-tools-rejected"]
    res = rp.RLM(_llm(server)).run(DEMO_Q, str(ticket_parquet), text_column="question")
    assert res.value == label_count(ticket_frame, "billing", users=USERS)
    turns = _model_turns(res)
    assert turns[0]["extra"]["protocol"] == "json"
    assert turns[0]["extra"]["switched_from"] == "tools"
    assert "tools" in turns[0]["extra"]["switch_reason"]
    assert all(t["extra"]["protocol"] == "json" for t in turns)
    assert res.errors == 0 and res.steps == 5


def test_auto_remembers_the_protocol_in_the_cache_file(
    servers: dict[str, Any], ticket_parquet: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache.sqlite"
    server = servers["auto-tools-rejected"]
    first = rp.RLM(_llm(server, cache_path=str(cache))).run(
        DEMO_Q, str(ticket_parquet), text_column="question"
    )
    assert _model_turns(first)[0]["extra"].get("switched_from") == "tools"
    forget_protocols()  # as in a new process: only the cache file remembers
    from rlm_pipeline.llm.cache import ResponseCache

    with ResponseCache(cache) as stored:
        assert stored.get_mode("rlm_protocol", server.base_url.rstrip("/"), "sim-1") == "json"
    # another question (no cached replies to lean on): starts in json, nothing refused
    second = rp.RLM(_llm(server, cache_path=str(cache))).run(
        "What is the most common label among users 12345, 67890 and 11111?",
        str(ticket_parquet),
        text_column="question",
    )
    start = next(r for r in second.trace if r["kind"] == "run_start")
    assert start["extra"]["start_protocol"] == "json"
    assert not any("switched_from" in t["extra"] for t in _model_turns(second))


def test_explicit_tools_protocol_never_reads_text(
    servers: dict[str, Any], ticket_parquet: Path
) -> None:
    """`tools` means native calls only: text actions are nudged, never run."""
    res = rp.RLM(_llm(servers["auto-text-replies"]), protocol="tools", max_steps=3).run(
        DEMO_Q, str(ticket_parquet), text_column="question"
    )
    assert not res.answered
    assert not [r for r in res.trace if r["kind"] in ("tool", "answer")]
    assert res.errors == 3 + 1  # three nudges, and no answer after the forced turn


def test_text_protocol_prose_gets_a_correction_never_an_answer(
    servers: dict[str, Any], ticket_parquet: Path, ticket_frame: pl.DataFrame
) -> None:
    res = rp.RLM(_llm(servers["text-cycle"]), protocol="text").run(
        DEMO_Q + " [adversarial:text]", str(ticket_parquet), text_column="question"
    )
    assert res.value == label_count(ticket_frame, "billing", users=USERS) != 42
    corrections = [r for r in res.trace if r["kind"] == "error" and r["tool"] is None]
    assert len(corrections) == 2 == res.errors
    assert all("no action" in r["result_summary"] for r in corrections)


@pytest.mark.parametrize("mode", ["tools-native", "json-llamacpp", "text-cycle"])
def test_forced_final_turn_answers_in_every_protocol(
    servers: dict[str, Any], ticket_parquet: Path, mode: str
) -> None:
    protocol, _ = MODES[mode]
    res = rp.RLM(_llm(servers[mode]), protocol=protocol, max_steps=2).run(
        DEMO_Q, str(ticket_parquet), text_column="question"
    )
    assert res.stop_reason == "forced_answer"
    assert res.value is None  # the planner had no count yet and says so
    forced = [t for t in _model_turns(res) if t["extra"]["forced"]]
    assert len(forced) == 1 and forced[0]["extra"]["protocol"] == protocol
    _validate_trace(res.trace)


@pytest.mark.parametrize("protocol", ["tools", "json", "text"])
def test_server_failure_on_the_forced_turn_raises_with_the_partial(
    sim_factory: Callable[..., Any], ticket_parquet: Path, tmp_path: Path, protocol: str
) -> None:
    sim = sim_factory(fail_root_after=3, structured_mode="json_object", grammar_limit=64)
    trace = tmp_path / "t.jsonl"
    rlm = rp.RLM(_llm(sim), protocol=protocol, max_steps=3)
    with pytest.raises(RootModelError) as caught:
        rlm.run(DEMO_Q, str(ticket_parquet), text_column="question", trace_path=str(trace))
    err = caught.value
    assert isinstance(err, LLMError) and err.status == 500
    assert "label counts" in str(err.partial)  # the classify result of step 3
    assert err.steps == 3
    message = str(err)
    assert "\n" not in message and "step 3" in message and "500" in message
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert records[-1]["kind"] == "run_end" and "root model failed" in records[-1]["error"]
    assert "label counts" in records[-1]["extra"]["partial"]
    _validate_trace(records)


@pytest.mark.parametrize("protocol", ["text", "json"])
@pytest.mark.parametrize("mode", ["unknown-tool", "files"])
def test_hostile_actions_in_text_and_json_touch_nothing(
    servers: dict[str, Any],
    ticket_parquet: Path,
    tmp_path: Path,
    protocol: str,
    mode: str,
) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("secret\nTOP-SECRET-7f3a9c\n")
    before = pl.read_parquet(ticket_parquet)
    server = servers["text-cycle" if protocol == "text" else "json-llamacpp"]
    question = f"How many questions are about billing? [adversarial:{mode}] {secret}"
    res = rp.RLM(_llm(server), protocol=protocol).run(question, str(ticket_parquet))
    assert res.value == "adversarial script finished"
    errors = [r for r in res.trace if r["kind"] == "error" and r["tool"]]
    assert len(errors) >= 6
    if mode == "unknown-tool":
        refused = {r["tool"] for r in errors}
        assert {"exec", "shell", "python", "read_file", "http_get"} <= refused
        assert all("unknown tool" in r["result_summary"] for r in errors if r["tool"] != "answer")
    assert "TOP-SECRET" not in json.dumps(res.trace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.csv"]
    assert pl.read_parquet(ticket_parquet).equals(before)


@pytest.mark.parametrize("mode", ["tools-native", "text-cycle", "json-strict"])
def test_same_failing_call_twice_gets_a_targeted_hint(
    servers: dict[str, Any], ticket_parquet: Path, ticket_frame: pl.DataFrame, mode: str
) -> None:
    protocol, _ = MODES[mode]
    res = rp.RLM(_llm(servers[mode]), protocol=protocol).run(
        DEMO_Q + " [adversarial:repeat]", str(ticket_parquet), text_column="question"
    )
    assert res.value == label_count(ticket_frame, "billing", users=USERS)
    failed = [r for r in res.trace if r["kind"] == "error" and r["tool"] == "peek"]
    assert len(failed) == 2
    assert "hint:" not in failed[0]["result_summary"]
    assert "hint: use a view that exists" in failed[1]["result_summary"]


@pytest.mark.parametrize("mode", ["tools-native", "text-cycle", "json-strict"])
def test_an_answer_before_any_data_is_refused_once(
    servers: dict[str, Any], ticket_parquet: Path, ticket_frame: pl.DataFrame, mode: str
) -> None:
    protocol, _ = MODES[mode]
    res = rp.RLM(_llm(servers[mode]), protocol=protocol).run(
        DEMO_Q + " [adversarial:early]", str(ticket_parquet), text_column="question"
    )
    assert res.value == label_count(ticket_frame, "billing", users=USERS) != 99
    early = [r for r in res.trace if r["kind"] == "error" and r["tool"] == "answer"]
    assert len(early) == 1 and "Check with the data first" in early[0]["result_summary"]
    # once per run: a model that insists gets its answer the second time
    stubborn = rp.RLM(_llm(servers[mode]), protocol=protocol).run(
        "count [adversarial:unknown-tool]", str(ticket_parquet)
    )
    assert stubborn.value == "adversarial script finished"
    assert len([r for r in stubborn.trace if r["kind"] == "error" and r["tool"] == "answer"]) == 1


def test_results_restate_the_view(servers: dict[str, Any], ticket_parquet: Path) -> None:
    res = rp.RLM(_llm(servers["text-cycle"]), protocol="text").run(
        DEMO_Q, str(ticket_parquet), text_column="question"
    )
    by_tool = {r["tool"]: r["result_summary"] for r in res.trace if r["kind"] == "tool"}
    assert "\n(view `context`: 5000 rows; columns: ticket_id (int64)" in by_tool["peek"]
    assert "(view `subset`: " in by_tool["filter"] and "columns: " in by_tool["filter"]
    assert "(view `labeled`: " in by_tool["classify"] and "label (string)" in by_tool["classify"]


@pytest.mark.parametrize("prompt", ["compact", "full"])
@pytest.mark.parametrize("protocol", ["tools", "text"])
def test_prompt_variants_run(
    servers: dict[str, Any],
    ticket_parquet: Path,
    ticket_frame: pl.DataFrame,
    protocol: str,
    prompt: str,
) -> None:
    server = servers["tools-native" if protocol == "tools" else "text-cycle"]
    res = rp.RLM(_llm(server), protocol=protocol, prompt=prompt).run(
        DEMO_Q, str(ticket_parquet), text_column="question"
    )
    assert res.value == label_count(ticket_frame, "billing", users=USERS)


def test_bad_protocol_or_prompt_is_an_input_error(sim_llm: LLM) -> None:
    with pytest.raises(InputError, match="protocol must be one of"):
        rp.RLM(sim_llm, protocol="xml")
    with pytest.raises(InputError, match="prompt must be one of"):
        rp.RLM(sim_llm, prompt="tiny")


@pytest.mark.parametrize("protocol", ["tools", "json", "text"])
def test_spark_runs_in_every_protocol(
    sim_factory: Callable[..., Any],
    spark: Any,
    ticket_parquet: Path,
    ticket_frame: pl.DataFrame,
    protocol: str,
) -> None:
    sim = sim_factory(structured_mode="json_object", grammar_limit=64)
    frame = spark.read.parquet(str(ticket_parquet))
    res = rp.RLM(_llm(sim), engine="spark", spark=spark, protocol=protocol).run(
        DEMO_Q, frame, text_column="question"
    )
    assert res.value == label_count(ticket_frame, "billing", users=USERS)
    assert res.protocol == protocol and res.errors == 0


def test_grammar_server_fails_a_run_whose_tools_keep_their_real_limits(
    servers: dict[str, Any], ticket_parquet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proof the grammar mode bites: the tools as they were (``maxLength`` 2000 …)."""
    from rlm_pipeline.rlm import loop
    from rlm_pipeline.rlm.tools import TOOL_SPECS

    monkeypatch.setattr(loop, "_OFFERED", TOOL_SPECS)  # what the loop sends as `tools`
    with pytest.raises(RootModelError, match="500") as caught:
        rp.RLM(_llm(servers["json-llamacpp"]), protocol="tools").run(
            DEMO_Q, str(ticket_parquet), text_column="question"
        )
    assert "grammar" in str(caught.value) and caught.value.partial is None
    monkeypatch.undo()
    res = rp.RLM(_llm(servers["json-llamacpp"]), protocol="tools").run(
        DEMO_Q, str(ticket_parquet), text_column="question"
    )
    assert res.answered and res.errors == 0


def test_ask_protocol_flag_and_one_line_on_a_root_failure(
    sim_factory: Callable[..., Any],
    ticket_parquet: Path,
    ticket_frame: pl.DataFrame,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rlm_pipeline.cli.main import main

    ok = sim_factory(tool_mode="text")
    args = ["ask", str(ticket_parquet), DEMO_Q, "--text-column", "question", "--model", "sim-1"]
    assert main([*args, "--base-url", ok.base_url, "--protocol", "text"]) == 0
    out, _ = capsys.readouterr()
    assert f"Answer: {label_count(ticket_frame, 'billing', users=USERS)}" in out

    broken = sim_factory(fail_root_after=3)
    code = main([*args, "--base-url", broken.base_url, "--max-steps", "3", "--max-retries", "0"])
    out, err = capsys.readouterr()
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "root model failed at step 3" in lines[0] and "label counts" in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("mode", ["tools-native", "text-cycle"])
def test_a_flood_of_actions_runs_only_up_to_the_cap(
    servers: dict[str, Any], ticket_parquet: Path, ticket_frame: pl.DataFrame, mode: str
) -> None:
    protocol, _ = MODES[mode]
    # no max_tokens: the whole flood reaches the loop (a bounded reply would be cut short)
    res = rp.RLM(_llm(servers[mode]), protocol=protocol, root_max_tokens=None).run(
        DEMO_Q + " [adversarial:flood]", str(ticket_parquet), text_column="question"
    )
    assert res.value == label_count(ticket_frame, "billing", users=USERS)
    first = [r for r in res.trace if r["kind"] == "tool" and r["extra"]["step"] == 1]
    assert len(first) == 8 and {r["tool"] for r in first} == {"peek"}
    capped = [r for r in res.trace if r["kind"] == "error"]
    assert len(capped) == 1 == res.errors and "992 more" in capped[0]["error"]
    assert res.usage.max_prompt_tokens < 6000  # the flood did not make later prompts huge


@pytest.mark.parametrize("mode", ["tools-native", "text-cycle"])
def test_an_answer_written_with_data_actions_in_one_reply_is_refused_once(
    servers: dict[str, Any], ticket_parquet: Path, ticket_frame: pl.DataFrame, mode: str
) -> None:
    """The model has not read the results of its own reply's actions: a guess."""
    protocol, _ = MODES[mode]
    res = rp.RLM(_llm(servers[mode]), protocol=protocol).run(
        DEMO_Q + " [adversarial:blind]", str(ticket_parquet), text_column="question"
    )
    assert res.value == label_count(ticket_frame, "billing", users=USERS) != 99
    first = [r for r in res.trace if r["extra"].get("step") == 1 and r["tool"]]
    assert [(r["tool"], r["kind"]) for r in first] == [
        ("peek", "tool"),
        ("filter", "tool"),
        ("answer", "error"),
    ]
    assert res.errors == 1
    tools = [r["tool"] for r in res.trace if r["kind"] == "tool"]
    assert tools == ["peek", "filter", "classify", "sql"]  # filter not repeated

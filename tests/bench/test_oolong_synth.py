"""bench/oolong_synth.py: data, questions, scoring, and a small real run.

The small run goes through the simulator over real HTTP with both methods, as
`make test` must keep the benchmark working.
"""

from __future__ import annotations

import calendar
import datetime as dt
import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "oolong_synth.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("oolong_synth", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["oolong_synth"] = module
    spec.loader.exec_module(module)
    return module


oolong = _load()

_LINE = re.compile(r"^Date: (\w{3}) (\d{1,2}), (\d{4}) \|\| User: (\d{5}) \|\| Instance: (.+)$")


def _parse_lines(lines: tuple[str, ...]) -> list[tuple[dt.date, int, str]]:
    """Re-read the context the way a reader of the prompt would."""
    months = {abbr: i for i, abbr in enumerate(calendar.month_abbr) if abbr}
    out = []
    for line in lines:
        m = _LINE.match(line)
        assert m, line
        out.append((dt.date(int(m[3]), months[m[1]], int(m[2])), int(m[4]), m[5]))
    return out


@pytest.fixture(scope="module")
def ds() -> Any:
    return oolong.make_dataset(2**14, seed=3)


def test_dataset_hits_the_size_and_matches_its_lines(ds: Any) -> None:
    from rlm_pipeline.llm.tokens import estimate_tokens

    assert 0.97 * 2**14 <= ds.tokens <= 2**14
    assert ds.tokens == sum(estimate_tokens(line + "\n") for line in ds.lines)
    parsed = _parse_lines(ds.lines)
    assert [(d, u, t) for d, u, t in parsed] == list(ds.table.iter_rows())
    assert ds.table.columns == ["date", "user_id", "text"] and len(ds.labels) == ds.rows
    dates = [d for d, _, _ in parsed]
    assert dates == sorted(dates)
    # the hidden topic is not in what the methods see
    assert "topic" not in ds.table.columns


def test_users_are_skewed_80_20(ds: Any) -> None:
    per_user = Counter(ds.table["user_id"].to_list())
    heavy = set(ds.heavy_users)
    heavy_share = sum(n for u, n in per_user.items() if u in heavy) / ds.rows
    assert 0.72 < heavy_share < 0.88
    assert len(heavy) <= 0.25 * len(set(ds.table["user_id"].to_list()) | heavy)


def test_topic_mix_changes_between_windows() -> None:
    big = oolong.make_dataset(2**16, seed=5)
    frame = big.with_labels()
    per_month: dict[tuple[int, int], Counter[str]] = {}
    for day, topic in zip(frame["date"].to_list(), frame["topic"].to_list(), strict=True):
        per_month.setdefault((day.year, day.month), Counter())[topic] += 1
    shares = [c["billing"] / sum(c.values()) for c in per_month.values() if sum(c.values()) > 40]
    assert len(shares) >= 12
    assert max(shares) - min(shares) > 0.15


def test_question_golds_agree_with_an_independent_count(ds: Any) -> None:
    questions = oolong.make_questions(ds, 14, seed=3)
    assert {q.template for q in questions} == {
        "count", "users_among", "month", "most_common", "least_common", "user_most",
        "date_range", "compare"} - ({"most_common", "least_common"} - {q.template for q in questions})
    assert {q.family for q in questions} == {"counting", "users", "timeline"}
    rows = [(d, u, topic) for (d, u, _), topic in zip(_parse_lines(ds.lines), ds.labels,
                                                          strict=True)]
    months = {name: i for i, name in enumerate(calendar.month_name) if name}
    abbr = {a: i for i, a in enumerate(calendar.month_abbr) if a}
    totals = Counter(t for _, _, t in rows)
    for q in questions:
        topic = next((t for t in oolong.TOPICS if f"about {t}" in q.text), None)
        if q.template == "count":
            assert q.gold == totals[topic]
        elif q.template == "users_among":
            users = {int(u) for u in re.findall(r"\d{5}", q.text)}
            assert q.gold == sum(1 for _, u, t in rows if u in users and t == topic)
        elif q.template == "month":
            m = re.search(r"dated in (\w+) (\d{4})", q.text)
            assert m
            assert q.gold == sum(1 for d, _, t in rows if t == topic and d.year == int(m[2])
                                 and d.month == months[m[1]])
        elif q.template == "date_range":
            m = re.findall(r"(\w{3}) (\d{1,2}), (\d{4})", q.text)
            lo, hi = (dt.date(int(y), abbr[mo], int(d)) for mo, d, y in m)
            assert q.gold == sum(1 for d, _, t in rows if t == topic and lo <= d <= hi)
        elif q.template == "user_most":
            per = Counter(u for _, u, t in rows if t == topic)
            assert q.gold == per.most_common(1)[0][0]
        elif q.template in ("most_common", "least_common"):
            ordered = totals.most_common()
            assert q.gold == (ordered[0] if q.template == "most_common" else ordered[-1])[0]
        else:
            a, b = re.findall(r"about (\w+)", q.text)
            expected = ("more common than" if totals[a] > totals[b] else
                        "less common than" if totals[a] < totals[b] else "same frequency as")
            assert q.gold == expected


def test_scoring_follows_the_paper() -> None:
    assert oolong.score(10, 10, "number") == 1.0
    assert oolong.score(10, 13, "number") == pytest.approx(0.75**3)
    assert oolong.score(10, None, "number") == 0.0
    assert oolong.score("billing", "billing", "topic") == 1.0
    assert oolong.score("billing", "technical", "topic") == 0.0
    assert oolong.score(12345, 12345, "user") == 1.0 and oolong.score(12345, 12346, "user") == 0
    parse = oolong.parse_prediction
    assert parse("I count 1,204 rows", "number") == 1204
    assert parse({"n": 7}, "number") == 7 and parse(7.0, "number") == 7
    assert parse(True, "number") is None and parse("none", "number") is None
    assert parse("User 48213 wrote most (12)", "user") == 48213
    assert parse('"technical"', "topic") == "technical" and parse("?", "topic") is None
    assert parse("billing is MORE common", "comparison") == "more common than"
    assert parse("they are as common as each other", "comparison") == "same frequency as"


def test_baseline_prompt_is_cut_to_the_context_window(ds: Any) -> None:
    from rlm_pipeline.llm.tokens import estimate_message_tokens

    q = oolong.make_questions(ds, 1, seed=0)[0]
    messages, kept = oolong.baseline_messages(q, ds, context_window=4096)
    assert 0 < kept < ds.rows
    assert estimate_message_tokens(messages) <= 4096
    assert messages[1]["content"].endswith(f"Question: {q.text}")
    whole, kept_all = oolong.baseline_messages(q, ds, context_window=128_000)
    assert kept_all == ds.rows and ds.lines[-1] in whole[1]["content"]


def test_small_run_through_the_simulator(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    out = tmp_path / "oolong.json"
    code = oolong.main(["--sizes", "13", "--questions-per-size", "4", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "SIMULATOR" in printed and "not a language model" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["simulator"] is True and len(report["sizes"]) == 1
    size = report["sizes"][0]
    assert set(size["methods"]) == {"rlm", "baseline"} and len(size["questions"]) == 4
    for method in ("rlm", "baseline"):
        summary = size["methods"][method]
        assert 0.0 <= summary["score"] <= 1.0
        assert summary["calls"] >= 4 and summary["total_tokens"] > 0
        for q in size["questions"]:
            run = q["runs"][method]
            assert 0.0 <= run["score"] <= 1.0
            assert run["score"] == oolong.score(q["gold"], run["prediction"], q["kind"])
    rlm, base = size["methods"]["rlm"], size["methods"]["baseline"]
    assert rlm["max_prompt_tokens"] < base["max_prompt_tokens"]
    assert base["max_prompt_tokens"] >= size["tokens"]  # the baseline saw the whole table
    assert base["calls"] == 4
    # these four shapes (count, users, month, most/least common) are ones the
    # simulator's planner supports: the RLM must get them right at this size
    assert rlm["score"] >= 0.75, [q["runs"]["rlm"] for q in size["questions"]]
    assert "baseline" in printed and "rlm" in printed


def test_the_simulator_reads_every_compare_question_the_bench_asks(ds: Any) -> None:
    from rlm_pipeline.sim.planner import COMPARISONS, parse_question

    assert COMPARISONS == oolong.COMPARISONS  # the planner answers in the bench's words
    compares = [q for q in oolong.make_questions(ds, 35, seed=11) if q.template == "compare"]
    assert len(compares) >= 3
    for q in compares:
        a, b = re.findall(r"about (\w+)", q.text)
        parsed = parse_question(q.text)
        assert (parsed.shape, parsed.label, parsed.other) == ("compare", a, b), q.text
        assert oolong.parse_prediction(q.gold, q.kind) == q.gold


def test_rlm_answers_compare_questions_through_the_simulator(ds: Any) -> None:
    from rlm_pipeline.llm.config import LLM
    from rlm_pipeline.sim import SimConfig, SimServer

    compares = [q for q in oolong.make_questions(ds, 35, seed=11) if q.template == "compare"]
    golds = {q.gold for q in compares}
    assert len(golds) >= 2, golds  # both directions asked, so a constant answer cannot pass
    with SimServer(SimConfig()) as sim:
        llm = LLM(model="sim-1", base_url=sim.base_url, api_key="sim", max_retries=1)
        for q in compares:
            run = oolong.run_rlm(q, ds, llm)
            assert (run.prediction, run.score, run.error) == (q.gold, 1.0, None), q.text
            assert "classify" in run.extra["tools"] and "sql" in run.extra["tools"]


def test_resume_keeps_finished_runs_and_runs_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "oolong.json"
    args = ["--sizes", "11", "--questions-per-size", "3", "--out", str(out), "-q"]
    assert oolong.main(args) == 0
    first = json.loads(out.read_text(encoding="utf-8"))
    size = first["sizes"][0]
    # per method: input and output tokens add up, and every family asked has a score
    for method in ("rlm", "baseline"):
        m = size["methods"][method]
        assert m["input_tokens"] + m["output_tokens"] == m["total_tokens"] > 0
        assert set(m["by_family"]) == {q["family"] for q in size["questions"]}
        assert sum(f["questions"] for f in m["by_family"].values()) == 3
    # forget one finished run, as if the process had been stopped there
    dropped = size["questions"][1]["runs"].pop("rlm")
    out.write_text(json.dumps(first), encoding="utf-8")
    assert oolong.main([*args, "--resume"]) == 0
    second = json.loads(out.read_text(encoding="utf-8"))
    again = second["sizes"][0]["questions"]
    for i, q in enumerate(size["questions"]):
        for method, run in q["runs"].items():
            assert again[i]["runs"][method] == run  # kept as it was, not rerun
    assert again[1]["runs"]["rlm"]["prediction"] == dropped["prediction"]
    assert second["sizes"][0]["methods"]["rlm"]["questions"] == 3


def test_token_scale_cuts_the_baseline_by_model_tokens(ds: Any) -> None:
    q = oolong.make_questions(ds, 1, seed=0)[0]
    _, kept_1 = oolong.baseline_messages(q, ds, context_window=8192)
    _, kept_2 = oolong.baseline_messages(q, ds, context_window=8192, token_scale=2.0)
    assert 0 < kept_2 < kept_1 and abs(kept_1 / kept_2 - 2) < 0.2


def test_plot_only_draws_score_against_size(tmp_path: Path) -> None:
    out = tmp_path / "oolong.json"
    assert oolong.main(["--sizes", "10", "--questions-per-size", "2", "--out", str(out),
                        "-q"]) == 0
    png = tmp_path / "plot.png"
    code = oolong.main(["--out", str(out), "--plot", str(png), "--plot-only",
                        "--plot-with", f"again={out}"])
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_merge_joins_methods_run_apart(tmp_path: Path) -> None:
    common = ["--sizes", "10", "--questions-per-size", "3", "-q"]
    a, b, c = (tmp_path / f"{x}.json" for x in "abc")
    assert oolong.main([*common, "--methods", "rlm", "--out", str(a)]) == 0
    assert oolong.main([*common, "--methods", "baseline", "--out", str(b)]) == 0
    assert oolong.main(["--merge", str(a), str(b), "--out", str(c)]) == 0
    ra, rb, rc = (json.loads(p.read_text(encoding="utf-8")) for p in (a, b, c))
    size = rc["sizes"][0]
    assert set(size["methods"]) == {"rlm", "baseline"} and len(size["questions"]) == 3
    for i, q in enumerate(size["questions"]):
        assert q["runs"]["rlm"] == ra["sizes"][0]["questions"][i]["runs"]["rlm"]
        assert q["runs"]["baseline"] == rb["sizes"][0]["questions"][i]["runs"]["baseline"]
    assert rc["overall"]["rlm"] == ra["overall"]["rlm"]
    assert rc["overall"]["baseline"] == rb["overall"]["baseline"]


def test_order_question_walks_every_size_before_the_next_question(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.json"
    assert oolong.main(["--sizes", "10,11", "--questions-per-size", "2", "--methods",
                        "baseline", "--order", "question", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    sizes = re.findall(r"^  2\^(\d+) baseline", printed, flags=re.M)
    assert sizes == ["10", "11", "10", "11"]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [len(s["questions"]) for s in report["sizes"]] == [2, 2]

"""Our semantic operators beside LOTUS's on the same rows, against the same simulator (issue 15).

Per operator — filter, extract, top-k, aggregate, join — one run of ours
(``rp.filter`` / ``rp.extract`` / ``rp.top_k`` / ``rp.aggregate`` /
``rp.join`` on Polars, batch 16, ``max_concurrency=64``) and one of LOTUS's
(``sem_filter`` / ``sem_extract`` / ``sem_topk`` / ``sem_agg`` / ``sem_join``,
lotus-ai 1.2.4 in its own venv, ``max_batch_size=64``), alternating, each
against a **fresh simulator process** at ``--latency-ms`` (200) and
``--sim-cap`` (64) slots (ceiling 320 calls/s), repeated ``--repeats`` times;
the table shows medians.

- rows/s: input rows / wall seconds of the operator call (for the peer: after
  its imports, between a "go" line and its return, as bench/fanout.py);
  join: candidate pairs / s (both sides see the same |L| x |R| pairs, no blocking).
- input tokens / row: the **simulator's own** ``/stats`` counters, the same
  estimator for both systems (not the clients' counts); ``uncached``
  subtracts the prompt prefix the simulator reports as cached.
- rows accounted: every input row in the output once (filter: kept + dropped
  = rows; extract: one output row per input row; aggregate: the final summary's
  counts add up to the rows; top-k: k rows; join: every pair answered).
- LOTUS parse failures: its own "Failed to parse" / "Could not parse" log
  lines, after which LOTUS silently uses a default (filter/join: True,
  extract: ``{}``, top-k: Document 1).
- agrees: answers equal to the simulator's keyword model for that row
  (``condition_holds``, ``extract_value``, ``score_value``, ``pair_match``).

The simulator is ``bench/peers/lotus_sim.py``: ``rlm-pipeline sim-server``
with LOTUS's five prompt shapes answered from the same keyword model in the
format LOTUS's prompts ask for (the stock server answers them with free text,
which LOTUS's parser rejects).  Our structured calls never take that path
(``by_kind`` in the JSON shows which path every request took).

The absolute rows/s depend on the machine's load (2 cores shared with other
jobs here): the load average is recorded at the start and end of every run;
the ratios between the two systems in one run are what the comparison rests on.

Run::

    .venv/bin/python bench/operators_vs_lotus.py            # writes bench/results/operators_lotus.{json,md}
    .venv/bin/python bench/operators_vs_lotus.py --rows 500 --repeats 1 --ops filter,extract
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PEERS = ROOT / "bench" / "peers"
sys.path.insert(0, str(ROOT))

OPS = ("filter", "extract", "top_k", "aggregate", "join")
CONDITION = "asks for a refund"
FIELDS: dict[str, Any] = {
    "refund_amount": "number",
    "order_id": "string",
    "month": "date",
    "topic": ["billing", "technical", "account", "other"],
}
#: The same fields as LOTUS descriptions (LOTUS takes a description per field, no types).
LOTUS_FIELDS = {
    "refund_amount": "the refund amount the ticket asks for, as a number",
    "order_id": "the order or reference id of the ticket, as a string",
    "month": "the month the ticket names, as a date",
    "topic": "the ticket's topic: billing, technical, account or other",
}
CRITERION = "billing refund problems"
K = 10
AGG_INSTRUCTION = "main complaints"
JOIN_CONDITION = "the same topic"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _load() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


class Sim:
    """``bench/peers/lotus_sim.py`` (``rlm-pipeline sim-server`` + LOTUS shapes) in a child process."""

    def __init__(self, latency_ms: float, cap: int, *, stock: bool = False) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        server = ["-m", "rlm_pipeline", "sim-server"] if stock else [str(PEERS / "lotus_sim.py")]
        cmd = [sys.executable, *server, "--port", str(self.port),
               "--latency-ms", str(latency_ms), "--max-concurrency", str(cap)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.2)
        self.close()
        msg = "the simulator did not start"
        raise RuntimeError(msg)

    def stats(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/stats?log=0"
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310
            return dict(json.loads(resp.read()))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ----------------------------------------------------------------- data and truth


def _texts(n: int, seed: int) -> list[tuple[int, str]]:
    """``n`` tickets, the ticket id appended so every text is distinct (no dedup)."""
    from rlm_pipeline.datasets import tickets

    frame = tickets(n, seed=seed)
    return [(int(i), f"{q} #{i}") for i, q in zip(frame["ticket_id"], frame["question"], strict=True)]


def _norm(value: Any) -> str | None:
    """A value as text, for comparing our typed values with LOTUS's strings."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    if text in ("None", "nan", ""):
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else str(number)


def _truth(op: str, rows: list[tuple[int, str]], right: list[tuple[int, str]]) -> Any:
    """What the simulator's keyword model answers, per row / pair (both systems get these answers)."""
    from rlm_pipeline.sim.folds import SUMMARY_LABELS, pair_match, score_value
    from rlm_pipeline.sim.mapper import condition_holds, extract_fields

    if op == "filter":
        return {i for i, t in rows if condition_holds(t, CONDITION)}
    if op == "extract":
        return {i: {k: _norm(v) for k, v in extract_fields(t, FIELDS).items()} for i, t in rows}
    if op == "top_k":
        ranked = sorted(rows, key=lambda r: (-score_value(r[1], CRITERION), r[0]))
        return {"top": [i for i, _ in ranked[:K]], "kth_score": score_value(ranked[K - 1][1], CRITERION),
                "scores": {i: score_value(t, CRITERION) for i, t in rows}}
    if op == "aggregate":
        from rlm_pipeline.sim.folds import summary_counts

        return summary_counts([t for _, t in rows], SUMMARY_LABELS)
    if op == "join":
        return {(a, b) for a, ta in rows for b, tb in right if pair_match(ta, tb)}
    raise ValueError(op)


def _topk_agrees(ids: list[int], truth: dict[str, Any]) -> int:
    """How many of the returned ids score at least the true k-th score (ties count as right)."""
    return sum(1 for i in ids if truth["scores"].get(i, -1) >= truth["kth_score"])


# ----------------------------------------------------------------- our side


def _ours(op: str, rows: list[tuple[int, str]], right: list[tuple[int, str]], base_url: str,
          cap: int) -> tuple[float, dict[str, Any]]:
    import polars as pl

    import rlm_pipeline as rp
    from rlm_pipeline.sim.folds import SUMMARY_LABELS, parse_summary

    llm = rp.LLM(model="sim-1", base_url=base_url, api_key="x", max_concurrency=cap, max_retries=2)
    frame = pl.DataFrame({"id": [i for i, _ in rows], "question": [t for _, t in rows]})
    truth = _truth(op, rows, right)
    ids = [i for i, _ in rows]
    started, cpu0 = time.perf_counter(), time.process_time()
    if op == "filter":
        out = rp.filter(frame, column="question", condition=CONDITION, llm=llm, on_error="raise")
        wall = time.perf_counter() - started
        cpu = {"client_cpu_s": round(time.process_time() - cpu0, 3)}
        kept = list(out["id"])
        # on_error="raise": any unanswered row would have raised, so failed = 0 here.
        return wall, {**cpu, "rows_out": out.height, "kept": len(kept), "dropped": len(ids) - len(kept),
                      "failed": 0,
                      "accounted": len(set(kept)) == len(kept) and set(kept) <= set(ids),
                      "agrees": len(ids) - len(set(kept) ^ truth)}
    if op == "extract":
        out = rp.extract(frame, column="question", fields=FIELDS, llm=llm)
        wall = time.perf_counter() - started
        cpu = {"client_cpu_s": round(time.process_time() - cpu0, 3)}
        got = {r["id"]: {k: _norm(r[k]) for k in FIELDS} for r in out.to_dicts()}
        errors = int(out["extract_error"].is_not_null().sum())
        return wall, {**cpu, "rows_out": out.height, "failed": errors,
                      "accounted": out["id"].to_list() == ids,
                      "agrees": sum(1 for i in ids if got.get(i) == truth[i])}
    if op == "top_k":
        out = rp.top_k(frame, column="question", criterion=CRITERION, k=K, llm=llm)
        wall = time.perf_counter() - started
        cpu = {"client_cpu_s": round(time.process_time() - cpu0, 3)}
        top = list(out["id"])
        return wall, {**cpu, "rows_out": out.height, "accounted": out.height == K and len(set(top)) == K,
                      "agrees": _topk_agrees(top, truth)}
    if op == "aggregate":
        out = rp.aggregate(frame, column="question", instruction=AGG_INSTRUCTION, llm=llm)
        wall = time.perf_counter() - started
        cpu = {"client_cpu_s": round(time.process_time() - cpu0, 3)}
        summary = str(out["summary"][0])
        counted = parse_summary(summary, SUMMARY_LABELS)
        return wall, {**cpu, "rows_out": out.height, "summary": summary, "rows_counted": sum(counted.values()),
                      "accounted": sum(counted.values()) == len(ids), "agrees": int(counted == truth)}
    if op == "join":
        rframe = pl.DataFrame({"rid": [i for i, _ in right], "f": [t for _, t in right]})
        out = rp.join(frame, rframe, left_column="question", right_column="f",
                      condition=JOIN_CONDITION, llm=llm)
        wall = time.perf_counter() - started
        cpu = {"client_cpu_s": round(time.process_time() - cpu0, 3)}
        pairs = set(zip(out["id"].to_list(), out["rid"].to_list(), strict=True))
        n_pairs = len(rows) * len(right)
        return wall, {**cpu, "rows_out": out.height, "matched": len(pairs),
                      "accounted": out.height == len(pairs),
                      "agrees": n_pairs - len(pairs ^ truth)}
    raise ValueError(op)


# ----------------------------------------------------------------- LOTUS side


def _lotus_job(op: str, rows: list[tuple[int, str]], right: list[tuple[int, str]]) -> dict[str, Any]:
    job: dict[str, Any] = {"op": op, "rows": [{"id": i, "text": t} for i, t in rows]}
    if op == "filter":
        job["instruction"] = "{question} " + CONDITION
    elif op == "extract":
        job["fields"] = LOTUS_FIELDS
    elif op == "top_k":
        job.update(instruction="Which {question} is most about " + CRITERION + "?", k=K)
    elif op == "aggregate":
        from rlm_pipeline.ops.aggregate_op import AggregateSpec

        budget = AggregateSpec("question", AGG_INSTRUCTION).max_prompt_tokens
        # The same prompt budget as ours: LOTUS packs up to max_ctx_len - max_tokens (512).
        job.update(instruction="Summarize the " + AGG_INSTRUCTION + " in {question}",
                   max_ctx_len=budget + 512)
    elif op == "join":
        job.update(instruction="{question:left} is about " + JOIN_CONDITION + " as {f:right}",
                   right=[{"id": i, "text": t} for i, t in right])
    return job


def _lotus(op: str, rows: list[tuple[int, str]], right: list[tuple[int, str]], base_url: str,
           python: str, cap: int, timeout_s: float) -> tuple[float, dict[str, Any]]:
    from rlm_pipeline.sim.folds import SUMMARY_LABELS, parse_summary

    truth = _truth(op, rows, right)
    ids = [i for i, _ in rows]
    with tempfile.TemporaryDirectory(prefix="lotus-ops-") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job_path.write_text(json.dumps(_lotus_job(op, rows, right)))
        cmd = [python, str(PEERS / "lotus_ops_run.py"), "--base-url", base_url, "--input",
               str(job_path), "--output", str(out_path), "--concurrency", str(cap)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if proc.stdout.readline().strip() != "READY":
                msg = "the LOTUS runner did not start (see bench/peers/lotus_ops_run.py)"
                raise RuntimeError(msg)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return float("nan"), {"error": f"timed out after {timeout_s:.0f} s", "accounted": False}
        res = json.loads(out_path.read_text()) if out_path.exists() else {"error": "no output"}
    wall = float(res.get("wall_s", float("nan")))
    info: dict[str, Any] = {"rows_out": res.get("rows_out", 0), "error": res.get("error"),
                            "client_cpu_s": res.get("cpu_s"),
                            "parse_failures": res.get("parse_failures"),
                            "version": res.get("version"), "import_s": res.get("import_s")}
    if res.get("error"):
        info["accounted"] = False
        return wall, info
    if op == "filter":
        kept = {i for i, v in zip(res["ids"], res["values"], strict=True) if v}
        info.update(kept=len(kept), dropped=len(res["ids"]) - len(kept),
                    accounted=res["ids"] == ids, agrees=len(ids) - len(kept ^ truth))
    elif op == "extract":
        got = {i: {k: _norm(v.get(k)) for k in FIELDS} for i, v in zip(res["ids"], res["values"], strict=True)}
        info.update(accounted=res["ids"] == ids, agrees=sum(1 for i in ids if got.get(i) == truth[i]),
                    rows_all_fields_missing=sum(1 for v in got.values() if all(x is None for x in v.values())))
    elif op == "top_k":
        top = res["ids"]
        info.update(accounted=len(top) == K and len(set(top)) == K, agrees=_topk_agrees(top, truth))
    elif op == "aggregate":
        summary = res["values"][0] if res["values"] else ""
        counted = parse_summary(summary, SUMMARY_LABELS)
        info.update(summary=summary, rows_counted=sum(counted.values()),
                    accounted=sum(counted.values()) == len(ids), agrees=int(counted == truth))
    elif op == "join":
        pairs = {(a, b) for a, b in res["pairs"]}
        n_pairs = len(rows) * len(right)
        info.update(matched=len(pairs), accounted=len(pairs) == len(res["pairs"]),
                    agrees=n_pairs - len(pairs ^ truth))
    return wall, info


# ----------------------------------------------------------------- one measured run


def _measure(system: str, op: str, units: int, args: argparse.Namespace,
             call: Callable[[str], tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    load_start = _load()
    sim = Sim(args.latency_ms, args.sim_cap, stock=args.stock_sim)
    try:
        wall, info = call(sim.base_url)
        stats = sim.stats()
    finally:
        sim.close()
    load_end = _load()
    ok = wall == wall and wall > 0  # not NaN
    return {
        "system": system,
        "operator": op,
        "units": units,
        "wall_s": round(wall, 3) if ok else None,
        "units_per_s": round(units / wall, 1) if ok else None,
        "units_per_client_cpu_s": round(units / info["client_cpu_s"], 1)
        if info.get("client_cpu_s") else None,
        "calls": stats["requests"],
        "input_tokens": stats["input_tokens"],
        "cached_tokens": stats.get("cached_tokens", 0),
        "output_tokens": stats["output_tokens"],
        "input_tokens_per_unit": round(stats["input_tokens"] / units, 2),
        "uncached_input_tokens_per_unit": round(
            (stats["input_tokens"] - stats.get("cached_tokens", 0)) / units, 2),
        "errors_by_status": stats.get("errors_by_status", {}),
        "by_kind": stats.get("by_kind", {}),
        "load_start": load_start,
        "load_end": load_end,
        **info,
    }


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def _summarise(op: str, units: str, n: int, ours: list[dict[str, Any]],
               lotus: list[dict[str, Any]]) -> dict[str, Any]:
    o_rate, l_rate = _median(ours, "units_per_s"), _median(lotus, "units_per_s")
    o_tok, l_tok = _median(ours, "input_tokens_per_unit"), _median(lotus, "input_tokens_per_unit")
    o_unc = _median(ours, "uncached_input_tokens_per_unit")
    l_unc = _median(lotus, "uncached_input_tokens_per_unit")
    paired = [o["units_per_s"] / lo["units_per_s"] for o, lo in zip(ours, lotus, strict=True)
              if o.get("units_per_s") and lo.get("units_per_s")]
    return {
        "operator": op,
        "unit": units,
        "units": n,
        "repeats": len(ours),
        "ours_units_per_s": o_rate,
        "lotus_units_per_s": l_rate,
        "speed_ratio": round(o_rate / l_rate, 1) if o_rate and l_rate else None,
        # ours / LOTUS within each repeat (the two runs back to back), then the median:
        "paired_speed_ratios": [round(x, 1) for x in paired],
        "paired_speed_ratio_median": round(statistics.median(paired), 1) if paired else None,
        "ours_units_per_client_cpu_s": _median(ours, "units_per_client_cpu_s"),
        "lotus_units_per_client_cpu_s": _median(lotus, "units_per_client_cpu_s"),
        "ours_input_tokens_per_unit": o_tok,
        "lotus_input_tokens_per_unit": l_tok,
        "token_ratio": round(o_tok / l_tok, 3) if o_tok and l_tok else None,
        "ours_uncached_tokens_per_unit": o_unc,
        "lotus_uncached_tokens_per_unit": l_unc,
        "ours_calls": _median(ours, "calls"),
        "lotus_calls": _median(lotus, "calls"),
        "ours_accounted": all(r.get("accounted") for r in ours),
        "lotus_accounted": all(r.get("accounted") for r in lotus),
        "ours_rows_out": ours[-1].get("rows_out"),
        "lotus_rows_out": lotus[-1].get("rows_out"),
        "ours_agrees": ours[-1].get("agrees"),
        "lotus_agrees": lotus[-1].get("agrees"),
        "lotus_parse_failures": max((r.get("parse_failures") or 0) for r in lotus),
        "lotus_errors": [r["error"] for r in lotus if r.get("error")],
    }


def _default_lotus_python() -> str:
    for candidate in (ROOT / ".bench-venv-lotus" / "bin" / "python", Path("/work/venvs/lotus/bin/python")):
        if candidate.exists():
            return str(candidate)
    return str(ROOT / ".bench-venv-lotus" / "bin" / "python")


def _markdown(payload: dict[str, Any]) -> str:
    meta = payload["meta"]
    lines = [
        "# Semantic operators: ours vs LOTUS, same rows, same simulator",
        "",
        f"Simulator: {meta['latency_ms']:.0f} ms per request, {meta['sim_cap']} slots (ceiling "
        f"{meta['ceiling_calls_per_s']:.0f} calls/s), a fresh process per run "
        f"(`{meta.get('simulator', 'bench/peers/lotus_sim.py')}`). Ours: Polars, batch 16, max_concurrency {meta['sim_cap']}. "
        f"LOTUS {meta['lotus_version']}: max_batch_size {meta['sim_cap']}, timeout 10 s, 2 retries. "
        f"Medians of {meta['repeats']} runs each, alternating ours / LOTUS. {meta['when']}, "
        f"commit {meta['commit']}; load average (1 min) {meta['load_start'][0]:.1f} at the start, "
        f"{meta['load_end'][0]:.1f} at the end, {meta['load_min']:.1f}-{meta['load_max']:.1f} over "
        f"the runs, on {meta['cores']} cores shared with other jobs: absolute rows/s are "
        "load-dependent, the ratios are what counts.",
        "",
        "| operator | unit | n | ours /s | LOTUS /s | speed ratio (paired runs) | ours in-tok/unit | LOTUS in-tok/unit "
        "| token ratio | ours calls | LOTUS calls | accounted (ours / LOTUS) | agrees with sim (ours / LOTUS) "
        "| LOTUS parse failures |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for s in payload["summary"]:
        lines.append(
            f"| {s['operator']} | {s['unit']} | {s['units']:,} | {s['ours_units_per_s']:,} | "
            f"{s['lotus_units_per_s'] if s['lotus_units_per_s'] is not None else 'failed'} | "
            + (f"{s['speed_ratio']}x ({', '.join(f'{x}' for x in s['paired_speed_ratios'])}) | "
               if s["speed_ratio"] is not None else "- | ")
            + f"{s['ours_input_tokens_per_unit']} | {s['lotus_input_tokens_per_unit']} | "
            f"{s['token_ratio']} | {s['ours_calls']:,.0f} | {s['lotus_calls']:,.0f} | "
            f"{'yes' if s['ours_accounted'] else 'NO'} / {'yes' if s['lotus_accounted'] else 'NO'} | "
            f"{s['ours_agrees']} / {s['lotus_agrees']} | {s['lotus_parse_failures']} |"
        )
    lines += [
        "",
        "Speed ratio: median ours / median LOTUS; in brackets ours / LOTUS of each repeat (two runs "
        "back to back). Targets (issue 15): speed ratio >= 20x, token ratio <= 0.333. "
        "`agrees`: rows (join: pairs; top-k: returned rows scoring at least the true k-th; aggregate: "
        "1 when the summary's counts equal the keyword model's) whose answer equals the simulator's "
        "keyword model. Uncached input tokens per unit (prompt prefix the simulator reports as cached "
        "taken off): " + "; ".join(
            f"{s['operator']} ours {s['ours_uncached_tokens_per_unit']} / LOTUS "
            f"{s['lotus_uncached_tokens_per_unit']}" for s in payload["summary"]) + ".",
    ]
    if any(s.get("ours_units_per_client_cpu_s") for s in payload["summary"]):
        lines += [
            "",
            "Client CPU (user+system seconds of the client process during the operator call: our "
            "driver process; LOTUS's runner process, all its threads; the simulator runs apart), "
            "the load-independent view:",
            "",
            "| operator | ours units per CPU s | LOTUS units per CPU s | ratio |",
            "|---|---:|---:|---:|",
        ]
        for s in payload["summary"]:
            o, lo = s.get("ours_units_per_client_cpu_s"), s.get("lotus_units_per_client_cpu_s")
            ratio = f"{o / lo:.1f}x" if o and lo else "-"
            lines.append(f"| {s['operator']} | {o:,} | {lo:,} | {ratio} |" if o and lo
                         else f"| {s['operator']} | {o} | {lo} | - |")
    if meta.get("note"):
        lines += ["", f"Note: {meta['note']}"]
    errors = [f"{s['operator']}: {e}" for s in payload["summary"] for e in s["lotus_errors"]]
    if errors:
        lines += ["", "LOTUS errors: " + "; ".join(errors)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000, help="rows for filter, extract, top_k, aggregate")
    parser.add_argument("--join-side", type=int, default=50, help="join: |L| = |R| (pairs = side^2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--sim-cap", type=int, default=64)
    parser.add_argument("--ops", default=",".join(OPS))
    parser.add_argument("--lotus-python", default=_default_lotus_python())
    parser.add_argument("--lotus-timeout-s", type=float, default=900.0)
    parser.add_argument("--out", default=str(RESULTS / "operators_lotus"))
    parser.add_argument("--stock-sim", action="store_true",
                        help="serve the stock `rlm-pipeline sim-server` (LOTUS's prompts get free text)")
    parser.add_argument("--report", metavar="JSON", help="re-render the summary and table of a saved run")
    args = parser.parse_args(argv)
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        runs_by = saved["runs"]
        saved["summary"] = [
            _summarise(s["operator"], s["unit"], s["units"],
                       [r for r in runs_by if r["operator"] == s["operator"] and r["system"] == "ours"],
                       [r for r in runs_by if r["operator"] == s["operator"] and r["system"] == "lotus"])
            for s in saved["summary"]
        ]
        out = Path(args.report).with_suffix("")
        out.with_suffix(".json").write_text(json.dumps(saved, indent=2, default=str) + "\n")
        out.with_suffix(".md").write_text(_markdown(saved))
        print(_markdown(saved))
        return 0
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    unknown = [o for o in ops if o not in OPS]
    if unknown:
        print(f"unknown operator(s): {', '.join(unknown)} (choose from {', '.join(OPS)})", file=sys.stderr)
        return 2
    if not Path(args.lotus_python).exists():
        print(f"no LOTUS venv python at {args.lotus_python}: build it (bench/requirements-lotus.txt, "
              "torch==2.13.0 first) or pass --lotus-python", file=sys.stderr)
        return 2
    os.environ.setdefault("OPENAI_API_KEY", "x")

    rows = _texts(args.rows, seed=0)
    left, right = _texts(args.join_side, seed=3), _texts(args.join_side, seed=4)
    # Warm-up, not recorded: our imports and first-call paths (LOTUS imports before its "go").
    warm = Sim(0, args.sim_cap, stock=args.stock_sim)
    try:
        for op in ops:
            _ours(op, left[:4] if op == "join" else rows[:32], right[:4] if op == "join" else [],
                  warm.base_url, args.sim_cap)
    finally:
        warm.close()
    load_start = _load()
    runs: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for op in ops:
        data, other = (left, right) if op == "join" else (rows, [])
        units = len(left) * len(right) if op == "join" else len(rows)
        unit = "pair" if op == "join" else "row"
        ours: list[dict[str, Any]] = []
        lotus: list[dict[str, Any]] = []
        for rep in range(args.repeats):
            ours.append(_measure("ours", op, units, args, lambda url, d=data, o=other, op=op: _ours(
                op, d, o, url, args.sim_cap)))
            lotus.append(_measure("lotus", op, units, args, lambda url, d=data, o=other, op=op: _lotus(
                op, d, o, url, args.lotus_python, args.sim_cap, args.lotus_timeout_s)))
            for r in (ours[-1], lotus[-1]):
                r["repeat"] = rep
                print(f"{op} {r['system']} #{rep}: {r['units_per_s']} {unit}s/s, "
                      f"{r['input_tokens_per_unit']} in-tok/{unit}, calls {r['calls']}, "
                      f"cpu {r.get('client_cpu_s')} s, accounted {r.get('accounted')}, agrees {r.get('agrees')}, "
                      f"parse failures {r.get('parse_failures', '-')}, error {r.get('error')}, "
                      f"load {r['load_start'][0]:.1f}->{r['load_end'][0]:.1f}", flush=True)
        runs += ours + lotus
        summary.append(_summarise(op, unit, units, ours, lotus))
    load_end = _load()
    loads = [r[k][0] for r in runs for k in ("load_start", "load_end")]
    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=False).stdout.strip()
    lotus_version = next((r["version"] for r in runs if r.get("version")), None) or {}
    meta = {
        "latency_ms": args.latency_ms, "sim_cap": args.sim_cap,
        "ceiling_calls_per_s": args.sim_cap / (args.latency_ms / 1000),
        "rows": args.rows, "join_side": args.join_side, "repeats": args.repeats,
        "cores": os.cpu_count(), "load_start": load_start, "load_end": load_end,
        "load_min": min(loads), "load_max": max(loads),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit,
        "lotus_version": f"lotus-ai {lotus_version.get('lotus-ai')} (litellm {lotus_version.get('litellm')})",
        "lotus_python": args.lotus_python,
        "simulator": "rlm-pipeline sim-server (stock)" if args.stock_sim else "bench/peers/lotus_sim.py",
    }
    payload = {"meta": meta, "summary": summary, "runs": runs}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    text = _markdown(payload)
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

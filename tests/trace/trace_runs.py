"""A real RLM run over the simulator (real HTTP, text protocol) whose trace the page tests read.

The root filters two users and recurses by user; each sub-run classifies its
rows.  The tickets carry hostile content: HTML/JS that would change the page if
it ran, a U+2028 line separator, a 6,000-character cell, and a blank question
(a failed row with its reason, ``empty_input``).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

import rlm_pipeline as rp
from rlm_pipeline.sim import SimConfig, SimServer

#: Would set the page title / a body attribute if the browser ran it.
SCRIPT = "<script>document.title='PWNED'</script>"
IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
HOSTILE_TICKET = f"I was charged twice {SCRIPT}{IMG} please refund\u2028my invoice"
LONG_TICKET = "My invoice total is wrong. " + "invoice " * 750
QUESTION = "[plan:recurse] For each of users 12345, 67890, how many questions are about billing?"


def tickets() -> pl.DataFrame:
    return pl.DataFrame({
        "ticket_id": list(range(1, 9)),
        "user_id": [12345, 12345, 12345, 67890, 67890, 67890, 555, 555],
        "question": [HOSTILE_TICKET, "The app crashes when I open the reports screen",
                     LONG_TICKET, "I cannot log in to my account, reset my password",
                     "Refund the double charge on my card", "   ",
                     "Loved the new dashboard", "Where is my invoice?"],
    })


def record_run(path: Path) -> rp.RLMResult:
    """Run the question over :func:`tickets` with the text protocol; the trace goes to ``path``."""
    with SimServer(SimConfig(tool_mode="text")) as sim:
        llm = rp.LLM(model="gpt-4.1-mini", base_url=sim.base_url, api_key="x", max_retries=0)
        sub = rp.LLM(model="gpt-4.1-nano", base_url=sim.base_url, api_key="x", max_retries=0)
        return rp.RLM(llm, sub=sub, max_steps=12, protocol="text").run(
            QUESTION, tickets(), text_column="question", trace_path=str(path)
        )

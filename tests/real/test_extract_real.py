"""rp.extract with the real small model (Qwen2.5-Coder-0.5B on llama.cpp): accuracy, every row out.

Marked ``real_model`` (``make test-real``).  One numeric and one enum field
over 100 synthetic tickets, one row per call (small models answer batches
badly); the truth comes from the ticket generator (``true_label``) and from
the amounts written in the texts.  The test checks that every row is accounted
for and prints the accuracy of each field.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import pytest

import rlm_pipeline as rp
from rlm_pipeline.datasets import LABELS, tickets
from rlm_pipeline.ops.stats import ERROR_KINDS

pytestmark = pytest.mark.real_model

_MONEY = re.compile(r"(?:\$|EUR )(\d+(?:\.\d+)?)")
FIELDS = {"amount": "number", "topic": list(LABELS)}
INSTRUCTIONS = (
    "amount: the money amount written in the text, as a number without currency "
    "(null when no amount is written). topic: billing (charges, payments, refunds, "
    "invoices, prices), technical (errors, crashes, bugs, slow or broken features), "
    "account (login, password, email, username, personal data), other (anything else)."
)


# ~1 s per call on an idle 2-core machine; set RLM_REAL_EXTRACT_TIMEOUT when the server is shared
@pytest.mark.timeout(int(os.environ.get("RLM_REAL_EXTRACT_TIMEOUT", "900")))
def test_extract_number_and_enum_over_100_tickets(real_model: Any) -> None:
    frame = tickets(100, seed=21)
    llm = rp.LLM(model=real_model.model, base_url=real_model.base_url, api_key="local",
                 max_concurrency=1, timeout_s=120, max_retries=2)
    started = time.monotonic()
    out = rp.extract(frame.drop("true_label"), "question", FIELDS, llm, batch_size=1)
    took = time.monotonic() - started
    # every row out exactly once, in order; a reason for every row without values
    assert out["ticket_id"].to_list() == frame["ticket_id"].to_list()
    for row in out.iter_rows(named=True):
        if row["extract_error"] is not None:
            assert row["extract_error"].split(":")[0] in ERROR_KINDS
            assert row["amount"] is None and row["topic"] is None
        else:
            assert row["topic"] is None or row["topic"] in LABELS
    amount_right = topic_right = 0
    for text, label, amount, topic in zip(frame["question"], frame["true_label"],
                                          out["amount"], out["topic"], strict=True):
        money = _MONEY.search(text)
        want = float(money.group(1)) if money else None
        amount_right += (amount is None and want is None) or (
            amount is not None and want is not None and abs(amount - want) < 0.01
        )
        topic_right += topic == label
    failed = out["extract_error"].drop_nulls().len()
    print(f"\nreal model, extract batch 1 over 100 tickets in {took:.0f}s: amount "
          f"{amount_right}/100 right, topic {topic_right}/100 right, {failed} rows failed "
          f"({out['extract_error'].drop_nulls().to_list()[:3]})")
    # Accuracy is reported, not asserted.  Seen on the first 20 of these tickets (server
    # shared with a benchmark, 12-16 s a call): without instructions, amounts 20/20 right and
    # topics 8/20 (nearly always "billing", the enum's first value); with INSTRUCTIONS below,
    # amounts 12/20 (always null) and topics 5/20, so they are not sent.
    assert failed <= out.height // 5  # the replies follow the schema for most rows

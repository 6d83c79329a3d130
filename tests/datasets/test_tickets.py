"""The synthetic tickets generator: shape, determinism, schema, labels."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jsonschema
import polars as pl
import pyarrow.parquet as pq
import pytest

from rlm_pipeline.datasets import KNOWN_USERS, LABELS, TICKETS_SCHEMA, tickets, write_tickets
from rlm_pipeline.errors import InputError
from rlm_pipeline.sim import intended_label

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "tickets.schema.json"


def test_columns_and_types() -> None:
    df = tickets(2000, seed=3)
    assert df.schema == pl.Schema({
        "ticket_id": pl.Int64, "date": pl.Date, "user_id": pl.Int64,
        "question": pl.String, "true_label": pl.String,
    })
    assert df["ticket_id"].to_list() == list(range(1, 2001))
    assert df.null_count().sum_horizontal().item() == 0


def test_deterministic_in_seed() -> None:
    assert tickets(3000, seed=7).equals(tickets(3000, seed=7))
    assert not tickets(3000, seed=7).equals(tickets(3000, seed=8))


def test_dates_within_2024_and_rising() -> None:
    dates = tickets(5000)["date"]
    assert dates.min() >= dt.date(2024, 1, 1) and dates.max() <= dt.date(2024, 12, 31)
    assert dates.is_sorted()
    assert dates.dt.month().n_unique() == 12


@pytest.mark.parametrize("n", [1000, 5000, 20000])
def test_known_users_have_several_tickets(n: int) -> None:
    counts = tickets(n, seed=n).filter(pl.col("user_id").is_in(KNOWN_USERS))["user_id"]
    for user in KNOWN_USERS:
        assert (counts == user).sum() >= 3


def test_users_are_skewed_and_labels_mixed() -> None:
    df = tickets(20000)
    per_user = df["user_id"].value_counts()["count"]
    assert per_user.max() >= 20 * per_user.median()
    shares = df["true_label"].value_counts(normalize=True)
    assert set(shares["true_label"]) == set(LABELS)
    assert shares["proportion"].min() > 0.1


def test_texts_vary_with_some_duplicates() -> None:
    questions = tickets(5000)["question"]
    distinct = questions.n_unique()
    assert 0.5 * 5000 < distinct < 5000


def test_keyword_classifier_is_exact_on_tickets() -> None:
    df = tickets(5000, seed=11)
    predicted = [intended_label(q, list(LABELS)) for q in df["question"]]
    assert predicted == df["true_label"].to_list()


def test_rows_validate_against_the_json_schema() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for row in tickets(500, seed=2).with_columns(pl.col("date").cast(pl.String)).iter_rows(
        named=True
    ):
        validator.validate(row)
    bad = {"ticket_id": 0, "date": "2023-12-31", "user_id": 1, "question": "", "true_label": "x"}
    assert len(list(validator.iter_errors(bad))) == 4


def test_json_schema_and_arrow_schema_agree() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert list(schema["properties"]) == TICKETS_SCHEMA.names
    assert schema["properties"]["true_label"]["enum"] == list(LABELS)


def test_write_tickets_parquet(tmp_path: Path) -> None:
    out = write_tickets(tmp_path / "deep" / "tickets.parquet", 1500, seed=4)
    table = pq.read_table(out)
    assert table.schema.equals(TICKETS_SCHEMA)
    assert pl.from_arrow(table).equals(tickets(1500, seed=4))


@pytest.mark.parametrize("n", [-1, 1.5, "10", True])
def test_bad_n_is_a_clear_error(n: object) -> None:
    with pytest.raises(InputError, match="non-negative integer"):
        tickets(n)  # type: ignore[arg-type]


def test_zero_and_tiny() -> None:
    assert tickets(0).height == 0
    assert tickets(1).height == 1


def test_a_million_rows() -> None:
    df = tickets(1_000_000, seed=5)
    assert df.height == 1_000_000 and df["ticket_id"].n_unique() == 1_000_000
    assert df.filter(pl.col("user_id").is_in(KNOWN_USERS)).height == 3 * 500

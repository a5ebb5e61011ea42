"""Rows a source sends again exactly as in its last applied file are left out of the apply, and
the outcome is the same as applying them: on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil

import pytest

import bspk_pipelines.pipeline as pipeline
from bspk_pipelines_tests.conftest import SHOPPER


def shopper(ref: str, city: str = "Paris", email: str = "a@example.com") -> str:
    return f"{ref},Marie,Curie,,,F,{email},,,,,,,,{city},,,FR,,,,,TRUE,FALSE\n"


@pytest.fixture
def applied_rows(monkeypatch):
    """How many rows each apply really wrote to the warehouse."""
    seen = []
    real = pipeline.apply_rows

    def spy(conn, brand, entity, source, frame, *args, **kwargs):
        seen.append(frame.height)
        return real(conn, brand, entity, source, frame, *args, **kwargs)

    monkeypatch.setattr(pipeline, "apply_rows", spy)
    return seen


def test_only_rows_that_differ_from_the_last_file_are_applied(harness, applied_rows):
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1") + shopper("S2") + shopper("S3"))
    harness.ingest("SHOPPER_V3_Acme_202401010000.csv")
    harness.drop("SHOPPER_V3_Acme_202401020000.csv",
                 SHOPPER + shopper("S1") + shopper("S2", city="Lyon") + shopper("S3") + shopper("S4"))
    f = harness.ingest("SHOPPER_V3_Acme_202401020000.csv")
    assert applied_rows == [3, 2]  # S2 changed and S4 new; S1 and S3 as the last file sent them
    assert (f["inserted"], f["updated"], f["unchanged"], f["rows_read"]) == (1, 1, 2, 4)
    assert {r["shopper_ref"]: r["city"] for r in harness.rows("shoppers")} == {"S1": "Paris", "S2": "Lyon", "S3": "Paris", "S4": "Paris"}
    # The same file once more under another name is a duplicate; a third one equal to it applies nothing.
    harness.drop("SHOPPER_V3_Acme_202401030000.csv",
                 SHOPPER + shopper("S4") + shopper("S3") + shopper("S2", city="Lyon") + shopper("S1"))
    f = harness.ingest("SHOPPER_V3_Acme_202401030000.csv")
    assert applied_rows == [3, 2] and (f["inserted"], f["updated"], f["unchanged"]) == (0, 0, 4)


def test_a_row_changed_back_is_applied(harness, applied_rows):
    """Only the last applied file counts: a value sent, replaced, then sent again is applied again."""
    for stamp, city, extra in (("202401010000", "Paris", ""), ("202401020000", "Lyon", ""),
                               ("202401030000", "Paris", shopper("S3"))):
        harness.drop(f"SHOPPER_V3_Acme_{stamp}.csv", SHOPPER + shopper("S1", city=city) + shopper("S2") + extra)
        harness.ingest(f"SHOPPER_V3_Acme_{stamp}.csv")
    assert applied_rows == [2, 1, 2]  # S1 back to Paris (as in the first file), and S3
    assert {r["shopper_ref"]: r["city"] for r in harness.rows("shoppers")} == {"S1": "Paris", "S2": "Paris", "S3": "Paris"}
    changes = [r["fields"] for r in harness.rows("client_changes", order_by="id") if r["kind"] == "updated"]
    assert len(changes) == 2  # Paris -> Lyon, Lyon -> Paris


def test_rejects_and_duplicates_are_reported_as_for_any_file(harness, applied_rows):
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1") + shopper("S2"))
    harness.ingest("SHOPPER_V3_Acme_202401010000.csv")
    name = "SHOPPER_V3_Acme_202401020000.csv"
    harness.drop(name, SHOPPER + shopper("S1") + shopper("S1", city="Lyon") + shopper("S2", email="not-an-email"))
    f = harness.ingest(name)
    assert [(line, rule) for line, _, _, rule in harness.rejects(name)] == [(3, "duplicate_key"), (4, "email")]
    assert applied_rows == [2]  # S1 as before: nothing to apply
    assert (f["rejected"], f["unchanged"], f["inserted"], f["updated"]) == (2, 1, 0, 0)


def test_without_the_last_files_digests_every_row_is_applied(harness, applied_rows):
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1") + shopper("S2"))
    harness.ingest("SHOPPER_V3_Acme_202401010000.csv")
    shutil.rmtree(harness.layout.digests("acme", "main", "shoppers"))
    harness.drop("SHOPPER_V3_Acme_202401020000.csv", SHOPPER + shopper("S1") + shopper("S2", city="Lyon"))
    f = harness.ingest("SHOPPER_V3_Acme_202401020000.csv")
    assert applied_rows == [2, 2] and (f["updated"], f["unchanged"]) == (1, 1)
    # Only the last applied file's digests are kept.
    [kept] = harness.layout.digests("acme", "main", "shoppers").glob("*/*.parquet")
    assert kept.name == "SHOPPER_V3_Acme_202401020000.csv.parquet"

"""Rows a source sends again exactly as in its last applied file are set aside before they are
checked and left out of the apply, and the outcome is the same as applying them: on SQLite and
PostgreSQL."""

from __future__ import annotations

import shutil

import pytest

import bspk_pipelines.ingest.apply as apply_step
import bspk_pipelines.ingest.check as check_step
from bspk_pipelines.ingest.drop import classify
from bspk_pipelines.ingest.apply import apply_pending
from bspk_pipelines.ingest.check import validate_file
from bspk_pipelines.ingest.contribute import map_file
from bspk_pipelines.ingest.land import land
from bspk_pipelines_tests.builders import SHOPPER


def shopper(ref: str, city: str = "Paris", email: str = "a@example.com", phone: str = "") -> str:
    return f"{ref},Marie,Curie,,,F,{email},,{phone},,,,,,{city},,,FR,,,,,TRUE,FALSE\n"


@pytest.fixture
def applied_rows(monkeypatch):
    """How many rows each apply really wrote to the warehouse."""
    seen = []
    real = apply_step.apply_rows

    def spy(conn, brand, entity, source, frame, *args, **kwargs):
        seen.append(frame.height)
        return real(conn, brand, entity, source, frame, *args, **kwargs)

    monkeypatch.setattr(apply_step, "apply_rows", spy)
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


@pytest.fixture
def checked_rows(monkeypatch):
    """How many rows each batch sent to the rules."""
    seen = []
    real = check_step.validate

    def spy(entity, rows, *args):
        seen.append(rows.height)
        return real(entity, rows, *args)

    monkeypatch.setattr(check_step, "validate", spy)
    return seen


def test_rows_as_the_last_file_sent_them_are_not_checked_again(harness, checked_rows, applied_rows):
    rows = [shopper(f"S{i}") for i in range(1, 6)]
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + "".join(rows))
    harness.ingest("SHOPPER_V3_Acme_202401010000.csv")
    rows[2] = shopper("S3", city="Lyon")
    harness.drop("SHOPPER_V3_Acme_202401020000.csv", SHOPPER + "".join(rows))
    f = harness.ingest("SHOPPER_V3_Acme_202401020000.csv")
    assert checked_rows == [5, 1] and applied_rows == [5, 1]
    assert (f["rows_read"], f["updated"], f["unchanged"], f["rejected"]) == (5, 1, 4, 0)


def test_a_row_set_aside_still_counts_in_the_duplicate_checks(harness, checked_rows):
    """An unchanged row and a changed row of the same shopper: the later line is the duplicate,
    whichever of the two was set aside; a new shopper taking a set-aside row's mobile phone too."""
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1") + shopper("S2", phone="+33612345678"))
    harness.ingest("SHOPPER_V3_Acme_202401010000.csv")
    name = "SHOPPER_V3_Acme_202401020000.csv"
    harness.drop(name, SHOPPER + shopper("S1", city="Lyon") + shopper("S1") + shopper("S2", phone="+33612345678")
                 + shopper("S3", phone="+33612345678"))
    f = harness.ingest(name)
    assert [(line, rule) for line, _, _, rule in harness.rejects(name)] == [(3, "duplicate_key"), (5, "duplicate_mobile_phone")]
    assert checked_rows == [2, 2]  # S1 in Lyon and S3: the unchanged S1 and S2 were set aside
    assert (f["updated"], f["unchanged"], f["inserted"], f["rejected"]) == (1, 1, 0, 2)
    assert {r["shopper_ref"]: r["city"] for r in harness.rows("shoppers")} == {"S1": "Lyon", "S2": "Paris"}
    # The S1 set aside was rejected: the next file sending it again is checked and applies it.
    harness.drop("SHOPPER_V3_Acme_202401030000.csv", SHOPPER + shopper("S1") + shopper("S2", phone="+33612345678") + shopper("S4"))
    f = harness.ingest("SHOPPER_V3_Acme_202401030000.csv")
    assert checked_rows[2:] == [2] and (f["updated"], f["inserted"], f["unchanged"]) == (1, 1, 1)


def second_and_third_checked_against_the_first(harness) -> tuple[str, str]:
    """The first file applied; the second (S1 to Lyon) and the third (S1 back to Paris, S3 new)
    checked and mapped, both against the first, before either applies."""
    first, second, third = (f"SHOPPER_V3_Acme_2024010{d}0000.csv" for d in (1, 2, 3))
    harness.drop(first, SHOPPER + shopper("S1") + shopper("S2"))
    harness.ingest(first)
    harness.drop(second, SHOPPER + shopper("S1", city="Lyon") + shopper("S2"))
    harness.drop(third, SHOPPER + shopper("S1") + shopper("S2") + shopper("S3"))
    for name in (second, third):
        land(harness.engine, harness.layout, harness.brand, classify(harness.brand, "main", name))
        validate_file(harness.engine, harness.layout, harness.brand, "main", "shoppers", name)
        map_file(harness.engine, harness.layout, harness.brand, "main", "shoppers", name)
    return second, third


def test_a_file_checked_before_the_previous_one_applied_is_checked_again(harness, checked_rows, applied_rows):
    """Rows set aside against the file applied last when they were checked: if another file of the
    source applies in between, the comparison no longer holds and every row is checked again."""
    _, third = second_and_third_checked_against_the_first(harness)
    assert checked_rows == [2, 1, 1]  # the third file set S1 and S2 aside, against the first
    apply_pending(harness.engine, harness.layout, harness.brand, "shoppers")
    assert checked_rows[3:] == [2] and applied_rows == [2, 1, 2]  # checked again against the second: S1 and S3 apply
    assert {r["shopper_ref"]: r["city"] for r in harness.rows("shoppers")} == {"S1": "Paris", "S2": "Paris", "S3": "Paris"}
    assert [harness.file(third)[c] for c in ("updated", "inserted", "unchanged")] == [1, 1, 1]


def test_rows_are_set_aside_in_files_the_csv_module_reads_too(harness, checked_rows):
    """A quoted delimiter sends a file to Python's csv module, whose rows are compared field by
    field; a file read the other way (lines) compares with nothing and is checked in full."""
    quoted = shopper("S1").replace(",Paris,", ',"Paris, 8e",')
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + quoted + shopper("S2"))
    harness.ingest("SHOPPER_V3_Acme_202401010000.csv")
    harness.drop("SHOPPER_V3_Acme_202401020000.csv", SHOPPER + quoted + shopper("S2", city="Lyon"))
    f = harness.ingest("SHOPPER_V3_Acme_202401020000.csv")
    assert checked_rows == [2, 1] and (f["updated"], f["unchanged"]) == (1, 1)
    harness.drop("SHOPPER_V3_Acme_202401030000.csv", SHOPPER + shopper("S1") + shopper("S2", city="Lyon"))
    f = harness.ingest("SHOPPER_V3_Acme_202401030000.csv")
    assert checked_rows[2:] == [2] and (f["updated"], f["unchanged"]) == (1, 1)
    assert {r["shopper_ref"]: r["city"] for r in harness.rows("shoppers")} == {"S1": "Paris", "S2": "Lyon"}


@pytest.mark.parametrize("stop_after_batches", [0, 1])
def test_a_check_again_that_stops_half_way_is_done_again_at_the_next_apply(harness, monkeypatch, stop_after_batches):
    """The third file, compared with the first, must be checked again once the second applies; if
    that check stops (before or after its first batch), the next apply checks it again rather than
    apply rows compared with the wrong file, or stall."""
    second, third = second_and_third_checked_against_the_first(harness)
    real = check_step._checked_batches

    def stopping(*args, **kwargs):
        for i, batch in enumerate(real(*args, **kwargs)):
            if i == stop_after_batches:
                raise RuntimeError("stopped half way")
            yield batch

    monkeypatch.setattr(check_step, "_checked_batches", stopping)
    one_row_batches = apply_step.validate_file
    monkeypatch.setattr(apply_step, "validate_file", lambda *args, **kwargs: one_row_batches(*args, batch_rows=1, **kwargs))
    with pytest.raises(RuntimeError):
        apply_pending(harness.engine, harness.layout, harness.brand, "shoppers")
    assert harness.file(second)["status"] == "applied" and harness.file(third)["status"] != "applied"
    monkeypatch.setattr(check_step, "_checked_batches", real)
    apply_pending(harness.engine, harness.layout, harness.brand, "shoppers")
    assert {r["shopper_ref"]: r["city"] for r in harness.rows("shoppers")} == {"S1": "Paris", "S2": "Paris", "S3": "Paris"}
    assert [harness.file(third)[c] for c in ("status", "updated", "inserted", "unchanged")] == ["applied", 1, 1, 1]

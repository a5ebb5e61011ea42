"""The four new file types (SPECIAL-ORDERS, -LINE-ITEMS, -EVENTS and METAFIELDS) as an attacker
and as a careless new brand send them: events repeated in a file and resent while held, files
resent under the same name or the same bytes under another, huge and odd values, numbers and
dates in every spelling, refs in another case, many metafields per client through the
Extraction API. Every test runs on SQLite and PostgreSQL (the `harness` and `engine` fixtures).

The rule behind most of them: nothing is lost. Every row of every file ends applied, or in
`rejects` or `held` with a reason, and each file's record in `files` adds up."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import sqlalchemy as sa

from bspk_pipelines.api.models import Client
from bspk_pipelines.ingest.apply import apply_pending
from bspk_pipelines.ingest.check import validate_file
from bspk_pipelines.ingest.contribute import map_file
from bspk_pipelines.ingest.drop import classify
from bspk_pipelines.ingest.land import land
from bspk_pipelines.model.metafields import json_value, misfit
from bspk_pipelines.warehouse.platform import clients
from bspk_pipelines.warehouse.schema import ENTITY_TABLES
from bspk_pipelines.warehouse.special_orders import needing_action
from bspk_pipelines.warehouse.engine import writing
from bspk_pipelines_tests.builders import PRODUCT, SHOPPER, header, make_world, shopper_row

ORDERS, LINES, EVENTS, METAFIELDS = (
    header(e) for e in ("special_orders", "special_order_line_items", "special_order_events", "metafields"))
SPECIAL = ("special_orders", "special_order_line_items", "special_order_events")


# --- rows and files ------------------------------------------------------------------------------

def csv_rows(*rows: tuple) -> str:
    """Rows as RFC 4180 CSV lines: a value holding a comma, a quote, a CR or an LF quoted."""
    def cell(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if any(ch in v for ch in ',"\r\n') else v
    return "".join(",".join(cell(v) for v in row) + "\n" for row in rows)


def order(ref: str, shopper: str = "C1", total: str = "10", currency: str = "EUR", created: str = "2022-01-17T19:23:22Z",
          description: str = "Resole the boots", associate: str = "SA1") -> tuple:
    return (ref, shopper, "ST1", associate, description, total, currency, created, "repair", "open")


def line(order_ref: str, ref: str) -> tuple:
    return (order_ref, ref, "BK345", "B01N54LF", "", "Gloves", "", "", "1", "120", "EUR", "open")


def event(order_ref: str, seq: str | int, text: str = "Received", action: str = "FALSE",
          at: str = "2022-01-18T10:00:00Z", line_ref: str | None = None) -> tuple:
    return (order_ref, line_ref or f"{order_ref}-1", str(seq), text, at, "IB01T/38259", action)


def metafield(owner: str, key: str, value: str, value_type: str = "single_line_text_field", is_list: str = "false",
              active: str = "true", owner_type: str = "Shopper", namespace: str = "custom") -> tuple:
    return (owner_type, owner, namespace, key, is_list, value_type, value, active)


def stamp(n: int) -> str:
    """The n-th hour of 2024, as a file name's timestamp."""
    return (datetime(2024, 1, 1) + timedelta(hours=n)).strftime("%Y%m%d%H%M")


class Files:
    """Sends files of any type, each named with a later timestamp than the one before."""

    def __init__(self, harness):
        self.harness, self.n = harness, 0

    def send(self, file_type: str, head: str, *rows: tuple, version: str = "V2", name: str | None = None) -> dict:
        self.n += 1
        name = name or f"{file_type}_{version}_Acme_{stamp(self.n)}.csv"
        self.harness.drop(name, head + csv_rows(*rows))
        record = self.harness.ingest(name)
        record["name"] = name
        return record


def ingest_again(harness, name: str, n: int) -> None:
    """The `n`th delivery under a drop folder name, through the four steps as its run takes it."""
    delivery = classify(harness.brand, "main", name).again(n)
    land(harness.engine, harness.layout, harness.brand, delivery)
    for entity in delivery.entities:
        validate_file(harness.engine, harness.layout, harness.brand, "main", entity, delivery.name)
        map_file(harness.engine, harness.layout, harness.brand, "main", entity, delivery.name)
        apply_pending(harness.engine, harness.layout, harness.brand, entity)


def shoppers(harness, *refs: str) -> None:
    name = f"SHOPPER_V3_Acme_2023123100{len(refs):02d}.csv"
    harness.drop(name, SHOPPER + "".join(shopper_row(r) for r in refs))
    assert harness.ingest(name)["status"] == "applied"


def orders_with_lines(harness, files: Files, *refs: str) -> None:
    """Shopper C1, and an order with one line `<ref>-1` for each ref."""
    shoppers(harness, "C1")
    assert files.send("SPECIAL-ORDERS", ORDERS, *[order(r) for r in refs])["inserted"] == len(refs)
    assert files.send("SPECIAL-ORDER-LINE-ITEMS", LINES, *[line(r, f"{r}-1") for r in refs])["inserted"] == len(refs)


def release_all(harness) -> None:
    for entity in SPECIAL:
        apply_pending(harness.engine, harness.layout, harness.brand, entity)


def accounted(f: dict) -> bool:
    """A file's record adds up: every row read is applied, unchanged, rejected, held or superseded."""
    return f["rows_read"] == (f["inserted"] + f["updated"] + f["unchanged"] + f["rejected"] + f["held"]
                              + (f["superseded"] or 0) + (f["skipped"] or 0))


def held_rows(harness, entity: str) -> list[dict]:
    with harness.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "select file, line, reason from held where brand = 'acme' and entity = :e order by file, line"), {"e": entity}
        ).mappings()]


def typed_rows(harness, entity: str) -> list[dict]:
    """The brand's rows of `entity` read through the table, so datetimes are datetimes on both databases."""
    table = ENTITY_TABLES[entity]
    with harness.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).where(table.c.brand == "acme")).mappings()]


def events_stored(harness) -> dict[tuple[str, int], str]:
    return {(e["order_ref"], e["sequence"]): e["description"] for e in harness.rows("special_order_events")}


def alerted(harness) -> list[tuple[str, int]]:
    with harness.engine.connect() as conn:
        return [(a["order_ref"], a["sequence"]) for a in needing_action(conn, "acme")]


# --- special-order events: repeats, holds, resends ----------------------------------------------

def test_an_event_twice_in_one_file_keeps_the_first_and_rejects_the_later_even_spelt_001(harness):
    files = Files(harness)
    orders_with_lines(harness, files, "103495")
    record = files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 1, "First"), event("103495", 2, "Second"),
                        event("103495", 1, "First again, changed"), event("103495", "001", "Zero-padded"))
    assert (record["inserted"], record["rejected"]) == (2, 2) and accounted(record)
    assert [r[1:] for r in harness.rejects(record["name"])] == [
        ("order_ref+sequence", "103495|1", "duplicate_key"), ("order_ref+sequence", "103495|1", "duplicate_key")]
    assert events_stored(harness) == {("103495", 1): "First", ("103495", 2): "Second"}


def test_a_changed_resend_of_a_stored_event_is_rejected_and_counted(harness):
    files = Files(harness)
    orders_with_lines(harness, files, "103495")
    files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 3, "Sent"))
    again = files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 3, "Sent", action="TRUE"))
    assert (again["inserted"], again["unchanged"], again["rejected"]) == (0, 0, 1) and accounted(again)
    assert harness.rejects(again["name"]) == [(2, "sequence", "3", "append_only")]
    assert alerted(harness) == []  # the ignored TRUE alerts no one


def test_events_held_for_their_order_then_a_resend_every_files_counts_add_up(harness):
    files = Files(harness)
    first = files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 1, "Received"), event("103495", 2, "Sent"),
                       event("1", 3, "Too short a ref"))
    assert (first["held"], first["rejected"]) == (2, 1) and accounted(first)
    orders_with_lines(harness, files, "103495")
    release_all(harness)
    first = harness.file(first["name"])
    assert (first["inserted"], first["held"]) == (2, 0) and accounted(first)
    resend = files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 1, "Received"),
                        event("103495", 2, "Sent, but changed"), event("103495", 3, "Delivered"))
    assert (resend["inserted"], resend["unchanged"], resend["rejected"]) == (1, 1, 1) and accounted(resend)
    assert held_rows(harness, "special_order_events") == []
    assert events_stored(harness) == {("103495", 1): "Received", ("103495", 2): "Sent", ("103495", 3): "Delivered"}


def test_a_held_resend_of_a_stored_event_released_later_is_rejected_append_only_and_counted(harness):
    """Event 1 is stored; a later file resends it changed, naming a line item not known yet: held,
    then released when the line arrives, and rejected there, as if it had come then."""
    files = Files(harness)
    orders_with_lines(harness, files, "103495")
    files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 1, "Stored"))
    resend = files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 1, "Changed", line_ref="103495-9"))
    assert resend["held"] == 1
    files.send("SPECIAL-ORDER-LINE-ITEMS", LINES, line("103495", "103495-9"))
    release_all(harness)
    f = harness.file(resend["name"])
    assert (f["inserted"], f["rejected"], f["held"]) == (0, 1, 0) and accounted(f)
    assert harness.rejects(resend["name"]) == [(2, "sequence", "1", "append_only")]
    assert events_stored(harness) == {("103495", 1): "Stored"}


def test_a_held_event_superseded_by_a_later_files_event_leaves_no_phantom_held_count(harness):
    files = Files(harness)
    orders_with_lines(harness, files, "103495")
    early = files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 1, "Old text", line_ref="103495-9"))
    assert early["held"] == 1
    files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 1, "New text"))
    files.send("SPECIAL-ORDER-LINE-ITEMS", LINES, line("103495", "103495-9"))
    release_all(harness)
    still_held = [h for h in held_rows(harness, "special_order_events") if h["file"] == early["name"]]
    f = harness.file(early["name"])
    # The early row was never recorded: the later version took its place, and its file says so.
    assert f["held"] == len(still_held) == 0
    assert (f["inserted"], f["rejected"], f["superseded"]) == (0, 0, 1) and accounted(f)
    assert events_stored(harness) == {("103495", 1): "New text"}


def test_a_changed_resend_while_the_first_is_still_held_takes_its_place(harness):
    """Append-only is of events recorded: one still held (its order not arrived) was never
    recorded, so a later version replaces it as any held row's, and the first file says superseded."""
    files = Files(harness)
    first = files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 4, "Back from fabrication", "TRUE"))
    second = files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 4, "Lost in fabrication"))
    assert first["held"] == second["held"] == 1
    orders_with_lines(harness, files, "103495")
    release_all(harness)
    first, second = harness.file(first["name"]), harness.file(second["name"])
    assert events_stored(harness) == {("103495", 4): "Lost in fabrication"}
    assert (first["inserted"], first["held"], first["superseded"]) == (0, 0, 1) and accounted(first)
    assert (second["inserted"], second["rejected"], second["held"]) == (1, 0, 0) and accounted(second)


def test_an_event_waits_for_its_line_item_too_and_the_reason_names_both(harness):
    files = Files(harness)
    shoppers(harness, "C1")
    files.send("SPECIAL-ORDERS", ORDERS, order("103495"))
    record = files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 1), event("103496", 1))
    assert record["held"] == 2
    reasons = [h["reason"] for h in held_rows(harness, "special_order_events")]
    assert reasons == [
        "line_item_ref '103495-1' is not a known special_order_line_items record yet",
        "order_ref '103496' is not a known special_orders record yet; "
        "line_item_ref '103496-1' is not a known special_order_line_items record yet"]


# --- special orders: odd numbers, dates, huge fields --------------------------------------------

def test_total_amounts_in_odd_spellings_are_rejected_and_zero_padding_is_dropped(harness):
    files = Files(harness)
    shoppers(harness, "C1")
    odd = ["1e3", "+5", " 5", "5.", ".5", "5,0", "0x10", "NaN", "Infinity", "-0.0", "0005.00", "9" * 12 + ".99",
           "9" * 13]
    record = files.send("SPECIAL-ORDERS", ORDERS, *[order(f"SO-{i}", total=t) for i, t in enumerate(odd)])
    assert accounted(record)
    assert [(r[0], r[2], r[3]) for r in harness.rejects(record["name"])] == [
        (2, "1e3", "decimal"), (3, "+5", "decimal"), (4, " 5", "decimal"), (5, "5.", "decimal"), (6, ".5", "decimal"),
        (7, "5,0", "decimal"), (8, "0x10", "decimal"), (9, "NaN", "decimal"), (10, "Infinity", "decimal"),
        (14, "9" * 13, "overflow")]
    stored = {o["order_ref"]: str(o["total_amount"]) for o in harness.rows("special_orders")}
    assert stored == {"SO-9": "0.0", "SO-10": "5.00", "SO-11": "9" * 12 + ".99"}


def test_sequences_are_whole_numbers_of_at_most_three_digits_at_least_zero(harness):
    files = Files(harness)
    orders_with_lines(harness, files, "103495")
    record = files.send("SPECIAL-ORDER-EVENTS", EVENTS, *[
        event("103495", s) for s in ("-1", "001", "999", "1000", "0", "1.0", "", " 7", "0x1")])
    assert accounted(record)
    assert [(r[0], r[2], r[3]) for r in harness.rejects(record["name"])] == [
        (2, "-1", "minimum"), (5, "1000", "length"), (5, "1000", "overflow"), (7, "1.0", "integer"),
        (8, "", "required"), (9, " 7", "integer"), (10, "0x1", "integer")]
    assert sorted(s for _, s in events_stored(harness)) == [0, 1, 999]


def test_a_sequence_in_arabic_indic_digits_is_rejected_not_a_crash(harness):
    files = Files(harness)
    orders_with_lines(harness, files, "103495")
    record = files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", "٣"), event("103495", 4))
    assert (record["status"], record["inserted"], record["rejected"]) == ("applied", 1, 1)


def test_a_total_amount_in_arabic_indic_digits_is_rejected(harness):
    files = Files(harness)
    shoppers(harness, "C1")
    record = files.send("SPECIAL-ORDERS", ORDERS, order("SO-1", total="٣٠"), order("SO-2"))
    assert (record["status"], record["inserted"], record["rejected"]) == ("applied", 1, 1)


def test_created_at_in_every_iso_spelling_is_stored_as_utc_and_impossible_dates_are_rejected(harness):
    files = Files(harness)
    shoppers(harness, "C1")
    spellings = {
        "SO-offset": ("2022-01-17T19:23:22+05:30", "2022-01-17 13:53:22"),
        "SO-negative": ("2022-01-17T19:23:22-0800", "2022-01-18 03:23:22"),
        "SO-zulu": ("2022-01-17T19:23:22Z", "2022-01-17 19:23:22"),
        "SO-date": ("2022-01-17", "2022-01-17 00:00:00"),
        "SO-minutes": ("2022-01-17T19:23", "2022-01-17 19:23:00"),
        "SO-fraction": ("2022-01-17T19:23:22.123456Z", "2022-01-17 19:23:22.123456"),
        "SO-space": ("2022-01-17 19:23:22", "2022-01-17 19:23:22"),
        "SO-leap": ("2024-02-29T00:00:00", "2024-02-29 00:00:00"),
    }
    impossible = ["2022-02-30T10:00:00Z", "2023-02-29", "2022-13-01", "2022-01-17T24:00:00", "2022-01-17T19:23:22.1234567Z",
                  "17/01/2022", "2022-01-17T19:23:22+25:00", "2022-W03-1"]
    record = files.send("SPECIAL-ORDERS", ORDERS, *[order(ref, created=at) for ref, (at, _) in spellings.items()],
                        *[order(f"SO-bad-{i}", created=at) for i, at in enumerate(impossible)])
    assert record["inserted"] == len(spellings) and record["rejected"] == len(impossible) and accounted(record)
    assert {r[2] for r in harness.rejects(record["name"])} == set(impossible)
    assert {r[3] for r in harness.rejects(record["name"])} == {"datetime"}
    stored = {o["order_ref"]: o["created_at"] for o in typed_rows(harness, "special_orders")}
    for ref, (_, utc) in spellings.items():
        assert stored[ref] == datetime.fromisoformat(utc), ref


def test_a_description_of_65535_characters_passes_and_of_65536_is_rejected_length(harness):
    files = Files(harness)
    shoppers(harness, "C1")
    wide = "é" * 65_535  # two bytes each in UTF-8: the limit is in characters
    record = files.send("SPECIAL-ORDERS", ORDERS, order("SO-fits", description=wide),
                        order("SO-over", description=wide + "x"))
    assert (record["inserted"], record["rejected"]) == (1, 1)
    [(line_no, column, value, rule)] = harness.rejects(record["name"])
    assert (line_no, column, rule, len(value)) == (3, "description", "length", 200)  # the value shown is cut
    [stored] = harness.rows("special_orders")
    assert stored["description"] == wide


def test_a_file_resent_under_its_name_with_other_bytes_is_the_next_delivery_and_the_same_bytes_elsewhere_a_duplicate(harness):
    files = Files(harness)
    shoppers(harness, "C1")
    name = "SPECIAL-ORDERS_V2_Acme_202401010000.csv"
    first = files.send("SPECIAL-ORDERS", ORDERS, order("SO-1", total="10"), name=name)
    assert first["inserted"] == 1
    changed = ORDERS + csv_rows(order("SO-1", total="12"), order("SO-2"))
    harness.drop(name, changed)
    ingest_again(harness, name, 2)
    assert harness.file(f"{name}@2")["status"] == "applied"  # the name's second delivery
    assert harness.file(name)["inserted"] == 1  # the first keeps its own record
    assert (harness.file(f"{name}@2")["updated"], harness.file(f"{name}@2")["inserted"]) == (1, 1)
    harness.drop("SPECIAL-ORDERS_V2_Acme_202401020000.csv", changed)
    twin = harness.ingest("SPECIAL-ORDERS_V2_Acme_202401020000.csv")
    assert (twin["status"], twin["duplicate_of"]) == ("duplicate", f"{name}@2")
    assert {o["order_ref"]: str(o["total_amount"]) for o in harness.rows("special_orders")} == {"SO-1": "12", "SO-2": "10"}


# --- needing_action ----------------------------------------------------------------------------

def test_needing_action_follows_the_highest_sequence_across_files_sent_out_of_order(harness):
    files = Files(harness)
    orders_with_lines(harness, files, "103495", "103496", "103497")
    files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 9, "Ready", "TRUE", at="2022-01-10T00:00:00Z"),
               event("103496", 2, "Ready", "TRUE", at="2022-01-12T00:00:00Z"))
    assert alerted(harness) == [("103495", 9), ("103496", 2)]
    # Earlier events sent afterwards change nothing; a later one clears; a sequence 10 beats 9.
    files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 1, "Received", "FALSE"),
               event("103496", 3, "Delivered", "FALSE"), event("103497", 0, "Call", "TRUE", at="2022-01-12T00:00:00Z"))
    assert alerted(harness) == [("103495", 9), ("103497", 0)]
    files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 10, "Done", "FALSE"))
    assert alerted(harness) == [("103497", 0)]


def test_needing_action_orders_ties_by_order_and_gives_the_orders_associate(harness):
    files = Files(harness)
    shoppers(harness, "C1")
    files.send("SPECIAL-ORDERS", ORDERS, order("SO-B", associate="SA2"), order("SO-A", associate="SA1"))
    files.send("SPECIAL-ORDER-LINE-ITEMS", LINES, line("SO-B", "SO-B-1"), line("SO-A", "SO-A-1"))
    same = "2022-01-18T10:00:00+01:00"
    files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("SO-B", 1, "Call", "TRUE", at=same),
               event("SO-A", 1, "Call", "TRUE", at="2022-01-18T09:00:00Z"))
    with harness.engine.connect() as conn:
        found = needing_action(conn, "acme")
    assert [(a["order_ref"], a["sales_associate_id"]) for a in found] == [("SO-A", "SA1"), ("SO-B", "SA2")]
    assert all(a["created_at"] == datetime(2022, 1, 18, 9, 0) for a in found)


def test_held_events_alert_no_one_and_an_event_without_its_order_record_has_no_associate(harness):
    files = Files(harness)
    files.send("SPECIAL-ORDER-EVENTS", EVENTS, event("103495", 1, "Call", "TRUE"))
    assert alerted(harness) == []  # held: its order is not known
    # An event whose order is not (or no longer) a record: listed, without an associate.
    events = ENTITY_TABLES["special_order_events"]
    with writing(harness.engine) as conn:
        conn.execute(events.insert().values(
            brand="acme", order_ref="ORPHAN", line_item_ref="ORPHAN-1", sequence=5, description="Call",
            created_at=datetime(2022, 1, 1), reference=None, action_required=True, _file="x", _updated_at=datetime(2022, 1, 1)))
        conn.execute(events.insert().values(
            brand="other", order_ref="ORPHAN", line_item_ref="ORPHAN-1", sequence=6, description="Fine",
            created_at=datetime(2022, 1, 1), reference=None, action_required=False, _file="x", _updated_at=datetime(2022, 1, 1)))
    with harness.engine.connect() as conn:
        [found] = needing_action(conn, "acme")
        assert needing_action(conn, "other") == []
    assert (found["order_ref"], found["sequence"], found["sales_associate_id"]) == ("ORPHAN", 5, None)


# --- metafields: owners, refs in other cases ----------------------------------------------------

def product(harness, ref: str) -> None:
    name = f"PRODUCT_V2_Acme_2023123100{len(ref):02d}.csv"
    harness.drop(name, PRODUCT + f"{ref},Sac,,,,,TRUE\n")
    assert harness.ingest(name)["status"] == "applied"


def test_a_product_metafield_in_another_case_than_its_product_applies_and_a_shoppers_does_not(harness):
    files = Files(harness)
    product(harness, "P-1")
    shoppers(harness, "C1")
    record = files.send("METAFIELDS", METAFIELDS, metafield("p-1", "care", "Dry clean", owner_type="Product"),
                        metafield("c1", "tier", "gold"), version="V3")
    assert (record["inserted"], record["held"]) == (1, 1)  # shopper refs are exact: c1 is not C1
    assert [h["reason"] for h in held_rows(harness, "metafields")] == ["owner_ref 'c1' is not a known shoppers record yet"]


def test_a_product_metafield_resent_with_its_ref_in_another_case_is_the_same_metafield(harness):
    files = Files(harness)
    product(harness, "P-1")
    files.send("METAFIELDS", METAFIELDS, metafield("p-1", "care", "Dry clean", owner_type="Product"))
    again = files.send("METAFIELDS", METAFIELDS, metafield("P-1", "care", "Hand wash", owner_type="Product"))
    assert again["updated"] == 1
    assert [(m["owner_ref"], m["value"]) for m in harness.rows("metafields")] == [("P-1", "Hand wash")]


def test_one_products_metafield_twice_in_a_file_in_two_cases_is_a_duplicate_key(harness):
    files = Files(harness)
    product(harness, "P-1")
    record = files.send("METAFIELDS", METAFIELDS, metafield("p-1", "care", "Dry clean", owner_type="Product"),
                        metafield("P-1", "care", "Hand wash", owner_type="Product"))
    assert (record["inserted"], record["rejected"]) == (1, 1)


def test_a_shopper_and_a_product_sharing_a_ref_keep_their_own_metafields(engine, tmp_path):
    world = make_world(engine, tmp_path)
    h = world.harness["acme"]
    files = Files(h)
    shoppers(h, "X1")
    product(h, "X1")
    record = files.send("METAFIELDS", METAFIELDS, metafield("X1", "tier", "gold"),
                        metafield("X1", "tier", "silver", owner_type="Product"))
    assert (record["inserted"], record["rejected"]) == (2, 0)
    [client] = world.get("acme", "/api/extraction/v1/clients").json()
    assert [(m["key"], m["value"]) for m in client["metafields"]] == [("tier", "gold")]


# --- metafields: huge and hostile values --------------------------------------------------------

def test_a_metafield_value_of_65535_characters_passes_and_of_65536_is_rejected_length(harness):
    files = Files(harness)
    shoppers(harness, "C1")
    fits = "€" * 65_535  # three bytes each in UTF-8
    record = files.send("METAFIELDS", METAFIELDS, metafield("C1", "fits", fits, "multi_line_text_field"),
                        metafield("C1", "over", fits + "x", "multi_line_text_field"))
    assert (record["inserted"], record["rejected"]) == (1, 1)
    assert [r[:2] + r[3:] for r in harness.rejects(record["name"])] == [(3, "value", "length")]
    assert harness.rows("metafields")[0]["value"] == fits


def test_metafield_values_with_nul_newlines_quotes_and_unicode_names(engine, tmp_path):
    world = make_world(engine, tmp_path)
    h = world.harness["acme"]
    files = Files(h)
    shoppers(h, "C1")
    record = files.send("METAFIELDS", METAFIELDS,
                        metafield("C1", "nul", "a\x00b"),
                        metafield("C1", "two_lines", "one\ntwo"),
                        metafield("C1", "cr", "one\rtwo"),
                        metafield("C1", "notes", 'He said "hi",\r\nthen left', "multi_line_text_field"),
                        metafield("C1", "größe", "😀 \u202e", namespace="日本語"),
                        metafield("C1", "quotes", '"\'`;--'))
    assert accounted(record)
    assert sorted((r[0], r[3]) for r in h.rejects(record["name"])) == [(2, "nul_byte"), (3, "value_type"), (5, "value_type")]
    r = world.get("acme", "/api/extraction/v1/clients")
    assert r.status_code == 200, r.text
    [client] = r.json()
    Client.model_validate(client)
    assert [(m["namespace"], m["key"], m["value"]) for m in client["metafields"]] == [
        ("custom", "notes", 'He said "hi",\r\nthen left'), ("custom", "quotes", '"\'`;--'), ("日本語", "größe", "😀 \u202e")]


def test_a_trailing_line_break_does_not_slip_past_a_values_type():
    """Python's `$` matches before a final newline: `5\\n` must not be a number_integer."""
    for value_type, value in (("number_integer", "5\n"), ("number_decimal", "1.5\n"), ("url", "https://x.example\n"),
                              ("color", "#12AB34\n"), ("date_time", "2022-01-17T10:00:00\n"), ("boolean", "true\n"),
                              ("date", "2022-01-17\n")):
        assert misfit(value_type, False, value) is not None, (value_type, value)
        assert misfit(value_type, False, value.rstrip("\n")) is None, (value_type, value)


def test_a_number_beyond_a_float_is_no_json_value_the_api_cannot_write():
    for value_type, is_list, value in (("json", False, '{"a": 1e400}'), ("json", True, "[-1e999]"),
                                       ("weight", False, '{"value": 1e309, "unit": "kg"}')):
        assert misfit(value_type, is_list, value) is not None, value
    assert json_value("json", False, '{"a": 1e300, "b": [0.1, 2]}') == {"a": 1e300, "b": [0.1, 2]}


def test_json_text_escaping_half_a_surrogate_pair_is_refused_as_no_answer_can_carry_it():
    for value_type, is_list, value in (("json", False, '{"a": "\\ud800"}'), ("single_line_text_field", True, '["\\udfff"]'),
                                       ("json", False, '{"\\ud83d": 1}')):
        assert misfit(value_type, is_list, value) is not None, value
    assert json_value("single_line_text_field", True, '["\\ud83d\\ude00"]') == ["😀"]  # a whole pair is fine


def test_a_list_item_with_a_huge_exponent_is_refused_at_once():
    """`1e999999999` is 13 characters; written out it is a gigabyte of zeros."""
    started = time.monotonic()
    for value_type in ("number_decimal", "number_integer"):
        assert misfit(value_type, True, "[1e999999999, 1E-999999999]") is not None
    assert misfit("number_decimal", True, "[1e5, 1.5E-3, -0.25]") is None
    assert json_value("number_decimal", True, "[1e5, 1.5E-3, -0.25]") == ["100000", "0.0015", "-0.25"]
    assert time.monotonic() - started < 1


def test_a_hostile_metafield_in_a_file_is_rejected_and_the_api_still_answers(engine, tmp_path):
    world = make_world(engine, tmp_path)
    h = world.harness["acme"]
    files = Files(h)
    shoppers(h, "C1")
    record = files.send("METAFIELDS", METAFIELDS, metafield("C1", "huge", '{"a": 1e400}', "json"),
                        metafield("C1", "big", "[1e999999999]", "number_decimal", is_list="true"),
                        metafield("C1", "points", "5\n", "number_integer"),
                        metafield("C1", "half", '["\\ud800"]', is_list="true"), metafield("C1", "ok", "fine"))
    assert (record["inserted"], record["rejected"]) == (1, 4)
    r = world.get("acme", "/api/extraction/v1/clients")
    assert r.status_code == 200, r.text
    assert [m["key"] for m in r.json()[0]["metafields"]] == ["ok"]


# --- metafields through the Extraction API ------------------------------------------------------

def test_clients_carry_many_typed_metafields_none_for_a_client_without_and_the_response_validates(engine, tmp_path):
    world = make_world(engine, tmp_path)
    h = world.harness["acme"]
    files = Files(h)
    shoppers(h, "C1", "C2")
    many = [metafield("C1", f"k{i:03d}", str(i), "number_integer") for i in range(150)]
    typed = [
        metafield("C1", "flags", "[true,false]", "boolean", is_list="true"),
        metafield("C1", "sizes", "[38, -2]", "number_integer", is_list="true"),
        metafield("C1", "prices", '[0.10, "12.50", 3]', "number_decimal", is_list="true"),
        metafield("C1", "balance", "-0012.50", "number_decimal"),
        metafield("C1", "doc", '{"a": [1, {"b": null}], "c": "x"}', "json"),
        metafield("C1", "price", '{"amount": "5.99", "currency_code": "EUR"}', "money"),
        metafield("C1", "since", "2024-02-29", "date"),
        metafield("C1", "at", "2022-01-17T19:23:22+05:30", "date_time"),
        metafield("C1", "ids", '["gid://shopify/Product/1"]', "product_reference", is_list="true"),
    ]
    record = files.send("METAFIELDS", METAFIELDS, *many, *typed)
    assert (record["inserted"], record["rejected"]) == (len(many) + len(typed), 0)
    r = world.get("acme", "/api/extraction/v1/clients")
    assert r.status_code == 200, r.text
    by_client = {c["client_id"]: c for c in r.json()}
    for c in by_client.values():
        Client.model_validate(c)
    assert by_client["C2"]["metafields"] == []
    got = {m["key"]: m["json_value"] for m in by_client["C1"]["metafields"]}
    assert len(got) == 159 and got["k149"] == 149
    assert [m["key"] for m in by_client["C1"]["metafields"]] == sorted(got)
    assert (got["flags"], got["sizes"], got["prices"], got["balance"]) == ([True, False], [38, -2],
                                                                          ["0.10", "12.50", "3"], "-12.50")
    assert got["doc"] == {"a": [1, {"b": None}], "c": "x"}
    assert got["price"] == {"amount": "5.99", "currency_code": "EUR"}
    assert (got["since"], got["at"], got["ids"]) == ("2024-02-29", "2022-01-17T19:23:22+05:30", ["gid://shopify/Product/1"])


def test_an_inactive_metafield_disappears_from_its_client_and_comes_back_when_active_again(engine, tmp_path):
    world = make_world(engine, tmp_path)
    h = world.harness["acme"]
    files = Files(h)
    shoppers(h, "C1")

    def shown() -> list[str]:
        r = world.get("acme", "/api/extraction/v1/clients")
        assert r.status_code == 200, r.text
        return [m["key"] for m in r.json()[0]["metafields"]]

    files.send("METAFIELDS", METAFIELDS, metafield("C1", "a", "1"), metafield("C1", "b", "2"))
    assert shown() == ["a", "b"]
    files.send("METAFIELDS", METAFIELDS, metafield("C1", "a", "1", active="false"))
    assert shown() == ["b"]
    files.send("METAFIELDS", METAFIELDS, metafield("C1", "b", "2", active="false"))
    assert shown() == []
    files.send("METAFIELDS", METAFIELDS, metafield("C1", "a", "1"))
    assert shown() == ["a"]


def test_a_held_metafield_released_later_moves_its_client_on(engine, tmp_path):
    world = make_world(engine, tmp_path)
    h = world.harness["acme"]
    files = Files(h)
    assert files.send("METAFIELDS", METAFIELDS, metafield("C1", "tier", "gold"))["held"] == 1
    shoppers(h, "C1")  # the client exists now, without its metafield
    with engine.connect() as conn:
        before = conn.execute(sa.select(clients.c.updated_at).where(clients.c.shopper_ref == "C1")).scalar_one()
    apply_pending(engine, h.layout, h.brand, "metafields")  # the sync's release
    assert [m["owner_ref"] for m in h.rows("metafields")] == ["C1"]
    with engine.connect() as conn:
        after = conn.execute(sa.select(clients.c.updated_at).where(clients.c.shopper_ref == "C1")).scalar_one()
    assert after > before

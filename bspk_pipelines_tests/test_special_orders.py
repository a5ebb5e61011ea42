"""Special orders end to end, as a brand sends them (SPECIAL-ORDERS, then LINE-ITEMS, then EVENTS)
and as it gets them wrong: out of order, resent, changed, short refs, amounts without currency.
On SQLite and PostgreSQL (the `harness` fixture)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bspk_pipelines.cli.sync import alerts, summary
from bspk_pipelines.ingest.apply import apply_pending
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.warehouse.special_orders import needing_action
from bspk_pipelines_tests.builders import SHOPPER, brand_harness, header, shopper_row

ORDERS, LINES, EVENTS = (header(e) for e in ("special_orders", "special_order_line_items", "special_order_events"))
ORDERS_FILE = "SPECIAL-ORDERS_V2_Acme_202401100000.csv"
LINES_FILE = "SPECIAL-ORDER-LINE-ITEMS_V2_Acme_202401100000.csv"
EVENTS_FILE = "SPECIAL-ORDER-EVENTS_V2_Acme_202401100000.csv"


def order(ref: str, shopper: str = "C1", total: str = "456.39", currency: str = "USD", status: str = "open",
          kind: str = "repair") -> str:
    return f"{ref},{shopper},ST1,SA1,Resole the boots,{total},{currency},2022-01-17T19:23:22Z,{kind},{status}\n"


def line(order_ref: str, ref: str, price: str = "120", currency: str = "USD", quantity: str = "2") -> str:
    return f"{order_ref},{ref},BK345,B01N54LF,,Custom goat skin gloves,,,{quantity},{price},{currency},open\n"


def event(order_ref: str, line_ref: str, seq: int, text: str, action: str, at: str = "2022-01-18T10:00:00Z") -> str:
    return f"{order_ref},{line_ref},{seq},{text},{at},IB01T/38259,{action}\n"


def with_shopper(harness, ref: str = "C1") -> None:
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper_row(ref))
    assert harness.ingest("SHOPPER_V3_Acme_202401010000.csv")["status"] == "applied"


def test_orders_lines_and_events_apply_in_their_order(harness):
    with_shopper(harness)
    harness.drop(ORDERS_FILE, ORDERS + order("103495") + order("103496", total="", currency=""))
    harness.drop(LINES_FILE, LINES + line("103495", "103495-1") + line("103495", "103495-2", price="", currency=""))
    harness.drop(EVENTS_FILE, EVENTS + event("103495", "103495-1", 1, "Received", "FALSE"))
    for name in (ORDERS_FILE, LINES_FILE, EVENTS_FILE):
        assert harness.ingest(name)["status"] == "applied"
    orders = harness.rows("special_orders", "order_ref")
    assert [(o["order_ref"], o["shopper_id"], o["type"], o["status"]) for o in orders] == [
        ("103495", "C1", "repair", "open"), ("103496", "C1", "repair", "open")]
    assert str(orders[0]["total_amount"]) == "456.39" and orders[1]["total_amount"] is None
    lines = harness.rows("special_order_line_items", "line_item_ref")
    assert [(x["line_item_ref"], str(x["quantity"]), x["price"] and str(x["price"])) for x in lines] == [
        ("103495-1", "2", "120"), ("103495-2", "2", None)]
    [stored] = harness.rows("special_order_events")
    assert (stored["sequence"], stored["action_required"], stored["reference"]) == (1, False, "IB01T/38259")


def test_lines_and_events_wait_for_their_order_and_orders_for_their_shopper(harness):
    harness.drop(EVENTS_FILE, EVENTS + event("103495", "103495-1", 1, "Received", "FALSE"))
    harness.drop(LINES_FILE, LINES + line("103495", "103495-1"))
    harness.drop(ORDERS_FILE, ORDERS + order("103495"))
    assert harness.ingest(EVENTS_FILE)["held"] == 1
    assert harness.ingest(LINES_FILE)["held"] == 1
    assert harness.ingest(ORDERS_FILE)["held"] == 1  # its shopper C1 is not known yet
    with harness.engine.connect() as conn:
        reasons = dict(conn.execute(sa.text("select entity, reason from held where brand = 'acme'")).all())
    assert reasons["special_orders"] == "shopper_id 'C1' is not a known shoppers record yet"
    assert "order_ref '103495' is not a known special_orders record yet" in reasons["special_order_events"]
    assert "line_item_ref '103495-1' is not a known special_order_line_items record yet" in reasons["special_order_events"]
    with_shopper(harness)
    for entity in ("special_orders", "special_order_line_items", "special_order_events"):
        apply_pending(harness.engine, harness.layout, harness.brand, entity)
    assert len(harness.rows("special_order_events")) == 1
    assert harness.file(EVENTS_FILE)["held"] == 0 and harness.file(EVENTS_FILE)["inserted"] == 1


def _applied_orders(harness):
    with_shopper(harness)
    harness.drop(ORDERS_FILE, ORDERS + order("103495") + order("103496"))
    harness.drop(LINES_FILE, LINES + line("103495", "103495-1") + line("103496", "103496-1"))
    for name in (ORDERS_FILE, LINES_FILE):
        assert harness.ingest(name)["status"] == "applied"


def test_events_are_append_only_a_changed_resend_is_rejected_and_the_stored_event_stays(harness):
    _applied_orders(harness)
    harness.drop(EVENTS_FILE, EVENTS + event("103495", "103495-1", 3, "Sent to fabrication", "FALSE")
                 + event("103495", "103495-1", 4, "Back from fabrication", "TRUE"))
    assert harness.ingest(EVENTS_FILE)["inserted"] == 2
    again = "SPECIAL-ORDER-EVENTS_V2_Acme_202401110000.csv"
    harness.drop(again, EVENTS + event("103495", "103495-1", 3, "Sent to fabrication", "FALSE")  # as stored
                 + event("103495", "103495-1", 4, "Lost in fabrication", "FALSE")  # changed
                 + event("103495", "103495-1", 5, "Delivered to client", "FALSE"))  # new
    record = harness.ingest(again)
    assert (record["inserted"], record["updated"], record["unchanged"], record["rejected"]) == (1, 0, 1, 1)
    assert harness.rejects(again) == [(3, "sequence", "4", "append_only")]
    events = {e["sequence"]: e["description"] for e in harness.rows("special_order_events")}
    assert events == {3: "Sent to fabrication", 4: "Back from fabrication", 5: "Delivered to client"}
    with harness.engine.connect() as conn:
        message = conn.execute(sa.text("select message from rejects where rule = 'append_only'")).scalar_one()
    assert message.startswith("this order_ref and sequence is already recorded with other values")
    assert "send the change under a new sequence" in message


def test_action_required_counts_only_on_the_last_event_of_an_order(harness):
    """The reference's example: 3 FALSE, 4 TRUE alerts the associate, 5 FALSE clears it; an order's
    last event is its highest sequence whatever order the files came in."""
    _applied_orders(harness)

    def alerted() -> list[tuple[str, int]]:
        with harness.engine.connect() as conn:
            return [(a["order_ref"], a["sequence"]) for a in needing_action(conn, "acme")]

    names = iter(f"SPECIAL-ORDER-EVENTS_V2_Acme_2024011{i}0000.csv" for i in range(10))

    def send(*rows: str) -> None:
        name = next(names)
        harness.drop(name, EVENTS + "".join(rows))
        assert harness.ingest(name)["status"] == "applied"

    send(event("103495", "103495-1", 3, "Sent to boutique", "FALSE"), event("103495", "103495-1", 4, "Received at boutique", "TRUE"))
    assert alerted() == [("103495", 4)]
    send(event("103495", "103495-1", 5, "Delivered to client", "FALSE"))
    assert alerted() == []
    # The other order's last event arrives before an earlier one that asked for action.
    send(event("103496", "103496-1", 2, "Ready", "FALSE"))
    send(event("103496", "103496-1", 1, "Call the client", "TRUE"))
    assert alerted() == []
    send(event("103496", "103496-1", 7, "Client wants a change", "TRUE"))
    assert alerted() == [("103496", 7)]


def test_bad_special_orders_are_rejected_naming_line_column_and_rule_and_the_rest_apply(harness):
    with_shopper(harness)
    harness.drop(ORDERS_FILE, ORDERS
                 + order("12")  # order_ref shorter than 3
                 + order("103495", currency="")  # an amount without its currency
                 + order("103496", kind="repairs")
                 + order("103497", total="-1")
                 + order("103498"))
    record = harness.ingest(ORDERS_FILE)
    assert (record["inserted"], record["rejected"]) == (1, 4)
    assert harness.rejects(ORDERS_FILE) == [
        (2, "order_ref", "12", "length"), (3, "currency_code", "", "required_with"), (4, "type", "repairs", "enum"),
        (5, "total_amount", "-1", "minimum")]
    harness.drop(EVENTS_FILE, EVENTS + "103498,103498-1,1000,Too far,2022-01-18T10:00:00Z,,TRUE\n"
                 + "103498,103498-1,2,No time,,,TRUE\n")
    harness.ingest(EVENTS_FILE)
    assert harness.rejects(EVENTS_FILE) == [(2, "sequence", "1000", "length"), (2, "sequence", "1000", "overflow"),
                                            (3, "created_at", "", "required")]


def test_bad_line_items_are_rejected_naming_line_column_and_rule(harness):
    with_shopper(harness)
    harness.drop(ORDERS_FILE, ORDERS + order("103495"))
    harness.ingest(ORDERS_FILE)
    harness.drop(LINES_FILE, LINES
                 + line("103495", "1-")  # line_item_ref shorter than 3
                 + line("103495", "103495-2", currency="")  # a price without its currency
                 + line("103495", "103495-3", quantity="-1")
                 + "103495,103495-4,,,,,,not-a-url,1,,,open\n"  # no name, an image that is no URL
                 + line("103495", "103495-5"))
    record = harness.ingest(LINES_FILE)
    assert (record["inserted"], record["rejected"]) == (1, 4)
    assert harness.rejects(LINES_FILE) == [
        (2, "line_item_ref", "1-", "length"), (3, "currency_code", "", "required_with"), (4, "quantity", "-1", "minimum"),
        (5, "image_url", "not-a-url", "url"), (5, "name", "", "required")]


def test_a_rerun_of_an_applied_special_orders_file_changes_nothing(harness):
    _applied_orders(harness)
    before = harness.rows("special_orders", "order_ref")
    for entity in ("special_orders", "special_order_line_items", "special_order_events"):
        applied, released = apply_pending(harness.engine, harness.layout, harness.brand, entity)
        assert applied == [] and released.released == 0
    assert harness.rows("special_orders", "order_ref") == before
    harness.drop("SPECIAL-ORDERS_V2_Acme_202401120000.csv", ORDERS + order("103495") + order("103496"))
    assert harness.ingest("SPECIAL-ORDERS_V2_Acme_202401120000.csv")["status"] == "duplicate"  # the same bytes
    harness.drop("SPECIAL-ORDERS_V2_Acme_202401130000.csv", ORDERS + order("103496") + order("103495"))
    record = harness.ingest("SPECIAL-ORDERS_V2_Acme_202401130000.csv")
    assert (record["inserted"], record["updated"], record["unchanged"]) == (0, 0, 2)
    assert harness.rows("special_orders", "order_ref") == before


# A boutique's repair system exports its own format: French columns, `;`, decimal commas,
# day-first dates in Paris time, its own words for types and statuses.
ATELIER = {"brand": "acme", "company_name": "Acme", "sources": {
    "main": {"format": "bspk", "drop": "drop/acme"},
    "atelier": {"format": "csv", "drop": "drop/acme/atelier", "dialect": {
        "delimiter": ";", "decimal": ",", "thousands": " ", "datetime_format": "%d/%m/%Y %H:%M", "timezone": "Europe/Paris"},
        "files": [{"pattern": "REPARATIONS_*.csv", "entity": "special_orders", "columns": {
            "order_ref": {"from": "N_BON"}, "shopper_id": {"from": "CLIENT"}, "store_id": {"from": "BOUTIQUE"},
            "sales_associate_id": {"from": "VENDEUR"}, "total_amount": {"from": "MONTANT"},
            "currency_code": {"constant": "EUR"}, "created_at": {"from": "DATE"},
            "type": {"constant": "repair"},
            "status": {"from": "ETAT", "transforms": ["trim", "lower"],
                       "values": {"ouvert": "open", "terminé": "closed", "annulé": "cancelled"}}}}]}}}


def test_a_repair_systems_own_export_feeds_special_orders(engine, tmp_path):
    h = brand_harness(ATELIER, engine, tmp_path)
    with_shopper(h)
    name = "REPARATIONS_20260105.csv"
    h.drop(name, "N_BON;CLIENT;BOUTIQUE;VENDEUR;MONTANT;DATE;ETAT\n"
                 "B-0042;C1;ST1;SA1;1 250,50;17/01/2022 20:23;Ouvert\n"
                 "B-0043;C1;ST1;SA1;80,00;18/01/2022 09:00;perdu\n", source="atelier")
    record = h.ingest(name, source="atelier")
    assert (record["inserted"], record["rejected"]) == (1, 1)
    [stored] = h.rows("special_orders")
    assert (stored["order_ref"], str(stored["total_amount"]), stored["status"]) == ("B-0042", "1250.50", "open")
    assert str(stored["created_at"]).replace(" ", "T").startswith("2022-01-17T19:23:00")  # Paris time, stored UTC
    [(line, column, value, rule)] = h.rejects(name)
    assert (line, column, value, rule) == (3, "ETAT", "perdu", "enum")


TWO_SYSTEMS = {"brand": "acme", "company_name": "Acme", "sources": {
    "main": {"format": "bspk", "drop": "drop/acme"}, "atelier": {"format": "bspk", "drop": "drop/acme/atelier"}}}


def test_with_two_sources_the_first_version_of_an_event_stays_whichever_source_changes_it(engine, tmp_path):
    h = brand_harness(TWO_SYSTEMS, engine, tmp_path)
    _applied_orders(h)
    first = "SPECIAL-ORDER-EVENTS_V2_Acme_202401110000.csv"
    h.drop(first, EVENTS + event("103495", "103495-1", 1, "Received", "FALSE"), source="atelier")
    assert h.ingest(first, source="atelier")["inserted"] == 1
    # Each system resends it otherwise: each resend is rejected once, counted rejected, not merged.
    for n, (source, text) in enumerate((("main", "Received twice"), ("main", "Received thrice"),
                                        ("atelier", "Received at the workshop"))):
        name = f"SPECIAL-ORDER-EVENTS_V2_Acme_20240112{n:02d}00.csv"
        h.drop(name, EVENTS + event("103495", "103495-1", 1, text, "FALSE"), source=source)
        record = h.ingest(name, source=source)
        assert (record["inserted"], record["updated"], record["unchanged"], record["rejected"]) == (0, 0, 0, 1), name
        assert h.rejects(name) == [(2, "sequence", "1", "append_only")]
    [stored] = h.rows("special_order_events")
    assert stored["description"] == "Received"


def test_precedence_for_append_only_events_is_refused_as_a_config_error():
    with pytest.raises(ValueError, match="precedence.special_order_events: SPECIAL-ORDER-EVENTS rows are append-only"):
        Brand.model_validate(TWO_SYSTEMS | {"precedence": {"special_order_events": {"default": ["main", "atelier"]}}})


def test_the_sync_summary_keeps_its_columns_for_the_longest_entity_name(harness):
    _applied_orders(harness)
    header, *lines = summary(harness.engine, ["acme"]).splitlines()
    assert any(line.split()[1] == "special_order_line_items" for line in lines)
    # Every line's counts start where the header's do.
    start = header.index("files")
    assert all(line[start - 1] == " " and line[start:start + 9].strip().replace(",", "").isdigit() for line in lines)


def test_a_source_mapping_an_amount_with_no_currency_anywhere_is_a_config_error():
    columns = dict(ATELIER["sources"]["atelier"]["files"][0]["columns"])
    del columns["currency_code"]
    atelier = ATELIER["sources"]["atelier"] | {"files": [ATELIER["sources"]["atelier"]["files"][0] | {"columns": columns}]}
    config = ATELIER | {"sources": {"atelier": atelier}}
    with pytest.raises(ValueError, match=r"sources.atelier.files\[0\]: maps total_amount of special_orders, but no "
                                         r"source sends currency_code, .*\(currency_code: \{constant: EUR\}\)"):
        Brand.model_validate(config)
    # The platform's own format sends every column: a bspk source beside it is enough.
    Brand.model_validate(config | {"sources": {"atelier": atelier, "main": {"format": "bspk", "drop": "drop/acme"}}})


def test_the_sync_names_the_orders_needing_action_and_their_associate(harness):
    _applied_orders(harness)
    harness.drop(EVENTS_FILE, EVENTS + event("103495", "103495-1", 1, "Call the client", "TRUE")
                 + event("103496", "103496-1", 1, "Received", "FALSE"))
    harness.ingest(EVENTS_FILE)
    assert alerts(harness.engine, ["acme"]) == ["acme: 1 special order(s) need action: 103495 (1 Call the client, SA1)"]


def test_an_event_naming_another_orders_line_item_is_rejected_saying_whose_it_is(harness):
    _applied_orders(harness)  # 103495-1 is a line of 103495, 103496-1 of 103496
    harness.drop(EVENTS_FILE, EVENTS + event("103495", "103496-1", 1, "Received", "FALSE")
                 + event("103495", "103495-1", 2, "Sent to fabrication", "FALSE"))
    record = harness.ingest(EVENTS_FILE)
    assert (record["inserted"], record["rejected"], record["held"]) == (1, 1, 0)
    assert harness.rejects(EVENTS_FILE) == [(2, "line_item_ref", "103496-1", "reference")]
    with harness.engine.connect() as conn:
        message = conn.execute(sa.text("select message from rejects where rule = 'reference'")).scalar_one()
    assert message == ("line_item_ref '103496-1' is a special_order_line_items record of order_ref '103496', "
                       "not of this row's order_ref '103495'")


def test_an_event_held_for_a_line_item_that_arrives_under_another_order_is_rejected_at_its_release(harness):
    _applied_orders(harness)
    harness.drop(EVENTS_FILE, EVENTS + event("103495", "103496-9", 1, "Received", "FALSE"))
    assert harness.ingest(EVENTS_FILE)["held"] == 1
    late = "SPECIAL-ORDER-LINE-ITEMS_V2_Acme_202401150000.csv"
    harness.drop(late, LINES + line("103496", "103496-9"))
    harness.ingest(late)
    apply_pending(harness.engine, harness.layout, harness.brand, "special_order_events")
    record = harness.file(EVENTS_FILE)
    assert (record["inserted"], record["rejected"], record["held"]) == (0, 1, 0)
    assert harness.rows("special_order_events") == []

"""METAFIELDS end to end: a brand's own attributes of shoppers and products, checked by their
declared type, waiting for their owner, and carried by the Extraction API's clients and the
extracts. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from datetime import datetime

import sqlalchemy as sa

from bspk_pipelines.ingest.apply import apply_pending
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.outbound.extracts import run_extract
from bspk_pipelines.warehouse.platform import clients
from bspk_pipelines_tests.builders import (
    NATIVE, PRODUCT, SHOPPER, brand_harness, header, make_world, shopper_row, view_records,
)

METAFIELDS = header("metafields")
SHOPPERS_FILE = "SHOPPER_V3_Acme_202401010000.csv"


def metafield(owner: str, key: str, value: str, value_type: str = "single_line_text_field", is_list: str = "false",
              active: str = "true", owner_type: str = "Shopper") -> str:
    quoted = '"' + value.replace('"', '""') + '"'
    return f"{owner_type},{owner},custom,{key},{is_list},{value_type},{quoted},{active}\n"


def send(harness, stamp: str, *rows: str) -> dict:
    name = f"METAFIELDS_V1_Acme_{stamp}.csv"
    harness.drop(name, METAFIELDS + "".join(rows))
    return harness.ingest(name)


def test_a_clients_metafields_reach_the_extraction_api_typed_and_without_the_removed_ones(engine, tmp_path):
    world = make_world(engine, tmp_path)
    h = world.harness["acme"]
    h.drop(SHOPPERS_FILE, SHOPPER + shopper_row("C1") + shopper_row("C2"))
    assert h.ingest(SHOPPERS_FILE)["status"] == "applied"
    record = send(h, "202401020000",
                  metafield("C1", "favorite_color", "Blue"),
                  metafield("C1", "loyalty_points", "1250", "number_integer"),
                  metafield("C1", "balance", "1250.50", "number_decimal"),
                  metafield("C1", "sizes", '["38","39"]', "single_line_text_field", is_list="true"),
                  metafield("C1", "vip", "true", "boolean"),
                  metafield("C1", "old_tier", "gold", active="false"),
                  metafield("C2", "measures", '{"value": 2.5, "unit": "kg"}', "weight"))
    assert (record["inserted"], record["rejected"]) == (7, 0)
    r = world.get("acme", "/api/extraction/v1/clients")
    assert r.status_code == 200, r.text
    by_client = {c["client_id"]: c["metafields"] for c in r.json()}
    assert [(m["key"], m["json_value"]) for m in by_client["C1"]] == [
        ("balance", "1250.50"), ("favorite_color", "Blue"), ("loyalty_points", 1250), ("sizes", ["38", "39"]),
        ("vip", True)]
    assert by_client["C1"][3] | {"updated_at": None} == {
        "namespace": "custom", "key": "sizes", "value": '["38","39"]', "value_type": "single_line_text_field",
        "is_list": True, "json_value": ["38", "39"], "updated_at": None}
    assert by_client["C2"][0]["json_value"] == {"value": 2.5, "unit": "kg"}
    datetime.fromisoformat(by_client["C2"][0]["updated_at"].replace("Z", "+00:00"))
    # The stored row of the removed metafield stays as the brand sent it.
    assert [m["active"] for m in h.rows("metafields") if m["key"] == "old_tier"] == [False]


def test_a_changed_metafield_moves_its_client_on_and_an_unchanged_one_does_not(engine, tmp_path):
    world = make_world(engine, tmp_path)
    h = world.harness["acme"]
    h.drop(SHOPPERS_FILE, SHOPPER + shopper_row("C1") + shopper_row("C2"))
    h.ingest(SHOPPERS_FILE)

    def updated() -> dict[str, datetime]:
        with engine.connect() as conn:
            return dict(conn.execute(sa.select(clients.c.shopper_ref, clients.c.updated_at)).all())

    before = updated()
    send(h, "202401020000", metafield("C1", "favorite_color", "Blue"))
    first = updated()
    assert first["C1"] > before["C1"] and first["C2"] == before["C2"]
    send(h, "202401030000", metafield("C1", "favorite_color", "Blue"), metafield("C2", "favorite_color", "Red"))
    second = updated()
    assert second["C1"] == first["C1"] and second["C2"] > first["C2"]
    send(h, "202401040000", metafield("C1", "favorite_color", "Blue", active="false"))
    assert updated()["C1"] > second["C1"]
    assert view_records(world, "clients", client_ids=["C1"])[0]["metafields"] == []


def test_metafields_wait_for_their_shopper_or_product_whatever_the_products_case(harness):
    record = send(harness, "202401020000",
                  metafield("C1", "favorite_color", "Blue"),
                  metafield("p-100", "care", "Dry clean only", "multi_line_text_field", owner_type="Product"))
    assert (record["inserted"], record["held"]) == (0, 2)
    with harness.engine.connect() as conn:
        reasons = sorted(conn.execute(sa.text("select reason from held where entity = 'metafields'")).scalars())
    assert reasons == ["owner_ref 'C1' is not a known shoppers record yet",
                       "owner_ref 'p-100' is not a known products record yet"]
    harness.drop("PRODUCT_V2_Acme_202401030000.csv", PRODUCT + "P-100,Sac,,,,,TRUE\n")
    harness.ingest("PRODUCT_V2_Acme_202401030000.csv")
    apply_pending(harness.engine, harness.layout, harness.brand, "metafields")
    assert [(m["owner_type"], m["owner_ref"]) for m in harness.rows("metafields")] == [("Product", "p-100")]
    harness.drop(SHOPPERS_FILE, SHOPPER + shopper_row("C1"))
    harness.ingest(SHOPPERS_FILE)
    apply_pending(harness.engine, harness.layout, harness.brand, "metafields")
    assert sorted(m["owner_ref"] for m in harness.rows("metafields")) == ["C1", "p-100"]
    assert harness.file("METAFIELDS_V1_Acme_202401020000.csv")["inserted"] == 2


def test_a_shopper_and_a_product_may_share_a_ref_and_each_waits_for_its_own(harness):
    harness.drop(SHOPPERS_FILE, SHOPPER + shopper_row("X1"))
    harness.ingest(SHOPPERS_FILE)
    record = send(harness, "202401020000", metafield("X1", "a", "1", "number_integer"),
                  metafield("X1", "a", "1", "number_integer", owner_type="Product"))
    assert (record["inserted"], record["held"]) == (1, 1)  # the product X1 is not known


def test_bad_metafields_are_rejected_naming_line_column_rule_and_what_to_write(harness):
    harness.drop(SHOPPERS_FILE, SHOPPER + shopper_row("C1"))
    harness.ingest(SHOPPERS_FILE)
    record = send(harness, "202401020000",
                  metafield("C1", "points", "12.5", "number_integer"),
                  metafield("C1", "sizes", "38;39", is_list="true"),
                  metafield("C1", "vip", "TRUE", "boolean"),
                  metafield("C1", "tier", "gold", is_list="TRUE"),
                  metafield("C1", "tier", "gold", owner_type="shopper"),
                  metafield("C1", "since", "17/01/2022", "date"),
                  metafield("C1", "shade", "#12345", "color"),
                  metafield("C1", "notes", "gold", "text"),
                  metafield("C1", "ok", "fine"))
    assert (record["inserted"], record["rejected"]) == (1, 8)
    assert harness.rejects("METAFIELDS_V1_Acme_202401020000.csv") == [
        (2, "value", "12.5", "value_type"), (3, "value", "38;39", "value_type"), (4, "value", "TRUE", "value_type"),
        (5, "is_list", "TRUE", "boolean"), (6, "owner_type", "shopper", "enum"), (7, "value", "17/01/2022", "value_type"),
        (8, "value", "#12345", "value_type"), (9, "value_type", "text", "enum")]
    with harness.engine.connect() as conn:
        messages = dict(conn.execute(sa.text("select line, message from rejects where brand = 'acme'")).all())
    assert messages[2] == "not a whole number of at most 13 digits (number_integer)"
    assert messages[3].startswith('a list is a JSON array such as ["Blue","Red"]')
    assert messages[5] == "expected true or false, in lower case (not TRUE or FALSE)"


def test_the_clients_extract_carries_their_metafields(engine, tmp_path):
    world = make_world(engine, tmp_path)
    h = world.harness["acme"]
    h.drop(SHOPPERS_FILE, SHOPPER + shopper_row("C1"))
    h.ingest(SHOPPERS_FILE)
    send(h, "202401020000", metafield("C1", "favorite_color", "Blue"))
    brand = Brand.model_validate(NATIVE | {"extracts": {"format": "csv"}})
    outbox = tmp_path / "outbox"
    result = run_extract(engine, brand, "clients", outbox)
    with open(result.path, newline="", encoding="utf-8") as f:
        [row] = list(csv.DictReader(f))
    [carried] = json.loads(row["metafields"])
    assert (carried["key"], carried["value"], carried["json_value"]) == ("favorite_color", "Blue", "Blue")


# A CRM exports its client attributes one per line, in its own words.
CRM = {"brand": "acme", "company_name": "Acme", "sources": {
    "main": {"format": "bspk", "drop": "drop/acme"},
    "crm": {"format": "csv", "drop": "drop/acme/crm", "dialect": {"delimiter": ";"}, "files": [{
        "pattern": "ATTRIBUTS_*.csv", "entity": "metafields", "columns": {
            "owner_type": {"constant": "Shopper"}, "owner_ref": {"from": "CLIENT"},
            "namespace": {"constant": "crm"}, "key": {"from": "ATTRIBUT", "transforms": ["lower"]},
            "is_list": {"constant": "false"},
            "value_type": {"from": "TYPE", "values": {"texte": "single_line_text_field", "nombre": "number_integer"}},
            "value": {"from": "VALEUR"},
            "active": {"from": "ACTIF", "transforms": ["trim", "lower"], "values": {"oui": "true", "non": "false"}}}}]}}}


def test_a_crms_own_attribute_export_feeds_metafields_and_a_bad_boolean_gets_a_hint(engine, tmp_path):
    h = brand_harness(CRM, engine, tmp_path)
    h.drop(SHOPPERS_FILE, SHOPPER + shopper_row("C1"))
    h.ingest(SHOPPERS_FILE)
    name = "ATTRIBUTS_20260105.csv"
    h.drop(name, "CLIENT;ATTRIBUT;TYPE;VALEUR;ACTIF\nC1;Palier;texte;or;Oui\nC1;Points;nombre;1 250;oui\n"
                 "C1;Taille;texte;38;peut-être\n", source="crm")
    record = h.ingest(name, source="crm")
    assert (record["inserted"], record["rejected"]) == (1, 2)
    assert [(m["namespace"], m["key"], m["value"], m["active"]) for m in h.rows("metafields")] == [
        ("crm", "palier", "or", True)]
    assert h.rejects(name) == [(3, "VALEUR", "1 250", "value_type"), (4, "ACTIF", "peut-être", "boolean")]
    with engine.connect() as conn:
        message = conn.execute(sa.text("select message from rejects where line = 4")).scalar_one()
    assert message.startswith("expected true or false, in lower case (not TRUE or FALSE); map the file's values with")
    assert '"true"' in message


def test_rows_checked_under_other_metafield_rules_are_checked_again(tmp_path, monkeypatch):
    """Unchanged rows are set aside by a digest that names the rules; the value-type rules are part
    of them, so a fix there checks a resent row again rather than trusting the old check."""
    from bspk_pipelines.ingest import check
    from bspk_pipelines.model import metafields as rules_of_types

    fingerprint = check.rules_fingerprint.__wrapped__  # computed anew, not the process's cached one
    before = fingerprint()
    changed = tmp_path / "metafields.py"
    changed.write_text(open(rules_of_types.__file__, encoding="utf-8").read() + "\n# a fix\n", encoding="utf-8")
    monkeypatch.setattr(rules_of_types, "__file__", str(changed))
    assert fingerprint() != before

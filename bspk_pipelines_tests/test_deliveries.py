"""Deliveries as brands send them: one file feeding several entities lands once; a name that comes
again with other bytes is the next delivery; a failed delivery is retried after a fix, never an
applied one twice; and a warehouse keyed by file name alone is carried forward."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from bspk_pipelines.ingest.drop import FileNameError, classify, delivery_key, dropped_name
from bspk_pipelines.ingest.ledger import failed
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.warehouse.apply import now
from bspk_pipelines.warehouse.engine import engine_for
from bspk_pipelines_tests.builders import NATIVE, brand_harness, older_schema

PROJECT = Path(__file__).parent.parent
ARTICLES = "ARTICLES_20260101.csv"
# An ERP article file: one row carries a product's name, its price and its image.
ERP = {
    "brand": "acme", "company_name": "Acme",
    "sources": {"erp": {"format": "csv", "drop": "drop/acme/erp", "dialect": {"delimiter": ";"}, "files": [{
        "pattern": "ARTICLES_*.csv",
        "entities": {
            "products": {"columns": {"product_ref": {"from": "ART"}, "name": {"from": "NAME"},
                                     "published": {"constant": "TRUE"}}},
            "product_prices": {"columns": {"product_ref": {"from": "ART"}, "sku": {"constant": "*"},
                                           "price": {"from": "PRICE"}, "currency_code": {"from": "CUR"}}},
            "product_images": {"columns": {"product_ref": {"from": "ART"}, "image_url": {"from": "IMG"},
                                           "position": {"constant": "1"}}},
        },
    }]}},
}
ROWS = "ART;NAME;PRICE;CUR;IMG\nA-1;Bag;100.00;EUR;https://img.example/a1.jpg\nA-2;Belt;50.00;EUR;\n"


def test_one_file_feeds_three_entities_and_lands_once(engine, tmp_path):
    h = brand_harness(ERP, engine, tmp_path)
    h.drop(ARTICLES, ROWS, "erp")
    h.ingest(ARTICLES, "erp")
    with engine.connect() as conn:
        records = conn.execute(sa.text("select entity, status, sha256, claim, rows_read, rejected from files "
                                       "order by entity")).all()
        rejects = conn.execute(sa.text('select entity, line, "column", rule from rejects')).all()
    assert [(r.entity, r.status, r.rows_read, r.rejected) for r in records] == [
        ("product_images", "applied", 2, 1), ("product_prices", "applied", 2, 0), ("products", "applied", 2, 0)]
    assert len({(r.sha256, r.claim) for r in records}) == 1  # one landing claimed every record
    assert [p.name for p in (h.layout.data_dir / "acme" / "landing" / "erp").iterdir()] == [ARTICLES]
    assert [tuple(r) for r in rejects] == [("product_images", 3, "IMG", "required")]  # the reject names its entity
    assert sorted(r["product_ref"] for r in h.rows("products")) == ["A-1", "A-2"]
    assert sorted((r["product_ref"], str(r["price"])) for r in h.rows("product_prices")) == [("A-1", "100.00"), ("A-2", "50.00")]
    assert [r["image_url"] for r in h.rows("product_images")] == ["https://img.example/a1.jpg"]
    # The same bytes under another name: a duplicate for each entity, nothing applied twice.
    h.drop("ARTICLES_20260102.csv", ROWS, "erp")
    assert h.ingest("ARTICLES_20260102.csv", "erp")["status"] == "duplicate"
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from files where status = 'duplicate'")).scalar() == 3


def test_overlapping_patterns_are_a_config_error_and_a_name_matching_two_is_refused():
    source = ERP["sources"]["erp"]
    second = {"pattern": "*.csv", "entity": "products",
              "columns": {"product_ref": {"from": "ART"}, "name": {"from": "NAME"}, "published": {"constant": "TRUE"}}}
    with pytest.raises(ValueError, match=r"files\[0\] \(ARTICLES_\*\.csv\) and files\[1\] \(\*\.csv\) both match"):
        Brand.model_validate({**ERP, "sources": {"erp": {**source, "files": [*source["files"], second]}}})
    # Patterns whose overlap the config check cannot see: the name itself is refused, not half taken.
    first = {**second, "pattern": "*_products_*.csv"}
    brand = Brand.model_validate({**ERP, "sources": {"erp": {**source, "files": [first, {**second, "pattern": "erp_*_2026*.csv"}]}}})
    with pytest.raises(FileNameError, match="matches more than one of source erp's file patterns"):
        classify(brand, "erp", "erp_products_20260101.csv")


def test_delivery_keys_are_readable_and_name_the_file():
    assert [delivery_key("customers_export.csv", n) for n in (1, 2, 10)] == [
        "customers_export.csv", "customers_export.csv@2", "customers_export.csv@10"]
    assert dropped_name("customers_export.csv@10") == dropped_name("customers_export.csv") == "customers_export.csv"
    with pytest.raises(FileNameError, match="ending in @<number>"):
        classify(Brand.model_validate({**ERP, "sources": {"erp": {**ERP["sources"]["erp"], "files": [
            {**ERP["sources"]["erp"]["files"][0], "pattern": "ARTICLES_*"}]}}}), "erp", "ARTICLES_1.csv@2")
    first = classify(Brand.model_validate(NATIVE), "main", "SHOPPER_V3_Acme_202401010000.csv")
    assert first.again(9).queue_position < first.again(10).queue_position  # @10 after @9


def _cli(tmp_path: Path, warehouse_url: str, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"DAGSTER_HOME": str(tmp_path / "home"), "BSPK_DATA_DIR": str(tmp_path / "data"),
                        "BSPK_MAPPINGS_DIR": str(tmp_path / "mappings"), "BSPK_WAREHOUSE_URL": warehouse_url,
                        "PYTHONPATH": str(PROJECT)}
    return subprocess.run([sys.executable, "-m", "bspk_pipelines.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_failed_file_is_retried_after_a_config_fix_and_an_applied_one_never_twice(warehouse_url, tmp_path):
    """The brand's YAML names a column its file does not have: the file fails, `bspk sync` says so
    at every run (exit 1) and how to retry; once the YAML is fixed, `bspk retry` applies it from its
    landed copy, and a second retry finds nothing to do."""
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    wrong = json.loads(json.dumps(ERP))
    wrong["sources"]["erp"]["files"][0]["entities"]["product_prices"]["columns"]["price"]["from"] = "PREIS"
    (mappings / "acme.yaml").write_text(yaml.safe_dump(wrong))
    drop = tmp_path / "data" / "drop" / "acme" / "erp"
    drop.mkdir(parents=True)
    (drop / ARTICLES).write_text(ROWS)
    first = _cli(tmp_path, warehouse_url, "sync", "--brand", "acme", "--settle", "0.05")
    assert first.returncode == 1 and "Traceback" not in first.stdout + first.stderr, first.stdout + first.stderr
    again = _cli(tmp_path, warehouse_url, "sync", "--brand", "acme", "--settle", "0.05")
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"  failed: {ARTICLES}: line 1: the header does not fit: missing column PREIS [product_prices]" in again.stdout
    assert "then: bspk retry --brand acme" in again.stdout
    (drop / ARTICLES).unlink()  # the landed copy is what a retry reads
    (mappings / "acme.yaml").write_text(yaml.safe_dump(ERP))
    retried = _cli(tmp_path, warehouse_url, "retry", "--brand", "acme", "--file", ARTICLES)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert f"  {ARTICLES}: run " in retried.stdout and "FAILED" not in retried.stdout
    engine = sa.create_engine(warehouse_url)
    with engine.connect() as conn:
        assert dict(conn.execute(sa.text("select entity, status from files")).all()) == {
            "products": "applied", "product_prices": "applied", "product_images": "applied"}
        assert conn.execute(sa.text("select count(*) from product_prices")).scalar() == 2
    engine.dispose()
    nothing = _cli(tmp_path, warehouse_url, "retry", "--brand", "acme", "--file", ARTICLES)
    assert nothing.returncode == 1 and f"no failed delivery named {ARTICLES}" in nothing.stdout, nothing.stdout
    assert _cli(tmp_path, warehouse_url, "sync", "--brand", "acme", "--settle", "0.05").returncode == 0


def test_an_older_failed_delivery_is_not_retried_over_a_later_applied_one(engine, tmp_path):
    from bspk_pipelines.ingest.land import NotRetried, land

    wrong = json.loads(json.dumps(ERP))
    wrong["sources"]["erp"]["files"][0]["entities"]["product_prices"]["columns"]["price"]["from"] = "PREIS"
    h = brand_harness(wrong, engine, tmp_path)
    h.drop(ARTICLES, ROWS, "erp")
    h.ingest(ARTICLES, "erp")
    later = brand_harness(ERP, engine, tmp_path)
    later.drop("ARTICLES_20260201.csv", ROWS.replace("100.00", "120.00"), "erp")
    later.ingest("ARTICLES_20260201.csv", "erp")
    with pytest.raises(NotRetried, match="a later delivery of product_prices, ARTICLES_20260201.csv, was applied since"):
        land(engine, later.layout, later.brand, classify(later.brand, "erp", ARTICLES))
    assert later.file(ARTICLES, "erp", "product_prices")["status"] == "failed"
    # Replaced by the later delivery: it waits for no fix, so `bspk sync` does not keep failing for it.
    with engine.connect() as conn:
        assert failed(conn, "acme") == []
    assert sorted(str(r["price"]) for r in later.rows("product_prices")) == ["120.00", "50.00"]


def test_a_warehouse_keyed_by_file_name_alone_is_carried_forward(warehouse_url, tmp_path):
    old = older_schema()
    before = sa.create_engine(warehouse_url)
    stamp = now()
    with before.begin() as conn:  # as version 2 left it: files keyed by brand, source and name
        old.create_all(conn)
        conn.execute(old.tables["files"].insert(), [
            dict(brand="acme", source="main", name="SHOPPER_V3_Acme_202401010000.csv", entity="shoppers", sha256="a" * 64,
                 size=10, received_at=stamp, sort_key="x", status="applied"),
            dict(brand="acme", source="main", name="notes.txt", entity=None, sha256="", size=0, received_at=stamp,
                 sort_key="", status="refused", error="notes.txt: refused")])
    before.dispose()
    engine = engine_for(warehouse_url)
    with engine.connect() as conn:
        key = sa.inspect(conn).get_pk_constraint("files")["constrained_columns"]
        rows = conn.execute(sa.text("select name, entity, status from files order by name")).all()
    assert key == ["brand", "source", "name", "entity"]
    assert [tuple(r) for r in rows] == [("SHOPPER_V3_Acme_202401010000.csv", "shoppers", "applied"), ("notes.txt", "", "refused")]
    # A record for another entity of the same delivery now fits beside it.
    with engine.begin() as conn:
        conn.execute(sa.text("insert into files (brand, source, name, entity, sha256, size, received_at, sort_key, status) "
                             "values ('acme', 'main', 'SHOPPER_V3_Acme_202401010000.csv', 'products', :s, 10, :t, 'x', 'applied')"),
                     {"s": "a" * 64, "t": stamp})


def test_a_file_whose_name_matched_no_pattern_is_taken_once_the_config_has_one(engine, tmp_path):
    """Never landed (its name fitted no mapping): recorded as failed; once the brand's YAML maps
    that name, its retry takes the file from the drop folder and applies it."""
    from bspk_pipelines.ingest.land import land

    without = json.loads(json.dumps(ERP))
    without["sources"]["erp"]["files"][0]["pattern"] = "ARTIKEL_*.csv"
    h = brand_harness(without, engine, tmp_path)
    h.drop(ARTICLES, ROWS, "erp")
    assert h.planned() == []
    assert (h.file(ARTICLES, "erp")["status"], h.file(ARTICLES, "erp")["entity"]) == ("failed", "")
    fixed = brand_harness(ERP, engine, tmp_path)
    assert land(engine, fixed.layout, fixed.brand, classify(fixed.brand, "erp", ARTICLES)).status == "received"
    assert fixed.ingest(ARTICLES, "erp")["status"] == "applied"
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.text("select entity, status from files")).all()) == [
            ("product_images", "applied"), ("product_prices", "applied"), ("products", "applied")]

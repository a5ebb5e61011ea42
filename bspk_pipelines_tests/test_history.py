"""Sales history by month: rebuilds are idempotent, a backfill equals one big load, a late file
touches only its months, and big files stream through in bounded batches."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bspk_pipelines.ingest.drop import classify
from bspk_pipelines.ingest.months import pending, rebuild_month
from bspk_pipelines.ingest.check import validate_file
from bspk_pipelines.ingest.contribute import map_file
from bspk_pipelines.ingest.land import land
from bspk_pipelines_tests.builders import (
    HISTORY,
    HISTORY_CONFIG,
    NATIVE,
    THREE_SHOPPERS,
    TWO_PRODUCTS,
    brand_harness,
    header,
    loaded,
    sales_file,
)


def land_only(h, name: str) -> list[str]:
    """Land a sales file without rebuilding: the months it leaves pending."""
    d = classify(h.brand, "main", name)
    land(h.engine, h.layout, h.brand, d)
    validate_file(h.engine, h.layout, h.brand, "main", "sales", name)
    map_file(h.engine, h.layout, h.brand, "main", "sales", name)
    return [m for m, _ in pending(h.engine, h.brand.brand, "sales")]


def table(h) -> list[tuple]:
    return [(r["sale_ref"], r["product_ref"], float(r["price"]), str(r["created_at"])[:19], r["shopper_ref"], r["_file"])
            for r in h.rows("sales", "sale_ref")]


def test_a_history_file_lands_once_and_feeds_every_month_it_touches(engine, tmp_path):
    h = loaded(engine, tmp_path)
    assert land_only(h, "SALE_V2_Acme_202406010000.csv") == ["2024-01", "2024-02", "2024-03", "2024-05"]
    assert h.file("SALE_V2_Acme_202406010000.csv")["inserted"] == 6  # counted when it landed
    assert table(h) == []  # nothing written before the months rebuild
    counts = {m: rebuild_month(engine, h.layout.data_dir, "acme", "sales", m).inserted for m in ["2024-01", "2024-02", "2024-03", "2024-05"]}
    assert counts == {"2024-01": 2, "2024-02": 1, "2024-03": 2, "2024-05": 1}
    assert pending(engine, "acme", "sales") == []


def test_rebuilding_a_month_again_changes_nothing(engine, tmp_path):
    h = loaded(engine, tmp_path)
    h.ingest("SALE_V2_Acme_202406010000.csv")
    before = h.rows("sales", "sale_ref")
    again = rebuild_month(engine, h.layout.data_dir, "acme", "sales", "2024-03")
    assert (again.inserted, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 2)
    assert h.rows("sales", "sale_ref") == before  # not even _updated_at moved
    empty = rebuild_month(engine, h.layout.data_dir, "acme", "sales", "2023-12")
    assert (empty.inserted, empty.deleted) == (0, 0)


def test_backfill_in_any_order_equals_one_big_load(engine, tmp_path):
    big = loaded(engine, tmp_path, "big")
    big.ingest("SALE_V2_Acme_202406010000.csv")  # every month rebuilt as it lands
    back = loaded(engine, tmp_path, "back")
    months = land_only(back, "SALE_V2_Acme_202406010000.csv")
    for month in reversed(months + ["2023-11", "2024-04"]):  # a backfill over the whole range, newest first
        rebuild_month(engine, back.layout.data_dir, "back", "sales", month)
    strip = lambda rows: [r[:5] for r in rows]  # noqa: E731
    assert strip(table(back)) == strip(table(big)) and len(table(big)) == 6


def test_a_late_file_for_an_old_month_changes_that_month_only(engine, tmp_path):
    h = loaded(engine, tmp_path)
    h.ingest("SALE_V2_Acme_202406010000.csv")
    stamps = {r["sale_ref"]: r["_updated_at"] for r in h.rows("sales")}
    h.drop("SALE_V2_Acme_202406020000.csv", sales_file([("T3", "P1", "2024-02-03T10:00:00", "S1"), ("T7", "P2", "2024-02-14T12:00:00", "S2")], price="12.50"))
    assert land_only(h, "SALE_V2_Acme_202406020000.csv") == ["2024-02"]
    counts = rebuild_month(engine, h.layout.data_dir, "acme", "sales", "2024-02")
    assert (counts.inserted, counts.updated, counts.deleted) == (1, 1, 0)
    after = {r["sale_ref"]: r for r in h.rows("sales")}
    assert float(after["T3"]["price"]) == 12.5 and "T7" in after
    assert all(after[s]["_updated_at"] == stamps[s] for s in ("T1", "T2", "T4", "T5", "T6"))


def test_a_line_moved_to_another_month_leaves_its_old_month(engine, tmp_path):
    h = loaded(engine, tmp_path)
    h.ingest("SALE_V2_Acme_202406010000.csv")
    h.drop("SALE_V2_Acme_202406020000.csv", sales_file([("T1", "P1", "2024-02-10T10:00:00", "S1")]))
    h.ingest("SALE_V2_Acme_202406020000.csv")
    # Rebuilding January again (a backfill) must not bring the older version back.
    rebuild_month(engine, h.layout.data_dir, "acme", "sales", "2024-01")
    t1 = [r for r in table(h) if r[0] == "T1"]
    assert t1 == [("T1", "P1", 10.0, "2024-02-10 10:00:00", "S1", "SALE_V2_Acme_202406020000.csv")]


def test_sales_outside_the_history_are_rejects(engine, tmp_path):
    h = loaded(engine, tmp_path, history=[("T1", "P1", "2023-10-31T23:00:00", "S1"), ("T2", "P1", "2099-01-01T00:00:00", "S1"),
                                          ("T3", "P1", "2023-11-01T00:00:00", "S1")])
    f = h.ingest("SALE_V2_Acme_202406010000.csv")
    assert (f["rejected"], f["inserted"]) == (2, 1)
    assert [(line, rule) for line, _, _, rule in h.rejects("SALE_V2_Acme_202406010000.csv")] == [(2, "outside_history"), (3, "outside_history")]


def test_held_sale_rebuilds_its_month_when_the_shopper_arrives(engine, tmp_path):
    h = loaded(engine, tmp_path, history=[("T1", "P1", "2024-01-05T10:00:00", "S9")])
    f = h.ingest("SALE_V2_Acme_202406010000.csv")
    assert (f["held"], table(h)) == (1, [])
    h.drop("SHOPPER_V3_Acme_202406020000.csv", header("shoppers") + "S9,Late,Shopper,,,F,,,,,,,,,,,,FR,,,,,TRUE,FALSE\n")
    from bspk_pipelines.ingest.apply import apply_pending

    land_shoppers = classify(h.brand, "main", "SHOPPER_V3_Acme_202406020000.csv")
    land(engine, h.layout, h.brand, land_shoppers)
    validate_file(engine, h.layout, h.brand, "main", "shoppers", land_shoppers.name)
    map_file(engine, h.layout, h.brand, "main", "shoppers", land_shoppers.name)
    apply_pending(engine, h.layout, h.brand, "shoppers")
    assert [m for m, _ in pending(engine, "acme", "sales")] == ["2024-01"]
    assert h.rebuild_pending_months()["2024-01"].inserted == 1
    assert [r[0] for r in table(h)] == ["T1"] and h.rows("held") == []


@pytest.mark.parametrize("batch_rows", [2, 3])
def test_a_file_streams_through_tiny_batches_with_the_same_outcome(engine, tmp_path, batch_rows):
    """Duplicate keys and unique values are caught across batches, as within one."""
    rows = [("T1", "P1", "2024-01-05T10:00:00", "S1"), ("T2", "P2", "2024-01-20T10:00:00", "S2"),
            ("T3", "P1", "2024-02-03T10:00:00", "S1"), ("T1", "P1", "2024-03-09T10:00:00", "S3"),
            ("T4", "P2", "bad", "S2"), ("T3", "P1", "2024-05-01T00:00:00", "S3"), ("T5", "P1", "2024-05-02T00:00:00", "S2")]
    outcomes = []
    for size, name in ((batch_rows, "small"), (250_000, "whole")):
        h = loaded(engine, tmp_path, name, history=rows)
        d = classify(h.brand, "main", "SALE_V2_Acme_202406010000.csv")
        land(engine, h.layout, h.brand, d)
        validate_file(engine, h.layout, h.brand, "main", "sales", d.name, batch_rows=size)
        map_file(engine, h.layout, h.brand, "main", "sales", d.name)
        h.rebuild_pending_months()
        f = h.file(d.name)
        outcomes.append(([r[:5] for r in table(h)], h.rejects(d.name), f["rows_read"], f["rejected"], f["inserted"]))
    assert outcomes[0] == outcomes[1]
    assert [(line, rule) for line, _, _, rule in outcomes[0][1]] == [(5, "duplicate_key"), (6, "datetime"), (7, "duplicate_key")]
    assert len(outcomes[0][0]) == 4


def test_shoppers_stream_through_tiny_batches_catching_a_shared_mobile_phone(engine, tmp_path):
    h = brand_harness(HISTORY_CONFIG, engine, tmp_path)
    body = "".join(f"S{i},F,L,,,F,,,+3361234567{i % 3},,,,,,,,,FR,,,,,TRUE,FALSE\n" for i in range(5))
    h.drop("SHOPPER_V3_Acme_202401010000.csv", header("shoppers") + body)
    d = classify(h.brand, "main", d_name := "SHOPPER_V3_Acme_202401010000.csv")
    land(engine, h.layout, h.brand, d)
    validate_file(engine, h.layout, h.brand, "main", "shoppers", d_name, batch_rows=2)
    assert [(line, rule) for line, _, _, rule in h.rejects(d_name)] == [(5, "duplicate_mobile_phone"), (6, "duplicate_mobile_phone")]


def test_backfill_cli_rebuilds_a_range_in_runs_of_months_per_run(monkeypatch, tmp_path, capsys):
    from pathlib import Path

    import dagster as dg

    from bspk_pipelines.cli import main

    mappings, data = tmp_path / "mappings", tmp_path / "data"
    mappings.mkdir()
    (mappings / "acme.yaml").write_text(
        "brand: acme\ncompany_name: Acme\nhistory_start: '2023-11'\nmonths_per_run: 2\nsources:\n  main: {format: bspk, drop: drop/acme}\n")
    monkeypatch.setenv("BSPK_MAPPINGS_DIR", str(mappings))
    monkeypatch.setenv("BSPK_DATA_DIR", str(data))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BSPK_WAREHOUSE_URL", raising=False)
    drop = data / "drop" / "acme"
    drop.mkdir(parents=True)
    for name, content in (("SHOPPER_V3_Acme_202401010000.csv", THREE_SHOPPERS), ("PRODUCT_V2_Acme_202401010000.csv", TWO_PRODUCTS),
                          ("SALE_V2_Acme_202406010000.csv", sales_file(HISTORY))):
        (drop / name).write_text(content)
    assert main(["sync", "--brand", "acme", "--settle", "0.05"]) == 0
    warehouse = sa.create_engine(f"sqlite:///{data / 'warehouse.sqlite'}")
    with warehouse.begin() as conn:
        conn.execute(sa.text("delete from sales"))  # lost: the backfill brings it back from the month store
    capsys.readouterr()
    assert main(["backfill", "--brand", "acme", "--from", "2023-12", "--to", "2024-05"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": run")[0].strip() for line in out] == [
        "sales months 2023-12 to 2024-01", "sales months 2024-02 to 2024-03", "sales months 2024-04 to 2024-05"]
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("select count(*) from sales")).scalar() == 6
    sales = dg.AssetKey(["acme", "bspk", "sales"])
    with dg.DagsterInstance.get() as instance:
        # Partition keys are months as the CLI spells them, and each month of a run of several
        # reports its own counts: empty April holds none, March its two lines.
        assert instance.get_materialized_partitions(sales) >= {"2023-12", "2024-01", "2024-04", "2024-05"}
        latest = {m: instance.fetch_materializations(dg.AssetRecordsFilter(sales, asset_partitions=[m]), limit=1)
                  .records[0].asset_materialization.metadata for m in ("2024-03", "2024-04")}
    assert [latest[m]["dagster/partition_row_count"].value for m in ("2024-03", "2024-04")] == [2, 0]
    assert [latest[m]["inserted"].value for m in ("2024-03", "2024-04")] == [2, 0]
    assert main(["backfill", "--brand", "acme", "--from", "1990-01", "--to", "1990-02"]) == 2
    assert Path(data / "warehouse.sqlite").exists()


def test_empty_months_fill_in_one_bulk_insert_and_fall_back_when_a_key_moved(engine, tmp_path):
    from bspk_pipelines.ingest.months import rebuild_months

    h = loaded(engine, tmp_path)
    months = land_only(h, "SALE_V2_Acme_202406010000.csv")
    done = rebuild_months(engine, h.layout.data_dir, "acme", "sales", [*months, "2024-04"])
    assert {m: c.inserted for m, c in done.items()} == {"2024-01": 2, "2024-02": 1, "2024-03": 2, "2024-05": 1, "2024-04": 0}
    assert pending(engine, "acme", "sales") == [] and len(table(h)) == 6
    # T1 moves from January to empty April, beside a new line in empty December: the bulk insert
    # meets T1's January row, so each month rebuilds alone, and the newer file's T1 wins.
    h.drop("SALE_V2_Acme_202406020000.csv", sales_file([("T1", "P1", "2024-04-02T10:00:00", "S1"), ("T8", "P2", "2023-12-24T18:00:00", "S2")]))
    assert land_only(h, "SALE_V2_Acme_202406020000.csv") == ["2023-12", "2024-04"]
    done = rebuild_months(engine, h.layout.data_dir, "acme", "sales", ["2023-12", "2024-04"])
    assert (done["2023-12"].inserted, done["2024-04"].inserted) == (1, 1)
    assert [(r[0], r[3][:7]) for r in table(h) if r[0] in ("T1", "T8")] == [("T1", "2024-04"), ("T8", "2023-12")]
    assert len(table(h)) == 7


def test_a_fill_in_chunks_counts_each_months_held_lines_apart(engine, tmp_path, monkeypatch):
    """Months filled a chunk at a time (here one month a chunk): each month records the lines it
    stored and those held for an unknown shopper, and the held line waits with its month."""
    from bspk_pipelines.ingest import months as month_code

    monkeypatch.setattr(month_code, "FILL_ROWS", 1)
    h = loaded(engine, tmp_path, history=[("T1", "P1", "2024-01-05T10:00:00", "S1"), ("T2", "P1", "2024-02-05T10:00:00", "S404"),
                                          ("T3", "P2", "2024-02-06T10:00:00", "S2"), ("T4", "P2", "2024-03-01T10:00:00", "S3")])
    landed = land_only(h, "SALE_V2_Acme_202406010000.csv")
    done = month_code.rebuild_months(engine, h.layout.data_dir, "acme", "sales", landed)
    assert {m: (c.inserted, c.held) for m, c in done.items()} == {"2024-01": (1, 0), "2024-02": (1, 1), "2024-03": (1, 0)}
    with engine.connect() as conn:
        assert month_code.rows_at_rebuild(conn, "acme", "sales", landed) == {"2024-01": 1, "2024-02": 1, "2024-03": 1}
    assert [r[0] for r in table(h)] == ["T1", "T3", "T4"]
    assert [r["key"].split("|")[0] for r in h.rows("held")] == ["T2"]


def test_a_key_met_in_a_later_chunk_undoes_the_whole_fill_and_each_month_rebuilds_once(engine, tmp_path, monkeypatch):
    """Filled one month a chunk, July takes T9 before August's chunk meets it: the fill is one
    transaction, so July's chunk is undone too, and each month rebuilds alone exactly once."""
    from bspk_pipelines.ingest import months as month_code

    monkeypatch.setattr(month_code, "FILL_ROWS", 1)
    monkeypatch.setattr(month_code, "FILL_CONNECTIONS", 1)
    h = loaded(engine, tmp_path, history=[("T1", "P1", "2024-06-05T10:00:00", "S1")])
    land_only(h, "SALE_V2_Acme_202406010000.csv")
    h.drop("SALE_V2_Acme_202406020000.csv", sales_file([("T9", "P1", "2024-07-02T10:00:00", "S1")]))
    h.drop("SALE_V2_Acme_202406030000.csv", sales_file([("T9", "P1", "2024-08-02T10:00:00", "S2")]))
    land_only(h, "SALE_V2_Acme_202406020000.csv")
    landed = land_only(h, "SALE_V2_Acme_202406030000.csv")
    assert landed == ["2024-06", "2024-07", "2024-08"]
    done = month_code.rebuild_months(engine, h.layout.data_dir, "acme", "sales", landed)
    assert {m: c.inserted for m, c in done.items()} == {"2024-06": 1, "2024-07": 1, "2024-08": 1}
    assert [(r[0], r[3][:7], r[4]) for r in table(h)] == [("T1", "2024-06", "S1"), ("T9", "2024-08", "S2")]
    assert {r["month"]: r["rebuilds"] for r in h.rows("months", "month")} == {"2024-06": 1, "2024-07": 1, "2024-08": 1}


def test_empty_months_split_into_consecutive_groups_of_about_equal_rows():
    from bspk_pipelines.ingest.months import _balanced

    sizes = {"2024-01": 5, "2024-02": 1, "2024-03": 4, "2024-04": 0, "2024-05": 6, "2024-06": 4}
    assert [list(g) for g in _balanced(sizes, 2)] == [["2024-01", "2024-02", "2024-03"], ["2024-04", "2024-05", "2024-06"]]
    assert [list(g) for g in _balanced(sizes, 1)] == [list(sizes)]
    assert [list(g) for g in _balanced({"2024-01": 5}, 2)] == [["2024-01"]]


def test_a_fill_reads_its_months_a_bounded_number_of_rows_at_a_time(monkeypatch):
    from bspk_pipelines.ingest import months

    monkeypatch.setattr(months, "FILL_ROWS", 10)
    sizes = {"2024-01": 4, "2024-02": 5, "2024-03": 2, "2024-04": 30, "2024-05": 0, "2024-06": 9}
    assert months._chunks(sizes) == [["2024-01", "2024-02"], ["2024-03"], ["2024-04"], ["2024-05", "2024-06"]]


def test_a_key_in_two_empty_months_filled_side_by_side_ends_in_the_newer_files_month(engine, tmp_path):
    """On PostgreSQL the two months fill over two connections at once: the second insert of the key
    waits for the first and fails, and its months rebuild alone; the newer file's month keeps it."""
    from bspk_pipelines.ingest.months import rebuild_months

    h = loaded(engine, tmp_path, history=[("T1", "P1", "2024-01-05T10:00:00", "S1")])
    land_only(h, "SALE_V2_Acme_202406010000.csv")
    h.drop("SALE_V2_Acme_202406020000.csv", sales_file([("T9", "P1", "2024-07-02T10:00:00", "S1")]))
    h.drop("SALE_V2_Acme_202406030000.csv", sales_file([("T9", "P1", "2024-08-02T10:00:00", "S2")]))
    land_only(h, "SALE_V2_Acme_202406020000.csv")
    assert land_only(h, "SALE_V2_Acme_202406030000.csv") == ["2024-01", "2024-07", "2024-08"]
    done = rebuild_months(engine, h.layout.data_dir, "acme", "sales", ["2024-01", "2024-07", "2024-08"])
    assert pending(engine, "acme", "sales") == [] and done["2024-08"].inserted == 1
    assert [(r[0], r[3][:7], r[4]) for r in table(h)] == [("T1", "2024-01", "S1"), ("T9", "2024-08", "S2")]


def test_a_sales_source_that_does_not_own_shopper_ref_lands_its_lines(engine, tmp_path):
    """The map step asks which references are unknown over the validated rows, before they are
    limited to what the source owns: a column it does not own is not looked for."""
    h = brand_harness({**HISTORY_CONFIG, "sources": {"main": {"format": "bspk", "drop": "drop/acme"},
                                             "pos": {"format": "bspk", "drop": "drop/pos"}},
                       "precedence": {"sales": {"shopper_ref": ["pos"]}}}, engine, tmp_path)
    h.drop("PRODUCT_V2_Acme_202401010000.csv", TWO_PRODUCTS)
    h.ingest("PRODUCT_V2_Acme_202401010000.csv")
    h.drop("SALE_V2_Acme_202406010000.csv", sales_file([("T1", "P1", "2024-01-05T10:00:00", "S9")]))  # S9: unknown
    f = h.ingest("SALE_V2_Acme_202406010000.csv")
    assert (f["status"], f["inserted"], f["held"]) == ("applied", 1, 0)
    assert [(r[0], r[4]) for r in table(h)] == [("T1", None)]


# --- thirty years of history under the minimum config ----------------------------------------------

OLD_SALES = [("T1", "P1", "1996-03-02T10:00:00", "S1"), ("T2", "P2", "1990-01-01T00:00:00", "S2"),
             ("T3", "P1", "1989-12-31T23:59:59", "S3")]


def test_thirty_years_of_sales_fit_the_minimum_config(engine, tmp_path):
    h = brand_harness(NATIVE, engine, tmp_path)  # no history_start: the default
    assert h.brand.history_start == "1990-01"
    h.drop("SHOPPER_V3_Acme_199601010000.csv", THREE_SHOPPERS)
    h.drop("PRODUCT_V2_Acme_199601010000.csv", TWO_PRODUCTS)
    h.ingest("SHOPPER_V3_Acme_199601010000.csv")
    h.ingest("PRODUCT_V2_Acme_199601010000.csv")
    h.drop("SALE_V2_Acme_199604010000.csv", sales_file(OLD_SALES))
    h.ingest("SALE_V2_Acme_199604010000.csv")
    assert [(r[0], r[3]) for r in table(h)] == [("T1", "1996-03-02 10:00:00"), ("T2", "1990-01-01 00:00:00")]
    assert h.rejects("SALE_V2_Acme_199604010000.csv") == [(4, "created_at", "1989-12-31 23:59:59", "outside_history")]


def test_the_minimum_configs_month_partitions_start_in_1990_and_load_quickly():
    import time

    from bspk_pipelines.defs.ingest.assets import month_partitions
    from bspk_pipelines.defs.project import build_definitions
    from bspk_pipelines.model.brand import Brand
    from bspk_pipelines.ingest.months import current_month

    brand = Brand.model_validate(NATIVE)
    keys = month_partitions(brand).get_partition_keys()
    year, month = map(int, current_month().split("-"))
    assert keys[0] == "1990-01" and "1996-03" in keys and keys[-1] == current_month()
    assert len(keys) == (year - 1990) * 12 + month >= 30 * 12
    started = time.monotonic()
    build_definitions([brand]).resolve_all_job_defs()
    assert time.monotonic() - started < 30  # about 440 partitions: a load stays in seconds


def test_the_sample_brands_set_their_own_history_start():
    from pathlib import Path

    import yaml

    for path in sorted((Path(__file__).parents[1] / "mappings").glob("*.yaml")):
        assert "history_start" in yaml.safe_load(path.read_text()), path.name


def test_a_backfill_of_1996_under_the_minimum_config_brings_its_sales_back(monkeypatch, tmp_path, capsys, warehouse_url):
    from bspk_pipelines.cli import main

    mappings, data = tmp_path / "mappings", tmp_path / "data"
    mappings.mkdir()
    (mappings / "acme.yaml").write_text("brand: acme\ncompany_name: Acme\nsources:\n  main: {format: bspk, drop: drop/acme}\n")
    monkeypatch.setenv("BSPK_MAPPINGS_DIR", str(mappings))
    monkeypatch.setenv("BSPK_DATA_DIR", str(data))
    monkeypatch.setenv("BSPK_WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    drop = data / "drop" / "acme"
    drop.mkdir(parents=True)
    for name, content in (("SHOPPER_V3_Acme_199601010000.csv", THREE_SHOPPERS), ("PRODUCT_V2_Acme_199601010000.csv", TWO_PRODUCTS),
                          ("SALE_V2_Acme_199604010000.csv", sales_file(OLD_SALES[:2]))):
        (drop / name).write_text(content)
    assert main(["sync", "--brand", "acme", "--settle", "0.05"]) == 0
    warehouse = sa.create_engine(warehouse_url)
    with warehouse.begin() as conn:
        assert conn.execute(sa.text("select count(*) from sales")).scalar() == 2
        conn.execute(sa.text("delete from sales"))
    capsys.readouterr()
    assert main(["backfill", "--brand", "acme", "--from", "1990-01", "--to", "1996-12"]) == 0
    assert [line.split(": run")[0].strip() for line in capsys.readouterr().out.splitlines()] == [
        "sales months 1990-01 to 1996-12"]  # 84 months, within one run of months_per_run (360)
    with warehouse.connect() as conn:
        assert sorted(conn.execute(sa.text("select sale_ref from sales")).scalars()) == ["T1", "T2"]
    warehouse.dispose()

"""`bspk preview`: one file by a brand's config, shown and written nowhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
import yaml

from bspk_pipelines_tests.test_deliveries import ARTICLES, ERP, ROWS

PROJECT = Path(__file__).parent.parent


def _cli(tmp_path: Path, warehouse_url: str, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"DAGSTER_HOME": str(tmp_path / "home"), "BSPK_DATA_DIR": str(tmp_path / "data"),
                        "BSPK_MAPPINGS_DIR": str(tmp_path / "mappings"), "BSPK_WAREHOUSE_URL": warehouse_url,
                        "PYTHONPATH": str(PROJECT)}
    return subprocess.run([sys.executable, "-m", "bspk_pipelines.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)


def _everything(tmp_path: Path, warehouse_url: str) -> tuple:
    """Every file under the data folder and DAGSTER_HOME (name, size, time), and every warehouse row."""
    files = sorted((str(p.relative_to(tmp_path)), p.stat().st_size, p.stat().st_mtime_ns)
                   for root in ("data", "home") for p in (tmp_path / root).rglob("*") if p.is_file())
    engine = sa.create_engine(warehouse_url)
    with engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        rows = {t: sorted(map(repr, conn.execute(sa.text(f'select * from "{t}"')).all())) for t in names}
    engine.dispose()
    return files, rows


def test_preview_shows_each_entity_and_writes_nothing(warehouse_url, tmp_path):
    (tmp_path / "mappings").mkdir()
    skipping = json.loads(json.dumps(ERP))
    skipping["sources"]["erp"]["files"][0]["entities"]["product_images"]["skip"] = [{"blank": "IMG"}]
    (tmp_path / "mappings" / "acme.yaml").write_text(yaml.safe_dump(skipping))
    drop = tmp_path / "data" / "drop" / "acme" / "erp"
    drop.mkdir(parents=True)
    (drop / "ARTICLES_20251201.csv").write_text(ROWS)
    assert _cli(tmp_path, warehouse_url, "sync", "--brand", "acme", "--settle", "0.05").returncode == 0
    file = tmp_path / "elsewhere" / ARTICLES
    file.parent.mkdir()
    file.write_text(ROWS.replace("100.00", "1 250,00"))
    before = _everything(tmp_path, warehouse_url)
    shown = _cli(tmp_path, warehouse_url, "preview", "--brand", "acme", str(file))
    assert shown.returncode == 0 and shown.stderr == "", shown.stdout + shown.stderr
    out = shown.stdout
    assert out.startswith(f"{ARTICLES}: source erp of acme, feeds products, product_prices, product_images (a dry run")
    assert "products: 2 rows read, 2 valid, 0 rejected, 0 skipped\n  sets: name, published" in out
    assert "product_prices: 2 rows read, 1 valid, 1 rejected, 0 skipped\n  sets: price" in out
    # The value as sent, and what to change.
    assert "  line 2, column PRICE, value '1 250,00': decimal: not a number such as 399.99; set" in out
    assert "product_images: 2 rows read, 1 valid, 0 rejected, 1 skipped" in out
    assert "  skipped: line 3, column IMG, value '': blank: IMG" in out
    assert "Belt" in out and "https://img.example/a1.jpg" in out  # the first mapped rows
    assert _everything(tmp_path, warehouse_url) == before


def test_preview_of_a_file_that_cannot_be_read_exits_1_in_one_line_per_entity(warehouse_url, tmp_path):
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "acme.yaml").write_text(yaml.safe_dump(ERP))
    file = tmp_path / ARTICLES
    file.write_text("ART,NAME,PRICE\nA-1,Bag,1\n")
    shown = _cli(tmp_path, warehouse_url, "preview", "--brand", "acme", str(file))
    assert shown.returncode == 1 and "Traceback" not in shown.stdout + shown.stderr, shown.stdout + shown.stderr
    failing = [line for line in shown.stdout.splitlines() if "the file fails" in line]
    assert len(failing) == 3 and all(f"{ARTICLES}: line 1: expected a header naming the columns" in line for line in failing)
    assert not (tmp_path / "data").exists() and not (tmp_path / "home").exists()
    other = _cli(tmp_path, warehouse_url, "preview", "--brand", "acme", str(tmp_path / "stock.csv"))
    assert other.returncode == 1 and other.stderr.strip().endswith("stock.csv: no such file")


def test_preview_of_a_platform_format_file_sets_only_the_columns_its_header_names(tmp_path):
    """A SHOPPER file may leave out the columns the reference does not demand (their stored
    values are kept): the dry run must not say it sets them."""
    from bspk_pipelines.ingest.check import dry_run
    from bspk_pipelines.model.brand import Brand
    from bspk_pipelines_tests.builders import NATIVE, SHOPPER, shopper_row

    path = tmp_path / "SHOPPER_V3_Acme_202401010000.csv"
    path.write_text(SHOPPER + shopper_row("C1"), encoding="utf-8")
    result = dry_run(Brand.model_validate(NATIVE), "main", "shoppers", path)
    assert "first_name" in result.sets and "email_contact" in result.sets
    assert not {"barcode", "profile_type", "birthday", "passport_number"} & set(result.sets)

"""Brand configs: mistakes are reported with file, key path, what was expected and what was found."""

from __future__ import annotations

import pytest

from bspk_pipelines.cli import main
from bspk_pipelines.config import interval_to_cron


def write(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_check_config_accepts_the_minimum_native_brand(tmp_path, capsys):
    write(tmp_path, "acme", "brand: acme\ncompany_name: Acme\nsources:\n  main:\n    format: bspk\n    drop: /srv/drop/acme\n")
    assert main(["check-config", "--mappings", str(tmp_path)]) == 0
    assert "acme: ok (main (bspk)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, expected",
    [
        ("brand: acme\ncompany_name: acme corp\nsources:\n  main: {format: bspk, drop: d}\n",
         "acme.yaml: company_name: a CamelCase name of letters and digits, as in the file names; found 'acme corp'"),
        ("brand: acme\ncompany_name: Acme\nsources:\n  main: {format: sftp, drop: d}\n",
         "acme.yaml: sources.main.format: Input should be 'bspk' or 'csv'; found 'sftp'"),
        ("brand: acme\ncompany_name: Acme\nsources:\n  main: {format: bspk}\n",
         "acme.yaml: sources.main.drop: a value is required; found nothing"),
        ("brand: acme\ncompany_name: Acme\nsources:\n  main: {format: bspk, drop: d, dorp: e}\n",
         "acme.yaml: sources.main.dorp: no such key (a typo?); found 'e'"),
        ("brand: acme\ncompany_name: Acme\nsync: {interval: 90m}\nsources:\n  main: {format: bspk, drop: d}\n",
         "acme.yaml: sync.interval: between 1m and 59m; found '90m'"),
        ("brand: acme\ncompany_name: Acme\nsources:\n  pos:\n    format: csv\n    drop: d\n    files:\n"
         "      - {pattern: 'C_*.csv', entity: clients, columns: {}}\n",
         "acme.yaml: sources.pos.files[0].entity: one of store_regions,"),
        ("brand: acme\ncompany_name: Acme\nsources:\n  pos:\n    format: csv\n    drop: d\n    files:\n"
         "      - {pattern: 'C_*.csv', entity: shoppers, columns: {first_name: {from: PRENOM}}}\n",
         "acme.yaml: sources.pos.files[0]: a mapping for every key column of shoppers; missing shopper_ref"),
        ("brand: acme\ncompany_name: Acme\nsources:\n  main: {format: bspk, drop: d}\nprecedence:\n  products: {name: [erp]}\n",
         "acme.yaml: precedence.products.name: sources that send products (main); found erp"),
        ("brand: other\ncompany_name: Acme\nsources:\n  main: {format: bspk, drop: d}\n",
         "acme.yaml: brand: the file's name (acme); found 'other'"),
        ("brand: acme\n  company_name: Acme\n", "acme.yaml: not valid YAML"),
    ],
)
def test_check_config_names_file_key_path_expected_and_found(tmp_path, capsys, text, expected):
    write(tmp_path, "acme", text)
    assert main(["check-config", "--mappings", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert expected in err, err


@pytest.mark.parametrize("interval, cron", [
    ("1m", "* * * * *"), ("15m", "*/15 * * * *"), ("1h", "0 * * * *"), ("6h", "0 */6 * * *"),
    ("1d", "0 0 * * *"), ("1w", "0 0 * * 1"), ("1mo", "0 0 1 * *"), ("30 2 * * *", "30 2 * * *"),
])
def test_sync_intervals_become_cron_schedules(interval, cron):
    assert interval_to_cron(interval) == cron


def test_unknown_interval_is_refused():
    with pytest.raises(ValueError, match="an interval such as 1m"):
        interval_to_cron("every day")

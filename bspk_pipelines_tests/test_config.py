"""Brand configs: mistakes are reported with file, key path, what was expected and what was found."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bspk_pipelines.model import brand as config
from bspk_pipelines.cli import main
from bspk_pipelines.model.brand import Brand, interval_to_cron
from bspk_pipelines.model.brand_file import ConfigError, load_brand
from bspk_pipelines_tests.builders import NATIVE, TWO_SHOPPERS


def write(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_check_config_accepts_the_minimum_native_brand(tmp_path, capsys):
    write(tmp_path, "acme", "brand: acme\ncompany_name: Acme\nsources:\n  main:\n    format: bspk\n    drop: /srv/drop/acme\n")
    assert main(["check-config", "--mappings", str(tmp_path)]) == 0
    assert "acme: ok (main (bspk)" in capsys.readouterr().out


def pos_file(columns: str, extra: str = "", entity: str = "stores") -> str:
    """A brand whose pos source sends one file of `entity` mapped by `columns` (YAML flow)."""
    return ("brand: acme\ncompany_name: Acme\nsources:\n  pos:\n    format: csv\n    drop: d\n    files:\n"
            f"      - {{pattern: 'C_*.csv', entity: {entity}, columns: {columns}{extra}}}\n")


STORE = "store_ref: {from: CODE}, name: {from: NOM}, currency_code: {constant: EUR}, active: {constant: 'TRUE'}"
PRICE = "product_ref: {from: REF}, sku: {from: SKU}, currency_code: {constant: EUR}"
PATH = "acme.yaml: sources.pos.files[0]"
# Mistakes in a mapping's transforms and rules: each is one message naming its key path.
MAPPING_MISTAKES = [
    (pos_file("{" + STORE + ", city: {from: VILLE, transforms: [uppr]}}"),
     f"{PATH}.columns.city.transforms[0]: a transform: trim, upper, lower, title, {{phone: FR}}, "
     "{strip_prefix: 'CLI-'}, {strip_leading: '0'}, {split: {sep: '/', index: 0}}, {replace: {pattern: REGEX, with: TEXT}}, "
     "{list: ','}, {lookup: {values: {...}} or {file: codes.csv, key: COLUMN, value: COLUMN}}; found 'uppr' (did you mean upper?)"),
    (pos_file("{" + STORE + ", city: {from: VILLE, transforms: [{uper: true}]}}"),
     "a transform: trim, upper, lower, title, {phone: FR}, {strip_prefix: 'CLI-'}, {strip_leading: '0'}, {split: {sep: '/', "
     "index: 0}}, {replace: {pattern: REGEX, with: TEXT}}, {list: ','}, {lookup: {values: {...}} or {file: codes.csv, key: "
     "COLUMN, value: COLUMN}}; found {'uper': True} (did you mean upper?)"),
    (pos_file("{" + STORE + ", phone: {from: TEL, transforms: [{phone: USA}]}}"),
     f"{PATH}.columns.phone.transforms[0].phone: an ISO 3166 alpha-2 region such as FR or US, for numbers written "
     "without +country; found 'USA'"),
    (pos_file("{" + STORE + ", city: {from: VILLE, transforms: [{split: {sep: '', index: 0}}]}}"),
     f"{PATH}.columns.city.transforms[0].split.sep: String should have at least 1 character; found ''"),
    (pos_file("{" + STORE + ", city: {from: VILLE, transforms: [{replace: {pattern: '(abc', with: x}}]}}"),
     f"{PATH}.columns.city.transforms[0].replace.pattern: a regular expression as polars reads it (Rust syntax, "
     "no look-around): unclosed group; found '(abc'"),
    (pos_file("{" + PRICE + ", price: {from: PRIX, divide: 0}}", entity="product_prices"),
     f"{PATH}.columns.price.divide: a number other than 0, such as 100; found 0"),
    (pos_file("{" + STORE + "}", ", skip: [{column: CODE, matches: '[a-'}]"),
     f"{PATH}.skip[0].matches: a regular expression as polars reads it (Rust syntax, no look-around): unclosed "
     "character class; found '[a-'"),
    (pos_file("{" + STORE + "}", ", skip: [{column: CODE}]"),
     f"{PATH}.skip[0]: a skip rule: {{blank: COLUMN}}, {{column: COLUMN, in: [VALUES]}}, {{column: COLUMN, not_in: "
     "[VALUES]} or {column: COLUMN, matches: REGEX}; found the keys column"),
    (pos_file("{" + STORE + ", city: {template: '{VILLE:>5}'}}"),
     f"{PATH}.columns.city.template: placeholders naming a column of the file, such as {{CODE}}; found {{VILLE:>5}} "
     "in '{VILLE:>5}'"),
]


@pytest.mark.parametrize("text, expected", [
    *MAPPING_MISTAKES,
    (pos_file("{name: {from: NOM}, currency_code: {constant: EUR}, active: {constant: 'TRUE'}}"),
     f"{PATH}: a mapping for every key column of stores; missing store_ref"),
])
def test_a_mapping_mistake_is_one_line(tmp_path, capsys, text, expected):
    """One message per mistake (not one per kind of transform), on one line (no dump of the mapping)."""
    write(tmp_path, "acme", text)
    assert main(["check-config", "--mappings", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[1] == "1 problem(s) found", err
    assert err[0].endswith(expected), err[0]


@pytest.mark.parametrize(
    "text, expected",
    [
        *MAPPING_MISTAKES,
        ("brand: acme\ncompany_name: acme corp\nsources:\n  main: {format: bspk, drop: d}\n",
         "acme.yaml: company_name: a CamelCase name of letters and digits, as in the file names; found 'acme corp'"),
        ("brand: acme\ncompany_name: Acme\nsources:\n  main: {format: sftp, drop: d}\n",
         "acme.yaml: sources.main.format: one of bspk, csv, shopify; found 'sftp'"),
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


@pytest.mark.parametrize("interval", ["every day", "61 * * * *", "* * * *", "0 0 32 * *"])
def test_unknown_interval_is_refused(interval):
    with pytest.raises(ValueError, match="an interval such as 1m"):
        interval_to_cron(interval)


def test_freshness_comes_from_the_deliveries_a_brand_expects_not_from_its_interval():
    from bspk_pipelines.defs.ingest.assets import freshness

    assert freshness(Brand.model_validate({**NATIVE, "sync": {"interval": "15m"}})) is None
    policy = freshness(Brand.model_validate({**NATIVE, "sync": {"interval": "15m", "expect_every": "1d"}}))
    assert (policy.warn_window.to_timedelta().days, policy.fail_window.to_timedelta().days) == (1, 2)
    with pytest.raises(ValueError, match="at least 1m, as Dagster checks freshness by the minute; found '30s'"):
        Brand.model_validate({**NATIVE, "sync": {"expect_every": "30s"}})


def test_owners_are_e_mails_or_teams():
    assert Brand.model_validate({**NATIVE, "owners": ["team:data", "ana@acme.example"]}).owners == ["team:data", "ana@acme.example"]
    with pytest.raises(ValueError, match="e-mail addresses or team:<name>, as Dagster names owners; found ana"):
        Brand.model_validate({**NATIVE, "owners": ["ana"]})


# --- brand files that would exhaust the machine ------------------------------------------------------

MINIMUM = "brand: acme\ncompany_name: Acme\nsources: {main: {format: bspk, drop: d}}\n"
HINT = "write the value out; anchors and aliases are not allowed in brand files"


def billion_laughs(levels: int = 9) -> str:
    """A brand file of about 400 bytes whose aliases stand for 9**levels strings."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefghij", "bcdefghij"[:levels - 1]):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    return MINIMUM + "\n".join(lines) + "\n"


def test_a_billion_laughs_is_refused_at_once_in_one_line_without_a_traceback(tmp_path):
    write(tmp_path, "acme", billion_laughs())
    assert len(billion_laughs()) < 420
    started = time.monotonic()
    # Before, this did not end: every alias was expanded into a message. A time-out would fail the test.
    out = subprocess.run([sys.executable, "-m", "bspk_pipelines.cli", "check-config", "--mappings", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(Path(config.__file__).parent.parent)})
    assert out.returncode == 1, out
    assert out.stderr.splitlines() == [
        f"{tmp_path / 'acme.yaml'}: line 4, column 4: anchor &a not allowed (rule no_yaml_aliases): {HINT}",
        "1 problem(s) found",
    ]
    assert out.stdout == ""
    # Python and the CLI's imports take most of it: the file itself is refused in milliseconds.
    assert time.monotonic() - started < 30


def test_a_billion_laughs_is_refused_within_a_second(tmp_path):
    path = write(tmp_path, "acme", billion_laughs())
    started = time.monotonic()
    with pytest.raises(ConfigError) as refused:
        load_brand(path)
    assert time.monotonic() - started < 1
    assert refused.value.problems == [f"{path}: line 4, column 4: anchor &a not allowed (rule no_yaml_aliases): {HINT}"]


@pytest.mark.parametrize("text, where, what", [
    # An alias alone (of an anchor the file never defines), and a merge key, which needs one.
    ("brand: acme\ncompany_name: *name\n", "line 2, column 15", "alias *name"),
    ("base: &base {format: bspk}\n", "line 1, column 7", "anchor &base"),
    (MINIMUM + "sync:\n  <<: *base\n", "line 5, column 7", "alias *base"),
])
def test_anchors_and_aliases_are_refused_naming_line_and_column(tmp_path, text, where, what):
    path = write(tmp_path, "acme", text)
    with pytest.raises(ConfigError) as refused:
        load_brand(path)
    assert refused.value.problems == [f"{path}: {where}: {what} not allowed (rule no_yaml_aliases): {HINT}"]


def test_a_brand_file_over_1_mib_is_not_read(tmp_path):
    path = write(tmp_path, "acme", MINIMUM + "# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError) as refused:
        load_brand(path)
    assert refused.value.problems == [
        f"{path}: {path.stat().st_size:,} bytes, over the 1,048,576 (1 MiB) a brand file may hold (rule max_size): "
        "a brand file is a few kilobytes of settings; is it the right file?"
    ]


def test_a_deeply_nested_brand_file_is_refused_without_a_traceback(tmp_path):
    path = write(tmp_path, "acme", MINIMUM + "precedence: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError) as refused:
        load_brand(path)
    assert refused.value.problems == [
        f"{path}: line 4, column 44: nested deeper than 32 levels (rule max_depth): "
        "a brand file's settings are a few levels deep; is a bracket left open?"
    ]


@pytest.mark.parametrize("key, expected", [
    ("reject_rate_threshold", "reject_rate_threshold: Input should be a valid number, unable to parse string as a number; found 'xxx"),
    ("company_name", "company_name: a CamelCase name of letters and digits, as in the file names; found 'xxx"),
])
def test_a_long_value_is_shown_cut_short(tmp_path, key, expected):
    path = write(tmp_path, "acme", MINIMUM.replace("company_name: Acme\n", "") + f"{key}: {'x' * 100_000}\n"
                 + ("company_name: Acme\n" if key != "company_name" else ""))
    with pytest.raises(ConfigError) as refused:
        load_brand(path)
    [problem] = refused.value.problems
    assert problem.startswith(f"{path}: {expected}") and len(problem) < 700, problem[:800]


def test_the_sample_brand_files_pass_check_config(capsys):
    assert main(["check-config", "--mappings", str(Path(__file__).resolve().parent.parent / "mappings")]) == 0
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == ["acme", "lune", "maison", "nordhaus"]


def test_variants_with_options_need_a_source_that_sends_their_language(tmp_path, capsys):
    """Without it every variant with an option would be refused row by row (the platform requires
    language_code beside options): check-config says so, naming the file map and what to add."""
    variants = ("brand: acme\ncompany_name: Acme\nsources:\n  pim:\n    format: csv\n    drop: d\n    files:\n"
                "      - pattern: 'V_*.csv'\n        entity: product_variants\n        columns:\n"
                "          product_ref: {from: ref}\n          sku: {from: sku}\n          option_1_value: {from: colour}\n")
    write(tmp_path, "acme", variants)
    assert main(["check-config", "--mappings", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "sources.pim.files[0]: maps option_1_value of product_variants, but no source sends language_code" in err
    assert "language_code: {constant: fr}" in err
    write(tmp_path, "acme", variants + "          language_code: {constant: fr}\n          published: {constant: \"TRUE\"}\n")
    assert main(["check-config", "--mappings", str(tmp_path)]) == 0


# --- a reader that leaves early ---------------------------------------------------------------------

PROJECT = Path(__file__).resolve().parent.parent


def _reader_gone(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run `bspk ARGS` with its standard output's reader gone before it writes (`bspk ... | true`)."""
    proc = subprocess.Popen([sys.executable, "-m", "bspk_pipelines.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=os.environ | {"PYTHONPATH": str(PROJECT)} | env)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=300), err


def test_a_reader_that_leaves_early_gets_no_broken_pipe(tmp_path):
    code, err = _reader_gone(["entities"], {}, tmp_path)
    assert (code, err) == (0, "")


def test_a_sync_whose_reader_leaves_early_still_syncs_everything(tmp_path):
    """`bspk sync | head -3` once stopped the sync at its first line with a BrokenPipeError."""
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "acme.yaml").write_text(
        "brand: acme\ncompany_name: Acme\nsources: {main: {format: bspk, drop: drop/acme}}\n")
    drop = tmp_path / "data" / "drop" / "acme"
    drop.mkdir(parents=True)
    (drop / "SHOPPER_V3_Acme_202401010000.csv").write_text(TWO_SHOPPERS)
    env = {"BSPK_DATA_DIR": str(tmp_path / "data"), "BSPK_MAPPINGS_DIR": str(tmp_path / "mappings"),
           "DAGSTER_HOME": str(tmp_path / "home")}
    code, err = _reader_gone(["sync", "--settle", "0.05"], env, tmp_path)
    assert (code, "Traceback" in err) == (0, False), err
    with sqlite3.connect(tmp_path / "data" / "warehouse.sqlite") as db:
        assert db.execute("select status from files").fetchall() == [("applied",)]
        assert db.execute("select count(*) from shoppers").fetchone() == (1,)  # S2's country XX is a reject


ERP_YAML = """brand: acme
company_name: Acme
sources:
  erp:
    format: csv
    drop: drop/acme/erp
    dialect: {delimiter: ";"}
    files:
      - pattern: ARTICLES_*.csv
        entities:
          products:
            columns:
              product_ref: {from: ART}
              name: {from: NAME}
              published: {constant: "TRUE"}
          product_prices:
            columns:
              product_ref: {from: ART}
              sku: {constant: "*"}
              price: {from: PREIS}
              currency_code: {from: CUR}
"""


def test_a_required_column_no_source_maps_is_a_config_error(tmp_path, capsys):
    write(tmp_path, "acme", ERP_YAML.replace('              published: {constant: "TRUE"}\n', ""))
    assert main(["check-config", "--mappings", str(tmp_path)]) == 1
    [problem, count] = capsys.readouterr().err.splitlines()
    assert problem.startswith(f"{tmp_path / 'acme.yaml'}: sources.erp.files[0]: published of products is required by "
                              "the platform and no source maps it, so every row would be rejected"), problem
    assert "published: {constant: ...}" in problem and count == "1 problem(s) found"


def test_check_config_sample_checks_each_from_column_against_a_real_header(tmp_path, capsys, monkeypatch):
    mappings, data = tmp_path / "mappings", tmp_path / "data"
    mappings.mkdir()
    write(mappings, "acme", ERP_YAML)
    monkeypatch.setenv("BSPK_DATA_DIR", str(data))
    sample = tmp_path / "ARTICLES_20260101.csv"
    sample.write_text("ART;NAME;PRICE;CUR\nA-1;Bag;100.00;EUR\n")
    assert main(["check-config", "--mappings", str(mappings)]) == 0  # the YAML alone is fine
    capsys.readouterr()
    assert main(["check-config", "--mappings", str(mappings), "--sample", str(sample)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["acme.yaml: sources.erp.files[0] (ARTICLES_*.csv), product_prices: sample ARTICLES_20260101.csv: "
                   "line 1: the header does not fit: missing column PREIS", "1 problem(s) found"]
    # With no FILE: the newest file of each pattern in the drop folders.
    drop = data / "drop" / "acme" / "erp"
    drop.mkdir(parents=True)
    (drop / "ARTICLES_20260101.csv").write_text("ART;NAME;PREIS;CUR\n")
    assert main(["check-config", "--mappings", str(mappings), "--sample"]) == 0
    newer = drop / "ARTICLES_20260102.csv"
    newer.write_text("ART;NOM;PREIS;CUR\n")
    os.utime(newer, (time.time() + 60, time.time() + 60))
    assert main(["check-config", "--mappings", str(mappings), "--sample"]) == 1
    assert "products: sample ARTICLES_20260102.csv: line 1: the header does not fit: missing column NAME" in capsys.readouterr().err
    other = tmp_path / "stock.csv"
    other.write_text("x\n")
    assert main(["check-config", "--mappings", str(mappings), "--sample", str(other)]) == 1
    assert "stock.csv: matches no file pattern of any brand" in capsys.readouterr().err


def test_check_config_sample_checks_a_platform_format_sources_names_and_headers(tmp_path, capsys, monkeypatch):
    """A source of the platform's format has no mapping to check: its files' names and the header
    of the newest file of each type are what `--sample` checks."""
    from bspk_pipelines_tests.builders import header

    mappings, data = tmp_path / "mappings", tmp_path / "data"
    mappings.mkdir()
    write(mappings, "acme", "brand: acme\ncompany_name: Acme\nsources:\n  main: {format: bspk, drop: drop/acme}\n")
    monkeypatch.setenv("BSPK_DATA_DIR", str(data))
    drop = data / "drop" / "acme"
    drop.mkdir(parents=True)
    (drop / "METAFIELDS_V1_Acme_202601010000.csv").write_text(header("metafields"))
    assert main(["check-config", "--mappings", str(mappings), "--sample"]) == 0
    capsys.readouterr()
    (drop / "METAFIELDS_V1_Acme_202601020000.csv").write_text(header("metafields").replace("owner_type", "ownertype"))
    (drop / "SHOPPER_V3_acme_202601010000.csv").write_text(header("shoppers"))
    assert main(["check-config", "--mappings", str(mappings), "--sample"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "acme.yaml: sources.main: SHOPPER_V3_acme_202601010000.csv: company name should be Acme; found acme",
        "acme.yaml: sources.main, metafields: sample METAFIELDS_V1_Acme_202601020000.csv: line 1: the header does not "
        "fit: missing column owner_type; unknown column 'ownertype'",
        "2 problem(s) found"]
    # With FILE: that file alone, by its name and header.
    sample = tmp_path / "SPECIAL-ORDERS_V2_Acme_202601010000.csv"
    sample.write_text(header("special_orders"))
    assert main(["check-config", "--mappings", str(mappings), "--sample", str(sample)]) == 0
    sample.write_text(header("special_orders").replace("shopper_id", "shopper_ref"))
    assert main(["check-config", "--mappings", str(mappings), "--sample", str(sample)]) == 1
    assert "special_orders: sample SPECIAL-ORDERS_V2_Acme_202601010000.csv: line 1: the header does not fit: " \
           "missing column shopper_id; unknown column 'shopper_ref'" in capsys.readouterr().err

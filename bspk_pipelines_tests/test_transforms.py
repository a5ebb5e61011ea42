"""A mapping's transforms, skip rules and unpivot on polars frames alone (`ingest/mapping.py`), the
hints a reject's message carries (`ingest/hints.py`), and the mistakes in them a brand file is
refused for, one message each (`model/brand.py`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from bspk_pipelines.ingest.hints import hints
from bspk_pipelines.ingest.mapping import lineage, map_rows, skipping, source_columns, times, to_platform, unpivot_problem
from bspk_pipelines.ingest.rules import label, sent, validate
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.mapping import Dialect, FileMap
from bspk_pipelines.model.brand_file import ConfigError, load_brand
from bspk_pipelines.model.entities import CELL, ENTITIES, LINE
from bspk_pipelines_tests.test_mapping import file_map, mapped, source_rows


# --- transforms -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, value, expected", [
    ({"pattern": r"\s+", "with": " "}, "Saint   Honoré  ", "Saint Honoré "),
    ({"pattern": r"^(\d+)-(\d+)$", "with": "$2/$1"}, "12-34", "34/12"),  # groups by number
    ({"pattern": "[.]", "with": ""}, "A.B.C", "ABC"),  # every match, not the first
    ({"pattern": "^TMP-"}, "TMP-42", "42"),  # `with` defaults to nothing
    ({"pattern": "x", "with": "y"}, "abc", "abc"),  # no match: as it was
])
def test_replace_rewrites_every_match_of_a_regular_expression(spec, value, expected):
    assert mapped("stores", "name", {"transforms": [{"replace": spec}]}, [value]) == [expected]


@pytest.mark.parametrize("sep, value, expected", [
    (",", "vip, newsletter", "vip;newsletter"),
    (",", " vip ,, newsletter ,", "vip;newsletter"),  # items trimmed, blank items dropped
    ("|", "a|b|c", "a;b;c"),
    (" / ", "vip / gold", "vip;gold"),  # a separator of several characters
    (",", " , ,", None),  # nothing left: no value
    (",", None, None),
])
def test_list_splits_on_the_files_separator_into_the_platforms_list(sep, value, expected):
    assert mapped("shoppers", "preferences", {"transforms": [{"list": sep}]}, [value]) == [expected]


def test_a_listed_column_passes_the_platforms_list_rule_item_by_item():
    fm = file_map("shoppers", {"shopper_ref": {"from": "ID"}, "languages": {"from": "LANG", "transforms": [{"list": ","}]}})
    out = to_platform(ENTITIES["shoppers"], fm, Dialect(), source_rows(ID=["S1", "S2"], LANG=["fr, en", "fr, xx"]))
    checked = validate(ENTITIES["shoppers"], out)
    assert checked.rows["languages"].to_list() == ["fr;en"]
    assert [(r.line, r.value, r.rule) for r in checked.rejects] == [(3, "fr;xx", "language")]


@pytest.mark.parametrize("value, expected", [(None, "FR"), ("  ", "FR"), ("BE", "BE")])
def test_default_fills_a_blank(value, expected):
    assert mapped("stores", "country_code", {"default": "FR"}, [value]) == [expected]


def test_default_fills_what_the_transforms_leave_blank():
    spec = {"transforms": [{"strip_prefix": "N/A"}], "default": "FR"}
    assert mapped("stores", "country_code", spec, ["N/A", "DE"]) == ["FR", "DE"]


@pytest.mark.parametrize("column, spec, dialect, value, expected", [
    # The column's own separators win over the dialect's, which the other columns keep.
    ("price", {"thousands": " "}, Dialect(), "1 250.00", "1250.00"),
    ("price", {"decimal": ",", "thousands": "."}, Dialect(), "1.250,00", "1250.00"),
    ("price", {"decimal": "."}, Dialect(decimal=",", thousands=" "), "1 250.5", "1250.5"),
    ("starting_on", {"date_format": "%m/%d/%Y"}, Dialect(date_format="%d/%m/%Y"), "12/31/2024", "2024-12-31"),
    ("starting_on", {"date_format": "%d.%m.%Y"}, Dialect(), "31.12.2024", "2024-12-31"),
])
def test_a_column_reads_numbers_and_dates_in_its_own_format(column, spec, dialect, value, expected):
    assert mapped("product_prices", column, spec, [value], dialect) == [expected]


def test_a_column_reads_date_times_in_its_own_format_in_the_sources_zone():
    spec = {"datetime_format": "%Y%m%d%H%M%S"}
    dialect = Dialect(datetime_format="%d/%m/%Y %H:%M", timezone="Europe/Paris")
    assert mapped("sales", "created_at", spec, ["20240715180500"], dialect) == ["2024-07-15T16:05:00"]
    assert mapped("sales", "created_at", {}, ["15/07/2024 18:05"], dialect) == ["2024-07-15T16:05:00"]


@pytest.mark.parametrize("spec, value, expected", [
    ({"divide": 100}, "1250", "12.50"),  # cents: the scale follows the divisor
    ({"divide": 100}, "1250.5", "12.505"),
    ({"divide": 100}, "-5", "-0.05"),
    ({"divide": 100}, "0", "0.00"),
    ({"divide": 1000}, "123456789012345678", "123456789012345.678"),  # no float: every digit kept
    ({"divide": 8}, "1", "0.125"),
    ({"divide": "0.5"}, "3", "6"),
    ({"multiply": 100}, "12.5", "1250.0"),
    ({"multiply": "0.1"}, "3", "0.3"),  # 0.30000000000000004 in floats
    ({"multiply": "1.2"}, "0.1", "0.12"),
    ({"divide": 100}, "12,50 €", "12,50 €"),  # not a number: left for the rule to reject as sent
])
def test_divide_and_multiply_in_exact_decimal_arithmetic(spec, value, expected):
    assert mapped("product_prices", "price", spec, [value]) == [expected]


def test_divide_applies_to_the_number_the_dialect_reads():
    assert mapped("product_prices", "price", {"divide": 100}, ["1.250,00"], Dialect(decimal=",", thousands=".")) == ["12.5000"]


def test_a_whole_number_divided_stays_whole_where_it_is():
    assert mapped("product_inventory", "quantity", {"divide": 10}, ["1000", "15"]) == ["100", "1.5"]


def test_times_leaves_anything_but_a_number_as_it_is():
    from decimal import Decimal

    assert times("1e3", Decimal("0.01"), False) == "1e3"
    assert times("12", Decimal("0.01"), False) == "0.12"


@pytest.mark.parametrize("spec, values, expected", [
    ({"values": {"01": "PAR01", "02": "LYO01"}}, ["01", "02", "03", None], ["PAR01", "LYO01", "03", None]),
    ({"values": {"01": "PAR01"}, "default": "WEB"}, ["01", "03", None], ["PAR01", "WEB", None]),
])
def test_lookup_replaces_values_by_the_tables(spec, values, expected):
    assert mapped("stores", "name", {"transforms": [{"lookup": spec}]}, values) == expected


def brand_with_lookup(tmp_path: Path, lookup: str, csv_text: str | None = None, name: str = "stores.csv") -> Path:
    if csv_text is not None:
        (tmp_path / name).write_text(csv_text, encoding="utf-8")
    path = tmp_path / "acme.yaml"
    path.write_text(
        "brand: acme\ncompany_name: Acme\nsources:\n  pos:\n    format: csv\n    drop: d\n    files:\n"
        "      - pattern: 'T_*.csv'\n        entity: stores\n        columns:\n"
        f"          store_ref: {{from: CODE, transforms: [trim, {{lookup: {lookup}}}]}}\n"
        "          name: {from: NOM}\n          currency_code: {constant: EUR}\n          active: {constant: 'TRUE'}\n")
    return path


def test_a_lookup_file_beside_the_brand_file_is_read_when_the_brand_loads(tmp_path):
    path = brand_with_lookup(tmp_path, "{file: stores.csv, key: code, value: ref, default: UNKNOWN}",
                             "\ufeffcode,ref,city\n01,PAR01,Paris\n02 , LYO01 ,Lyon\n\n")
    brand = load_brand(path)
    fm = brand.sources["pos"].files[0]
    out = to_platform(ENTITIES["stores"], fm, Dialect(), source_rows(CODE=[" 01", "02", "99"], NOM=["a", "b", "c"]))
    assert out["store_ref"].to_list() == ["PAR01", "LYO01", "UNKNOWN"]
    # The table is part of the brand: a change to the file is a change to the source's settings.
    (tmp_path / "stores.csv").write_text("code,ref\n01,PAR02\n")
    assert load_brand(path).sources["pos"].model_dump() != brand.sources["pos"].model_dump()


@pytest.mark.parametrize("lookup, csv_text, expected", [
    ("{file: missing.csv, key: code, value: ref}", None, "file: a CSV file beside the brand file; {dir}/missing.csv does not exist"),
    ("{file: stores.csv, key: code, value: store}", "code,ref\n01,PAR01\n",
     "file: stores.csv has no column store; its header names code, ref (delimiter ',')"),
    ("{file: stores.csv, key: code, value: ref}", "code,ref\n01,PAR01\n02,LYO01\n01,MAR01\n",
     "file: stores.csv line 4: code '01' again, with another ref than on line 2"),
    ("{file: stores.csv, key: code, value: ref}", "code,ref\n01,PAR01,x\n",
     "file: stores.csv line 2: expected 2 fields as in its header, found 3"),
    ("{file: stores.csv}", "code,ref\n", "key and value: the lookup file's columns holding"),
    ("{file: stores.csv, key: code, value: ref, values: {a: b}}", "code,ref\n", "either values (the table, inline) or file"),
    ("{key: code, value: ref}", None, "key and value name the columns of a lookup file: give its file too"),
    # Only files beside the brand file: a brand file names no other file of the machine.
    ("{file: /etc/passwd, key: root, value: x}", None, "file: a CSV file beside the brand file, named from its folder"),
    ("{file: ../secrets.csv, key: code, value: ref}", None, "found '../secrets.csv'"),
    ("{default: X}", None, "values ({value in the file: value for the platform}) or file, key and value"),
])
def test_a_lookup_file_that_cannot_be_used_is_a_config_error(tmp_path, lookup, csv_text, expected):
    path = brand_with_lookup(tmp_path, lookup, csv_text)
    with pytest.raises(ConfigError) as refused:
        load_brand(path)
    [problem] = refused.value.problems
    where = f"{path}: sources.pos.files[0].columns.store_ref.transforms[1].lookup: "
    assert problem.startswith(where) and expected.replace("{dir}", str(tmp_path)) in problem, problem


def test_a_lookup_file_not_in_utf8_is_a_config_error(tmp_path):
    path = brand_with_lookup(tmp_path, "{file: stores.csv, key: code, value: ref}")
    (tmp_path / "stores.csv").write_bytes("code,ref\n01,Orléans\n".encode("cp1252"))
    with pytest.raises(ConfigError, match="file: stores.csv is not UTF-8 text"):
        load_brand(path)


# --- origins ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, c, expected", [
    ("x", "y", "z", "x"), (None, "y", "z", "y"), ("  ", None, "z", "z"), (None, None, None, None),
])
def test_coalesce_takes_the_first_column_with_a_value(a, b, c, expected):
    fm = file_map("stores", {"name": {"coalesce": ["A", "B", "C"]}})
    assert to_platform(ENTITIES["stores"], fm, Dialect(), source_rows(A=[a], B=[b], C=[c]))["name"].to_list() == [expected]


@pytest.mark.parametrize("template, code, ticket, expected", [
    ("{CODE}-{TICKET}", "PAR01", "000123", "PAR01-000123"),
    ("T{TICKET}@{CODE}", "PAR01", "7", "T7@PAR01"),
    ("{{{CODE}}}", "PAR01", "7", "{PAR01}"),  # a brace written twice is a brace
    ("{CODE}-{TICKET}", "PAR01", None, None),  # a blank part leaves no value, not "PAR01-"
])
def test_template_builds_a_value_from_several_columns(template, code, ticket, expected):
    fm = file_map("sales", {"sale_ref": {"template": template}})
    out = to_platform(ENTITIES["sales"], fm, Dialect(), source_rows(CODE=[code], TICKET=[ticket]))
    assert out["sale_ref"].to_list() == [expected]


def test_the_header_must_carry_every_column_an_origin_or_a_rule_reads():
    fm = FileMap.model_validate({"pattern": "x", "entity": "sales", "skip": [{"blank": "STATUS"}], "columns": {
        "sale_ref": {"template": "{CODE}-{TICKET}"}, "sku": {"coalesce": ["SKU", "EAN"]}, "store_ref": {"from": "CODE"},
        "product_ref": {"from": "REF"}, "shopper_ref": {"from": "CLIENT"}}})
    assert source_columns(fm) == ["CODE", "TICKET", "SKU", "EAN", "REF", "CLIENT", "STATUS"]
    assert lineage(fm)["sale_ref"] == "CODE+TICKET"


# --- skip rules ------------------------------------------------------------------------------------


def images_map(skip: list, **extra) -> FileMap:
    return FileMap.model_validate({
        "pattern": "A_*.csv", "entity": "product_images", "skip": skip, **extra,
        "columns": {"product_ref": {"from": "SKU"}, "image_url": {"from": "IMAGE"}, "position": {"constant": "1"}},
    })


ARTICLES = dict(SKU=["A1", "A2", "TEST-3", "A4", "A5", "A6"],
                IMAGE=["https://x/1.jpg", None, "https://x/3.jpg", "https://x/4.jpg", "  ", "https://x/6.jpg"],
                STATUS=["ACTIVE", "ACTIVE", "ACTIVE", " DELETED ", "ACTIVE", "draft"])


@pytest.mark.parametrize("rule, kept, skipped", [
    ({"blank": "IMAGE"}, ["A1", "TEST-3", "A4", "A6"], [(3, "IMAGE", None), (6, "IMAGE", "  ")]),
    ({"column": "STATUS", "in": ["DELETED", "DRAFT"]}, ["A1", "A2", "TEST-3", "A5", "A6"], [(5, "STATUS", " DELETED ")]),
    ({"column": "STATUS", "not_in": ["ACTIVE"]}, ["A1", "A2", "TEST-3", "A5"], [(5, "STATUS", " DELETED "), (7, "STATUS", "draft")]),
    ({"column": "SKU", "matches": "^TEST-"}, ["A1", "A2", "A4", "A5", "A6"], [(4, "SKU", "TEST-3")]),
])
def test_each_skip_rule_leaves_its_rows_out_and_says_which(rule, kept, skipped):
    rows, out = skipping(images_map([rule]), source_rows(**ARTICLES))
    assert rows["SKU"].to_list() == kept
    assert out.select("line", "column", "value").rows() == skipped
    assert set(out["rule"]) == {str(images_map([rule]).skip[0])}


def test_a_row_is_shown_with_the_first_rule_it_meets():
    fm = images_map([{"blank": "IMAGE"}, {"column": "STATUS", "not_in": ["ACTIVE"]}, {"column": "SKU", "matches": "^TEST-"}])
    rows, out = skipping(fm, source_rows(**ARTICLES))
    assert rows["SKU"].to_list() == ["A1"]
    assert out.select("line", "rule").rows() == [
        (3, "blank: IMAGE"), (4, "SKU matches '^TEST-'"), (5, "STATUS not in [ACTIVE]"), (6, "blank: IMAGE"),
        (7, "STATUS not in [ACTIVE]"),
    ]


def test_skipped_rows_are_not_mapped_nor_checked():
    fm = images_map([{"blank": "IMAGE"}])
    out = map_rows(ENTITIES["product_images"], fm, Dialect(), source_rows(**ARTICLES))
    assert out.rows[LINE].to_list() == [2, 4, 5, 7]
    assert validate(ENTITIES["product_images"], out.rows).rejects == []
    assert out.skipped.height == 2


# --- unpivot ---------------------------------------------------------------------------------------


def stock_map(unpivot: dict, skip: list = ()) -> FileMap:
    return FileMap.model_validate({
        "pattern": "S_*.csv", "entity": "product_inventory", "unpivot": unpivot, "skip": list(skip),
        "columns": {"product_ref": {"from": "REF"}, "sku": {"from": "SKU"},
                    "store_ref": {"from": "STORE", "transforms": [{"strip_prefix": "STOCK_"}]},
                    "quantity": {"from": "QTY"}, "at": {"constant": "2026-01-01T00:00:00"}},
    })


STOCK = dict(REF=["P1", "P2"], SKU=["K1", "K2"], STOCK_PARIS=["3", "0"], STOCK_LYON=["5", None])


@pytest.mark.parametrize("unpivot", [
    {"columns": ["STOCK_PARIS", "STOCK_LYON"], "name": "STORE", "value": "QTY"},
    {"matching": "^STOCK_", "name": "STORE", "value": "QTY"},
])
def test_unpivot_gives_a_row_per_column_line_by_line_each_keeping_its_line(unpivot):
    out = to_platform(ENTITIES["product_inventory"], stock_map(unpivot), Dialect(), source_rows(**STOCK))
    assert out.select("sku", "store_ref", "quantity", LINE, CELL).rows() == [
        ("K1", "PARIS", "3", 2, "STOCK_PARIS"), ("K1", "LYON", "5", 2, "STOCK_LYON"),
        ("K2", "PARIS", "0", 3, "STOCK_PARIS"), ("K2", "LYON", None, 3, "STOCK_LYON"),
    ]


def test_unpivot_takes_the_columns_in_the_headers_order_and_only_those_it_names():
    u = {"columns": ["STOCK_LYON", "STOCK_PARIS"], "name": "STORE", "value": "QTY"}
    rows = source_rows(**STOCK, STOCK_NICE=["9", "9"])
    out = to_platform(ENTITIES["product_inventory"], stock_map(u), Dialect(), rows)
    assert out.filter(pl.col(LINE) == 2)["store_ref"].to_list() == ["PARIS", "LYON"]
    assert source_columns(stock_map(u)) == ["REF", "SKU", "STOCK_LYON", "STOCK_PARIS"]


def test_a_skip_rule_may_read_the_unpivoted_cell_and_names_its_column():
    fm = stock_map({"matching": "^STOCK_", "name": "STORE", "value": "QTY"}, skip=[{"blank": "QTY"}])
    out = map_rows(ENTITIES["product_inventory"], fm, Dialect(), source_rows(**STOCK))
    assert out.rows.select(LINE, CELL).rows() == [(2, "STOCK_PARIS"), (2, "STOCK_LYON"), (3, "STOCK_PARIS")]
    assert out.skipped.select("line", "column", "value", "rule").rows() == [(3, "STOCK_LYON", None, "blank: QTY")]


def test_a_reject_of_an_unpivoted_row_names_the_column_it_came_from():
    fm = stock_map({"matching": "^STOCK_", "name": "STORE", "value": "QTY"})
    rows = source_rows(REF=["P1"], SKU=["K1"], STOCK_PARIS=["3"], STOCK_LYON=["beaucoup"])
    out = map_rows(ENTITIES["product_inventory"], fm, Dialect(), rows).rows
    checked = validate(ENTITIES["product_inventory"], out, lineage(fm))
    assert [(r.line, r.column, r.value, r.rule) for r in checked.rejects] == [(2, "STOCK_LYON", "beaucoup", "integer")]
    assert checked.rows.select("store_ref", LINE, CELL).rows() == [("PARIS", 2, "STOCK_PARIS")]
    assert lineage(fm)["quantity"] == CELL and lineage(fm)["sku"] == "SKU"
    assert label(lineage(fm), "store_ref", "STOCK_LYON") == "STOCK_LYON"


@pytest.mark.parametrize("header, problem", [
    (["REF", "SKU", "QTY_PARIS"], "no column of the header matches the unpivot's '^STOCK_'"),
    (["REF", "SKU", "STOCK_PARIS", "QTY"], "the file has a column QTY, which the unpivot names for its own column"),
    (["REF", "SKU", "STOCK_PARIS"], None),
])
def test_a_header_the_unpivot_does_not_fit(header, problem):
    found = unpivot_problem(stock_map({"matching": "^STOCK_", "name": "STORE", "value": "QTY"}), header)
    assert (found or "").startswith(problem or "") and (found is None) == (problem is None), found


# --- values as sent, and hints ----------------------------------------------------------------------


def rejects_of(entity: str, columns: dict, dialect: Dialect = Dialect(), **values) -> list[tuple[str, str, str]]:
    fm = file_map(entity, columns)
    out = map_rows(ENTITIES[entity], fm, dialect, source_rows(**values)).rows
    checked = validate(ENTITIES[entity], out, lineage(fm), hints(ENTITIES[entity], fm, dialect))
    # Of the columns given values (file_map gives the other key columns a constant).
    return [(r.column, r.value, r.message) for r in checked.rejects if r.column in values]


def test_a_reject_shows_the_value_as_the_file_sent_it_before_the_dialect_and_transforms():
    dialect = Dialect(decimal=",", thousands=".")
    [(column, value, _)] = rejects_of("product_prices", {"price": {"from": "Preis", "transforms": ["trim"]}}, dialect,
                                      Preis=[" 1 250.00"])
    assert (column, value) == ("Preis", " 1 250.00")  # not "1 25000", what the dialect made of it


def test_every_mapped_column_carries_its_value_as_sent():
    fm = file_map("stores", {"name": {"from": "NOM", "transforms": ["upper"]}, "address": {"concat": ["A", "B"], "sep": ", "},
                             "currency_code": {"constant": "EUR"}})
    out = map_rows(ENTITIES["stores"], fm, Dialect(), source_rows(NOM=["paris"], A=["1 rue"], B=["2e"])).rows
    assert out.row(0, named=True)[sent("name")] == "paris" and out.row(0, named=True)["name"] == "PARIS"
    assert out.row(0, named=True)[sent("address")] == "1 rue, 2e"
    assert sent("currency_code") not in out.columns
    assert sent("name") not in to_platform(ENTITIES["stores"], fm, Dialect(), source_rows(NOM=["x"], A=["a"], B=["b"])).columns


@pytest.mark.parametrize("dialect, spec, value, hint", [
    (Dialect(), {}, "1 250.00", '; set thousands: " " on the source\'s dialect or the column'),
    (Dialect(), {}, "12,50", '; set decimal: "," on the source\'s dialect or the column'),
    (Dialect(), {}, "1.250,00", '; set decimal: "," and thousands: "." on the source\'s dialect or the column'),
    (Dialect(decimal=",", thousands=" "), {}, "1,250.00", '; set decimal: "." and thousands: "," on the source'),
    (Dialect(), {}, "1,250", '; set thousands: "," (it reads 1250) or decimal: "," (it reads 1.250) on the source'),
    (Dialect(), {"thousands": "'"}, "1 250", '; set thousands: " " on the source'),
    (Dialect(), {}, "12,5,0", ""),  # no setting reads it
    (Dialect(), {}, "beaucoup", ""),
])
def test_a_number_that_another_separator_would_read_says_which_to_set(dialect, spec, value, hint):
    [(_, shown, message)] = rejects_of("product_prices", {"price": {"from": "P", **spec}}, dialect, P=[value])
    assert shown == value and message.startswith("not a number such as 399.99" + hint), message
    if not hint:
        assert message == "not a number such as 399.99"


def test_a_whole_number_with_thousands_says_so():
    [(_, _, message)] = rejects_of("product_inventory", {"quantity": {"from": "Q"}}, Q=["1 000"])
    assert message == 'not a whole number; set thousands: " " on the source\'s dialect or the column'


@pytest.mark.parametrize("value, hint", [
    ("yes", '; map the file\'s values with values: {"yes": "TRUE", "no": "FALSE"}'),
    ("NON", '; map the file\'s values with values: {"OUI": "TRUE", "NON": "FALSE"}'),
    ("Y", '; map the file\'s values with values: {"Y": "TRUE", "N": "FALSE"}'),
    ("1", '; map the file\'s values with values: {"1": "TRUE", "0": "FALSE"}'),
    ("true", "; add the transform upper (transforms: [trim, upper])"),
    ("peut-être", '; map the file\'s values with values, such as values: {"peut-être": "TRUE"}'),
])
def test_a_boolean_not_true_or_false_hints_the_values_to_map(value, hint):
    [(_, shown, message)] = rejects_of("stores", {"active": {"from": "ACTIF"}}, ACTIF=[value])
    assert (shown, message) == (value, "expected TRUE or FALSE" + hint)
    # A file in the platform's own format has no mapping to change: no hint.
    native = source_rows(store_ref=["S1"], name=["Paris"], currency_code=["EUR"], active=[value])
    [reject] = validate(ENTITIES["stores"], native).rejects
    assert (reject.value, reject.message) == (value, "expected TRUE or FALSE")


@pytest.mark.parametrize("dialect, value, hint", [
    (Dialect(), "31.12.2024", '; set date_format: "%d.%m.%Y" on the source\'s dialect or the column'),
    (Dialect(), "31/12/2024", '; set date_format: "%d/%m/%Y" on the source\'s dialect or the column'),
    (Dialect(), "01/02/2024", '; set date_format: "%d/%m/%Y" or "%m/%d/%Y" on the source\'s dialect or the column'),
    (Dialect(date_format="%d/%m/%Y"), "12/31/2024", '; set date_format: "%m/%d/%Y" on the source'),
    (Dialect(), "31.12.24", '; set date_format: "%d.%m.%y" on the source\'s dialect or the column'),  # not the year 24
    (Dialect(date_format="%d/%m/%Y"), "31/02/2024", ""),  # no such day in any format
    (Dialect(), "demain", ""),
])
def test_a_date_in_a_common_format_hints_the_date_format_that_reads_it(dialect, value, hint):
    [(_, shown, message)] = rejects_of("product_prices", {"starting_on": {"from": "D"}}, dialect, D=[value])
    assert shown == value and message.startswith("not a date YYYY-MM-DD" + hint), message
    if not hint:
        assert message == "not a date YYYY-MM-DD"


def test_a_date_time_in_a_common_format_hints_the_datetime_format():
    [(_, _, message)] = rejects_of("sales", {"created_at": {"from": "D"}}, D=["15/07/2024 18:05"])
    assert message.endswith('; set datetime_format: "%d/%m/%Y %H:%M" on the source\'s dialect or the column'), message


@pytest.mark.parametrize("value, hint", [
    ("f", '; map the file\'s values to these with values, such as values: {"f": "F"}'),
    ("Mme", '; map the file\'s values to these with values, such as values: {"Mme": "..."}'),
])
def test_an_enum_lists_its_values_and_hints_values(value, hint):
    [(_, _, message)] = rejects_of("shoppers", {"shopper_ref": {"from": "ID"}, "gender": {"from": "G"}}, ID=["S1"], G=[value])
    assert message == "expected one of M, F, NB" + hint


@pytest.mark.parametrize("column, value, hint", [
    ("country_code", "fr", "; add the transform upper (transforms: [upper])"),
    ("country_code", " fr", "; add the transforms trim, upper (transforms: [trim, upper])"),
    ("country_code", "France", '; map names to codes with values, such as values: {"France": "FR"}'),
    ("currency_code", "eur", "; add the transform upper (transforms: [upper])"),
    ("phone", "06 12 34 56 78", "; read numbers written without +country in a region with transforms: [{phone: FR}]"),
    ("country_code", "ZZ", ""),
])
def test_codes_in_another_case_or_form_hint_the_transform(column, value, hint):
    [message] = [m for _, _, m in rejects_of("stores", {column: {"from": "X"}}, X=[value]) if not m.startswith("length")]
    assert hint in message and (hint or message == "not an ISO 3166 alpha-2 country code such as FR"), message


# --- mistakes in transforms and rules: one message each, naming the key path -----------------------------


STORE_COLUMNS = {"store_ref": {"from": "CODE"}, "name": {"from": "NOM"}, "currency_code": {"constant": "EUR"},
                 "active": {"constant": "TRUE"}}
PRICE_COLUMNS = {"product_ref": {"from": "A"}, "sku": {"from": "B"}, "currency_code": {"constant": "EUR"}}


def problems_of(file: dict, dialect: dict | None = None) -> list[str]:
    """The problems of a brand whose one csv source sends `file`, each as `key.path: message`."""
    source = {"format": "csv", "drop": "d", "files": [{"pattern": "T_*.csv", **file}], **({"dialect": dialect} if dialect else {})}
    with pytest.raises(ValidationError) as refused:
        Brand.model_validate({"brand": "acme", "company_name": "Acme", "sources": {"pos": source}})
    return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in refused.value.errors()]


def columns_error(columns: dict, **file_keys) -> list[str]:
    return problems_of({"entity": "stores", "columns": {**STORE_COLUMNS, **columns}, **file_keys})


@pytest.mark.parametrize("columns, file_keys, expected", [
    ({"city": {"from": "V", "transforms": ["uppr"]}}, {}, "a transform: trim, upper, lower, title, {phone: FR}"),
    ({"city": {"from": "V", "transforms": ["uppr"]}}, {}, "found 'uppr' (did you mean upper?)"),
    ({"city": {"from": "V", "transforms": [{"uper": True}]}}, {}, "found {'uper': True} (did you mean upper?)"),
    ({"city": {"from": "V", "transforms": [{"trim": True, "split": {}}]}}, {}, "one transform per item"),
    ({"city": {"from": "V", "transforms": [7]}}, {}, "a transform: trim"),
    ({"phone": {"from": "T", "transforms": [{"phone": "USA"}]}}, {}, "an ISO 3166 alpha-2 region such as FR or US"),
    ({"phone": {"from": "T", "transforms": [{"phone": "fr"}]}}, {}, "found 'fr'"),
    ({"city": {"from": "V", "transforms": [{"split": {"sep": "", "index": 0}}]}}, {}, "at least 1 character"),
    ({"city": {"from": "V", "transforms": [{"replace": {"pattern": "(abc", "with": ""}}]}}, {}, "unclosed group; found '(abc'"),
    ({"city": {"from": "V", "transforms": [{"replace": {"pattern": "(?=x)"}}]}}, {}, "look-around"),
    ({"city": {"from": "V", "transforms": [{"list": ""}]}}, {}, "at least 1 character"),
    ({"city": {"template": "{CODE!r}"}}, {}, "placeholders naming a column of the file, such as {CODE}; found {CODE!r}"),
    ({"city": {"template": "{}-x"}}, {}, "placeholders naming a column of the file"),
    ({"city": {"template": "{CODE"}}, {}, "a template such as '{CODE}-{TICKET}'"),
    ({"city": {"template": "PARIS"}}, {}, "a template naming at least one column"),
    ({"city": {"from": "V", "coalesce": ["A", "B"]}}, {}, "exactly one of from, constant, concat, coalesce, template; found from, coalesce"),
    ({"city": {"coalesce": ["A"]}}, {}, "at least 2 items"),
    ({"city": {"from": "V", "date_format": "dd/mm/yyyy"}}, {}, "a strftime format such as %d/%m/%Y"),
    ({"city": {"from": "V", "date_format": "%d/%m/%Y"}}, {}, "columns.city.date_format: for date columns; city of stores is text"),
    ({"city": {"from": "V", "transforms": [{"list": ","}]}}, {}, "columns.city: list is for the platform's list columns"),
    ({"name": {"from": "NOM", "divide": 100}}, {}, "columns.name.divide: for int or decimal columns; name of stores is text"),
    ({}, {"skip": [{"column": "STATUS"}]}, "a skip rule: {blank: COLUMN}, {column: COLUMN, in: [VALUES]}"),
    ({}, {"skip": [{"blank": "A", "column": "B", "in": ["x"]}]}, "found the keys blank, column, in"),
    ({}, {"skip": [{"column": "SKU", "matches": "[a-"}]}, "unclosed character class"),
    ({}, {"skip": [{"column": "SKU", "in": []}]}, "at least 1 item"),
    ({}, {"unpivot": {"columns": ["A"], "matching": "^B", "name": "N", "value": "V"}}, "either columns"),
    ({}, {"unpivot": {"columns": ["A"], "name": "N", "value": "N"}}, "name and value are two columns"),
    ({}, {"unpivot": {"columns": ["A", "N"], "name": "N", "value": "V"}}, "name and value are new columns"),
    ({}, {"unpivot": {"columns": ["A"], "name": "N", "value": "V"}}, "unpivot: no column reads its value column V"),
])
def test_each_mistake_is_one_message(columns, file_keys, expected):
    [problem] = columns_error(columns, **file_keys)
    assert expected in problem, problem


@pytest.mark.parametrize("factor, expected", [
    ("0", "a number other than 0, such as 100; found 0"),
    ("3", "a number every amount divides by exactly, such as 10, 100, 1000 or 8 (dividing by 3 would round)"),
    ("0.3", "dividing by 0.3 would round"),
    ("abc", "Input should be a valid decimal"),
])
def test_divide_by_a_number_that_rounds_is_refused(factor, expected):
    [problem] = problems_of({"entity": "product_prices", "columns": {**PRICE_COLUMNS, "price": {"from": "P", "divide": factor}}})
    assert "columns.price.divide" in problem and expected in problem, problem


def test_divide_and_multiply_are_not_both_given():
    [problem] = problems_of({"entity": "product_prices",
                             "columns": {**PRICE_COLUMNS, "price": {"from": "P", "divide": 100, "multiply": 2}}})
    assert "divide or multiply, not both" in problem


def test_a_columns_thousands_separator_must_differ_from_the_decimal_mark_it_reads_with():
    [problem] = problems_of({"entity": "product_prices", "columns": {**PRICE_COLUMNS, "price": {"from": "P", "thousands": ","}}},
                            dialect={"decimal": ","})
    assert "files[0].columns.price: its thousands separator ',' equals its decimal mark" in problem, problem

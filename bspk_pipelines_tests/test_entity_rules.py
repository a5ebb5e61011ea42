"""The platform's rules on each row (`ingest/rules.py` over the specs of `model/entities.py`), on
polars frames alone: for each rule a value that passes and one that breaks it, and the reject's
rule, column and value; then every column of every entity against its own spec."""

from __future__ import annotations

import polars as pl
import pytest

from bspk_pipelines.ingest.parse import LINE, RowProblem
from bspk_pipelines.ingest.rules import Validated, validate
from bspk_pipelines.model.entities import ENTITIES, Kind
from bspk_pipelines.model.metafields import json_value

# A row of each entity that breaks no rule: the base each case changes one column of.
VALID = {
    "store_regions": {"store_region_ref": "R1", "name": "Europe"},
    "stores": {"store_ref": "ST1", "name": "Saint Honoré", "currency_code": "EUR", "active": "TRUE"},
    "sales_associates": {"sales_associate_ref": "SA1", "first_name": "Jeanne", "last_name": "Lanvin",
                         "store_ref": "ST1", "active": "TRUE"},
    "shoppers": {"shopper_ref": "S1"},
    "shopper_addresses": {"shopper_ref": "S1", "address_ref": "A1", "address_1": "1 rue de la Paix"},
    "products": {"product_ref": "P1", "name": "Sac", "published": "TRUE"},
    "product_variants": {"product_ref": "P1", "sku": "P1-NR", "published": "TRUE"},
    "product_prices": {"product_ref": "P1", "sku": "*", "price": "399.99", "currency_code": "EUR"},
    "product_inventory": {"product_ref": "P1", "sku": "P1-NR", "quantity": "3", "store_ref": "ST1",
                          "at": "2024-01-15T10:00:00"},
    "product_images": {"product_ref": "P1", "image_url": "https://img.example.com/p1.jpg", "position": "0"},
    "sales": {"sale_ref": "T1", "product_ref": "P1", "quantity": "1", "price": "399.99", "currency_code": "EUR",
              "created_at": "2024-01-15T10:00:00", "shopper_ref": "S1"},
    "metafields": {"owner_type": "Shopper", "owner_ref": "S1", "namespace": "custom", "key": "favorite_color",
                   "is_list": "false", "value_type": "single_line_text_field", "value": "Blue", "active": "true"},
    "special_orders": {"order_ref": "SO1", "shopper_id": "S1", "store_id": "ST1", "sales_associate_id": "SA1",
                       "created_at": "2022-01-17T19:23:22Z", "type": "repair", "status": "open"},
    "special_order_line_items": {"order_ref": "SO1", "line_item_ref": "SO1-1", "name": "Gloves", "quantity": "2",
                                 "status": "open"},
    "special_order_events": {"order_ref": "SO1", "line_item_ref": "SO1-1", "sequence": "3",
                             "description": "Sent to boutique", "created_at": "2022-01-17T19:23:22Z",
                             "action_required": "FALSE"},
}


def check(entity: str, source_columns: dict[str, str] | None = None, **changes: str | None) -> Validated:
    """The entity's valid row with `changes`, checked; it starts on line 2."""
    row = VALID[entity] | changes
    frame = pl.DataFrame([row], schema={c: pl.Utf8 for c in row}).with_columns(pl.lit(2, pl.Int64).alias(LINE))
    return validate(ENTITIES[entity], frame, source_columns)


# Values a column is only valid beside: an ending_on belongs to a discounted price, a list
# metafield's value is a JSON array.
COMPANIONS = {("product_prices", "ending_on"): {"discounted": "TRUE"}, ("metafields", "is_list"): {"value": '["Blue"]'}}


def broken(entity: str, column: str, value: str | None) -> list[tuple[str, str]]:
    """(column, rule) of each reject when `column` holds `value`; [] when the row passes."""
    result = check(entity, **COMPANIONS.get((entity, column), {}), **{column: value})
    assert result.rows.height == (0 if result.rejects else 1)
    return [(r.column, r.rule) for r in result.rejects]


def test_every_entitys_valid_row_passes():
    for entity in ENTITIES:
        result = check(entity)
        assert result.rejects == [] and result.rows.height == 1, entity


@pytest.mark.parametrize("entity, column, good, bad, rule", [
    ("stores", "name", "Saint Honoré", None, "required"),
    ("sales", "shopper_ref", "S1", None, "required"),
    ("shoppers", "title", "Mme", "x" * 21, "length"),
    ("products", "product_brand", "Maison", "x" * 31, "length"),
    ("sales_associates", "email", "ab@c.fr", "x" * 256 + "@example.com", "length"),
    ("shoppers", "email", "marie@example.com", "marie@example", "email"),
    ("shoppers", "email", "marie@example.com", "marie,curie@example.com", "email"),
    ("store_regions", "privacy_policy_link", "https://maison.example/privacy", "www.maison.example/privacy", "url"),
    ("product_images", "image_url", "http://img.example.com/p1.jpg", "ftp://img.example.com/p1.jpg", "url"),
    ("stores", "phone", "+33142650000", "01 42 65 00 00", "e164_phone"),
    ("shoppers", "mobile_phone", "+33612345678", "+0612345678", "e164_phone"),
    ("shoppers", "country_code", "FR", "XX", "country"),
    ("shoppers", "nationality", "MC", "fr", "country"),  # codes are upper-case
    ("stores", "currency_code", "CHF", "XAU", "currency"),  # gold is no store's currency
    ("products", "language_code", "fr", "xx", "language"),
    ("shoppers", "languages", "fr; en", "fr;xx", "language"),
    ("stores", "active", "FALSE", "true", "boolean"),
    ("shoppers", "email_contact", "TRUE", "oui", "boolean"),
    ("shoppers", "gender", "NB", "X", "enum"),
    ("shoppers", "preferred_contact_channel", "whatsapp", "sms", "enum"),
    ("product_inventory", "quantity", "-2", "2.5", "integer"),  # stores oversell: below zero is fine
    ("product_images", "position", "10", "ten", "integer"),
    ("product_prices", "price", "-0.00", "399,99", "decimal"),
    ("sales", "quantity", "-1", "1e3", "decimal"),  # a return
    ("product_prices", "price", "999999999999.99", "1000000000000", "overflow"),
    ("product_inventory", "quantity", "000000000123456789", "1234567890", "overflow"),  # leading zeros are no digits
    ("product_prices", "price", "0", "-0.01", "minimum"),
    ("product_images", "position", "0", "-1", "minimum"),
    ("shoppers", "birthday", "2024-02-29", "2023-02-29", "date"),
    ("product_prices", "starting_on", "2024-01-01", "01/01/2024", "date"),
    ("sales", "created_at", "2024-01-15 10:00Z", "2024-02-30T10:00:00", "datetime"),
    ("product_inventory", "at", "2024-01-15T10:00:18Z", "15/01/2024 10:00", "datetime"),
])
def test_each_rule_passes_a_good_value_and_names_the_bad_one(entity, column, good, bad, rule):
    assert broken(entity, column, good) == []
    assert broken(entity, column, bad) == [(column, rule)]


def test_a_reject_names_line_source_column_value_rule_and_message():
    result = check("shoppers", {"email": "EMAIL"}, email="marie@example", gender="X")
    assert result.rejects == [
        RowProblem(2, "EMAIL", "marie@example", "email", "not an email address"),
        RowProblem(2, "gender", "X", "enum", "expected one of M, F, NB"),
    ]
    assert result.rows.is_empty()


def test_a_required_value_missing_is_rejected_with_no_value():
    [reject] = check("products", name=None).rejects
    assert (reject.column, reject.value, reject.rule, reject.message) == ("name", "", "required", "a value is required")


def test_a_long_value_is_quoted_by_its_start():
    [reject] = check("products", description="x" * 65_536).rejects
    assert (reject.rule, reject.value) == ("length", "x" * 200)


def test_only_the_broken_rows_are_rejected_and_the_rest_are_typed():
    frame = pl.DataFrame({"product_ref": ["P1", "P2", "P3"], "sku": ["*", "*", "A"], "price": ["10", "x", "2.5"],
                          "currency_code": ["EUR", "EUR", "USD"], "discounted": [None, "TRUE", "TRUE"]},
                         ).with_columns(pl.Series(LINE, [2, 3, 4], pl.Int64))
    result = validate(ENTITIES["product_prices"], frame)
    assert [(r.line, r.rule) for r in result.rejects] == [(3, "decimal")]
    # Refs as sent (the warehouse matches them whatever their case), decimals exact text, booleans
    # typed, a blank discounted is FALSE.
    assert result.rows.select("product_ref", "sku", "price", "discounted", LINE).rows() == [
        ("P1", "*", "10", False, 2), ("P3", "A", "2.5", True, 4),
    ]


@pytest.mark.parametrize("discounted, rejects", [("TRUE", []), ("FALSE", [("ending_on", "ending_on_needs_discount")]),
                                                 (None, [("ending_on", "ending_on_needs_discount")])])
def test_ending_on_is_only_valid_on_a_discounted_price(discounted, rejects):
    result = check("product_prices", ending_on="2024-12-31", discounted=discounted)
    assert [(r.column, r.rule) for r in result.rejects] == rejects


def test_ending_on_without_a_discounted_column_is_a_standard_price_and_rejected():
    """A source that maps ending_on but not discounted (a key with a default the mapping may leave out)."""
    assert [r.rule for r in check("product_prices", ending_on="2024-12-31").rejects] == ["ending_on_needs_discount"]


@pytest.mark.parametrize("language_code, rejects", [("fr", []), (None, [("language_code", "required_with")])])
def test_language_code_is_required_when_options_are_given(language_code, rejects):
    result = check("product_variants", option_2_value="85", language_code=language_code)
    assert [(r.column, r.rule) for r in result.rejects] == rejects
    assert check("product_variants", language_code=None).rejects == []  # no options: not needed


@pytest.mark.parametrize("entity, amount", [("special_orders", "total_amount"), ("special_order_line_items", "price")])
def test_a_currency_is_required_with_an_amount_and_only_then(entity, amount):
    [reject] = check(entity, **{amount: "456.39", "currency_code": None}).rejects
    assert (reject.column, reject.rule, reject.message) == (
        "currency_code", "required_with", f"currency_code is required when {amount} is given")
    assert check(entity, **{amount: "456.39", "currency_code": "USD"}).rejects == []
    assert check(entity).rejects == []  # no amount: no currency needed


def test_metafield_booleans_are_lower_case_and_the_message_says_so():
    [reject] = check("metafields", is_list="FALSE").rejects
    assert (reject.column, reject.rule, reject.message) == ("is_list", "boolean", "expected true or false, in lower case (not TRUE or FALSE)")
    assert check("metafields", active="false").rows["active"].to_list() == [False]
    assert check("special_order_events", action_required="true").rejects[0].message == "expected TRUE or FALSE"


@pytest.mark.parametrize("value_type, is_list, good, bad", [
    ("single_line_text_field", "false", "Blue; navy", "Blue\nnavy"),
    ("multi_line_text_field", "false", "oat milk,\nsugar", None),
    ("number_integer", "false", "-42", "4.2"),
    ("number_integer", "false", "9999999999999", "99999999999999"),  # Shopify's 13 digits
    ("number_decimal", "false", "12.50", "12,50"),
    ("boolean", "false", "true", "TRUE"),
    ("date", "false", "2024-02-29", "2023-02-29"),
    ("date_time", "false", "2022-01-17T19:23:22Z", "2022-01-17"),
    ("url", "false", "https://maison.example/a", "maison.example/a"),
    ("url", "false", "mailto:care@maison.example", "ftp://maison.example/a"),
    ("color", "false", "#FFF123", "#FFF12"),
    ("json", "false", '{"size": [1, 2]}', "{size: 1}"),
    ("money", "false", '{"amount": "5.99", "currency_code": "EUR"}', '"5.99"'),
    ("single_line_text_field", "true", '["Blue","Red; dark"]', "Blue;Red"),
    ("number_integer", "true", '[1, "2", 3]', "[1, 2.5]"),
    ("boolean", "true", '[true, "false"]', '["yes"]'),
    ("date", "true", '["2024-01-15"]', '["2024-01-15", "15/01/2024"]'),
    ("product_reference", "false", "gid://shopify/Product/1", None),
    # Hostile JSON: nested past Python's recursion limit, NaN, a number too large for any store.
    ("json", "false", "[[1]]", "[" * 30_000 + "]" * 30_000),
    ("json", "false", '{"a": 1}', "NaN"),
    ("number_decimal", "true", "[0.1, 2]", "[1e999]"),
    ("number_decimal", "true", '["0.30", 12.5]', "[Infinity]"),
])
def test_a_metafield_value_must_fit_its_declared_type(value_type, is_list, good, bad):
    assert check("metafields", value_type=value_type, is_list=is_list, value=good).rejects == []
    if bad is not None:
        [reject] = check("metafields", value_type=value_type, is_list=is_list, value=bad).rejects
        assert (reject.column, reject.rule, reject.value) == ("value", "value_type", bad[:200])  # a reject quotes 200
        assert value_type in reject.message


def test_a_metafields_json_value_is_typed_and_its_decimals_exact():
    assert json_value("number_decimal", True, '[0.10, 2, "3.50"]') == ["0.10", "2", "3.50"]
    assert json_value("number_decimal", False, "0.30000000000000004") == "0.30000000000000004"
    assert json_value("number_integer", True, '[1, "2"]') == [1, 2]
    assert json_value("boolean", True, '[true, "false"]') == [True, False]
    assert json_value("json", False, '{"a": 0.5, "b": [1.25]}') == {"a": 0.5, "b": [1.25]}
    assert json_value("json", True, '["abc", {"a": 1.5}, 2]') == ["abc", {"a": 1.5}, 2]  # a list's items are JSON
    assert json_value("number_decimal", True, '[-0.0, "-0"]') == ["0.0", "0"]  # no sign on a zero
    assert check("metafields", value_type="json", is_list="true", value='["abc"]').rejects == []


def test_a_metafield_list_that_is_not_a_json_array_says_how_to_write_one():
    [reject] = check("metafields", is_list="true", value="Blue").rejects
    assert reject.message.startswith('a list is a JSON array such as ["Blue","Red"]')
    [reject] = check("metafields", value_type="number_integer", is_list="true", value='[1, "x", 3]').rejects
    assert reject.message == "item 2 of the list is not a whole number of at most 13 digits (number_integer)"


def test_an_unknown_metafield_type_is_rejected_naming_the_types():
    [reject] = check("metafields", value_type="text").rejects
    assert (reject.column, reject.rule) == ("value_type", "enum")
    assert "single_line_text_field" in reject.message


# One value of each kind that passes, and one that breaks its kind's rule.
GOOD = {Kind.TEXT: "x", Kind.EMAIL: "marie@example.com", Kind.URL: "https://maison.example/x", Kind.PHONE: "+33612345678",
        Kind.COUNTRY: "FR", Kind.CURRENCY: "EUR", Kind.LANGUAGE: "fr", Kind.LANGUAGES: "fr;en", Kind.BOOL: "TRUE",
        Kind.INT: "7", Kind.DECIMAL: "7.5", Kind.DATE: "2024-01-15", Kind.DATETIME: "2024-01-15T10:00:00",
        Kind.LIST: "a;b", Kind.CATEGORIES: "Femme>>Sacs;Cadeaux", Kind.TYPED: "x"}
BAD = {Kind.EMAIL: ("marie", "email"), Kind.URL: ("maison.example", "url"), Kind.PHONE: ("0612345678", "e164_phone"),
       Kind.COUNTRY: ("ZZ", "country"), Kind.CURRENCY: ("ZZZ", "currency"), Kind.LANGUAGE: ("zz", "language"),
       Kind.LANGUAGES: ("fr;zz", "language"), Kind.BOOL: ("yes", "boolean"), Kind.INT: ("7.0", "integer"),
       Kind.DECIMAL: ("7,5", "decimal"), Kind.DATE: ("2024-13-01", "date"), Kind.DATETIME: ("2024-01-15T25:00", "datetime"),
       Kind.ENUM: ("none of them", "enum")}


def spec_cases() -> list:
    """(entity, column, good value, bad value, rule) for each rule each column's spec declares."""
    cases = []
    for entity in ENTITIES.values():
        for c in entity.columns:
            good = (c.choices[0] if c.kind is Kind.ENUM else "ab@cd.fr" if c.kind is Kind.EMAIL
                    else c.truth[0] if c.kind is Kind.BOOL else GOOD[c.kind])
            if c.kind is Kind.TEXT:
                good = good * c.min_len
            case = lambda bad, rule, c=c, good=good: pytest.param(entity.name, c.name, good, bad, rule,  # noqa: E731
                                                                  id=f"{entity.name}.{c.name}-{rule}")
            if c.required:
                cases.append(case(None, "required"))
            if c.max_len is not None:
                cases.append(case(good + "x" * (c.max_len - len(good) + 1), "length"))
            if c.min_len > 1:
                cases.append(case("x" * (c.min_len - 1), "length"))
            if c.kind in BAD:
                cases.append(case(*BAD[c.kind]))
            if c.kind in (Kind.INT, Kind.DECIMAL):
                cases.append(case("1" + "0" * c.max_digits, "overflow"))
            if c.minimum is not None:
                cases.append(case("-1", "minimum"))
    return cases


@pytest.mark.parametrize("entity, column, good, bad, rule", spec_cases())
def test_every_column_of_every_entity_enforces_its_spec(entity, column, good, bad, rule):
    assert broken(entity, column, good) == []
    assert (column, rule) in broken(entity, column, bad)

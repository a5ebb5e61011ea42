"""Precedence on polars frames alone: which source may set which attribute (`ingest/precedence.py`),
which columns each source sends, and one row per key merged from every source's rows, each
attribute from its most trusted source (`merge_by_precedence`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from bspk_pipelines.ingest.precedence import owned_columns, provided_columns
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.brand_file import load_brand
from bspk_pipelines.model.entities import ENTITIES
from bspk_pipelines.warehouse.apply import merge_by_precedence

MAISON = load_brand(Path(__file__).resolve().parent.parent / "mappings" / "maison.yaml")
PRODUCTS = ENTITIES["products"]
KEY = ("product_ref", "language_code")


def maison_with(precedence: dict) -> Brand:
    return Brand.model_validate({**MAISON.model_dump(by_alias=True, exclude_defaults=True), "precedence": precedence})


def test_a_source_owns_the_key_and_the_attributes_its_lists_name():
    brand = maison_with({"products": {"name": ["pos", "erp"], "default": ["erp"]}})
    assert owned_columns(brand, "pos", "products") == [*KEY, "name"]
    assert owned_columns(brand, "erp", "products") == [*KEY, "name", "description", "categories", "product_brand",
                                                       "published"]


def test_without_precedence_every_source_feeding_the_entity_owns_every_attribute():
    brand = maison_with({})
    assert owned_columns(brand, "pos", "products") == owned_columns(brand, "erp", "products") == [*KEY, *PRODUCTS.attributes]


def test_a_source_sends_the_columns_its_mappings_of_the_entity_name():
    assert provided_columns(MAISON, "products") == {
        "pos": {"product_ref", "name"},
        "erp": {"product_ref", "name", "description", "categories", "product_brand", "published"},
    }
    assert provided_columns(MAISON, "sales") == {"pos": set(ENTITIES["sales"].column_names)}  # maps them all


def test_a_platform_format_source_sends_every_column():
    brand = Brand.model_validate({
        "brand": "acme", "company_name": "Acme",
        "sources": {"main": {"format": "bspk", "drop": "drop/acme"},
                    "pos": {"format": "csv", "drop": "drop/acme/pos", "files": [
                        {"pattern": "P_*.csv", "entity": "products", "columns": {"product_ref": {"from": "REF"}}}]}},
    })
    assert provided_columns(brand, "products") == {"main": set(PRODUCTS.column_names), "pos": {"product_ref"}}
    assert provided_columns(brand, "stores") == {"main": set(ENTITIES["stores"].column_names)}


def rows(*records: tuple) -> pl.DataFrame:
    """Source rows of products as the by-source table holds them: (source, ref, name, description, published)."""
    return pl.DataFrame(
        [{"source": s, "product_ref": ref, "language_code": "", "name": name, "description": description,
          "categories": None, "product_brand": None, "published": published}
         for s, ref, name, description, published in records],
        schema={"source": pl.Utf8, "product_ref": pl.Utf8, "language_code": pl.Utf8, "name": pl.Utf8,
                "description": pl.Utf8, "categories": pl.Utf8, "product_brand": pl.Utf8, "published": pl.Boolean},
    )


def merged(records: list[tuple], precedence: dict | None = None) -> tuple[list[tuple], list[tuple]]:
    """(complete, incomplete) rows as (ref, name, description, published), by maison's precedence."""
    brand = maison_with(precedence) if precedence is not None else MAISON
    owners = {a: brand.attribute_owners("products", a) for a in PRODUCTS.attributes}
    complete, incomplete = merge_by_precedence(PRODUCTS, rows(*records), owners, provided_columns(brand, "products"))
    pick = ("product_ref", "name", "description", "published")
    return (complete.sort("product_ref").select(pick).rows(), incomplete.sort("product_ref").select(pick).rows())


def test_each_attribute_comes_from_its_most_trusted_source():
    # The boutiques' name wins; the ERP's catalogue fields win; the POS sends no description.
    complete, incomplete = merged([("pos", "p1", "Sac Lune", None, None), ("erp", "p1", "LUNE BAG", "Cuir", True)])
    assert complete == [("p1", "Sac Lune", "Cuir", True)] and incomplete == []


@pytest.mark.parametrize("order", [1, -1])
def test_the_merge_does_not_depend_on_the_order_rows_arrive_in(order):
    records = [("pos", "p1", "Sac Lune", None, None), ("erp", "p1", "LUNE BAG", "Cuir", True)][::order]
    assert merged(records)[0] == [("p1", "Sac Lune", "Cuir", True)]


def test_the_next_owner_sets_an_attribute_when_the_first_sent_no_row_for_the_key():
    assert merged([("erp", "p2", "LUNE BAG", "Cuir", True)]) == ([("p2", "LUNE BAG", "Cuir", True)], [])


def test_a_blank_from_the_owner_that_sent_the_key_wins_over_a_less_trusted_value():
    # The POS sent p3 with no name: the ERP's name does not fill it, and name is required.
    complete, incomplete = merged([("pos", "p3", None, None, None), ("erp", "p3", "LUNE BAG", "Cuir", True)])
    assert complete == [] and incomplete == [("p3", None, "Cuir", True)]


def test_a_row_still_missing_a_required_attribute_waits_for_its_owner():
    # Only the POS sent p4: published comes from the ERP alone (the POS does not send it).
    assert merged([("pos", "p4", "Sac Lune", None, None)]) == ([], [("p4", "Sac Lune", None, None)])


def test_a_source_outside_an_attributes_owners_never_touches_it():
    # The ERP sends a name, but only the POS may set it here: the ERP's name is never taken.
    precedence = {"products": {"name": ["pos"], "default": ["erp"]}}
    complete, incomplete = merged([("erp", "p5", "LUNE BAG", "Cuir", True)], precedence)
    assert complete == [] and incomplete == [("p5", None, "Cuir", True)]


def test_keys_are_merged_one_row_each():
    complete, _ = merged([("pos", "p1", "Sac Lune", None, None), ("erp", "p1", "LUNE BAG", "Cuir", True),
                          ("erp", "p2", "SOLEIL BAG", None, False)])
    assert complete == [("p1", "Sac Lune", "Cuir", True), ("p2", "SOLEIL BAG", None, False)]

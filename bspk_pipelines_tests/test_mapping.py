"""A brand's own format mapped to the platform's columns (`ingest/mapping.py`): origins, transforms,
value maps and the source's dialect (decimal commas, date formats, time zones), on polars frames
alone; and which source columns a mapping needs and names in its rejects."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from bspk_pipelines.ingest.mapping import lineage, source_columns, to_e164, to_platform
from bspk_pipelines.ingest.parse import LINE
from bspk_pipelines.model.mapping import Dialect, FileMap
from bspk_pipelines.model.brand_file import load_brand
from bspk_pipelines.model.entities import ENTITIES

MAISON = load_brand(Path(__file__).resolve().parent.parent / "mappings" / "maison.yaml")
PARIS = Dialect(decimal=",", date_format="%d/%m/%Y", datetime_format="%d/%m/%Y %H:%M", timezone="Europe/Paris")


def file_map(entity: str, columns: dict) -> FileMap:
    """A FileMap of `columns`, its other key columns given constants so the model accepts it."""
    e = ENTITIES[entity]
    keys = {k: {"constant": "K"} for k in e.key
            if k not in columns and k not in e.optional_key and e.column(k).default is None}
    return FileMap.model_validate({"pattern": "F_*.csv", "entity": entity, "columns": {**keys, **columns}})


def source_rows(**columns: list[str | None]) -> pl.DataFrame:
    """Rows as `parse` reads them: text columns, blanks as null, and the line each row starts on."""
    frame = pl.DataFrame(columns, schema={c: pl.Utf8 for c in columns})
    return frame.with_columns(pl.int_range(2, pl.len() + 2, dtype=pl.Int64).alias(LINE))


def mapped(entity: str, column: str, spec: dict, values: list[str | None], dialect: Dialect = Dialect()) -> list:
    """`column` of the rows whose source column SRC holds `values`, mapped by `spec`."""
    out = to_platform(ENTITIES[entity], file_map(entity, {column: {"from": "SRC", **spec}}), dialect,
                      source_rows(SRC=values))
    return out[column].to_list()


@pytest.mark.parametrize("transforms, value, expected", [
    (["trim"], "  Saint Honoré ", "Saint Honoré"),
    (["upper"], "par01", "PAR01"),
    (["lower"], "Marie@Example.COM", "marie@example.com"),
    (["title"], "SAINT-TROPEZ", "Saint-Tropez"),
    ([{"strip_prefix": "CLI-"}], "CLI-0042", "0042"),
    ([{"strip_prefix": "CLI-"}], "0042-CLI-", "0042-CLI-"),  # only a prefix
    ([{"strip_leading": "0"}], "0000004242", "4242"),
    ([{"split": {"sep": "/", "index": 0}}], "Noir / 85", "Noir"),
    ([{"split": {"sep": "/", "index": 1}}], "Noir / 85", "85"),
    ([{"split": {"sep": "/", "index": 1}}], "Noir", None),  # no size: no value, not an error
    ([{"phone": "FR"}], "06 12 34 56 78", "+33612345678"),
    ([{"phone": "FR"}], "+44 20 7946 0958", "+442079460958"),  # a +country wins over the region
    ([{"phone": "FR"}], "12", "12"),  # not a number: left for the e164 rule to reject as sent
    (["trim", "upper"], "  par01 ", "PAR01"),  # in order
    (["trim"], "   ", None),  # blank after the transforms is no value
])
def test_each_transform(transforms, value, expected):
    assert mapped("stores", "name", {"transforms": transforms}, [value]) == [expected]


def test_transforms_leave_blanks_blank():
    assert mapped("stores", "phone", {"transforms": ["trim", {"phone": "FR"}]}, [None]) == [None]


def test_to_e164_reads_national_numbers_in_the_region():
    assert to_e164("020 7946 0958", "GB") == "+442079460958"
    assert to_e164("020 7946 0958", "FR") == "020 7946 0958"  # not a French number
    assert to_e164(None, "FR") is None


@pytest.mark.parametrize("value, expected", [("O", "TRUE"), ("N", "FALSE"), ("X", "X"), (None, None)])
def test_values_are_mapped_and_unknown_values_pass_unchanged(value, expected):
    assert mapped("stores", "active", {"values": {"O": "TRUE", "N": "FALSE"}}, [value]) == [expected]


def test_values_are_mapped_after_the_transforms():
    spec = {"transforms": ["trim", "lower"], "values": {"oui": "TRUE", "non": "FALSE"}}
    assert mapped("shoppers", "email_contact", spec, [" Oui ", "NON"]) == ["TRUE", "FALSE"]


def test_a_constant_fills_every_row():
    fm = file_map("stores", {"store_ref": {"from": "CODE"}, "currency_code": {"constant": "EUR"}})
    out = to_platform(ENTITIES["stores"], fm, Dialect(), source_rows(CODE=["A", "B"]))
    assert out["currency_code"].to_list() == ["EUR", "EUR"]


@pytest.mark.parametrize("first, second, expected", [
    ("1 rue de la Paix", "2e étage", "1 rue de la Paix, 2e étage"),
    ("1 rue de la Paix", None, "1 rue de la Paix"),  # a missing part adds no separator
    (None, "2e étage", "2e étage"),
    (None, None, None),
])
def test_concat_joins_the_parts_it_has(first, second, expected):
    fm = file_map("stores", {"address": {"concat": ["A1", "A2"], "sep": ", "}})
    out = to_platform(ENTITIES["stores"], fm, Dialect(), source_rows(A1=[first], A2=[second]))
    assert out["address"].to_list() == [expected]


def test_the_result_is_the_mappings_columns_in_order_and_the_line():
    fm = file_map("stores", {"name": {"from": "NOM"}, "store_ref": {"from": "CODE"}})
    out = to_platform(ENTITIES["stores"], fm, Dialect(), source_rows(CODE=["A", "B"], NOM=["x", "y"], OTHER=["1", "2"]))
    assert out.columns == ["name", "store_ref", LINE]
    assert out[LINE].to_list() == [2, 3]
    assert out.schema["name"] == pl.Utf8


@pytest.mark.parametrize("dialect, value, expected", [
    (Dialect(decimal=","), "1250,50", "1250.50"),
    (Dialect(decimal=",", thousands="."), "1.250,50", "1250.50"),
    (Dialect(decimal=",", thousands=" "), "1 250,50", "1250.50"),
    (Dialect(thousands=","), "1,250.50", "1250.50"),
    (Dialect(thousands="'"), "1'250.50", "1250.50"),
    (Dialect(decimal=","), "-3,5", "-3.5"),
    (Dialect(), "1250.50", "1250.50"),
    (Dialect(decimal=","), "beaucoup", "beaucoup"),  # left for the decimal rule to reject as sent
])
def test_numbers_in_the_sources_convention(dialect, value, expected):
    assert mapped("product_prices", "price", {}, [value], dialect) == [expected]


def test_whole_numbers_lose_their_thousands_separator():
    assert mapped("product_images", "position", {}, ["1.000"], Dialect(decimal=",", thousands=".")) == ["1000"]


def test_text_columns_keep_the_dialects_separators():
    assert mapped("stores", "name", {}, ["Boutique 1,5"], PARIS) == ["Boutique 1,5"]


@pytest.mark.parametrize("value, expected", [
    ("31/12/1990", "1990-12-31"),
    ("1990-12-31", "1990-12-31"),  # already ISO: not the source's format, passed on
    ("31/02/1990", "31/02/1990"),  # no such day: passed on for the date rule to reject
    ("12/31/1990", "12/31/1990"),
])
def test_dates_in_the_sources_format(value, expected):
    assert mapped("shoppers", "birthday", {}, [value], PARIS) == [expected]


def test_iso_dates_are_left_as_sent():
    assert mapped("shoppers", "birthday", {}, ["31/12/1990", "1990-12-31"]) == ["31/12/1990", "1990-12-31"]


@pytest.mark.parametrize("value, expected", [
    ("15/01/2024 10:30", "2024-01-15T09:30:00"),  # winter: UTC+1
    ("15/07/2024 10:30", "2024-07-15T08:30:00"),  # summer: UTC+2
    ("01/01/2024 00:30", "2023-12-31T23:30:00"),  # the day, month and year before in UTC
    ("27/10/2024 02:30", "2024-10-27T00:30:00"),  # twice that night: the earlier (summer time)
    ("31/03/2024 02:30", "31/03/2024 02:30"),  # never that night: passed on as sent
    ("2024-01-15T10:30:00", "2024-01-15T10:30:00"),  # not the source's format: passed on
    ("demain", "demain"),
])
def test_datetimes_in_the_sources_format_and_zone_become_utc(value, expected):
    assert mapped("sales", "created_at", {}, [value], PARIS) == [expected]


def test_datetimes_of_a_utc_source_keep_their_time():
    dialect = Dialect(datetime_format="%d.%m.%Y %H:%M:%S")
    assert mapped("sales", "created_at", {}, ["15.01.2024 10:30:00"], dialect) == ["2024-01-15T10:30:00"]


def maison_map(entity: str, source: str = "pos") -> FileMap:
    return next(f.feeds[entity] for f in MAISON.sources[source].files if entity in f.feeds)


def test_maisons_pos_ticket_row_maps_to_a_platform_sale():
    rows = source_rows(
        CODE_BOUTIQUE=["PAR01"], NUM_TICKET=["000123"], REF_ARTICLE=[" SAC-01 "], REF_SKU=["SAC-01-NR"], QTE=["1"],
        PRIX_UNITAIRE=["1250,00"], DATE_HEURE=["15/07/2024 18:05"], NUM_CLIENT=["0000004242"], CODE_VENDEUR=[" v07 "],
    )
    out = to_platform(ENTITIES["sales"], maison_map("sales"), MAISON.sources["pos"].dialect, rows)
    assert out.row(0, named=True) == {
        "sale_ref": "PAR01-000123", "product_ref": "SAC-01", "sku": "SAC-01-NR", "quantity": "1", "price": "1250.00",
        "currency_code": "EUR", "created_at": "2024-07-15T16:05:00", "shopper_ref": "4242", "store_ref": "PAR01",
        "sales_associate_ref": "V07", LINE: 2,
    }


def test_maisons_pos_client_row_maps_to_a_platform_shopper():
    rows = source_rows(
        NUM_CLIENT=["0000004242"], CIVILITE=[" Mme "], PRENOM=[" Marie"], NOM=["CURIE"], EMAIL=[" Marie@Example.FR "],
        TEL=["06 12 34 56 78"], ADRESSE=["1 rue de la Paix "], CP=["75002"], VILLE=["PARIS"], PAYS=["fr"],
        DATE_NAISSANCE=["07/11/1967"], LANGUE=["FR"], OPTIN_EMAIL=["Oui"], OPTIN_TEL=["non"], BOUTIQUE=["par01"],
        VENDEUR=[None],
    )
    out = to_platform(ENTITIES["shoppers"], maison_map("shoppers"), MAISON.sources["pos"].dialect, rows)
    assert out.row(0, named=True) == {
        "shopper_ref": "4242", "gender": "F", "title": "Mme", "first_name": "Marie", "last_name": "Curie",
        "email": "marie@example.fr", "mobile_phone": "+33612345678", "address": "1 rue de la Paix", "zip_code": "75002",
        "city": "Paris", "country_code": "FR", "birthday": "1967-11-07", "languages": "fr", "email_contact": "TRUE",
        "phone_call_contact": "FALSE", "store_ref": "PAR01", "sales_associate_ref": None, LINE: 2,
    }


def test_maisons_erp_variant_label_splits_into_colour_and_size():
    rows = source_rows(item_code=["SAC-01", "FOU-02"], sku=["SAC-01-NR", "FOU-02-85"], ean=[None, "3700000000017"],
                       variant_label=["Noir", "Noir / 85"], status=["active", "INACTIVE"])
    out = to_platform(ENTITIES["product_variants"], maison_map("product_variants", "erp"), MAISON.sources["erp"].dialect, rows)
    assert out.select("option_1_name", "option_1_value", "option_2_name", "option_2_value", "published").rows() == [
        ("Couleur", "Noir", "Taille", None, "TRUE"),
        ("Couleur", "Noir", "Taille", "85", "FALSE"),
    ]


def test_lineage_names_the_source_columns_of_each_platform_column():
    assert lineage(maison_map("sales")) == {
        "sale_ref": "CODE_BOUTIQUE+NUM_TICKET", "product_ref": "REF_ARTICLE", "sku": "REF_SKU", "quantity": "QTE",
        "price": "PRIX_UNITAIRE", "currency_code": "currency_code (constant)", "created_at": "DATE_HEURE",
        "shopper_ref": "NUM_CLIENT", "store_ref": "CODE_BOUTIQUE", "sales_associate_ref": "CODE_VENDEUR",
    }


def test_source_columns_are_each_column_the_mapping_reads_once_in_order():
    # CODE_BOUTIQUE feeds sale_ref and store_ref; the constant reads nothing.
    assert source_columns(maison_map("sales")) == [
        "CODE_BOUTIQUE", "NUM_TICKET", "REF_ARTICLE", "REF_SKU", "QTE", "PRIX_UNITAIRE", "DATE_HEURE", "NUM_CLIENT",
        "CODE_VENDEUR",
    ]
    assert source_columns(maison_map("shoppers")).count("CIVILITE") == 1  # gender and title

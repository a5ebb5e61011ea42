"""Bad inputs: the ways a delivered file can be wrong, and exactly what becomes of each.

Every file case asserts its exact outcome (the rejects, or the failed file and its message) and
that nothing is lost:
- the landed copy is byte-identical to what was delivered;
- every data line is accounted for: rows applied (inserted, updated, unchanged or held) plus
  rejected lines (and rows superseded or skipped) equal the rows in the file;
- ingesting the same file again changes nothing (no table changes, the `files` row identical).

Name cases (what `classify` / `safe_name` refuse) and drop-folder cases (files still being
written, partial uploads) need no warehouse and run once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.entities import ENTITIES
from bspk_pipelines.ingest.drop import FileNameError, classify, look, safe_name
from bspk_pipelines.ingest.stores import Snapshot
from bspk_pipelines.ingest.stores.local import LocalFolder
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.ingest.ledger import failed
from bspk_pipelines.warehouse.schema import metadata
from bspk_pipelines_tests.builders import (
    INVENTORY, NATIVE, PRICES, PRODUCT, SALE, SHOPPER, STORE, Harness, brand_harness, header,
)


def store(ref: str = "S1", name: str = "Paris", country: str = "FR", currency: str = "EUR", phone: str = "",
          email: str = "", active: str = "TRUE") -> str:
    return f"{ref},{name},,,,,{country},{currency},{phone},,{email},,{active}\n"


def shopper(ref: str, gender: str = "F", phone: str = "", channel: str = "", extra: str = "") -> str:
    return f"{ref},Marie,Curie,,,{gender},m@example.com,,{phone},,,,,,Paris,,,FR,,{channel},,,TRUE,FALSE{extra}\n"


STORE_FILE = "STORE_V2_Acme_202601010000.csv"
SHOPPER_FILE = "SHOPPER_V3_Acme_202601010000.csv"
PRODUCT_FILE = "PRODUCT_V2_Acme_202601010000.csv"
PRICES_FILE = "PRODUCT-PRICES_V2_Acme_202601010100.csv"
INVENTORY_FILE = "PRODUCT-INVENTORY_V2_Acme_202601010100.csv"
SALE_FILE = "SALE_V2_Acme_202601010100.csv"


# --- what "nothing is lost" means -------------------------------------------------------------


def snapshot(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of every warehouse table (entity, by-source and bookkeeping tables)."""
    with engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]
            for t in metadata.sorted_tables
            if t.name != "schema_version"
        }


def applied(f: dict) -> int:
    return f["inserted"] + f["updated"] + f["unchanged"] + f["held"]


def ingest_checked(h: Harness, name: str, content: str | bytes, rows: int, source: str = "main") -> dict:
    """Drop and ingest a file, check that nothing is lost, and return its `files` row.

    `rows` is the number of data lines a reader of the file counts (blank lines are not rows).
    """
    raw = content.encode("utf-8") if isinstance(content, str) else content
    h.drop(name, raw, source)
    f = h.ingest(name, source)
    # The delivered bytes are kept as they came.
    assert h.layout.landed(h.brand.brand, source, name).read_bytes() == raw
    rejects = h.rejects(name)
    if f["status"] in ("failed", "duplicate"):
        # A file that fails as a whole (or repeats another's bytes) applies nothing and records no rows.
        assert rejects == []
        assert (f["rows_read"], f["inserted"], f["updated"], f["held"]) == (None, None, None, None)
    else:
        assert f["status"] == "applied", f
        assert f["rows_read"] == rows, f
        assert f["rejected"] == len({r[0] for r in rejects}), f
        # A row the mapping's skip rules leave out is counted apart: neither applied nor rejected.
        assert applied(f) + f["rejected"] + f["superseded"] + f["skipped"] == rows, f
    # The same file again: imported once, nothing changes anywhere. (A failed file is not taken
    # again by a look at the drop folder: only a retry asks for it, see test_retry.)
    before = snapshot(h.engine)
    if f["status"] == "failed":
        assert h.planned() == []
    else:
        assert h.ingest(name, source) == f
    assert snapshot(h.engine) == before
    return f


# --- native (platform format) files: rows rejected, file applied --------------------------------


@dataclass
class Rejected:
    """A native file that is applied, with some lines rejected."""

    id: str
    name: str
    content: str | bytes
    rows: int  # data lines in the file
    rejects: list[tuple]  # (line, column, value, rule), ordered by line then column
    counts: dict = field(default_factory=dict)  # expected counts among inserted/updated/unchanged/held
    stored: dict = field(default_factory=dict)  # table -> {column: values in key order}
    before: list[tuple[str, str]] = field(default_factory=list)  # files ingested first (name, content)


LONG = "x" * 100_000
REJECTED = [
    Rejected(
        "utf8_bom_accepted", STORE_FILE, b"\xef\xbb\xbf" + (STORE + store(name="Café")).encode(), 1, [],
        {"inserted": 1}, {"stores": {"store_ref": ["S1"], "name": ["Café"]}},
    ),
    Rejected(
        "quoted_commas_and_newlines_count_lines",
        STORE_FILE,
        STORE + 'S1,"Paris, Rive ""Gauche""",,,,,FR,EUR,,,,,TRUE\n'
        + 'S2,"Lyon\nPart-Dieu",,,,,FR,EUR,,,,,TRUE\n'
        + store("S3", currency="EUX"),
        3,
        # S2 spans lines 3-4, so S3 starts on line 5.
        [(5, "currency_code", "EUX", "currency")],
        {"inserted": 2},
        {"stores": {"name": ['Paris, Rive "Gauche"', "Lyon\nPart-Dieu"]}},
    ),
    Rejected(
        "crlf_and_blank_line_keep_physical_line_numbers",
        STORE_FILE,
        (STORE + store("S1") + "\n" + store("S2", name="")).replace("\n", "\r\n"),
        2,
        [(4, "name", "", "required")],
        {"inserted": 1},
    ),
    Rejected(
        "ragged_rows_field_count",
        STORE_FILE,
        STORE + store("S1") + "S2,Lyon,,,,,FR,EUR,,,,TRUE\n" + "S3,Nice,,,,,FR,EUR,,,,,TRUE,extra\n",
        3,
        [(3, "*", "S2,Lyon,,,,,FR,EUR,,,,TRUE", "field_count"),
         (4, "*", "S3,Nice,,,,,FR,EUR,,,,,TRUE,extra", "field_count")],
        {"inserted": 1},
    ),
    Rejected(
        "text_after_closing_quote",
        STORE_FILE,
        STORE + 'S1,"Paris"x,,,,,FR,EUR,,,,,TRUE\n' + store("S2") + 'S3,5" Screen Store,,,,,FR,EUR,,,,,TRUE\n',
        3,
        # A quote inside an unquoted field is plain text (S3); text after a closing quote is not.
        [(2, "*", "", "quote")],
        {"inserted": 2},
        {"stores": {"name": ["Paris", '5" Screen Store']}},
    ),
    Rejected(
        "header_only_applied_with_no_rows", STORE_FILE, STORE, 0, [], {"inserted": 0}, {"stores": {"store_ref": []}},
    ),
    Rejected(
        "duplicate_key_later_one_rejected",
        STORE_FILE,
        STORE + store("S1", name="Paris") + store("S2") + store("S1", name="Lyon"),
        3,
        [(4, "store_ref", "S1", "duplicate_key")],
        {"inserted": 2},
        {"stores": {"store_ref": ["S1", "S2"], "name": ["Paris", "Paris"]}},
    ),
    Rejected(
        "product_ref_duplicate_is_case_insensitive",
        PRODUCT_FILE,
        PRODUCT + "B234c9,Jacket,,,en,,TRUE\nb234C9,Coat,,,en,,TRUE\nb234C9,Manteau,,,fr,,TRUE\n",
        3,
        # One product per (product_ref, language_code): the French row is a translation, not a duplicate.
        # The reject and the rows show each ref as its line wrote it.
        [(3, "product_ref+language_code", "b234C9|en", "duplicate_key")],
        {"inserted": 2},
        {"products": {"product_ref": ["B234c9", "b234C9"], "name": ["Jacket", "Manteau"]}},
    ),
    Rejected(
        "invalid_phone",
        STORE_FILE,
        STORE + store("S1", phone="+33 1 23 45 67 89") + store("S2", phone="0612345678") + store("S3", phone="+33123456789"),
        3,
        [(2, "phone", "+33 1 23 45 67 89", "e164_phone"), (3, "phone", "0612345678", "e164_phone")],
        {"inserted": 1},
    ),
    Rejected(
        "invalid_email",
        STORE_FILE,
        STORE + store("S1", email="privacy@@acme.com") + store("S2", email="privacy at acme.com")
        + store("S3", email="privacy@acme.com"),
        3,
        [(2, "privacy_policy_email", "privacy@@acme.com", "email"),
         (3, "privacy_policy_email", "privacy at acme.com", "email")],
        {"inserted": 1},
    ),
    Rejected(
        "invalid_country",
        STORE_FILE,
        STORE + store("S1", country="ZZ") + store("S2", country="fr") + store("S3", country="FRA") + store("S4"),
        4,
        [(2, "country_code", "ZZ", "country"), (3, "country_code", "fr", "country"),
         (4, "country_code", "FRA", "country"), (4, "country_code", "FRA", "length")],  # one line, two rules
        {"inserted": 1},
    ),
    Rejected(
        "invalid_currency",
        STORE_FILE,
        # XXX ("no currency") and XTS (testing) are ISO 4217 codes but no store prices in them.
        STORE + store("S1", currency="EUX") + store("S2", currency="XXX") + store("S3", currency="XTS")
        + store("S4", currency="usd") + store("S5", currency="USD"),
        5,
        [(2, "currency_code", "EUX", "currency"), (3, "currency_code", "XXX", "currency"),
         (4, "currency_code", "XTS", "currency"), (5, "currency_code", "usd", "currency")],
        {"inserted": 1},
    ),
    Rejected(
        "invalid_date",
        SHOPPER_FILE,
        header("shoppers", "birthday") + shopper("1", extra=",1982-02-30") + shopper("2", extra=",22/02/1982")
        + shopper("3", extra=",1982-2-22") + shopper("4", extra=",1982-02-22") + shopper("5", extra=","),
        5,
        [(2, "birthday", "1982-02-30", "date"), (3, "birthday", "22/02/1982", "date"), (4, "birthday", "1982-2-22", "date")],
        {"inserted": 2},
    ),
    Rejected(
        "invalid_enum",
        SHOPPER_FILE,
        SHOPPER + shopper("1", gender="X") + shopper("2", channel="fax") + shopper("3", gender="f")
        + shopper("4", gender="NB", channel="whatsapp"),
        4,
        [(2, "gender", "X", "enum"), (3, "preferred_contact_channel", "fax", "enum"), (4, "gender", "f", "enum")],
        {"inserted": 1},
    ),
    Rejected(
        "invalid_boolean",
        STORE_FILE,
        STORE + store("S1", active="yes") + store("S2", active="true") + store("S3", active="1")
        + store("S4", active="") + store("S5", active="FALSE"),
        5,
        [(2, "active", "yes", "boolean"), (3, "active", "true", "boolean"), (4, "active", "1", "boolean"),
         (5, "active", "", "required")],
        {"inserted": 1},
    ),
    Rejected(
        "shopper_mobile_phone_unique_in_file",
        SHOPPER_FILE,
        SHOPPER + shopper("1", phone="+33612345678") + shopper("2", phone="+33612345678"),
        2,
        [(3, "mobile_phone", "+33612345678", "duplicate_mobile_phone")],
        {"inserted": 1},
    ),
    Rejected(
        "negative_price_minimum_and_overflow",
        PRICES_FILE,
        PRICES + "P1,*,-1.50,EUR,,2022-01-01,,\n" + "P1,S1,1234567890123,EUR,,2022-01-01,,\n"
        + "P1,S2,1e5,EUR,,,,\n" + "P1,S3,-0.00,EUR,,,,\n" + "P1,S4,000000000000000001,EUR,,,,\n"
        + "P1,S5,399.99,EUR,,,,\n",
        6,
        # -0.00 is not below 0; leading zeros do not count as digits.
        [(2, "price", "-1.50", "minimum"), (3, "price", "1234567890123", "overflow"), (4, "price", "1e5", "decimal")],
        {"inserted": 3},
        {"product_prices": {"sku": ["S3", "S4", "S5"]}},
        [(PRODUCT_FILE, PRODUCT + "P1,Jacket,,,,,TRUE\n")],
    ),
    Rejected(
        "overflowing_quantity",
        INVENTORY_FILE,
        INVENTORY + "P1,K1,9999999999,ST1,2022-01-17T19:23:22\n" + "P1,K2,999999999,ST1,2022-01-17T19:23:22\n"
        + "P1,K3,-2,ST1,2022-01-17T19:23:22\n" + "P1,K4,1.5,ST1,2022-01-17T19:23:22\n",
        4,
        # Negative stock is allowed (stores oversell); a quantity is a whole number of at most 9 digits.
        [(2, "quantity", "9999999999", "overflow"), (5, "quantity", "1.5", "integer")],
        {"inserted": 2},
        {"product_inventory": {"quantity": [999999999, -2]}},
        [(PRODUCT_FILE, PRODUCT + "P1,Jacket,,,,,TRUE\n")],
    ),
    Rejected(
        "bad_timestamps_in_rows",
        SALE_FILE,
        SALE + "T1,P1,1,10,EUR,yesterday,,SH1,,\n" + "T2,P1,1,10,EUR,2022-13-01T00:00:00,,SH1,,\n"
        + "T3,P1,1,10,EUR,2022-01-17T25:15:18,,SH1,,\n" + "T4,P1,1,10,EUR,2022-01-17T10:15:18,,SH1,,\n",
        4,
        [(2, "created_at", "yesterday", "datetime"), (3, "created_at", "2022-13-01T00:00:00", "datetime"),
         (4, "created_at", "2022-01-17T25:15:18", "datetime")],
        {"inserted": 1},
        {"sales": {"sale_ref": ["T4"]}},
        [(SHOPPER_FILE, SHOPPER + shopper("SH1")), (PRODUCT_FILE, PRODUCT + "P1,Jacket,,,,,TRUE\n")],
    ),
    Rejected(
        "field_of_100_kb_too_long",
        STORE_FILE,
        STORE + store("S1", name=LONG) + store("S2"),
        2,
        # The reject keeps the first 200 characters of the value.
        [(2, "name", "x" * 200, "length")],
        {"inserted": 1},
    ),
    Rejected(
        "description_of_100_kb_over_65535",
        PRODUCT_FILE,
        PRODUCT + f"P1,Jacket,{LONG},,,,TRUE\n" + f"P2,Coat,{'y' * 65_535},,,,TRUE\n",
        2,
        [(2, "description", "x" * 200, "length")],
        {"inserted": 1},
    ),
    Rejected(
        "field_over_1_mib_read_past",
        PRODUCT_FILE,
        PRODUCT + f"P1,Jacket,{'x' * (2 << 20)},,,,TRUE\n" + "P2,Coat,,,,,TRUE\n",
        2,
        # Over MAX_ROW_BYTES the row is not read at all: a reject, and the file goes on.
        [(2, "description", "x" * 200, "length")],
        {"inserted": 1},
        {"products": {"product_ref": ["P2"]}},
    ),
    Rejected(
        "quoted_field_over_1_mib_across_lines",
        PRODUCT_FILE,
        # 17 MB: more than the csv module ever held (it failed the whole file).
        PRODUCT + 'P1,Jacket,"' + "warm, soft\n" * 1_600_000 + '",,,,TRUE\n' + "P2,Coat,,,,,TRUE\n",
        2,
        [(2, "description", ("warm, soft\n" * 20)[:200], "length")],
        {"inserted": 1},
        {"products": {"product_ref": ["P2"]}},
    ),
    Rejected(
        "nul_byte",
        STORE_FILE,
        STORE + store("S1", name="Pa\x00ris") + store("S2"),
        2,
        [(2, "name", "Pa\\0ris", "nul_byte")],
        {"inserted": 1},
    ),
]


@pytest.mark.parametrize("case", REJECTED, ids=[c.id for c in REJECTED])
def test_rows_rejected_file_applied(harness, case: Rejected):
    for name, content in case.before:
        assert ingest_checked(harness, name, content, content.count("\n") - 1)["status"] == "applied"
    f = ingest_checked(harness, case.name, case.content, case.rows)
    assert f["status"] == "applied" and f["error"] is None
    assert sorted(harness.rejects(case.name)) == sorted(case.rejects)
    for count, expected in case.counts.items():
        assert f[count] == expected, (count, f)
    for table, columns in case.stored.items():
        rows = harness.rows(table, order_by=",".join(ENTITIES[table].key))
        for column, values in columns.items():
            assert [r[column] for r in rows] == values, column


# --- native files that fail as a whole -------------------------------------------------------------


@dataclass
class Failed:
    id: str
    name: str
    content: str | bytes
    error: str


FAILED = [
    Failed(
        "cp1252_bytes_in_native_utf8",
        STORE_FILE,
        (STORE + store("S1") + store("S2", name="Café")).encode("cp1252"),
        # The offset is that of the é (0xE9), the first byte that is not UTF-8.
        f"{STORE_FILE}: line 3: not valid utf-8 text (byte offset {len(STORE) + len(store('S1')) + 6}: b'\\xe9,,,')",
    ),
    Failed(
        "semicolon_delimited_sent_as_native",
        STORE_FILE,
        STORE.replace(",", ";") + "S1;Paris;;;;;FR;EUR;;;;;TRUE\n",
        f"{STORE_FILE}: line 1: expected a header naming the columns ({STORE.strip().replace(',', ', ')}); "
        f"found {STORE.strip().replace(',', ';')!r}, which names none of them: is the file delimited by ';' instead of ','?",
    ),
    Failed(
        "no_header_data_on_line_1",
        STORE_FILE,
        store("S1") + store("S2"),
        f"{STORE_FILE}: line 1: expected a header naming the columns ({STORE.strip().replace(',', ', ')}); "
        f"found {store('S1').strip()!r}, which names none of them: is the header line missing?",
    ),
    Failed(
        "missing_header_column",
        STORE_FILE,
        STORE.replace("city,", "") + "S1,Paris,,,,FR,EUR,,,,,TRUE\n",
        f"{STORE_FILE}: line 1: the header does not fit: missing column city",
    ),
    Failed(
        "duplicated_header_column",
        STORE_FILE,
        STORE.replace("city,", "city,city,") + "S1,Paris,,,,,,FR,EUR,,,,,TRUE\n",
        f"{STORE_FILE}: line 1: column 'city' appears twice in the header (positions 4 and 5)",
    ),
    Failed(
        "unknown_header_column",
        STORE_FILE,
        STORE.replace("\n", ",opening_hours\n") + "S1,Paris,,,,,FR,EUR,,,,,TRUE,9-18\n",
        f"{STORE_FILE}: line 1: the header does not fit: unknown column 'opening_hours'",
    ),
    Failed(
        "empty_file_0_bytes",
        STORE_FILE,
        b"",
        f"{STORE_FILE}: the file is empty: expected a header on line 1",
    ),
    Failed(
        "blank_first_line",
        STORE_FILE,
        "\n" + STORE + store("S1"),
        f"{STORE_FILE}: line 1: expected a header, found an empty line",
    ),
    Failed(
        "quote_never_closed",
        STORE_FILE,
        # Without the failure, every line after the open quote would vanish into one field.
        STORE + store("S1") + 'S2,"Lyon,,,,,FR,EUR,,,,,TRUE\n' + store("S3") + store("S4"),
        f"{STORE_FILE}: line 3: not readable as CSV: unexpected end of data (a quoted field that is never closed?)",
    ),
]


@pytest.mark.parametrize("case", FAILED, ids=[c.id for c in FAILED])
def test_file_fails_as_a_whole(harness, case: Failed):
    f = ingest_checked(harness, case.name, case.content, 0)
    assert f["status"] == "failed"
    assert f["error"] == case.error
    assert harness.rows("stores") == []


# --- delivering the same file again ----------------------------------------------------------------


def test_same_file_twice_changes_nothing(harness):
    content = STORE + store("S1") + store("S2", currency="EUX")
    first = ingest_checked(harness, STORE_FILE, content, 2)
    before = snapshot(harness.engine)
    # Dropped again under the same name (even with other bytes): a file name is imported once.
    harness.drop(STORE_FILE, STORE + store("S1", name="Lyon"))
    assert harness.ingest(STORE_FILE) == first
    assert snapshot(harness.engine) == before
    assert harness.layout.landed("acme", "main", STORE_FILE).read_bytes() == content.encode()


def test_same_bytes_under_a_new_name_is_a_duplicate(harness):
    content = STORE + store("S1") + store("S2", currency="EUX")
    ingest_checked(harness, STORE_FILE, content, 2)
    before = snapshot(harness.engine)
    other = "STORE_V2_Acme_202601020000.csv"
    f = ingest_checked(harness, other, content, 2)
    assert (f["status"], f["duplicate_of"]) == ("duplicate", STORE_FILE)
    assert f["error"] == f"same bytes as {STORE_FILE}: recorded, not applied twice"
    assert f["rows_read"] is None and f["inserted"] is None
    assert harness.rejects(other) == []
    # Only the new files row and its file_import.finished event: no entity table, reject or held row changed.
    after = snapshot(harness.engine)
    recorded = ("files", "webhook_events")
    assert {t: rows for t, rows in after.items() if t not in recorded} == {t: rows for t, rows in before.items() if t not in recorded}
    [new] = [e for e in after["webhook_events"] if e not in before["webhook_events"]]
    event = dict(zip(metadata.tables["webhook_events"].c.keys(), new))
    assert event["event_name"] == "file_import.finished" and '"status": "duplicate"' in event["payload"]


def test_failed_bytes_under_a_new_name_are_tried_again(harness):
    """A failed file is no twin: re-sent under a new name it is read again (and fails again, by its own name)."""
    content = store("S1")
    ingest_checked(harness, STORE_FILE, content, 0)
    other = "STORE_V2_Acme_202601020000.csv"
    f = ingest_checked(harness, other, content, 0)
    assert f["status"] == "failed" and f["duplicate_of"] is None
    assert f["error"].startswith(f"{other}: line 1: ")


# --- a brand's own format (csv source) ---------------------------------------------------------------


def pos_source(encoding: str) -> dict:
    return {
        "brand": "acme",
        "company_name": "Acme",
        "sources": {
            "pos": {
                "format": "csv",
                "drop": "drop/acme/pos",
                "dialect": {"delimiter": ";", "encoding": encoding},
                "files": [{
                    "pattern": "CLIENTS_*.csv",
                    "entity": "shoppers",
                    "timestamp": {"regex": r"CLIENTS_(\d{12})\.csv", "format": "%Y%m%d%H%M"},
                    "columns": {
                        "shopper_ref": {"from": "ID"},
                        "first_name": {"from": "PRENOM"},
                        "last_name": {"from": "NOM"},
                        "city": {"from": "VILLE"},
                        "email": {"from": "MAIL"},
                    },
                }],
            }
        },
    }


CLIENTS_FILE = "CLIENTS_202601010000.csv"
ACCENTED = {
    "cp1252": ("Françoise", "Œuvray-Müller", "Zoë €uro"),
    "latin-1": ("Françoise", "Ørsted-Müller", "Zoë Ñandú"),
}


@pytest.mark.parametrize("encoding", list(ACCENTED))
def test_brand_format_in_its_own_encoding_keeps_accents(engine, tmp_path, encoding):
    first, last, city = ACCENTED[encoding]
    h = brand_harness(pos_source(encoding), engine, tmp_path)
    content = (
        "ID;PRENOM;NOM;VILLE;MAIL\n"
        f"C1;{first};{last};{city};f@example.com\n"
        f"C2;Hélène;Dupré;Orléans;hélène at example.com\n"
    ).encode(encoding)
    f = ingest_checked(h, CLIENTS_FILE, content, 2, source="pos")
    assert (f["status"], f["inserted"]) == ("applied", 1)
    # The reject names the brand's own column and keeps the accented value intact.
    assert h.rejects(CLIENTS_FILE) == [(3, "MAIL", "hélène at example.com", "email")]
    (row,) = h.rows("shoppers")
    assert (row["shopper_ref"], row["first_name"], row["last_name"], row["city"]) == ("C1", first, last, city)


def test_brand_format_byte_not_in_its_encoding_fails_naming_line(engine, tmp_path):
    h = brand_harness(pos_source("cp1252"), engine, tmp_path)
    head = "ID;PRENOM;NOM;VILLE;MAIL\nC1;Marie;Curie;Paris;m@example.com\n".encode("cp1252")
    content = head + b"C2;Jo\x81l;Dupr\xe9;Paris;j@example.com\n"  # 0x81 is undefined in cp1252
    f = ingest_checked(h, CLIENTS_FILE, content, 0, source="pos")
    assert f["error"] == f"{CLIENTS_FILE}: line 3: not valid cp1252 text (byte offset {len(head) + 5}: b'\\x81l;D')"


def test_brand_format_missing_mapped_column_fails(engine, tmp_path):
    h = brand_harness(pos_source("cp1252"), engine, tmp_path)
    f = ingest_checked(h, CLIENTS_FILE, "ID;PRENOM;NOM;VILLE\nC1;Marie;Curie;Paris\n".encode("cp1252"), 0, source="pos")
    assert f["error"] == f"{CLIENTS_FILE}: line 1: the header does not fit: missing column MAIL"


# --- accounting gaps --------------------------------------------------------------------------------


def test_superseded_inventory_rows_are_accounted(harness):
    ingest_checked(harness, PRODUCT_FILE, PRODUCT + "P1,Jacket,,,,,TRUE\n", 1)
    content = INVENTORY + "P1,K1,1,ST1,2022-01-01T00:00:00\n" + "P1,K1,2,ST1,2022-01-02T00:00:00\n"
    harness.drop(INVENTORY_FILE, content)
    f = harness.ingest(INVENTORY_FILE)
    assert applied(f) + f["rejected"] + f["superseded"] == f["rows_read"] == 2


def test_rerun_leaves_held_rows_untouched(harness):
    harness.drop(SALE_FILE, SALE + "T1,P1,1,10,EUR,2022-01-17T10:15:18,,SH1,,\n")
    assert harness.ingest(SALE_FILE)["held"] == 1
    before = snapshot(harness.engine)
    harness.ingest(SALE_FILE)
    assert snapshot(harness.engine)["held"] == before["held"]


# --- file names --------------------------------------------------------------------------------------

BRAND = Brand.model_validate(NATIVE)
EXPECTED = "expected <TYPE>_<VERSION>_Acme_<YYYYMMDDHHMM>.csv"

BAD_NAMES = [
    ("unknown_type", "STOCK_V2_Acme_202601010000.csv",
     "STOCK_V2_Acme_202601010000.csv: unknown file TYPE 'STOCK'; expected one of " + ", ".join(
         e.file_type for e in ENTITIES.values())),
    ("wrong_company", "STORE_V2_Globex_202601010000.csv",
     "STORE_V2_Globex_202601010000.csv: company name should be Acme; found Globex"),
    ("company_case_differs", "STORE_V2_ACME_202601010000.csv",
     "STORE_V2_ACME_202601010000.csv: company name should be Acme; found ACME"),
    ("wrong_version", "STORE_V3_Acme_202601010000.csv",
     "STORE_V3_Acme_202601010000.csv: STORE files are version V2; found V3"),
    ("month_13", "STORE_V2_Acme_202613010000.csv",
     "STORE_V2_Acme_202613010000.csv: timestamp 202613010000 is not a valid YYYYMMDDHHMM"),
    ("february_30", "STORE_V2_Acme_202602301200.csv",
     "STORE_V2_Acme_202602301200.csv: timestamp 202602301200 is not a valid YYYYMMDDHHMM"),
    ("hour_24", "STORE_V2_Acme_202601012400.csv",
     "STORE_V2_Acme_202601012400.csv: timestamp 202601012400 is not a valid YYYYMMDDHHMM"),
    ("timestamp_too_short", "STORE_V2_Acme_20260101.csv", f"STORE_V2_Acme_20260101.csv: {EXPECTED}"),
    ("lower_case_type", "store_V2_Acme_202601010000.csv", f"store_V2_Acme_202601010000.csv: {EXPECTED}"),
    ("not_csv", "STORE_V2_Acme_202601010000.txt", f"STORE_V2_Acme_202601010000.txt: {EXPECTED}"),
    ("path_parent", "../STORE_V2_Acme_202601010000.csv",
     "'../STORE_V2_Acme_202601010000.csv': a file name must not contain path separators or '..'"),
    ("path_subfolder", "acme/STORE_V2_Acme_202601010000.csv",
     "'acme/STORE_V2_Acme_202601010000.csv': a file name must not contain path separators or '..'"),
    ("path_backslash", "..\\STORE_V2_Acme_202601010000.csv",
     "'..\\\\STORE_V2_Acme_202601010000.csv': a file name must not contain path separators or '..'"),
    ("dot_dot", "..", "'..': a file name must not contain path separators or '..'"),
    ("control_character", "STORE_V2_Acme_202601010000.csv\n",
     "'STORE_V2_Acme_202601010000.csv\\n': a file name must not contain control characters"),
]


@pytest.mark.parametrize(("name", "message"), [c[1:] for c in BAD_NAMES], ids=[c[0] for c in BAD_NAMES])
def test_bad_file_name(name, message):
    with pytest.raises(FileNameError) as e:
        classify(BRAND, "main", name)
    assert str(e.value) == message


def test_a_misnamed_file_renamed_and_applied_waits_for_nothing(harness):
    """A file named wrongly fails by its name and feeds no entity; once the brand renames it and its
    bytes apply under the right name, the failure is no longer listed (nor retried) for ever."""
    content = STORE + store("S1")
    harness.drop("STORE_V2_ACME_202601010000.csv", content)
    harness.planned()
    with harness.engine.connect() as conn:
        assert [r.name for r in failed(conn, "acme")] == ["STORE_V2_ACME_202601010000.csv"]
    (harness.layout.drop(harness.brand, "main") / "STORE_V2_ACME_202601010000.csv").unlink()
    harness.drop(STORE_FILE, content)
    assert harness.ingest(STORE_FILE)["status"] == "applied"
    with harness.engine.connect() as conn:
        assert failed(conn, "acme") == []


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b.csv", "..", "", "x\\..\\y.csv"])
def test_path_escapes_are_refused_before_touching_disk(tmp_path, name):
    with pytest.raises(FileNameError):
        safe_name(name)
    with pytest.raises(FileNameError):
        Layout(tmp_path).landed("acme", "main", name)
    with pytest.raises(FileNameError):
        Layout(tmp_path).work("acme", "main", "stores", name, "c1", "validated")


# --- the drop folder: files still being written, partial uploads, hidden files -------------------------


def _look(folder, previous):
    seen = look(LocalFolder(folder), previous)
    return seen.ready, seen.seen


def test_file_still_being_written_is_not_ready_until_its_size_is_stable(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    path = folder / STORE_FILE
    path.write_text(STORE)
    ready, seen = _look(folder, {})
    assert ready == []  # first look: nothing to compare with yet
    with path.open("a") as f:
        f.write(store("S1"))
    ready, seen = _look(folder, seen)
    assert ready == []  # it grew since the last look
    ready, seen = _look(folder, seen)
    assert [n for n, _ in ready] == [STORE_FILE]  # same size and mtime twice: ready
    assert ready[0][1] == Snapshot(path.stat().st_size, path.stat().st_mtime_ns)


def test_done_marker_makes_a_file_ready_at_once(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / STORE_FILE).write_text(STORE + store("S1"))
    (folder / f"{STORE_FILE}.done").write_text("")
    ready, seen = _look(folder, {})
    assert [n for n, _ in ready] == [STORE_FILE]
    assert set(seen) == {STORE_FILE}  # the marker itself is never a delivery


@pytest.mark.parametrize("name", [f"{STORE_FILE}.tmp", f"{STORE_FILE}.part", f".{STORE_FILE}", ".DS_Store"])
def test_partial_and_hidden_files_are_ignored(tmp_path, name):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / name).write_text(STORE + store("S1"))
    (folder / f"{name}.done").write_text("")
    first, seen = _look(folder, {})
    second, seen = _look(folder, seen)
    assert (first, second, seen) == ([], [], {})

"""Sample drop files for the two bundled sample brands, so a demo has something real to ingest.

- `acme` sends the platform's own format from one source (`mappings/acme.yaml`).
- `maison` is a luxury house whose POS and ERP each send their own format
  (`mappings/maison.yaml`): the POS writes French columns in cp1252 with `;`, decimal commas,
  day-first dates and Paris time; the ERP writes English columns in UTF-8 with a BOM.

- `nordhaus` is a German retailer onboarded from the exports its systems already write
  (`mappings/nordhaus.yaml`): its ERP's article file carries, on one row, a product, its price
  and its image (`;`, decimal commas, thousands dots, day-first dates); its POS always writes
  the same two file names, overwritten at each export; its warehouse system writes stock with a
  column per store.

Acme and Maison get a full load, then a later delta that updates about 5% of its shoppers and adds
sales. A few sales of the full load name shoppers that only arrive in the delta, so they are
held and then released, and a few rows are deliberately bad so the demo shows rejects. The
files depend on the seed alone (stdlib `random` and `csv`), never on the clock.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import random
import unicodedata
from datetime import date, datetime, timedelta
from pathlib import Path

from bspk_pipelines.model.entities import ENTITIES

SHOPPERS = 200
PRODUCTS = 40
SALE_LINES = 500
DELTA_SALE_LINES = 50
UPDATED_SHOPPERS = 10  # 5% of SHOPPERS
# Shoppers whose first sale is in the full load but who only arrive with the delta.
LATE_SHOPPERS = 3

ACME_FULL, ACME_DELTA = "202601050200", "202601120200"
MAISON_ERP_FULL = "20260105T0200"
MAISON_POS_FULL, MAISON_POS_DELTA = "20260105_0300", "20260112_0300"
# The ERP writes a gzip-compressed report (a title and an export date before the header, a
# total after the rows); the warehouse system a fixed-width file, one column per store.
NORDHAUS_ERP_FILE, NORDHAUS_WMS_FILE = "ARTIKEL_20260105.csv.gz", "BESTAND_20260105_0600.txt"
NORDHAUS_WMS_WIDTHS = {"Artikelnummer": 10, "Stand": 16, "Lager_BER": 4, "Lager_HAM": 4, "Lager_MUC": 4}
# The POS exports under fixed names, overwritten each time.
NORDHAUS_POS_ARTICLES, NORDHAUS_POS_STORES = "pos_artikel.csv", "pos_filialen.csv"
NORDHAUS_STORES = [("BER", "Nordhaus Berlin Mitte", "Berlin"), ("HAM", "Nordhaus Hamburg", "Hamburg"),
                   ("MUC", "Nordhaus München", "München")]
NORDHAUS_LINES = [("Wollmantel", "Mäntel"), ("Strickpullover", "Strick"), ("Lederstiefel", "Schuhe"),
                  ("Schal", "Accessoires"), ("Daunenjacke", "Jacken")]
NORDHAUS_PRODUCTS = 20

FIRST_F = ["Emma", "Olivia", "Ava", "Sophia", "Mia", "Amelia", "Grace", "Chloe", "Zoe", "Lily", "Hannah", "Nora"]
FIRST_M = ["Liam", "Noah", "James", "Lucas", "Henry", "Leo", "Jack", "Owen", "Ethan", "Samuel", "Daniel", "Adam"]
LAST = ["Smith", "Johnson", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Taylor", "Clark", "Walker",
        "Young", "King", "Wright", "Hill", "Green", "Baker", "Nelson", "Carter", "Reed", "Cooper"]
PRENOMS_F = ["Hélène", "Camille", "Léa", "Chloé", "Anaïs", "Clémence", "Élodie", "Zoé", "Inès", "Margaux",
             "Juliette", "Gaëlle", "Solène", "Béatrice"]
PRENOMS_M = ["Jérôme", "François", "Benoît", "Loïc", "Mathéo", "Étienne", "Hugo", "Arthur", "Gaël", "Raphaël",
             "Théo", "Cédric", "Aurélien", "Louis"]
NOMS = ["Lefèvre", "Dubois", "Moreau", "Fontaine", "Mercier", "Rousseau", "Girard", "Lemaître", "Bérard",
        "Chevalier", "Faure", "Gauthier", "Perrin", "Rivière", "Marchand", "Duval", "Leroy", "Barbier",
        "Noël", "Carré"]


def generate_samples(data_dir: Path, seed: int = 7) -> dict[str, list[Path]]:
    """Write both sample brands' drop files under `data_dir/drop/<brand>/<source>/`.

    Returns the written paths per brand, in the order a sender would upload them.
    """
    drop = Path(data_dir) / "drop"
    return {
        # One generator per brand: changing one brand's sample leaves the other's bytes alone.
        "acme": _acme(drop / "acme" / "main", random.Random(f"{seed}:acme")),
        "maison": _maison(drop / "maison", random.Random(f"{seed}:maison")),
        "nordhaus": _nordhaus(drop / "nordhaus", random.Random(f"{seed}:nordhaus")),
    }


def redeliver_samples(data_dir: Path) -> dict[str, list[Path]]:
    """The exports a sample brand writes again under the same names, a day later: Nordhaus's POS
    article file, two names changed at the till. Each is the next delivery under its name."""
    pos = Path(data_dir) / "drop" / "nordhaus" / "pos"
    articles = _nordhaus_pos_articles()
    for row in articles[:2]:
        row["kurzname"] = row["kurzname"] + " (Neu)"
    return {"nordhaus": [_write(pos / NORDHAUS_POS_ARTICLES, list(articles[0]), articles)]}


def _write(path: Path, header: list[str], rows: list[dict], *, encoding: str = "utf-8",
           delimiter: str = ",", newline: str = "\n", before: list[str] = (), after: list[str] = ()) -> Path:
    """A CSV file, with `before` its header and `after` its rows the lines a report writes
    (a title, a total); gzip-compressed where the name ends in .gz."""
    buffer = io.StringIO()
    buffer.writelines(f"{line}{newline}" for line in before)
    writer = csv.DictWriter(buffer, header, delimiter=delimiter, lineterminator=newline, restval="",
                            extrasaction="raise")
    writer.writeheader()
    writer.writerows(rows)
    buffer.writelines(f"{line}{newline}" for line in after)
    data = buffer.getvalue().encode(encoding)
    return _put(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def _put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The drop-folder sensor ignores `.part` names: it never sees a half-written file.
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)
    return path


def _write_fixed(path: Path, widths: dict[str, int], rows: list[dict]) -> Path:
    """A fixed-width file as a warehouse system writes it: each column padded to its width (text
    to the left, numbers to the right), no header, CRLF."""
    lines = ["".join(str(v).rjust(widths[k]) if str(v).isdigit() else str(v).ljust(widths[k]) for k, v in row.items())
             for row in rows]
    return _put(path, "".join(f"{line}\r\n" for line in lines).encode("utf-8"))


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace(" ", "")


def _moment(rng: random.Random, start: date, end: date) -> datetime:
    """A shop-hours moment between `start` and `end` (inclusive)."""
    day = start + timedelta(days=rng.randrange((end - start).days + 1))
    return datetime(day.year, day.month, day.day, rng.randint(10, 18), rng.randrange(60), rng.randrange(60))


def _visits(rng: random.Random, shoppers: list[dict], start: date, end: date, lines: int,
            per_visit: list[int]) -> list[tuple[datetime, dict, int]]:
    """Store visits (moment, shopper, line count) adding up to at least `lines` sale lines."""
    out, total = [], 0
    while total < lines:
        n = rng.choice(per_visit)
        out.append((_moment(rng, start, end), rng.choice(shoppers), n))
        total += n
    return out


def _in_time_order(visits: list[tuple[datetime, dict, int]]) -> list[tuple[datetime, dict, int]]:
    # Tills number tickets as they go: sort the visits before numbering them.
    return sorted(visits, key=lambda v: v[0])


# --- acme: the platform's own format --------------------------------------------------------

ACME_REGIONS = [
    ("NA", "Acme North America", "https://www.acme.example/privacy/us", "privacy-us@acme.example"),
    ("EU", "Acme Europe", "https://www.acme.example/privacy/eu", "privacy-eu@acme.example"),
]
# ref, name, address, city, state, zip, country, currency, phone, region
ACME_STORES = [
    ("NYC01", "Acme Fifth Avenue", "712 Fifth Avenue", "New York", "NY", "10019", "US", "USD", "+12125550100", "NA"),
    ("SFO01", "Acme Union Square", "233 Geary Street", "San Francisco", "CA", "94102", "US", "USD", "+14155550100", "NA"),
    ("CHI01", "Acme Michigan Avenue", "900 N Michigan Avenue", "Chicago", "IL", "60611", "US", "USD", "+13125550100", "NA"),
    ("PAR01", "Acme Saint-Germain", "12 rue du Bac", "Paris", "Île-de-France", "75007", "FR", "EUR", "+33142220100", "EU"),
    ("LYO01", "Acme Bellecour", "5 place Bellecour", "Lyon", "Auvergne-Rhône-Alpes", "69002", "FR", "EUR", "+33478370100", "EU"),
    ("LON01", "Acme Regent Street", "180 Regent Street", "London", "", "W1B 5BT", "GB", "GBP", "+442074940100", "EU"),
]
ACME_STREETS = {
    "US": ["Main Street", "Oak Avenue", "Maple Drive", "Park Place", "Cedar Lane", "Lake Shore Drive"],
    "FR": ["rue de Rivoli", "boulevard Voltaire", "rue Mercière", "avenue Foch", "rue de la Paix"],
    "GB": ["Baker Street", "King's Road", "Oxford Street", "Abbey Road", "Portobello Road"],
}
ACME_ZIPS = {
    "NYC01": lambda rng: f"100{rng.randint(1, 40):02d}", "SFO01": lambda rng: f"941{rng.randint(2, 34):02d}",
    "CHI01": lambda rng: f"606{rng.randint(1, 61):02d}", "PAR01": lambda rng: f"750{rng.randint(1, 20):02d}",
    "LYO01": lambda rng: f"6900{rng.randint(1, 9)}", "LON01": lambda rng: f"W1{rng.choice('BCDFGHJK')} {rng.randint(1, 9)}AA",
}
# name stem, category path, option axis, option values, base price in USD
ACME_LINES = [
    ("Jacket", "Apparel>>Coats", "Size", ["S", "M", "L"], 240),
    ("Shirt", "Apparel>>Shirts", "Size", ["S", "M", "L"], 85),
    ("Chinos", "Apparel>>Trousers", "Size", ["30", "32", "34"], 95),
    ("Sneaker", "Footwear>>Sneakers", "Size", ["41", "42", "43"], 130),
    ("Tote", "Accessories>>Bags", None, [], 150),
]
ACME_MODELS = ["Cristo", "Harbor", "Summit", "Atlas", "Nova", "Delta", "Pioneer", "Ridge"]
ACME_RATES = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79}
ACME_PREFERENCES = ["Tailoring", "Sneakers", "Outerwear", "Gifts", "New arrivals"]


def _acme_name(entity: str) -> str:
    e = ENTITIES[entity]
    return f"{e.file_type}_{e.versions[0]}_Acme"


def _acme_header(entity: str, extras: tuple[str, ...] = ()) -> list[str]:
    """The platform's header for the entity: every column it demands, in spec order, plus `extras`."""
    return [c.header or c.name for c in ENTITIES[entity].columns if c.in_header or c.name in extras]


def _acme_phone(country: str, i: int) -> str:
    # Numbers in fictional ranges, unique per index: a shopper's mobile must be unique.
    return {"US": f"+1212555{i:04d}", "FR": f"+336{(i * 7919) % 10**8:08d}", "GB": f"+447700{900000 + i:06d}"}[country]


def _acme_shopper(rng: random.Random, i: int, associates: list[dict]) -> dict:
    store = rng.choice(ACME_STORES)
    ref, country = store[0], store[6]
    female = rng.random() < 0.6
    first = rng.choice(FIRST_F if female else FIRST_M)
    last = rng.choice(LAST)
    house = rng.randint(1, 240)
    return {
        "shopper_ref": f"AC{100000 + i}",
        "first_name": first,
        "last_name": last,
        "gender": "F" if female else rng.choice(["M", "M", "M", "NB"]),
        "email": f"{_ascii(first)}.{_ascii(last)}{i}@mail.example",
        "title": ("Ms." if female else "Mr.") if rng.random() < 0.7 else "",
        "mobile_phone": _acme_phone(country, i),
        "address": f"{house} {rng.choice(ACME_STREETS[country])}",
        "city": store[3],
        "state": store[4],
        "zip_code": ACME_ZIPS[ref](rng),
        "country_code": country,
        "preferences": ";".join(rng.sample(ACME_PREFERENCES, rng.randint(0, 2))),
        "preferred_contact_channel": rng.choice(["email", "call", "whatsapp", "chat", ""]),
        "nationality": country,
        "languages": {"US": "en", "GB": "en", "FR": rng.choice(["fr", "fr;en"])}[country],
        "email_contact": rng.choice(["TRUE", "TRUE", "FALSE"]),
        "phone_call_contact": rng.choice(["TRUE", "FALSE", ""]),
        "birthday": f"{rng.randint(1950, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "store_ref": ref,
        "sales_associate_ref": rng.choice([a["sales_associate_ref"] for a in associates if a["store_ref"] == ref]),
    }


def _acme(folder: Path, rng: random.Random) -> list[Path]:
    full, delta = ACME_FULL, ACME_DELTA
    region_columns = ["store_region_ref", "name", "privacy_policy_link", "privacy_policy_email"]
    regions = [dict(zip(region_columns, r)) for r in ACME_REGIONS]
    stores = [
        {"store_ref": s[0], "name": s[1], "address": s[2], "city": s[3], "state": s[4], "zip_code": s[5],
         "country_code": s[6], "currency_code": s[7], "phone": s[8], "store_region_ref": s[9], "active": "TRUE"}
        for s in ACME_STORES
    ]
    associates = []
    for s in ACME_STORES:
        for _ in range(3):
            n = len(associates) + 1
            first, last = rng.choice(FIRST_F + FIRST_M), rng.choice(LAST)
            associates.append({
                "sales_associate_ref": f"SA{n:03d}", "first_name": first, "last_name": last,
                "email": f"{_ascii(first)}.{_ascii(last)}@acme.example", "mobile_phone": _acme_phone(s[6], 9000 + n),
                "store_ref": s[0], "active": "FALSE" if n == 5 else "TRUE",
            })

    shoppers = [_acme_shopper(rng, i, associates) for i in range(1, SHOPPERS + LATE_SHOPPERS + 1)]
    on_time, late = shoppers[:SHOPPERS], shoppers[SHOPPERS:]
    # Two bad rows: a phone in local format, not E.164, and "UK", which is not ISO 3166 (GB is).
    bad_phone = _acme_shopper(rng, SHOPPERS + LATE_SHOPPERS + 1, associates) | {"mobile_phone": "(415) 555-0199"}
    bad_country = _acme_shopper(rng, SHOPPERS + LATE_SHOPPERS + 2, associates) | {"country_code": "UK", "nationality": "UK"}
    addresses = []
    for s in on_time + late:
        for kind in ["HOME"] + (["WORK"] if rng.random() < 0.2 else []):
            addresses.append({
                "shopper_ref": s["shopper_ref"], "address_ref": kind, "first_name": s["first_name"],
                "last_name": s["last_name"], "company_name": "Initech" if kind == "WORK" else "",
                "address_1": s["address"] if kind == "HOME" else f"{rng.randint(1, 500)} Commerce Street",
                "city": s["city"], "province": s["state"], "country_code": s["country_code"], "zip": s["zip_code"],
                "is_default": "TRUE" if kind == "HOME" else "FALSE", "active": "TRUE",
            })
    late_addresses = [a for a in addresses if a["shopper_ref"] in {s["shopper_ref"] for s in late}]
    addresses = [a for a in addresses if a not in late_addresses]

    products, variants, prices, inventory, images = [], [], [], [], []
    usd: dict[str, float] = {}
    for n in range(PRODUCTS):
        stem, category, axis, values, base = ACME_LINES[n % len(ACME_LINES)]
        ref = f"AC-{1000 + n}"
        model = ACME_MODELS[n // len(ACME_LINES)]
        products.append({
            "product_ref": ref, "name": f"{model} {stem}",
            "description": f"The {model} {stem.lower()}, from the winter collection.",
            "categories": f"{category}; New arrivals" if n % 7 == 0 else category, "language_code": "en",
            "brand": "Acme", "published": "FALSE" if n in (13, 27) else "TRUE",
        })
        skus = [f"{ref}-{v}" for v in values] or [f"{ref}-OS"]
        for sku, value in zip(skus, values or [None]):
            variants.append({
                "product_ref": ref, "sku": sku, "barcode": f"{rng.randrange(10**12, 10**13)}",
                "option_1_name": axis or "", "option_1_value": value or "", "language_code": "en" if value else "",
                "published": "TRUE",
            })
            for store in ACME_STORES:
                inventory.append({"product_ref": ref, "sku": sku, "quantity": rng.randint(0, 12), "store_ref": store[0],
                                  "at": "2026-01-05T01:30:00"})
        price = usd[ref] = base + rng.choice([0, 5, 10, 15])
        for currency, rate in ACME_RATES.items():
            prices.append({"product_ref": ref, "sku": "*", "price": f"{price * rate:.2f}", "currency_code": currency,
                           "discounted": "FALSE"})
        if n % 10 == 3:
            prices.append({"product_ref": ref, "sku": "*", "price": f"{price * 0.7:.2f}", "currency_code": "USD",
                           "starting_on": "2026-01-02", "ending_on": "2026-01-31", "discounted": "TRUE"})
        for pos in range(1, rng.randint(1, 3) + 1):
            images.append({"product_ref": ref, "skus": skus[0] if pos == 3 else "", "position": pos,
                           "image_url": f"https://cdn.acme.example/products/{ref.lower()}/{pos}.jpg"})
    # Bad row: a scheduled price on a day that does not exist.
    prices.append({"product_ref": "AC-1001", "sku": "*", "price": "79.00", "currency_code": "USD",
                   "starting_on": "2026-02-30", "discounted": "FALSE"})

    catalogue = {p["product_ref"]: [v["sku"] for v in variants if v["product_ref"] == p["product_ref"]] for p in products}
    store_of = {s["store_ref"]: s for s in stores}
    staff = {s[0]: [a["sales_associate_ref"] for a in associates if a["store_ref"] == s[0]] for s in ACME_STORES}
    tickets = iter(range(1, 10**6))

    def ticket(when: datetime, shopper: dict, lines: int) -> list[dict]:
        store = shopper["store_ref"] if rng.random() < 0.8 else rng.choice(ACME_STORES)[0]
        currency = store_of[store]["currency_code"]
        sale_ref, associate = f"T{next(tickets):06d}", rng.choice(staff[store])
        out = []
        for ref in rng.sample(sorted(catalogue), lines):
            out.append({
                "sale_ref": sale_ref, "product_ref": ref, "quantity": 2 if rng.random() < 0.1 else 1,
                "price": f"{usd[ref] * ACME_RATES[currency]:.2f}", "currency_code": currency,
                "created_at": when.isoformat(), "sku": rng.choice(catalogue[ref]), "shopper_ref": shopper["shopper_ref"],
                "store_ref": store, "sales_associate_ref": associate,
            })
        return out

    visits = _visits(rng, on_time, date(2025, 10, 1), date(2026, 1, 4), SALE_LINES, [1, 1, 2, 3])
    # One line each for the late shoppers: held until their SHOPPER rows arrive with the delta.
    visits += [(_moment(rng, date(2025, 12, 20), date(2026, 1, 4)), s, 1) for s in late]
    sales = [line for v in _in_time_order(visits) for line in ticket(*v)]
    # Bad row: a month 13 date-time.
    sales.insert(len(sales) // 2, {**sales[0], "sale_ref": "T999999", "created_at": "2025-13-02T11:20:00"})

    moved = rng.sample(on_time, UPDATED_SHOPPERS)
    updates = [s | {"address": f"{rng.randint(1, 240)} {rng.choice(ACME_STREETS[s['country_code']])}",
                    "email_contact": "FALSE" if s["email_contact"] == "TRUE" else "TRUE"} for s in moved]
    visits = _visits(rng, on_time + late, date(2026, 1, 5), date(2026, 1, 11), DELTA_SALE_LINES, [1, 2])
    delta_sales = [line for v in _in_time_order(visits) for line in ticket(*v)]

    shopper_extras = ("birthday", "store_ref", "sales_associate_ref")
    address_extras = ("is_default", "active")
    files = [
        ("store_regions", full, regions, ()),
        ("stores", full, stores, ()),
        ("sales_associates", full, associates, ()),
        ("shoppers", full, on_time[:100] + [bad_phone] + on_time[100:] + [bad_country], shopper_extras),
        ("shopper_addresses", full, addresses, address_extras),
        ("products", full, products, ()),
        ("product_variants", full, variants, ()),
        ("product_prices", full, prices, ()),
        ("product_inventory", full, inventory, ()),
        ("product_images", full, images, ()),
        ("sales", full, sales, ()),
        ("shoppers", delta, updates + late, shopper_extras),
        ("shopper_addresses", delta, late_addresses, address_extras),
        ("sales", delta, delta_sales, ()),
        *_acme_metafields(on_time, late, products),
        *_acme_special_orders(on_time, products),
    ]
    return [
        _write(folder / f"{_acme_name(entity)}_{ts}.csv", _acme_header(entity, extras), rows)
        for entity, ts, rows, extras in files
    ]


ACME_TIERS = ["gold", "silver", "bronze"]


def _acme_metafields(on_time: list[dict], late: list[dict], products: list[dict]) -> list[tuple]:
    """Acme's own attributes (METAFIELDS): a loyalty tier for 40 shoppers, shoe sizes (a list) and
    a VIP flag for some, care notes for 10 products; one for a late shopper (held until the delta)
    and a bad row (points that are not a whole number). The delta removes one tier."""
    def row(owner_type: str, owner: str, key: str, value: str, value_type: str = "single_line_text_field",
            is_list: str = "false", active: str = "true") -> dict:
        return {"owner_type": owner_type, "owner_ref": owner, "namespace": "custom", "key": key, "is_list": is_list,
                "value_type": value_type, "value": value, "active": active}

    full = [row("Shopper", s["shopper_ref"], "loyalty_tier", ACME_TIERS[i % 3]) for i, s in enumerate(on_time[:40])]
    full += [row("Shopper", s["shopper_ref"], "shoe_sizes", f'["{40 + i % 4}","{41 + i % 4}"]', is_list="true")
             for i, s in enumerate(on_time[:40:5])]
    full += [row("Shopper", s["shopper_ref"], "vip", "true", "boolean") for s in on_time[:40:8]]
    full += [row("Product", p["product_ref"], "care", "Dry clean only.\nStore flat.", "multi_line_text_field")
             for p in products[:10]]
    full += [row("Shopper", late[0]["shopper_ref"], "loyalty_tier", "gold"),
             row("Shopper", on_time[1]["shopper_ref"], "points", "1250.5", "number_integer")]
    delta = [row("Shopper", on_time[2]["shopper_ref"], "loyalty_tier", ACME_TIERS[2], active="false")]
    return [("metafields", ACME_FULL, full, ()), ("metafields", ACME_DELTA, delta, ())]


def _acme_special_orders(on_time: list[dict], products: list[dict]) -> list[tuple]:
    """Six special orders (repairs, custom and back orders) of Acme's shoppers, with their lines and
    events; two orders end on an event that asks for action. Bad rows: an amount without its
    currency, an event number of four digits. The delta's events clear one alert, raise another,
    and resend an event changed (rejected: events are append-only)."""
    kinds = ["repair", "custom", "back_order"]
    orders, lines, events = [], [], []
    for n, s in enumerate(on_time[:6]):
        ref, product = f"SO-{5001 + n}", products[n]
        orders.append({"order_ref": ref, "shopper_id": s["shopper_ref"], "store_id": s["store_ref"],
                       "sales_associate_id": s["sales_associate_ref"], "description": f"{kinds[n % 3]} for {s['first_name']}",
                       "total_amount": f"{150 + 40 * n}.00", "currency_code": "USD",
                       "created_at": f"2025-12-{10 + n:02d}T15:30:00Z", "type": kinds[n % 3], "status": "open"})
        for k in range(1 + n % 2):
            lines.append({"order_ref": ref, "line_item_ref": f"{ref}-{k + 1}", "product_ref": product["product_ref"],
                          "name": f"{product['name']} ({kinds[n % 3].replace('_', ' ')})", "quantity": "1",
                          "price": f"{150 + 40 * n}.00", "currency_code": "USD", "status": "open"})
        steps = [("Received at the workshop", "FALSE"), ("Sent to fabrication", "FALSE"),
                 ("Ready for the client", "TRUE" if n in (1, 4) else "FALSE")]
        events += [{"order_ref": ref, "line_item_ref": f"{ref}-1", "sequence": i + 1, "description": text,
                    "created_at": f"2025-12-{12 + n + i:02d}T10:00:00Z", "reference": "", "action_required": action}
                   for i, (text, action) in enumerate(steps)]
    orders.append({**orders[0], "order_ref": "SO-5099", "currency_code": ""})
    events.append({**events[0], "sequence": 1000})
    delta_events = [
        {**events[5], "sequence": 4, "description": "Collected by the client", "action_required": "FALSE",
         "created_at": "2026-01-06T11:00:00Z"},
        {**events[0], "sequence": 4, "description": "The client asks for a change", "action_required": "TRUE",
         "created_at": "2026-01-07T09:00:00Z"},
        {**events[1], "description": "Sent to the Milan workshop"},
    ]
    return [("special_orders", ACME_FULL, orders, ()), ("special_order_line_items", ACME_FULL, lines, ()),
            ("special_order_events", ACME_FULL, events, ()), ("special_order_events", ACME_DELTA, delta_events, ())]


# --- maison: a POS and an ERP, each in its own format ------------------------------------------

# CODE_BOUTIQUE, NOM_BOUTIQUE, ADRESSE_1, ADRESSE_2, CP, VILLE, PAYS, TEL
MAISON_STORES = [
    ("B01", "Maison Saint-Honoré", "231 rue Saint-Honoré", "", "75001", "PARIS", "fr", "01 42 60 12 34"),
    ("B02", "Maison Montaigne", "42 avenue Montaigne", "", "75008", "PARIS", "FR", "01 47 20 55 10"),
    ("B03", "Maison Lyon", "18 rue Édouard Herriot", "", "69002", "LYON", "FR", "04 78 42 10 20"),
    ("B04", "Maison Cannes", "52 boulevard de la Croisette", "Hôtel Carlton", "06400", "CANNES", "fr", "04 93 38 22 11"),
    ("B05", "Maison Monte-Carlo", "Avenue des Beaux-Arts", "One Monte-Carlo", "98000", "MONACO", "MC", "+377 93 25 12 12"),
]
MAISON_STREETS = ["rue du Faubourg Saint-Honoré", "avenue Victor Hugo", "boulevard Haussmann", "rue de Grenelle",
                  "quai Saint-Antoine", "rue Paradis", "avenue de la Costa", "rue d'Antibes"]
PARIS = [f"750{n:02d}" for n in range(1, 21)]
MAISON_CITIES = {"B01": ("PARIS", PARIS), "B02": ("PARIS", PARIS), "B03": ("LYON", [f"6900{n}" for n in range(1, 10)]),
                 "B04": ("CANNES", ["06400", "06150"]), "B05": ("MONACO", ["98000"])}
# POS label, ERP label, ERP category path, colours, sizes, price in EUR
MAISON_LINES = [
    ("Sac {m} petit modèle", "SAC {M} PM", "Maroquinerie>>Sacs", ["Noir", "Cognac", "Ivoire"], [], 2900),
    ("Portefeuille {m}", "PORTEFEUILLE {M}", "Maroquinerie>>Petite maroquinerie", ["Noir", "Bordeaux"], [], 620),
    ("Carré {m} en soie", "CARRE SOIE {M} 90", "Accessoires>>Foulards", ["Bleu nuit", "Corail"], [], 450),
    ("Ceinture {m}", "CEINTURE {M} 30MM", "Accessoires>>Ceintures", ["Noir", "Gold"], ["85", "90", "95"], 540),
    ("Escarpin {m}", "ESCARPIN {M} 85", "Souliers>>Escarpins", ["Noir"], ["37", "38", "39"], 890),
]
MAISON_MODELS = ["Lune", "Opéra", "Rivoli", "Camélia", "Orsay", "Palais", "Étoile", "Vendôme"]
FR_MOBILE = [f"6{a:02d}" for a in (*range(10, 39), *range(40, 90))] + [f"7{a:02d}" for a in range(50, 90)]


def _fr_mobile(rng: random.Random, i: int) -> str:
    """A valid French mobile as the POS prints it (06 12 34 56 78), unique per index."""
    digits = f"0{rng.choice(FR_MOBILE)}{(i * 7919) % 10**6:06d}"
    return " ".join(digits[k:k + 2] for k in range(0, 10, 2))


def _client(rng: random.Random, i: int) -> dict:
    store = rng.choice(MAISON_STORES)
    civ = rng.choices(["Mme", "M.", "Mx"], weights=[60, 37, 3])[0]
    first = rng.choice(PRENOMS_M if civ == "M." else PRENOMS_F)
    last = rng.choice(NOMS)
    city, zips = MAISON_CITIES[store[0]]
    return {
        "NUM_CLIENT": f"{104500 + i:010d}",
        "CIVILITE": civ,
        # The till pads first names and shouts last names: the mapping trims and title-cases them.
        "PRENOM": first + (" " if rng.random() < 0.3 else ""),
        "NOM": last.upper(),
        "EMAIL": f"{_ascii(first)}.{_ascii(last)}{i}@courriel.example",
        "TEL": _fr_mobile(rng, i),
        "ADRESSE": f"{rng.randint(1, 120)} {rng.choice(MAISON_STREETS)}",
        "CP": rng.choice(zips),
        "VILLE": city,
        "PAYS": "MC" if store[0] == "B05" else rng.choice(["FR", "fr"]),
        "DATE_NAISSANCE": f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1948, 2002)}",
        "LANGUE": rng.choice(["fr", "fr", "fr;en", "en"]),
        "OPTIN_EMAIL": rng.choice(["oui", "oui", "non", "OUI"]),
        "OPTIN_TEL": rng.choice(["oui", "non"]),
        "BOUTIQUE": store[0],
        "VENDEUR": f"V{store[0][1:]}{rng.randint(1, 3):02d}",
        "CA_CUMULE": f"{rng.randint(0, 250000) / 10:.2f}".replace(".", ","),
    }


def _maison(folder: Path, rng: random.Random) -> list[Path]:
    pos, erp = folder / "pos", folder / "erp"
    cp1252 = {"encoding": "cp1252", "delimiter": ";", "newline": "\r\n"}
    stores = [dict(zip(["CODE_BOUTIQUE", "NOM_BOUTIQUE", "ADRESSE_1", "ADRESSE_2", "CP", "VILLE", "PAYS", "TEL"], s))
              | {"ACTIF": "O"} for s in MAISON_STORES]
    vendeurs = []
    for s in MAISON_STORES:
        for n in range(1, 4):
            first, last = rng.choice(PRENOMS_F + PRENOMS_M), rng.choice(NOMS)
            vendeurs.append({
                "CODE_VENDEUR": f"V{s[0][1:]}{n:02d}", "PRENOM": first, "NOM": last.upper(),
                "EMAIL": f"{_ascii(first[0])}{_ascii(last)}@maison.example",
                "PORTABLE": _fr_mobile(rng, 9000 + len(vendeurs)),
                "CODE_BOUTIQUE": s[0], "ACTIF": "N" if s[0] == "B03" and n == 3 else "O",
            })

    clients = [_client(rng, i) for i in range(1, SHOPPERS + LATE_SHOPPERS + 1)]
    on_time, late = clients[:SHOPPERS], clients[SHOPPERS:]
    # Two bad rows: a truncated phone number, and FX (metropolitan France), withdrawn from ISO 3166.
    bad_phone = _client(rng, SHOPPERS + LATE_SHOPPERS + 1) | {"TEL": "01 23"}
    bad_country = _client(rng, SHOPPERS + LATE_SHOPPERS + 2) | {"PAYS": "FX"}

    articles, erp_products, erp_variants, erp_prices, erp_images = [], [], [], [], []
    catalogue: dict[str, list[str]] = {}
    price_of: dict[str, int] = {}
    for n in range(PRODUCTS):
        label, erp_label, category, colours, sizes, base = MAISON_LINES[n % len(MAISON_LINES)]
        model = MAISON_MODELS[n // len(MAISON_LINES)]
        ref = f"ML{2000 + n}"
        articles.append({"REF_ARTICLE": ref, "LIBELLE": label.format(m=model)})
        erp_products.append({
            "item_code": ref, "item_label": erp_label.format(M=_ascii(model).upper()),
            "description": f"{label.format(m=model)}, façonné à la main dans nos ateliers, collection Hiver 2026.",
            "category_path": category + ("; Cadeaux" if n % 4 == 0 else ""), "product_line": "Maison Atelier",
            "status": "INACTIVE" if n == 31 else "ACTIVE",
        })
        catalogue[ref] = []
        for colour in colours:
            for size in sizes or [None]:
                sku = f"{ref}-{_ascii(colour)[:3].upper()}" + (f"-{size}" if size else "")
                catalogue[ref].append(sku)
                erp_variants.append({"item_code": ref, "sku": sku, "ean": f"{rng.randrange(10**12, 10**13)}",
                                     "variant_label": f"{colour} / {size}" if size else colour, "status": "ACTIVE"})
        price_of[ref] = base + rng.choice([0, 50, 100])
        erp_prices.append({"item_code": ref, "sku_scope": "*", "retail_price": f"{price_of[ref]:.2f}",
                           "currency": "EUR", "valid_from": "2026-01-01", "promo": "N"})
        for pos_ in range(1, rng.randint(2, 4) + 1):
            erp_images.append({"item_code": ref, "image_url": f"https://media.maison.example/{ref}/{pos_:02d}.jpg",
                               "sort_order": pos_})
    # Bad row: a price pasted from a French spreadsheet into the ERP's decimal-point export.
    erp_prices.append({"item_code": "ML2003", "sku_scope": "*", "retail_price": "1.250,00", "currency": "EUR",
                       "valid_from": "2026-02-01", "promo": "N"})

    tickets = {s[0]: iter(range(1, 10**6)) for s in MAISON_STORES}

    def ticket(when: datetime, client: dict, lines: int) -> list[dict]:
        store = client["BOUTIQUE"] if rng.random() < 0.85 else rng.choice(MAISON_STORES)[0]
        number, vendeur = f"{next(tickets[store]):06d}", f"V{store[1:]}{rng.randint(1, 3):02d}"
        return [{
            "CODE_BOUTIQUE": store, "NUM_TICKET": number, "DATE_HEURE": when.strftime("%d/%m/%Y %H:%M"),
            "NUM_CLIENT": client["NUM_CLIENT"], "CODE_VENDEUR": vendeur, "REF_ARTICLE": ref,
            "REF_SKU": rng.choice(catalogue[ref]), "QTE": "1", "PRIX_UNITAIRE": f"{price_of[ref]:.2f}".replace(".", ","),
        } for ref in rng.sample(sorted(catalogue), lines)]

    visits = _visits(rng, on_time, date(2025, 10, 1), date(2026, 1, 4), SALE_LINES, [1, 1, 2, 3])
    # One line each for the late clients: held until the delta's CLIENTS file brings them.
    visits += [(_moment(rng, date(2025, 12, 20), date(2026, 1, 4)), c, 1) for c in late]
    sales = [line for v in _in_time_order(visits) for line in ticket(*v)]
    # Bad row: 31 November.
    sales.insert(len(sales) // 2, {**sales[0], "NUM_TICKET": "999999", "DATE_HEURE": "31/11/2025 16:20"})

    moved = rng.sample(on_time, UPDATED_SHOPPERS)
    updates = [c | {"ADRESSE": f"{rng.randint(1, 120)} {rng.choice(MAISON_STREETS)}",
                    "OPTIN_EMAIL": "non" if c["OPTIN_EMAIL"].lower() == "oui" else "oui"} for c in moved]
    visits = _visits(rng, on_time + late, date(2026, 1, 5), date(2026, 1, 11), DELTA_SALE_LINES, [1, 2])
    delta_sales = [line for v in _in_time_order(visits) for line in ticket(*v)]

    client_header = list(on_time[0])
    ticket_header = list(sales[0])
    return [
        _write(erp / f"erp_products_{MAISON_ERP_FULL}.csv", list(erp_products[0]), erp_products, encoding="utf-8-sig"),
        _write(erp / f"erp_variants_{MAISON_ERP_FULL}.csv", list(erp_variants[0]), erp_variants, encoding="utf-8-sig"),
        _write(erp / f"erp_prices_{MAISON_ERP_FULL}.csv", list(erp_prices[0]), erp_prices, encoding="utf-8-sig"),
        _write(erp / f"erp_images_{MAISON_ERP_FULL}.csv", list(erp_images[0]), erp_images, encoding="utf-8-sig"),
        _write(pos / f"BOUTIQUES_{MAISON_POS_FULL}.csv", list(stores[0]), stores, **cp1252),
        _write(pos / f"VENDEURS_{MAISON_POS_FULL}.csv", list(vendeurs[0]), vendeurs, **cp1252),
        _write(pos / f"CLIENTS_{MAISON_POS_FULL}.csv", client_header,
               on_time[:50] + [bad_phone] + on_time[50:150] + [bad_country] + on_time[150:], **cp1252),
        _write(pos / f"ARTICLES_{MAISON_POS_FULL}.csv", list(articles[0]), articles, **cp1252),
        _write(pos / f"TICKETS_{MAISON_POS_FULL}.csv", ticket_header, sales, **cp1252),
        _write(pos / f"CLIENTS_{MAISON_POS_DELTA}.csv", client_header, updates + late, **cp1252),
        _write(pos / f"TICKETS_{MAISON_POS_DELTA}.csv", ticket_header, delta_sales, **cp1252),
    ]


def _german(amount: float) -> str:
    """An amount as a German spreadsheet writes it: 1.250,00."""
    return f"{amount:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".")


def _nordhaus_refs() -> list[str]:
    return [f"NH-{10000 + n}" for n in range(NORDHAUS_PRODUCTS)]


def _nordhaus_pos_articles() -> list[dict]:
    return [{"artikel": ref, "kurzname": f"{NORDHAUS_LINES[n % len(NORDHAUS_LINES)][0]} {n // len(NORDHAUS_LINES) + 1}"}
            for n, ref in enumerate(_nordhaus_refs())]


def _nordhaus(folder: Path, rng: random.Random) -> list[Path]:
    erp, pos, wms = folder / "erp", folder / "pos", folder / "wms"
    articles = []
    for n, ref in enumerate(_nordhaus_refs()):
        line, group = NORDHAUS_LINES[n % len(NORDHAUS_LINES)]
        price = rng.choice([89, 149, 249, 1250, 1490]) + rng.choice([0, 0.5])
        articles.append({
            "Artikelnummer": ref, "Bezeichnung": f"{line} Modell {n // len(NORDHAUS_LINES) + 1}".upper(),
            "Langtext": f"{line} aus unserer Winterkollektion 2026.", "Warengruppe": group,
            "VK_Preis": _german(price), "Waehrung": "EUR", "Gueltig_ab": "01.01.2026",
            # Articles photographed yet, and those not: a blank image URL is no image, not a reject.
            "Bild_URL": f"https://bilder.nordhaus.example/{ref}.jpg" if n % 4 else "",
            "Status": "gesperrt" if n == 7 else "aktiv",
        })
    # Bad row: a price written as text in the ERP.
    articles[11]["VK_Preis"] = "auf Anfrage"
    stores = [{"filiale": code, "name": name, "stadt": city, "waehrung": "EUR"} for code, name, city in NORDHAUS_STORES]
    stock = [{"Artikelnummer": ref, "Stand": "05.01.2026 06:00",
              **{f"Lager_{code}": str(rng.randint(0, 12)) for code, _, _ in NORDHAUS_STORES}} for ref in _nordhaus_refs()]
    pos_articles = _nordhaus_pos_articles()
    # The ERP's report: compressed, a title and an export date before the header, a total after the rows.
    report = {"delimiter": ";", "before": ["Nordhaus GmbH - Artikelstamm", "Exportiert am 05.01.2026 06:00"],
              "after": [f"ENDE;{len(articles)} Artikel"]}
    return [
        _write(erp / NORDHAUS_ERP_FILE, list(articles[0]), articles, **report),
        _write(pos / NORDHAUS_POS_STORES, list(stores[0]), stores),
        _write(pos / NORDHAUS_POS_ARTICLES, list(pos_articles[0]), pos_articles),
        _write_fixed(wms / NORDHAUS_WMS_FILE, NORDHAUS_WMS_WIDTHS, stock),
    ]

"""A Shopify GraphQL Admin API (2026-01) stand-in on 127.0.0.1, for the Shopify connector's tests,
its benchmark and the demo: a real HTTP server that parses, validates and executes queries with
graphql-core against `shopify_schema.graphql` (a faithful subset of Shopify's own schema), over an
in-memory store the test drives.

Shopify behaviours it models (sections of /work/shared/reference/shopify.md):

* Endpoint and auth (§1.1): `POST /admin/api/2026-01/graphql.json` with `X-Shopify-Access-Token`;
  a wrong or revoked token gets HTTP 401 and Shopify's `{"errors": "[API] Invalid API key ..."}`.
  Another version in the path gets 404 (Shopify itself falls forward to its oldest supported
  version, §1.2; a stand-in serving one version makes a mistyped version loud instead).
* Global IDs (`gid://shopify/Customer/<n>`), UnsignedInt64 as strings, MoneyV2/MoneyBag (§1.1).
* Connection pagination (§1.3): `first` at most 250, opaque base64 cursors holding the sort value
  and id, `nodes` and `edges { cursor node }`, `pageInfo`. A cursor is a position in (sort value,
  id) order, so ties on `updatedAt` never lose or double a node at a page boundary.
* Search syntax (§1.4): `updated_at` / `created_at` / `id` with `:`, `:>`, `:>=`, `:<`, `:<=`,
  joined by spaces or AND; quoted timestamps compare to the second, unquoted ones by date only
  (as Shopify staff describe); terms it does not know are ignored, as Shopify ignores them.
* Sort keys (§1.5): ID, CREATED_AT, UPDATED_AT (and PROCESSED_AT for orders, NAME for locations)
  with `reverse`; each root's default sort key is Shopify's.
* Inactive locations are left out unless `includeInactive: true` (Shopify's default).
* Access scopes: a root needs its `read_*` scope (ACCESS_DENIED otherwise); orders created more
  than 60 days before `now` are invisible without `read_all_orders` (§0, §1.6).
* Cost and throttling (§2): requested cost from the query's AST (object 1, scalar and enum 0,
  connection 2 + first x node cost, interface = the costliest fragment, mutation 10); over 1,000
  is refused with MAX_COST_EXCEEDED; a leaky bucket (1,000 points, 50/s by default) must hold the
  requested cost, else HTTP 200 with a THROTTLED error; the unused part is refunded, so
  `actualQueryCost` counts the objects actually returned.
* Bulk operations (§3): `bulkOperationRunQuery` validates the inner query (at most 5 connections,
  nesting at most 2 deep, connections at the top), allows 5 at once (2026-01), and writes JSONL
  in a background thread: one node per line, nested connection children as lines of their own
  with `__parentId` (written after the parent's next sibling: Shopify does not promise that a
  child follows its parent), nested objects inline. Status via `node(id:)` or
  `bulkOperation(id:)`; FAILED with `partialDataUrl`, EXPIRED with no `url`, on demand.
* Webhooks (§5): REST-shaped payloads signed with base64 HMAC-SHA256 and Shopify's headers.

Everything a test needs to change is an attribute or method of `ShopifyStandin`.
"""

from __future__ import annotations

import base64
import bisect
import functools
import hashlib
import hmac
import itertools
import json
import random
import re
import shutil
import tempfile
import threading
import time
import unicodedata
import uuid
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import graphql
import requests
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    OperationType,
    SelectionSetNode,
    get_named_type,
    is_abstract_type,
    is_composite_type,
)
from graphql.execution.values import get_argument_values

API_VERSION = "2026-01"
SCHEMA = graphql.build_schema((Path(__file__).with_name("shopify_schema.graphql")).read_text())
MAX_PAGE = 250
MAX_COST = 1000
MUTATION_COST = 10
ORDER_WINDOW = 60 * 86400  # seconds of order history visible without read_all_orders
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
DEFAULT_SCOPES = ("read_customers", "read_products", "read_orders", "read_locations")
# Root connection -> (GID type, the access scope reading it needs).
ROOTS = {"customers": ("Customer", "read_customers"), "products": ("Product", "read_products"),
         "orders": ("Order", "read_orders"), "locations": ("Location", "read_locations")}
ISO = "%Y-%m-%dT%H:%M:%SZ"
JSONL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # one encoder, not one a line
ID_BASE = 1_000_000_000_000  # Shopify's numeric ids are 13 digits today: too big for an int32


def iso(ts: int) -> str:
    """Epoch seconds as Shopify writes a DateTime: UTC, second precision, `Z`."""
    return time.strftime(ISO, time.gmtime(ts))


def epoch(value: str | datetime) -> int:
    """An ISO-8601 string (any offset, `Z` allowed) or an aware datetime, in epoch seconds."""
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def gid(typename: str, n: int) -> str:
    return f"gid://shopify/{typename}/{n}"


@functools.lru_cache(maxsize=1 << 16)  # bulk lines refer to the same products and variants again and again
def parse_gid(value: str) -> tuple[str, int]:
    """(type, number) of a GID; a GraphQL error (as Shopify answers) for anything else."""
    prefix, _, rest = (value or "").partition("gid://shopify/")
    typename, _, number = rest.partition("/")
    if prefix or not typename.isalnum() or not number.isdigit():
        raise GraphQLError(f"Invalid global id '{value}'", extensions={"code": "argumentLiteralsIncompatible"})
    return typename, int(number)


# --- search syntax and cursors ---------------------------------------------------------------

@dataclass
class Search:
    """The terms of a `query:` argument the stand-in applies: inclusive/exclusive bounds on
    `updated_at`, `created_at` and `id`. Shopify ignores terms it does not know; so does this."""

    bounds: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    TERM = re.compile(r"""(\w+):(>=|<=|>|<)?('[^']*'|"[^"]*"|\S+)""")

    @classmethod
    def parse(cls, text: str | None) -> Search:
        search = cls()
        for name, op, raw in cls.TERM.findall(text or ""):
            if name not in ("updated_at", "created_at", "id"):
                continue
            try:
                if name == "id":
                    value = int(raw.strip("'\""))
                elif raw[0] in "'\"":
                    value = epoch(raw[1:-1].replace("Z", "+00:00"))
                else:  # unquoted: Shopify compares the date only
                    value = epoch(raw[:10] + "T00:00:00+00:00")
            except ValueError:
                continue
            search.bounds.setdefault(name, []).append((op or "=", value))
        return search

    def admits(self, n: int, created: int, updated: int) -> bool:
        if not self.bounds:
            return True
        values = {"id": n, "created_at": created, "updated_at": updated}
        return all(_compare(values[name], op, v) for name, terms in self.bounds.items() for op, v in terms)

    def lowest_updated(self) -> int | None:
        """The smallest updated_at a match can have (to start an UPDATED_AT scan there)."""
        lows = [v for op, v in self.bounds.get("updated_at", ()) if op in (">=", ">", "=")]
        return max(lows) if lows else None


def _compare(value: int, op: str, bound: int) -> bool:
    return {"=": value == bound, ">": value > bound, ">=": value >= bound,
            "<": value < bound, "<=": value <= bound}[op]


def encode_cursor(value: Any, n: int) -> str:
    return base64.b64encode(json.dumps({"last_id": n, "last_value": value}).encode()).decode()


def decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        data = json.loads(base64.b64decode(cursor, validate=True))
        return data["last_value"], int(data["last_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise GraphQLError("Invalid cursor for current pagination sort.",
                           extensions={"code": "BAD_REQUEST"}) from exc


# --- the store -------------------------------------------------------------------------------

@dataclass
class _Block:
    """`count` generated rows with ids from `first`: each row is rebuilt on demand from the seed
    (`make(index)`), so 200,000 customers cost two arrays of timestamps, not 200,000 dicts."""

    first: int
    count: int
    make: Callable[[int], dict]
    created: array
    updated: array
    variant_base: int = 0  # products: the first of the VARIANTS ids reserved per product


class _Table:
    """One root type's rows: explicit ones (added, or generated then updated) as dicts in
    GraphQL's shape, generated ones as blocks, and per sort key a sorted (value, id) list that
    is rebuilt after a change. Rows are replaced, never changed in place, so a reader holding
    one sees a consistent object while another thread writes."""

    CACHE = 10_000  # generated rows kept built: line items look their product up again and again

    def __init__(self, typename: str):
        self.typename = typename
        self.rows: dict[int, dict] = {}
        self.stamps: dict[int, tuple[int, int]] = {}  # explicit rows: (createdAt, updatedAt)
        self.blocks: list[_Block] = []
        self.deleted: set[int] = set()
        self._orders: dict[str, list[tuple[Any, int]]] = {}
        self._cache: dict[int, dict] = {}

    def _block(self, n: int) -> _Block | None:
        for block in self.blocks:
            if block.first <= n < block.first + block.count:
                return block
        return None

    def exists(self, n: int) -> bool:
        return n not in self.deleted and (n in self.rows or self._block(n) is not None)

    def get(self, n: int) -> dict | None:
        if n in self.deleted:
            return None
        if n in self.rows:
            return self.rows[n]
        if (row := self._cache.get(n)) is not None:
            return row
        block = self._block(n)
        if block is None:
            return None
        if len(self._cache) >= self.CACHE:
            self._cache.clear()
        row = self._cache[n] = block.make(n - block.first)
        return row

    def stamp(self, n: int) -> tuple[int, int]:
        if n in self.stamps:
            return self.stamps[n]
        block = self._block(n)
        return block.created[n - block.first], block.updated[n - block.first]

    def put(self, n: int, row: dict) -> None:
        self.rows[n] = row
        self.stamps[n] = (epoch(row["createdAt"]), epoch(row["updatedAt"]))
        self._orders.clear()

    def delete(self, n: int) -> None:
        self.deleted.add(n)
        self.rows.pop(n, None)
        self._orders.clear()

    def add_block(self, block: _Block) -> None:
        self.blocks.append(block)
        self._orders.clear()

    def ids(self) -> Iterator[int]:
        """Live ids in ascending order."""
        generated = (b.first + i for b in self.blocks for i in range(b.count))
        for n in sorted(itertools.chain(self.rows, (n for n in generated if n not in self.rows))):
            if n not in self.deleted:
                yield n

    def ordered(self, key: str) -> list[tuple[Any, int]]:
        """Live rows as (sort value, id), ascending: ties on the value are broken by id."""
        if key not in self._orders:
            value: Callable[[int], Any]
            if key == "ID":
                value = lambda n: n  # noqa: E731
            elif key in ("CREATED_AT", "UPDATED_AT"):
                i = 0 if key == "CREATED_AT" else 1
                value = lambda n: self.stamp(n)[i]  # noqa: E731
            elif key == "PROCESSED_AT":
                value = lambda n: epoch(self.get(n)["processedAt"])  # noqa: E731
            else:  # NAME
                value = lambda n: self.get(n)["name"]  # noqa: E731
            self._orders[key] = sorted((value(n), n) for n in self.ids())
        return self._orders[key]


class Store:
    """The shop's data, thread-safe: tables of customers, products, orders and locations, plus
    the id counters every GID type draws from (so ids only ever increase)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tables = {t: _Table(t) for t, _ in ROOTS.values()}
        self._next: dict[str, int] = {}
        self.variant_product: dict[int, int] = {}  # explicit products' variant id -> product id

    def next_id(self, typename: str, count: int = 1) -> int:
        """The first of `count` fresh ids of `typename`."""
        with self.lock:
            n = self._next.get(typename, ID_BASE + 1)
            self._next[typename] = n + count
            return n

    def table(self, typename: str) -> _Table:
        return self.tables[typename]

    def lookup(self, value: str) -> dict | None:
        """The row behind a GID (root types and product variants), or None."""
        typename, n = parse_gid(value)
        with self.lock:
            if typename in self.tables:
                return self.tables[typename].get(n)
            if typename == "ProductVariant":
                product = self._variant_parent(n)
                return next((v for v in product["variants"] if v["id"] == value), None) if product else None
        return None

    def exists(self, value: str) -> bool:
        typename, n = parse_gid(value)
        with self.lock:
            if typename in self.tables:
                return self.tables[typename].exists(n)
            return typename == "ProductVariant" and self._variant_parent(n) is not None

    def _variant_parent(self, n: int) -> dict | None:
        products = self.tables["Product"]
        if n in self.variant_product:
            return products.get(self.variant_product[n])
        for block in products.blocks:
            if block.variant_base <= n < block.variant_base + block.count * _Generator.VARIANTS:
                return products.get(block.first + (n - block.variant_base) // _Generator.VARIANTS)
        return None

    def select(self, typename: str, key: str, reverse: bool, after: str | None, search: Search,
               admit: Callable[[int, _Table], bool]) -> Iterator[tuple[Any, int]]:
        """Ids (with their sort value) in (value, id) order after the cursor that match the
        search and `admit(id, table)`, lazily: a page stops reading where it fills."""
        with self.lock:
            table = self.tables[typename]
            order = table.ordered(key)
        if reverse:
            stop = _position(order, after, bisect.bisect_left) if after else len(order)
            positions: Iterator[int] = iter(range(stop - 1, -1, -1))
        else:
            start = _position(order, after, bisect.bisect_right) if after else 0
            if key == "UPDATED_AT" and (low := search.lowest_updated()) is not None:
                start = max(start, bisect.bisect_left(order, (low, 0)))
            positions = iter(range(start, len(order)))
        for i in positions:
            value, n = order[i]
            with self.lock:
                if not table.exists(n):
                    continue
                created, updated = table.stamp(n)
                if search.admits(n, created, updated) and admit(n, table):
                    yield value, n


def _position(order: list[tuple[Any, int]], cursor: str, search: Callable) -> int:
    try:
        return search(order, tuple(decode_cursor(cursor)))
    except TypeError as exc:  # a cursor of another sort key
        raise GraphQLError("Invalid cursor for current pagination sort.", extensions={"code": "BAD_REQUEST"}) from exc


# --- generated and added rows ------------------------------------------------------------------

FIRST_NAMES = ("Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Ava", "Elijah", "Sophia", "Lucas",
               "Isabella", "Mateo", "Mia", "Chloé", "Léa", "Hugo", "Lukas", "Mila", "Jack", "Grace",
               "Aiko", "Priya", "Mohammed", "Sofía", "Zoë", "Björn", "Siobhán", "Kwame", "Ana", "Yuki")
LAST_NAMES = ("Smith", "Johnson", "Williams", "Brown", "Garcia", "Martin", "Bernard", "Dubois", "Müller",
              "Schmidt", "Taylor", "Wilson", "O'Brien", "Nguyen", "Kim", "Patel", "Rossi", "López",
              "Anderson", "Thompson", "Okafor", "Yamamoto", "Novak", "Jensen")
# country, province, provinceCode, city, zip, locale, phone prefix, digits after it
PLACES = (("US", "New York", "NY", "New York", "10001", "en", "+1212", 7),
          ("US", "California", "CA", "San Francisco", "94103", "en", "+1415", 7),
          ("US", "Illinois", "IL", "Chicago", "60601", "en", "+1312", 7),
          ("CA", "Ontario", "ON", "Toronto", "M5V 2T6", "en-CA", "+1416", 7),
          ("GB", None, None, "London", "SW1A 1AA", "en-GB", "+447400", 6),
          ("FR", None, None, "Paris", "75003", "fr", "+33612", 6),
          ("DE", None, None, "Berlin", "10115", "de", "+49151", 8),
          ("AU", "New South Wales", "NSW", "Sydney", "2000", "en-AU", "+61412", 6))
STREETS = ("High Street", "Main St", "Rue de Rivoli", "Friedrichstraße", "George St", "Queen St W", "Market St")
TAGS = ("vip", "newsletter", "wholesale", "repeat", "loyalty-gold", "loyalty-silver", "staff")
# Weighted by repetition: 40% subscribed, 40% not, 15% unsubscribed, 5% pending.
EMAIL_STATES = ("SUBSCRIBED",) * 8 + ("NOT_SUBSCRIBED",) * 8 + ("UNSUBSCRIBED",) * 3 + ("PENDING",)
PRODUCT_STATES = ("ACTIVE",) * 8 + ("DRAFT", "ARCHIVED")
MATERIALS = ("Linen", "Merino", "Organic Cotton", "Cashmere", "Silk", "Recycled", "Heritage", "Classic")
GARMENTS = (("Shirt", "Tops"), ("Sweater", "Knitwear"), ("Trousers", "Bottoms"), ("Dress", "Dresses"),
            ("Scarf", "Accessories"), ("Tote Bag", "Bags"), ("Sneaker", "Shoes"), ("Jacket", "Outerwear"))
VENDORS = ("Maison Lumière", "Nordic Thread", "Atelier Verde", "Harbor & Pine")
SIZES = {"Shoes": ("38", "40", "42", "44"), "Accessories": (), "Bags": ()}
PRICES = ("19.00", "29.99", "49.00", "79.00", "129.00", "249.00")
YEAR = 365 * 86400


class _Dice:
    """A small deterministic generator (a 64-bit LCG) for rebuilding generated rows: rows are
    rebuilt on every read, and seeding `random.Random` costs more than building the row."""

    __slots__ = ("state",)
    MASK = (1 << 64) - 1

    def __init__(self, seed: int):
        self.state = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & self.MASK
        self.bits()

    def bits(self) -> int:
        """48 pseudo-random bits."""
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & self.MASK
        return self.state >> 16

    def below(self, n: int) -> int:
        return self.bits() % n

    def chance(self, p: float) -> bool:
        return self.bits() < p * (1 << 48)

    def choice(self, seq: Any) -> Any:
        return seq[self.bits() % len(seq)]

    def digits(self, n: int) -> str:
        return str(self.bits() % 10**n).zfill(n)

    def subset(self, seq: tuple, k: int) -> list:
        return sorted({self.choice(seq) for _ in range(k)})


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def _ascii(text: str) -> str:
    return re.sub(r"[^a-z]", "", _fold(text))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", _fold(text)).strip("-") or "product"


def customer_row(n: int, fields: dict, created: str, updated: str) -> dict:
    """A Customer in GraphQL's shape from GraphQL-named fields; `email=` and `phone=` are
    shorthands for `defaultEmailAddress` / `defaultPhoneNumber` (marketing state from the
    matching consent, if given)."""
    fields = dict(fields)
    if "email" in fields:
        email = fields.pop("email")
        state = (fields.get("emailMarketingConsent") or {}).get("marketingState", "NOT_SUBSCRIBED")
        fields["defaultEmailAddress"] = {"emailAddress": email, "marketingState": state} if email else None
    if "phone" in fields:
        phone = fields.pop("phone")
        state = (fields.get("smsMarketingConsent") or {}).get("marketingState", "NOT_SUBSCRIBED")
        fields["defaultPhoneNumber"] = {"phoneNumber": phone, "marketingState": state} if phone else None
    row = {"__typename": "Customer", "id": gid("Customer", n), "firstName": None, "lastName": None,
           "locale": "en", "note": None, "tags": [], "createdAt": created, "updatedAt": updated,
           "defaultEmailAddress": None, "defaultPhoneNumber": None, "emailMarketingConsent": None,
           "smsMarketingConsent": None, "defaultAddress": None}
    row.update(fields)
    return row


class _Generator:
    """Realistic rows as pure functions of (seed, index), so `generate` stores no rows at all."""

    VARIANTS = 4  # ids reserved per generated product
    MEDIA = 3

    def __init__(self, seed: int, now: int, currency: str):
        self.seed, self.now, self.currency = seed, now, currency

    def _rng(self, kind: int, i: int) -> _Dice:
        return _Dice((self.seed * 8 + kind) * 10_000_019 + i)

    def stamps(self, count: int, kind: int, span: int, settle: int | None) -> tuple[array, array]:
        """createdAt spread over `span` seconds before now; updatedAt after it (within `settle`
        seconds, or any time up to now)."""
        rng = random.Random(self.seed * 8 + kind)
        created, updated = array("q"), array("q")
        for _ in range(count):
            c = self.now - rng.randrange(span)
            created.append(c)
            updated.append(min(self.now, c + rng.randrange((settle or self.now - c) + 1)))
        return created, updated

    def customers(self, first: int, count: int, address_base: int) -> _Block:
        created, updated = self.stamps(count, 0, 6 * YEAR, None)

        def make(i: int) -> dict:
            rng = self._rng(0, i)
            first_name, last_name = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            country, province, code, city, zip_, locale, prefix, digits = rng.choice(PLACES)
            phone = None
            if rng.chance(0.7):  # NANP numbers: the exchange starts 2-9
                phone = prefix + (str(201 + rng.below(788)) + rng.digits(4) if prefix.startswith("+1") else rng.digits(digits))
            email = None
            if rng.chance(0.95):
                email = f"{_ascii(first_name)}.{_ascii(last_name)}{first + i - ID_BASE}@example.{rng.choice(('com', 'org', 'net'))}"
            state = rng.choice(EMAIL_STATES)
            sms = rng.choice(("SUBSCRIBED", "NOT_SUBSCRIBED", "UNSUBSCRIBED"))
            created_at = iso(created[i])
            return customer_row(first + i, {
                "firstName": first_name, "lastName": last_name, "locale": locale,
                "note": "Prefers email contact" if rng.chance(0.05) else None,
                "tags": rng.subset(TAGS, rng.choice((0, 0, 1, 1, 2))),
                "defaultEmailAddress": {"emailAddress": email, "marketingState": state} if email else None,
                "defaultPhoneNumber": {"phoneNumber": phone, "marketingState": sms} if phone else None,
                "emailMarketingConsent": {"marketingState": state, "marketingOptInLevel": "SINGLE_OPT_IN",
                                          "consentUpdatedAt": created_at if state == "SUBSCRIBED" else None}
                if email else None,
                "smsMarketingConsent": {"marketingState": sms, "marketingOptInLevel": "SINGLE_OPT_IN",
                                        "consentUpdatedAt": created_at if sms == "SUBSCRIBED" else None}
                if phone else None,
                "defaultAddress": None if rng.chance(0.1) else {
                    "id": gid("MailingAddress", address_base + i), "firstName": first_name, "lastName": last_name,
                    "address1": f"{1 + rng.below(250)} {rng.choice(STREETS)}",
                    "address2": f"Apt {1 + rng.below(40)}" if rng.chance(0.2) else None, "city": city,
                    "province": province, "provinceCode": code, "zip": zip_, "country": country,
                    "countryCodeV2": country, "phone": phone},
            }, created_at, iso(updated[i]))
        return _Block(first, count, make, created, updated)

    def products(self, first: int, count: int, variant_base: int, media_base: int) -> _Block:
        created, updated = self.stamps(count, 1, 3 * YEAR, None)

        def make(i: int) -> dict:
            rng = self._rng(1, i)
            n = first + i
            garment, product_type = rng.choice(GARMENTS)
            title = f"{rng.choice(MATERIALS)} {garment}"
            handle = f"{_slug(title)}-{n}"
            sizes = SIZES.get(product_type, ("XS", "S", "M", "L"))[: 1 + rng.below(self.VARIANTS)]
            price = rng.choice(PRICES)
            variants = [{
                "__typename": "ProductVariant", "id": gid("ProductVariant", variant_base + i * self.VARIANTS + j),
                "title": size or "Default Title", "sku": f"{product_type[:3].upper()}-{n % 100000:05d}-{size or 'OS'}",
                "barcode": "4" + rng.digits(12) if rng.chance(0.8) else None,
                "price": price, "compareAtPrice": f"{float(price) * 1.25:.2f}" if rng.chance(0.2) else None,
                "selectedOptions": [{"name": "Size", "value": size} if size else {"name": "Title", "value": "Default Title"}],
            } for j, size in enumerate(sizes or (None,))]
            media = [{
                "__typename": "MediaImage", "id": gid("MediaImage", media_base + i * self.MEDIA + j),
                "alt": f"{title}, view {j + 1}", "mediaContentType": "IMAGE",
                "image": {"id": gid("ImageSource", media_base + i * self.MEDIA + j),
                          "url": f"https://cdn.shopify.com/s/files/1/0000/0001/files/{handle}-{j + 1}.jpg",
                          "altText": f"{title}, view {j + 1}", "width": 2048, "height": 2048},
            } for j in range(rng.below(self.MEDIA + 1))]
            return {"__typename": "Product", "id": gid("Product", n), "title": title, "handle": handle,
                    "status": rng.choice(PRODUCT_STATES), "vendor": rng.choice(VENDORS), "productType": product_type,
                    "tags": rng.subset(("new", "bestseller", "sustainable", "sale"), rng.below(3)),
                    "descriptionHtml": f"<p>{title} by our atelier.</p>", "createdAt": iso(created[i]),
                    "updatedAt": iso(updated[i]), "variants": variants, "media": media}
        return _Block(first, count, make, created, updated, variant_base)

    def orders(self, first: int, count: int, lines: int, line_base: int, number: int,
               customers: _Block | None, products: _Table, product_block: _Block | None) -> _Block:
        created, updated = self.stamps(count, 2, 4 * YEAR, 30 * 86400)

        def make(i: int) -> dict:
            rng = self._rng(2, i)
            cancelled = rng.chance(0.05)
            refunded = not cancelled and rng.chance(0.05)
            customer = (gid("Customer", customers.first + rng.below(customers.count))
                        if customers and rng.chance(0.9) else None)
            items = []
            for j in range(lines):
                product = (products.get(product_block.first + rng.below(product_block.count))
                           if product_block else None)
                variant = rng.choice(product["variants"]) if product else None
                quantity = rng.choice((1, 1, 1, 2, 3))
                price = variant["price"] if variant else rng.choice(PRICES)
                money = {"amount": price, "currencyCode": self.currency}
                items.append({
                    "__typename": "LineItem", "id": gid("LineItem", line_base + i * lines + j),
                    "name": f"{product['title']} - {variant['title']}" if product else "Custom item",
                    "sku": variant["sku"] if variant else None, "quantity": quantity,
                    "currentQuantity": 0 if cancelled else quantity - (refunded and j == 0),
                    "originalUnitPriceSet": {"shopMoney": money, "presentmentMoney": money},
                    "product": product["id"] if product else None, "variant": variant["id"] if variant else None})
            return {"__typename": "Order", "id": gid("Order", first + i), "name": f"#{number + i}",
                    "test": rng.chance(0.02), "createdAt": iso(created[i]), "processedAt": iso(created[i]),
                    "updatedAt": iso(updated[i]), "cancelledAt": iso(updated[i]) if cancelled else None,
                    "customer": customer, "lineItems": items}
        return _Block(first, count, make, created, updated)

    def location(self, n: int, i: int) -> dict:
        rng = self._rng(3, i)
        country, province, code, city, zip_, _, prefix, digits = PLACES[i % len(PLACES)]
        name = f"{city} Flagship" if i < len(PLACES) else f"{city} Store {i}"
        return {"__typename": "Location", "id": gid("Location", n), "name": name,
                "isActive": i == 0 or rng.chance(0.9),
                "address": {"address1": f"{1 + rng.below(250)} {rng.choice(STREETS)}", "address2": None,
                            "city": city, "province": province, "provinceCode": code, "zip": zip_,
                            "country": country, "countryCode": country,
                            "phone": prefix + (str(201 + rng.below(788)) + rng.digits(4) if prefix.startswith("+1") else rng.digits(digits))},
                "createdAt": iso(self.now - YEAR), "updatedAt": iso(self.now - YEAR)}


# --- cost ----------------------------------------------------------------------------------------

def is_connection(named: Any) -> bool:
    return getattr(named, "name", "").endswith("Connection")


class Cost:
    """Shopify's requested cost of an operation, from its AST: an object field 1, a scalar or
    enum 0, a connection 2 + first x the cost of one node (+ its pageInfo), the costliest of an
    interface's fragments, a mutation 10. Also enforces the arguments a cost needs: `first` (or
    `last`) on every connection, at most 250."""

    def __init__(self, schema: GraphQLSchema, document: graphql.DocumentNode, variables: dict):
        self.schema, self.variables = schema, variables
        self.fragments = {d.name.value: d for d in document.definitions
                          if isinstance(d, graphql.FragmentDefinitionNode)}
        self.errors: list[GraphQLError] = []

    def operation(self, op: graphql.OperationDefinitionNode) -> int:
        if op.operation == OperationType.MUTATION:
            return MUTATION_COST
        return self.selection(op.selection_set, self.schema.query_type)

    def selection(self, selection_set: SelectionSetNode | None, parent: Any) -> int:
        if selection_set is None:
            return 0
        total, by_type = 0, {}
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                total += self.field(sel, parent)
            else:
                node = self.fragments[sel.name.value] if isinstance(sel, FragmentSpreadNode) else sel
                on = self.schema.get_type(node.type_condition.name.value) if node.type_condition else parent
                cost = self.selection(node.selection_set, on)
                if on is parent:
                    total += cost
                else:
                    by_type[on.name] = by_type.get(on.name, 0) + cost
        return total + max(by_type.values(), default=0)

    def field(self, node: FieldNode, parent: Any) -> int:
        name = node.name.value
        if name.startswith("__"):
            return 0
        definition = parent.fields[name]
        named = get_named_type(definition.type)
        if not is_composite_type(named):
            return 0
        if not is_connection(named):
            return 1 + self.selection(node.selection_set, named)
        first = get_argument_values(definition, node, self.variables).get("first")
        if first is None:
            self.errors.append(GraphQLError("you must provide one of first or last", node))
            return 0
        if first > MAX_PAGE:
            self.errors.append(GraphQLError(f"first cannot exceed {MAX_PAGE}", node))
        per_node, other = 0, 0
        for sel in node.selection_set.selections if node.selection_set else ():
            if isinstance(sel, FieldNode) and sel.name.value == "nodes":
                per_node += 1 + self.selection(sel.selection_set, get_named_type(named.fields["nodes"].type))
            elif isinstance(sel, FieldNode) and sel.name.value == "edges":
                edge = get_named_type(named.fields["edges"].type)
                per_node += self.selection(sel.selection_set, edge)  # the edge is free; its node costs 1+
            else:
                other += self.selection(SelectionSetNode(selections=(sel,)), named)
        return 2 + first * per_node + other


class Bucket:
    """Shopify's leaky bucket of query points: `maximum_available` points, refilled at
    `restore_rate` per second of `monotonic` time. Settable while the server runs."""

    def __init__(self, maximum_available: float, restore_rate: float, monotonic: Callable[[], float]):
        self.maximum_available, self.restore_rate, self.monotonic = maximum_available, restore_rate, monotonic
        self._available, self._at = maximum_available, monotonic()
        self._lock = threading.Lock()

    def _level(self) -> float:
        now = self.monotonic()
        self._available = min(self.maximum_available, self._available + (now - self._at) * self.restore_rate)
        self._at = now
        return self._available

    def take(self, cost: int) -> bool:
        """Withdraw `cost` points if the bucket holds them."""
        with self._lock:
            if self._level() < cost:
                return False
            self._available -= cost
            return True

    def fill(self) -> None:
        """Full now, as after a quiet while (after `monotonic` is replaced, say)."""
        with self._lock:
            self._available, self._at = self.maximum_available, self.monotonic()

    def refund(self, points: int) -> None:
        with self._lock:
            self._available = min(self.maximum_available, self._level() + points)

    def status(self) -> dict:
        with self._lock:
            return {"maximumAvailable": float(self.maximum_available),
                    "currentlyAvailable": float(round(self._level(), 1)), "restoreRate": float(self.restore_rate)}


# --- bulk operations ---------------------------------------------------------------------------

@dataclass
class BulkOperation:
    """One bulk query operation and where its JSONL is."""

    id: str
    query: str
    created_at: str
    status: str = "CREATED"
    error_code: str | None = None
    object_count: int = 0
    root_object_count: int = 0
    completed_at: str | None = None
    path: Path | None = None
    url: str | None = None
    partial_data_url: str | None = None

    def row(self) -> dict:
        size = self.path.stat().st_size if self.path and self.path.exists() and self.status == "COMPLETED" else None
        return {"__typename": "BulkOperation", "id": self.id, "type": "QUERY", "status": self.status,
                "errorCode": self.error_code, "query": self.query, "createdAt": self.created_at,
                "completedAt": self.completed_at, "objectCount": str(self.object_count),
                "rootObjectCount": str(self.root_object_count), "fileSize": None if size is None else str(size),
                "url": self.url, "partialDataUrl": self.partial_data_url}


@dataclass
class _Plan:
    """What a bulk query reads of one node: (response key, field, kind, sub-plan, type condition)
    with kind `scalar`, `typename`, `object` or `connection` (the sub-plan is then its node's)."""

    entries: list[tuple[str, str, str, _Plan | None, frozenset[str] | None]] = field(default_factory=list)
    id_only: bool = False  # a reference read for its id only needs no lookup of the object
    conditional: bool = False  # has fragments on a type: entries then apply by __typename


class BulkQuery:
    """A bulk operation's inner query, checked against Shopify's limits and compiled into plans.
    Its lines are projected from the store directly rather than by graphql-core's executor:
    executing costs ~5 µs a field, and a million order lines must stream in seconds."""

    MAX_CONNECTIONS, MAX_DEPTH = 5, 2

    def __init__(self, schema: GraphQLSchema, text: str):
        self.schema = schema
        document = graphql.parse(text)  # GraphQLSyntaxError for the caller
        if errors := graphql.validate(schema, document):
            raise GraphQLError(errors[0].message)
        self.fragments = {d.name.value: d for d in document.definitions
                          if isinstance(d, graphql.FragmentDefinitionNode)}
        ops = [d for d in document.definitions if isinstance(d, graphql.OperationDefinitionNode)]
        if len(ops) != 1 or ops[0].operation != OperationType.QUERY:
            raise GraphQLError("Bulk queries must be a single query operation.")
        self.connections = 0
        self.roots: list[tuple[str, dict, _Plan]] = []
        for node in ops[0].selection_set.selections:
            if not isinstance(node, FieldNode) or node.name.value not in ROOTS:
                raise GraphQLError("Bulk queries must have connections at the top level (not node or nodes).")
            definition = schema.query_type.fields[node.name.value]
            args = get_argument_values(definition, node, {})
            self.roots.append((node.name.value, args, self._connection(node, get_named_type(definition.type), 1)))
        if self.connections > self.MAX_CONNECTIONS:
            raise GraphQLError(f"Bulk queries cannot contain more than {self.MAX_CONNECTIONS} connections.")

    def _connection(self, node: FieldNode, named: Any, depth: int) -> _Plan:
        if depth > self.MAX_DEPTH:
            raise GraphQLError(f"Bulk queries cannot contain connections with a nesting depth greater than {self.MAX_DEPTH}.")
        self.connections += 1
        node_type = get_named_type(named.fields["nodes"].type)
        plan = _Plan()
        for sel in node.selection_set.selections:
            if isinstance(sel, FieldNode) and sel.name.value == "nodes":
                self._fill(plan, sel.selection_set, node_type, None, depth)
            elif isinstance(sel, FieldNode) and sel.name.value == "edges":
                for inner in sel.selection_set.selections:
                    if isinstance(inner, FieldNode) and inner.name.value == "node":
                        self._fill(plan, inner.selection_set, node_type, None, depth)
        return plan

    def _fill(self, plan: _Plan, selection_set: SelectionSetNode | None, parent: Any,
              on: frozenset[str] | None, depth: int) -> None:
        for sel in selection_set.selections if selection_set else ():
            if isinstance(sel, FieldNode):
                key, name = (sel.alias or sel.name).value, sel.name.value
                if name == "__typename":
                    plan.entries.append((key, name, "typename", None, on))
                    continue
                named = get_named_type(parent.fields[name].type)
                if is_connection(named):
                    plan.entries.append((key, name, "connection", self._connection(sel, named, depth + 1), on))
                elif is_composite_type(named):
                    sub = _Plan()
                    self._fill(sub, sel.selection_set, named, None, depth)
                    sub.id_only = all(name in ("id", "__typename") for _, name, _, _, _ in sub.entries)
                    plan.entries.append((key, name, "object", sub, on))
                else:
                    plan.entries.append((key, name, "scalar", None, on))
            else:
                frag = self.fragments[sel.name.value] if isinstance(sel, FragmentSpreadNode) else sel
                cond = self.schema.get_type(frag.type_condition.name.value) if frag.type_condition else parent
                types = frozenset(t.name for t in self.schema.get_possible_types(cond)) if is_abstract_type(cond) \
                    else frozenset((cond.name,))
                plan.conditional = True
                self._fill(plan, frag.selection_set, cond, types if on is None else on & types, depth)


def project(store: Store, row: dict, plan: _Plan, parent_id: str | None, out: list[dict]) -> None:
    """Append a node's JSONL line to `out`, then its connections' children's (`__parentId`)."""
    children: list[tuple[list[dict], _Plan]] = []
    line = _fields(store, row, plan, children)
    if parent_id is not None:
        line["__parentId"] = parent_id
    out.append(line)
    for rows, sub in children:
        for child in rows:
            project(store, child, sub, row["id"], out)


def _fields(store: Store, row: dict, plan: _Plan, children: list) -> dict:
    line = {}
    typename = row.get("__typename")
    for key, name, kind, sub, on in plan.entries:
        if plan.conditional and on is not None and typename not in on:
            continue
        if kind == "scalar":
            line[key] = row.get(name)
        elif kind == "object":
            line[key] = _inline(store, row.get(name), sub, children)
        elif kind == "connection":
            children.append((row.get(name) or (), sub))
        else:
            line[key] = typename
    return line


def _inline(store: Store, value: Any, plan: _Plan, children: list) -> Any:
    if isinstance(value, list):
        return [_inline(store, v, plan, children) for v in value]
    if isinstance(value, str):  # a reference to another object by GID
        if plan.id_only:
            typename, _ = parse_gid(value)
            if not store.exists(value):
                return None
            value = {"id": value, "__typename": typename}
        else:
            value = store.lookup(value)
    return None if value is None else _fields(store, value, plan, children)


# --- GraphQL execution ---------------------------------------------------------------------------

@dataclass
class _Context:
    """One request's execution state: the points its returned objects cost."""

    actual: int = 0
    mutation: bool = False


# --- the server ----------------------------------------------------------------------------------

@dataclass
class Recorded:
    """One request the server answered, for tests to inspect."""

    path: str
    query: str | None
    variables: dict | None
    status: int
    cost: dict | None = None


class ShopifyStandin:
    """A running stand-in shop: `with ShopifyStandin() as shop:`, send requests to `shop.url`
    with header `X-Shopify-Access-Token: shop.token`.

    Test controls: `now` / `clock` (the shop's wall clock), `bucket` (maximum_available,
    restore_rate, monotonic), `scopes`, `fail_next`, `slow_next`, `revoke_token`, `bulk_delay`,
    `bulk_fail`, `bulk_expire`, `bulk_limit`. Records: `requests`, `throttled`."""

    def __init__(self, token: str = "shpat_standin", *, scopes: list[str] | tuple[str, ...] = DEFAULT_SCOPES,
                 name: str = "BSPK Demo Store", domain: str = "bspk-demo.myshopify.com", currency: str = "USD",
                 timezone: str = "America/New_York", maximum_available: float = 1000, restore_rate: float = 50,
                 monotonic: Callable[[], float] = time.monotonic, clock: Callable[[], datetime] | None = None,
                 port: int = 0):
        self.token, self.scopes = token, list(scopes)
        self.name, self.domain, self.currency, self.timezone = name, domain, currency, timezone
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.bucket = Bucket(maximum_available, restore_rate, monotonic)
        self.store = Store()
        self.requests: list[Recorded] = []
        self.throttled = 0
        self.bulk_delay = 0.05  # seconds a bulk operation stays CREATED, so polling is exercised
        self.bulk_fail: str | None = None  # a BulkOperationErrorCode: later operations fail with it
        self.bulk_limit = 5  # concurrent bulk queries per app and shop (2026-01)
        self.bulk_operations: dict[str, BulkOperation] = {}
        self._faults: list[tuple[str, float]] = []
        self._downloads: dict[str, Path] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="shopify-standin-"))
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._serving = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="shopify-standin", daemon=True)
        self._serving.start()

    # lifecycle -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        """The GraphQL endpoint."""
        return f"{self.base_url}/admin/api/{API_VERSION}/graphql.json"

    def close(self) -> None:
        """Stop serving, stop running bulk operations, delete their files."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> ShopifyStandin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # clock, auth, faults ------------------------------------------------------------------

    @property
    def now(self) -> str:
        """The shop's current time as Shopify writes it; set it (ISO string or datetime) to freeze
        the clock there (several writes then share one `updatedAt`)."""
        return iso(self._now())

    @now.setter
    def now(self, value: str | datetime) -> None:
        frozen = datetime.fromtimestamp(epoch(value), UTC)
        self.clock = lambda: frozen

    def _now(self) -> int:
        return int(self.clock().timestamp())

    def revoke_token(self) -> None:
        """The merchant uninstalled the app: the token is refused from now on."""
        self.token = None  # type: ignore[assignment]

    def fail_next(self, n: int = 1, status: int = 502) -> None:
        """The next `n` GraphQL requests answer `status` (429 comes with `Retry-After: 1.0`)."""
        with self._lock:
            self._faults.extend(("fail", status) for _ in range(n))

    def slow_next(self, n: int, seconds: float) -> None:
        """The next `n` GraphQL requests wait `seconds` before they are answered."""
        with self._lock:
            self._faults.extend(("slow", seconds) for _ in range(n))

    def _next_fault(self) -> tuple[str, float] | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    # data ------------------------------------------------------------------------------------

    def _stamps(self, fields: dict) -> tuple[str, str]:
        """Pop createdAt/updatedAt (ISO strings or datetimes; `now` by default) as Shopify writes them."""
        now = self.now
        return iso(epoch(fields.pop("createdAt", now))), iso(epoch(fields.pop("updatedAt", now)))

    def _customer(self, n: int, fields: dict, created: str, updated: str) -> dict:
        address = fields.get("defaultAddress")
        if address and "id" not in address:
            fields["defaultAddress"] = {"id": gid("MailingAddress", self.store.next_id("MailingAddress")), **address}
        return customer_row(n, fields, created, updated)

    def add_customer(self, **fields: Any) -> str:
        """A customer from GraphQL-named fields (`email=`/`phone=` shorthands); its GID."""
        n = self.store.next_id("Customer")
        created, updated = self._stamps(fields)
        with self.store.lock:
            self.store.table("Customer").put(n, self._customer(n, fields, created, updated))
        return gid("Customer", n)

    def add_product(self, *, variants: list[dict] | None = None, media: list[dict] | None = None, **fields: Any) -> str:
        """A product; `variants` as ProductVariant fields, `media` as {url, altText} images or
        {mediaContentType, alt} for other media. Its GID."""
        n = self.store.next_id("Product")
        created, updated = self._stamps(fields)
        title = fields.get("title", f"Product {n}")
        row = {"__typename": "Product", "id": gid("Product", n), "title": title, "handle": f"{_slug(title)}-{n}",
               "status": "ACTIVE", "vendor": "BSPK", "productType": "", "tags": [], "descriptionHtml": "",
               "createdAt": created, "updatedAt": updated, **fields,
               "variants": [self._variant(n, v) for v in variants or [{}]],
               "media": [self._media(m) for m in media or []]}
        with self.store.lock:
            self.store.table("Product").put(n, row)
        return row["id"]

    def _variant(self, product: int, fields: dict) -> dict:
        n = self.store.next_id("ProductVariant")
        self.store.variant_product[n] = product
        return {"__typename": "ProductVariant", "id": gid("ProductVariant", n), "title": "Default Title",
                "sku": None, "barcode": None, "price": "0.00", "compareAtPrice": None,
                "selectedOptions": [{"name": "Title", "value": "Default Title"}], **fields}

    def _media(self, fields: dict) -> dict:
        fields = dict(fields)
        kind = fields.pop("mediaContentType", "IMAGE")
        typename = {"IMAGE": "MediaImage", "VIDEO": "Video", "EXTERNAL_VIDEO": "ExternalVideo", "MODEL_3D": "Model3d"}[kind]
        n = self.store.next_id("Media")
        row = {"__typename": typename, "id": gid(typename, n), "mediaContentType": kind,
               "alt": fields.pop("alt", fields.get("altText"))}
        if kind == "IMAGE":
            row["image"] = {"id": gid("ImageSource", n), "url": fields.pop("url", f"https://cdn.shopify.com/{n}.jpg"),
                            "altText": fields.pop("altText", None), "width": fields.pop("width", None),
                            "height": fields.pop("height", None)}
        return {**row, **fields}

    def add_order(self, *, line_items: list[dict] | None = None, customer: str | None = None, **fields: Any) -> str:
        """An order; `line_items` as LineItem fields where `price` stands for
        `originalUnitPriceSet` and `product`/`variant` are GIDs. Its GID."""
        n = self.store.next_id("Order")
        created, updated = self._stamps(fields)
        row = {"__typename": "Order", "id": gid("Order", n), "name": f"#{1000 + n - ID_BASE}", "test": False,
               "createdAt": created, "processedAt": created, "updatedAt": updated, "cancelledAt": None,
               "customer": customer, **fields, "lineItems": [self._line_item(li) for li in line_items or []]}
        with self.store.lock:
            self.store.table("Order").put(n, row)
        return row["id"]

    def _line_item(self, fields: dict) -> dict:
        fields = dict(fields)
        money = {"amount": str(fields.pop("price", "0.00")), "currencyCode": self.currency}
        quantity = fields.get("quantity", 1)
        return {"__typename": "LineItem", "id": gid("LineItem", self.store.next_id("LineItem")),
                "name": fields.get("sku") or "Item", "sku": None, "quantity": quantity, "currentQuantity": quantity,
                "originalUnitPriceSet": {"shopMoney": money, "presentmentMoney": money},
                "product": None, "variant": None, **fields}

    def add_location(self, **fields: Any) -> str:
        """A location (`address` as LocationAddress fields). Its GID."""
        n = self.store.next_id("Location")
        created, updated = self._stamps(fields)
        address = {"address1": None, "address2": None, "city": None, "province": None, "provinceCode": None,
                   "zip": None, "country": None, "countryCode": None, "phone": None, **fields.pop("address", {})}
        row = {"__typename": "Location", "id": gid("Location", n), "name": f"Location {n}", "isActive": True,
               "createdAt": created, "updatedAt": updated, **fields, "address": address}
        with self.store.lock:
            self.store.table("Location").put(n, row)
        return row["id"]

    def update(self, object_id: str, **fields: Any) -> None:
        """Change fields of any root object; `updatedAt` becomes `now` unless given."""
        typename, n = parse_gid(object_id)
        with self.store.lock:
            table = self.store.table(typename)
            row = table.get(n)
            if row is None:
                raise KeyError(object_id)
            fields["updatedAt"] = iso(epoch(fields.get("updatedAt", self.now)))
            if typename == "Customer":
                new = self._customer(n, {**row, **fields}, row["createdAt"], fields["updatedAt"])
            else:
                if "variants" in fields:
                    fields["variants"] = [self._variant(n, v) for v in fields["variants"]]
                if "media" in fields:
                    fields["media"] = [self._media(m) for m in fields["media"]]
                if "lineItems" in fields:
                    fields["lineItems"] = [self._line_item(li) for li in fields["lineItems"]]
                new = {**row, **fields}
            table.put(n, new)

    def delete(self, object_id: str) -> None:
        typename, n = parse_gid(object_id)
        with self.store.lock:
            self.store.table(typename).delete(n)

    def update_customer(self, customer_id: str, **fields: Any) -> None:
        self.update(customer_id, **fields)

    def delete_customer(self, customer_id: str) -> None:
        self.delete(customer_id)

    def generate(self, customers: int = 0, products: int = 0, orders: int = 0, lines_per_order: int = 3,
                 locations: int = 0, seed: int = 0) -> None:
        """Fill the shop with realistic objects generated on demand from `seed` (orders reference
        these customers and these products' variants; ~10% have no customer, ~2% are test
        orders, ~5% cancelled and ~5% partly refunded, i.e. currentQuantity < quantity).
        Takes well under a second for 200,000 customers and a million order lines."""
        store, gen = self.store, _Generator(seed, self._now(), self.currency)
        with store.lock:
            customer_block = product_block = None
            if customers:
                customer_block = gen.customers(store.next_id("Customer", customers), customers,
                                               store.next_id("MailingAddress", customers))
                store.table("Customer").add_block(customer_block)
            if products:
                product_block = gen.products(store.next_id("Product", products), products,
                                             store.next_id("ProductVariant", products * gen.VARIANTS),
                                             store.next_id("Media", products * gen.MEDIA))
                store.table("Product").add_block(product_block)
            if orders:
                first = store.next_id("Order", orders)
                store.table("Order").add_block(gen.orders(
                    first, orders, lines_per_order, store.next_id("LineItem", orders * lines_per_order),
                    1000 + first - ID_BASE, customer_block, store.table("Product"), product_block))
            for i in range(locations):
                n = store.next_id("Location")
                store.table("Location").put(n, gen.location(n, i))

    # webhooks -------------------------------------------------------------------------------

    def rest_payload(self, object_id: str) -> dict:
        """The object as a REST resource / webhook payload: snake_case, numeric ids, tags as one
        comma string, timestamps in the shop's time zone, `admin_graphql_api_id`."""
        typename, n = parse_gid(object_id)
        row = self.store.lookup(object_id)
        if row is None:
            raise KeyError(object_id)
        zone = ZoneInfo(self.timezone)

        def local(value: str | None) -> str | None:
            return datetime.fromisoformat(value).astimezone(zone).isoformat() if value else None

        def num(value: str | None) -> int | None:
            return parse_gid(value)[1] if value else None

        base = {"id": n, "created_at": local(row["createdAt"]), "updated_at": local(row["updatedAt"]),
                "admin_graphql_api_id": object_id}
        if typename == "Customer":
            address = row["defaultAddress"]
            return {**base, "first_name": row["firstName"], "last_name": row["lastName"],
                    "email": (row["defaultEmailAddress"] or {}).get("emailAddress"),
                    "phone": (row["defaultPhoneNumber"] or {}).get("phoneNumber"),
                    "tags": ", ".join(row["tags"]), "note": row["note"],
                    "default_address": address and {"address1": address["address1"], "address2": address["address2"],
                                                    "city": address["city"], "province": address["province"],
                                                    "zip": address["zip"], "country_code": address["countryCodeV2"]}}
        if typename == "Product":
            return {**base, "title": row["title"], "handle": row["handle"], "status": row["status"].lower(),
                    "vendor": row["vendor"], "product_type": row["productType"], "tags": ", ".join(row["tags"]),
                    "body_html": row["descriptionHtml"],
                    "variants": [{"id": num(v["id"]), "product_id": n, "sku": v["sku"], "barcode": v["barcode"],
                                  "price": v["price"], "compare_at_price": v["compareAtPrice"],
                                  "admin_graphql_api_id": v["id"]} for v in row["variants"]]}
        if typename == "Order":
            return {**base, "name": row["name"], "test": row["test"], "processed_at": local(row["processedAt"]),
                    "cancelled_at": local(row["cancelledAt"]), "currency": self.currency,
                    "customer": {"id": num(row["customer"]), "admin_graphql_api_id": row["customer"]}
                    if row["customer"] else None,
                    "line_items": [{"id": num(li["id"]), "sku": li["sku"], "quantity": li["quantity"],
                                    "current_quantity": li["currentQuantity"],
                                    "price": li["originalUnitPriceSet"]["shopMoney"]["amount"],
                                    "product_id": num(li["product"]), "variant_id": num(li["variant"]),
                                    "admin_graphql_api_id": li["id"]} for li in row["lineItems"]]}
        address = row["address"]
        return {**base, "name": row["name"], "active": row["isActive"], "address1": address["address1"],
                "address2": address["address2"], "city": address["city"], "province": address["province"],
                "zip": address["zip"], "country_code": address["countryCode"], "phone": address["phone"]}

    def send_webhook(self, url: str, topic: str, payload: dict, secret: str, webhook_id: str | None = None,
                     *, tamper: bool = False) -> requests.Response:
        """POST a webhook as Shopify delivers one: the JSON body signed with base64
        HMAC-SHA256(secret, raw body), and Shopify's X-Shopify-* headers. `tamper` changes the
        body after signing (the signature then no longer matches)."""
        body = json.dumps(payload).encode()
        signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
        if tamper:
            body = body.replace(b"}", b', "tampered": true}', 1) if body.endswith(b"}") else body + b" "
        headers = {"Content-Type": "application/json", "X-Shopify-Topic": topic,
                   "X-Shopify-Hmac-Sha256": signature, "X-Shopify-Shop-Domain": self.domain,
                   "X-Shopify-API-Version": API_VERSION, "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
                   "X-Shopify-Triggered-At": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                   "X-Shopify-Event-Id": str(uuid.uuid4())}
        return requests.post(url, data=body, headers=headers, timeout=10)

    # bulk operations ------------------------------------------------------------------------

    def bulk_expire(self, operation_id: str | None = None) -> None:
        """Finished operations (or the one given) pass their 7 days: EXPIRED, no url."""
        with self._lock:
            for op in self.bulk_operations.values():
                if (operation_id in (None, op.id)) and op.status in ("COMPLETED", "FAILED"):
                    op.status, op.url, op.partial_data_url = "EXPIRED", None, None
                    for token in [t for t, p in self._downloads.items() if p == op.path]:
                        self._downloads.pop(token).unlink(missing_ok=True)

    def _run_bulk(self, text: str) -> dict:
        try:
            query = BulkQuery(SCHEMA, text)
        except GraphQLError as exc:
            return {"bulkOperation": None, "userErrors": [
                {"field": ["query"], "message": f"Invalid bulk query: {exc.message}", "code": "INVALID"}]}
        with self._lock:
            running = [op.id for op in self.bulk_operations.values() if op.status in ("CREATED", "RUNNING")]
            if len(running) >= self.bulk_limit:
                return {"bulkOperation": None, "userErrors": [{"field": None, "code": "OPERATION_IN_PROGRESS", "message":
                        f"A bulk query operation for this app and shop is already in progress: {running[0]}."}]}
            op = BulkOperation(gid("BulkOperation", self.store.next_id("BulkOperation")), text, self.now)
            self.bulk_operations[op.id] = op
        thread = threading.Thread(target=self._write_bulk, args=(op, query), name=f"bulk-{op.id}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return {"bulkOperation": op.row(), "userErrors": []}

    def _write_bulk(self, op: BulkOperation, query: BulkQuery) -> None:
        """Stream the operation's JSONL to a file: root lines in id order, each parent's children
        after the next root line."""
        time.sleep(self.bulk_delay)
        op.status = "RUNNING"
        if any(ROOTS[root][1] not in self.scopes for root, _, _ in query.roots):
            op.status, op.error_code, op.completed_at = "FAILED", "ACCESS_DENIED", self.now
            return
        fail = self.bulk_fail
        path = op.path = self._dir / f"{op.id.rsplit('/', 1)[1]}-{'partial' if fail else 'result'}.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for root, args, plan in query.roots:
                typename = ROOTS[root][0]
                admit = self._admit(typename, args)
                ids = [n for _, n in self.store.select(typename, "ID", False, None, Search.parse(args.get("query")), admit)]
                limit = len(ids) // 2 if fail else len(ids)
                pending: list[dict] = []
                for n in ids[:limit]:
                    if self._stop.is_set():
                        return
                    row = self.store.table(typename).get(n)
                    if row is None:
                        continue
                    lines: list[dict] = []
                    project(self.store, row, plan, None, lines)
                    out.write("".join(JSONL(line) + "\n" for line in [lines[0], *pending]))
                    op.root_object_count += 1
                    op.object_count += 1 + len(pending)
                    pending = lines[1:]
                out.write("".join(JSONL(line) + "\n" for line in pending))
                op.object_count += len(pending)
        token = uuid.uuid4().hex
        with self._lock:
            self._downloads[token] = path
        link = f"{self.base_url}/bulk/{token}/{path.name}"
        op.completed_at = self.now
        if fail:
            op.status, op.error_code, op.partial_data_url = "FAILED", fail, link
        else:
            op.status, op.url = "COMPLETED", link

    # GraphQL ----------------------------------------------------------------------------------

    def _admit(self, typename: str, args: dict) -> Callable[[int, _Table], bool]:
        """Which rows a root connection shows: the 60-day order window, active locations."""
        if typename == "Order" and "read_all_orders" not in self.scopes:
            cutoff = self._now() - ORDER_WINDOW
            return lambda n, table: table.stamp(n)[0] >= cutoff
        if typename == "Location" and not args.get("includeInactive"):
            return lambda n, table: table.get(n)["isActive"]
        return lambda n, table: True

    def _visible(self, value: str) -> dict | None:
        row = self.store.lookup(value)
        if row is not None and row["__typename"] == "Order":
            _, n = parse_gid(value)
            if not self._admit("Order", {})(n, self.store.table("Order")):
                return None
        return row

    def _root_connection(self, root: str, args: dict) -> dict:
        typename, scope = ROOTS[root]
        if scope not in self.scopes:
            raise GraphQLError(f"Access denied for {root} field. Required access: `{scope}` access scope.",
                               extensions={"code": "ACCESS_DENIED",
                                           "documentation": "https://shopify.dev/api/usage/access-scopes"})
        key, first = args["sortKey"], args["first"]
        rows = self.store.select(typename, key, args["reverse"], args.get("after"), Search.parse(args.get("query")),
                                 self._admit(typename, args))
        page = list(itertools.islice(rows, first + 1))
        table = self.store.table(typename)
        edges = [{"cursor": encode_cursor(v, n), "node": table.get(n)} for v, n in page[:first]]
        return _connection(edges, len(page) > first, args.get("after") is not None)

    def _resolve(self, source: Any, info: graphql.GraphQLResolveInfo, **args: Any) -> Any:
        """Every field's resolver: roots and connections page the store, GID references are
        looked up, other fields read the row; each returned object is charged to the request."""
        ctx: _Context = info.context
        named = get_named_type(info.return_type)
        name = info.field_name
        if info.parent_type is SCHEMA.mutation_type:
            value: Any = self._run_bulk(args["query"])
        elif info.parent_type is SCHEMA.query_type:
            value = self._root(name, args)
        else:
            value = source.get(name)
            if is_connection(named):
                value = _child_page(value or [], args)
            elif is_composite_type(named) and isinstance(value, str):
                value = self._visible(value)
        if not ctx.mutation and is_composite_type(named) and value is not None:
            if is_connection(named):
                ctx.actual += 2
            elif is_connection(info.parent_type):
                ctx.actual += len(value) if name == "nodes" else (1 if name == "pageInfo" else 0)
            else:
                ctx.actual += 1
        return value

    def _root(self, name: str, args: dict) -> Any:
        if name in ROOTS:
            return self._root_connection(name, args)
        if name in ("node", "bulkOperation"):
            typename, _ = parse_gid(args["id"])
            if typename == "BulkOperation":
                op = self.bulk_operations.get(args["id"])
                return op.row() if op else None
            return self._visible(args["id"]) if name == "node" else None
        if name == "shop":
            return {"id": gid("Shop", 1), "name": self.name, "currencyCode": self.currency, "myshopifyDomain": self.domain}
        return {"id": gid("AppInstallation", 1),
                "accessScopes": [{"handle": s, "description": s.replace("_", " ")} for s in self.scopes]}

    def answer(self, body: dict) -> dict:
        """A GraphQL response body for a request body: errors for invalid documents and too
        costly or throttled queries, else data with `extensions.cost`."""
        text, variables = body.get("query"), body.get("variables") or {}
        try:
            document = graphql.parse(text)
        except GraphQLError as exc:
            return {"errors": [exc.formatted]}
        if errors := graphql.validate(SCHEMA, document):
            return {"errors": [e.formatted for e in errors]}
        ops = [d for d in document.definitions if isinstance(d, graphql.OperationDefinitionNode)]
        op = next((o for o in ops if o.name and o.name.value == body.get("operationName")), ops[0])
        cost = Cost(SCHEMA, document, variables)
        try:
            requested = cost.operation(op)
        except GraphQLError as exc:
            return {"errors": [exc.formatted]}
        if cost.errors:
            return {"errors": [e.formatted for e in cost.errors]}
        if requested > MAX_COST:
            return {"errors": [{"message": (
                f"Query cost is {requested}, which exceeds the single query max cost limit ({MAX_COST}).\n\n"
                "See https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\n"
                "cost of a query is calculated.\n\nTo query larger amounts of data with fewer limits, bulk "
                "operations should be used instead.\nSee https://shopify.dev/tutorials/perform-bulk-operations-"
                "with-admin-api for usage details.\n"),
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_COST}}]}
        if not self.bucket.take(requested):
            with self._lock:
                self.throttled += 1
            return {"errors": [{"message": "Throttled", "extensions": {
                        "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                    "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                            "throttleStatus": self.bucket.status()}}}
        ctx = _Context(mutation=op.operation == OperationType.MUTATION)
        result = graphql.execute(SCHEMA, document, context_value=ctx, variable_values=variables,
                                 operation_name=body.get("operationName"), field_resolver=self._resolve)
        actual = MUTATION_COST if ctx.mutation else min(ctx.actual, requested)
        self.bucket.refund(requested - actual)
        response: dict[str, Any] = {"data": result.data}
        if result.errors:
            response["errors"] = [e.formatted for e in result.errors]
        response["extensions"] = {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
                                           "throttleStatus": self.bucket.status()}}
        return response


def _connection(edges: list[dict], has_next: bool, has_previous: bool) -> dict:
    return {"edges": edges, "nodes": [e["node"] for e in edges],
            "pageInfo": {"hasNextPage": has_next, "hasPreviousPage": has_previous,
                         "startCursor": edges[0]["cursor"] if edges else None,
                         "endCursor": edges[-1]["cursor"] if edges else None}}


def _child_page(rows: list[dict], args: dict) -> dict:
    """A page of a nested connection (variants, media, line items): in id order, after a cursor."""
    numbered = [(parse_gid(r["id"])[1], r) for r in rows]
    if args.get("reverse"):
        numbered.reverse()
    if args.get("after"):
        _, last = decode_cursor(args["after"])
        numbered = [(n, r) for n, r in numbered if (n < last if args.get("reverse") else n > last)]
    first = args["first"]
    edges = [{"cursor": encode_cursor(n, n), "node": r} for n, r in numbered[:first]]
    return _connection(edges, len(numbered) > first, args.get("after") is not None)


def _handler(shop: ShopifyStandin) -> type[BaseHTTPRequestHandler]:
    """The HTTP side: the GraphQL endpoint with auth and faults, and bulk result downloads."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def date_time_string(self, timestamp: float | None = None) -> str:
            """The Date header from the shop's clock, as Shopify's answers carry its own time."""
            return formatdate(shop.clock().timestamp() if timestamp is None else timestamp, usegmt=True)

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                self.close_connection = True

        def do_GET(self) -> None:
            match = re.fullmatch(r"/bulk/(\w+)/[\w.-]+", self.path)
            with shop._lock:
                path = shop._downloads.get(match[1]) if match else None
            if path is None or not path.exists():
                self._send(404, b'{"errors":"Not Found"}')
                return
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/jsonl")
                self.send_header("Content-Length", str(path.stat().st_size))
                self.end_headers()
                with path.open("rb") as f:
                    shutil.copyfileobj(f, self.wfile, 1 << 16)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            body = body if isinstance(body, dict) else {}
            record = Recorded(self.path, body.get("query"), body.get("variables"), 0)
            status, response, headers = self._post(body)
            record.status = status
            record.cost = (response.get("extensions") or {}).get("cost")
            with shop._lock:
                shop.requests.append(record)
            self._send(status, json.dumps(response).encode(), headers)

        def _post(self, body: dict) -> tuple[int, Any, dict]:
            if self.path != f"/admin/api/{API_VERSION}/graphql.json":
                return 404, {"errors": "Not Found"}, {}
            fault = shop._next_fault()
            if fault and fault[0] == "slow":
                time.sleep(fault[1])
            elif fault:
                status = int(fault[1])
                headers = {"Retry-After": "1.0"} if status == 429 else {}
                message = "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service." \
                    if status == 429 else "Bad Gateway"
                return status, {"errors": message}, headers
            if not shop.token or self.headers.get("X-Shopify-Access-Token") != shop.token:
                return 401, {"errors": INVALID_TOKEN}, {}
            if not isinstance(body.get("query"), str):
                return 400, {"errors": {"query": "Required parameter missing or invalid"}}, {}
            return 200, shop.answer(body), {}

    return Handler

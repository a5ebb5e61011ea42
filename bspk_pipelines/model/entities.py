"""The platform's entities: columns, rules and keys, as the published file formats define them.

Everything else (parsing, validation, the warehouse schema, the apply order) reads these
specs, so a rule of the reference lives in exactly one place. Where the reference says
NOT FOUND or CUT OFF, the choice made here is written next to the spec (see `DECISIONS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

# The column that carries each row's line in its file, from reading to rejects, held rows and the
# month store: every layer names a row's origin by it.
LINE = "_line"
# Beside `_line` where a mapping unpivots a line into one row per column (`Unpivot`): the column
# of the file the row came from. A row is then known by its line and its cell.
CELL = "_cell"


class Kind(str, Enum):
    """How a column's text is checked and stored."""

    TEXT = "text"
    EMAIL = "email"
    URL = "url"
    PHONE = "phone"  # E.164
    COUNTRY = "country"  # ISO 3166-1 alpha-2
    CURRENCY = "currency"  # ISO 4217
    LANGUAGE = "language"  # ISO 639-1, one value
    LANGUAGES = "languages"  # ISO 639-1, `;` list
    BOOL = "bool"  # TRUE / FALSE (the column's `truth` spelling)
    INT = "int"
    DECIMAL = "decimal"
    DATE = "date"  # YYYY-MM-DD
    DATETIME = "datetime"  # ISO 8601, stored as UTC without offset
    ENUM = "enum"
    LIST = "list"  # `;` list of free text
    CATEGORIES = "categories"  # `;` list of `>>` paths
    TYPED = "typed"  # a value of the type another column declares (a metafield's value: see `metafields`)


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind = Kind.TEXT
    required: bool = False
    min_len: int = 1
    max_len: int | None = 255
    choices: tuple[str, ...] = ()
    # False for columns the reference does not confirm: a file may leave them out of its header.
    in_header: bool = True
    # product_ref and sku are case-insensitive: stored as the brand last sent them, matched whatever
    # their case (`A-100` and `a-100` are one record; the warehouse keys on a folded copy).
    case_insensitive: bool = False
    # Case-insensitive only on rows whose column (first) has the value (second): a metafield's
    # owner_ref when it names a product.
    case_insensitive_when: tuple[str, str] | None = None
    # Stored when the file leaves the value blank, where the reference gives one ("empty means FALSE").
    default: str | None = None
    # The column's name in the platform's file when the warehouse must call it otherwise.
    header: str | None = None
    # Unique per record across the entity (a shopper's mobile phone), not only the key.
    unique: bool = False
    # Only for INT/DECIMAL: reject values below this (quantities, prices).
    minimum: float | None = None
    # Only for INT/DECIMAL: most digits before the decimal point the column stores.
    max_digits: int = 12
    # Only for BOOL: how the file writes true and false.
    truth: tuple[str, str] = ("TRUE", "FALSE")
    # Required on a row that gives any of these columns (a currency for an amount).
    required_with: tuple[str, ...] = ()
    # Only for TYPED: the columns declaring the value's type and whether it is a list.
    typed_by: tuple[str, str] | None = None


@dataclass(frozen=True)
class Reference:
    """A column that must name a record of another entity before the row can be applied; with
    `when` (column, value), only on rows whose column has that value (a metafield's owner). With
    `agrees` ((column, target column), ...), the record named must hold the row's values there
    too (an event's line item is of the event's order), or the row is rejected `reference`."""

    column: str
    entity: str
    target_column: str
    when: tuple[str, str] | None = None
    agrees: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Entity:
    name: str
    file_type: str
    versions: tuple[str, ...]
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    references: tuple[Reference, ...] = ()
    # Key columns that may be blank in a file: stored as text, '' when blank (a key is never NULL).
    optional_key: tuple[str, ...] = ()
    # For inventory: the row with the latest value of this column wins, whatever the file order.
    latest_by: str | None = None
    # For images: the rows of one file are the complete set for each value of these columns.
    replace_set_by: tuple[str, ...] = ()
    # Sales history is large and partitioned by month of this column.
    month_column: str | None = None
    # Special-order events: a stored key is never changed; a row resending it otherwise is rejected.
    append_only: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def header_names(self) -> dict[str, str]:
        """Platform file column name -> warehouse column name, where they differ."""
        return {c.header: c.name for c in self.columns if c.header}

    @property
    def attributes(self) -> list[str]:
        """Non-key columns: the ones precedence can give to different sources."""
        return [c.name for c in self.columns if c.name not in self.key]


def _ref(
    name: str, required: bool = True, case_insensitive: bool = False, in_header: bool = True
) -> Column:
    return Column(
        name, Kind.TEXT, required=required, case_insensitive=case_insensitive, in_header=in_header, max_len=255
    )


def _bool(name: str, required: bool = False, in_header: bool = True, truth: tuple[str, str] = ("TRUE", "FALSE")) -> Column:
    return Column(name, Kind.BOOL, required=required, max_len=None, in_header=in_header, truth=truth)


STORE_REGIONS = Entity(
    name="store_regions",
    file_type="STORE-REGION",
    versions=("V2",),
    columns=(
        _ref("store_region_ref"),
        Column("name", required=True),
        Column("privacy_policy_link", Kind.URL),
        Column("privacy_policy_email", Kind.EMAIL),
    ),
    key=("store_region_ref",),
    notes=("STORE-REGION has no spec page: columns from the pre-reqs header example; "
           "version V2 like the other core files; `name` required like every other name.",),
)

STORES = Entity(
    name="stores",
    file_type="STORE",
    versions=("V2",),
    columns=(
        _ref("store_ref"),
        Column("name", required=True),
        Column("address"),
        Column("city"),
        Column("state"),
        Column("zip_code"),
        Column("country_code", Kind.COUNTRY, max_len=2),
        Column("currency_code", Kind.CURRENCY, required=True, max_len=3),
        Column("phone", Kind.PHONE),
        Column("privacy_policy_link", Kind.URL),
        Column("privacy_policy_email", Kind.EMAIL),
        _ref("store_region_ref", required=False),
        _bool("active", required=True),
    ),
    key=("store_ref",),
)

SALES_ASSOCIATES = Entity(
    name="sales_associates",
    file_type="SALES-ASSOCIATE",
    versions=("V2",),
    columns=(
        _ref("sales_associate_ref"),
        Column("first_name", required=True),
        Column("last_name", required=True),
        Column("email", Kind.EMAIL, min_len=5),
        Column("mobile_phone", Kind.PHONE),
        _ref("store_ref"),
        _bool("active", required=True),
    ),
    key=("sales_associate_ref",),
)

SHOPPERS = Entity(
    name="shoppers",
    file_type="SHOPPER",
    versions=("V3", "V2"),
    columns=(
        _ref("shopper_ref"),
        Column("barcode", in_header=False),
        Column("profile_type", Kind.ENUM, choices=("person", "organization"), in_header=False),
        Column("first_name"),
        Column("last_name"),
        Column("alternate_first_name"),
        Column("alternate_last_name"),
        Column("gender", Kind.ENUM, choices=("M", "F", "NB")),
        Column("email", Kind.EMAIL),
        Column("title", max_len=20),
        Column("mobile_phone", Kind.PHONE, unique=True),
        Column("other_phone", Kind.PHONE),
        Column("address"),
        Column("address_2"),
        Column("address_3"),
        Column("address_4"),
        Column("city"),
        Column("state"),
        Column("zip_code"),
        Column("country_code", Kind.COUNTRY, max_len=2),
        Column("preferences", Kind.LIST),
        Column(
            "preferred_contact_channel",
            Kind.ENUM,
            choices=("chat", "email", "line", "whatsapp", "wechat", "call"),
        ),
        Column("nationality", Kind.COUNTRY, max_len=2),
        Column("languages", Kind.LANGUAGES),
        _bool("email_contact"),
        _bool("phone_call_contact"),
        # The table is CUT OFF after phone_call_contact: these follow the Platform API client
        # body. Accepted when present, not demanded in the header.
        _bool("chat_contact", in_header=False),
        _bool("do_not_contact", in_header=False),
        _bool("interested_in_new_products", in_header=False),
        Column("birthday", Kind.DATE, max_len=10, in_header=False),
        Column("creation_date", Kind.DATE, max_len=10, in_header=False),
        _ref("store_ref", required=False, in_header=False),
        _ref("sales_associate_ref", required=False, in_header=False),
        Column("segment", in_header=False),
        Column("passport_number", in_header=False),
    ),
    key=("shopper_ref",),
    notes=(
        "SHOPPER is CUT OFF after phone_call_contact: the Platform API client fields "
        "(chat_contact ... passport_number) are accepted when present, not required in the header; "
        "so are barcode and profile_type, which only the newer copy lists.",
        "V2 and V3 are both accepted with the same columns: their differences are NOT FOUND.",
        "mobile_phone must be unique per shopper: a duplicate inside a file is rejected, across the "
        "table an asset check reports it (the brand's record is never changed on its behalf).",
        "creation_date is read as ISO YYYY-MM-DD: the API example's day/month order is not specified.",
    ),
)

SHOPPER_ADDRESSES = Entity(
    name="shopper_addresses",
    file_type="SHOPPER-ADDRESS",
    versions=("V3",),
    columns=(
        _ref("shopper_ref"),
        _ref("address_ref"),
        Column("address_1", required=True),
        Column("first_name"),
        Column("last_name"),
        Column("company_name"),
        Column("address_2"),
        Column("address_3"),
        Column("address_4"),
        Column("city"),
        Column("province"),
        Column("province_code"),
        Column("country"),
        Column("country_code", Kind.COUNTRY, max_len=2),
        Column("zip"),
        Column("phone", Kind.PHONE, in_header=False),
        _bool("is_default", in_header=False),
        _bool("active", in_header=False),
    ),
    key=("shopper_ref", "address_ref"),
    references=(Reference("shopper_ref", "shoppers", "shopper_ref"),),
    notes=("SHOPPER-ADDRESS is CUT OFF after zip: phone (E.164), is_default and active "
           "(TRUE/FALSE) are accepted when present; a blank active means TRUE (not deleted).",),
)

PRODUCTS = Entity(
    name="products",
    file_type="PRODUCT",
    versions=("V2",),
    columns=(
        _ref("product_ref", case_insensitive=True),
        Column("name", required=True),
        Column("description", max_len=65535),
        Column("categories", Kind.CATEGORIES, max_len=65535),
        Column("language_code", Kind.LANGUAGE, max_len=2),
        # Every warehouse table's `brand` is the tenant; the product's own brand is stored apart.
        Column("product_brand", max_len=30, header="brand"),
        _bool("published", required=True),
    ),
    key=("product_ref", "language_code"),
    optional_key=("language_code",),
    notes=("Localisation is CUT OFF: one row per (product_ref, language_code) is kept, so a "
           "product's translations live side by side; a blank language_code is the default row.",),
)

PRODUCT_VARIANTS = Entity(
    name="product_variants",
    file_type="PRODUCT-VARIANTS",
    versions=("V2",),
    columns=(
        _ref("product_ref", case_insensitive=True),
        _ref("sku", case_insensitive=True),
        Column("barcode"),
        Column("option_1_name"),
        Column("option_1_value"),
        Column("option_2_name"),
        Column("option_2_value"),
        Column("option_3_name"),
        Column("option_3_value"),
        Column("language_code", Kind.LANGUAGE, max_len=2,
               required_with=("option_1_value", "option_2_value", "option_3_value")),
        Column("store_refs", Kind.LIST),
        _bool("published", required=True),
    ),
    key=("sku",),
    references=(Reference("product_ref", "products", "product_ref"),),
)

PRODUCT_PRICES = Entity(
    name="product_prices",
    file_type="PRODUCT-PRICES",
    versions=("V2",),
    columns=(
        _ref("product_ref", case_insensitive=True),
        _ref("sku", case_insensitive=True),
        Column("price", Kind.DECIMAL, required=True, minimum=0),
        Column("currency_code", Kind.CURRENCY, required=True, max_len=3),
        Column("store_refs", Kind.LIST, max_len=65535),
        Column("starting_on", Kind.DATE, max_len=10),
        Column("ending_on", Kind.DATE, max_len=10),
        Column("discounted", Kind.BOOL, max_len=None, default="FALSE"),
    ),
    key=("product_ref", "sku", "currency_code", "store_refs", "discounted", "starting_on"),
    optional_key=("store_refs", "starting_on"),
    references=(Reference("product_ref", "products", "product_ref"),),
    notes=(
        "A price is keyed by product, sku (`*` = all), currency, stores, discounted and "
        "starting_on: a newer standard price for the same scope replaces the current one, a "
        "scheduled one (future starting_on) sits beside it until its date. A blank discounted "
        "is stored FALSE, as the reference says.",
        "ending_on is only valid on a discounted price: on a standard price it is rejected.",
    ),
)

PRODUCT_INVENTORY = Entity(
    name="product_inventory",
    file_type="PRODUCT-INVENTORY",
    versions=("V2",),
    columns=(
        _ref("product_ref", case_insensitive=True),
        _ref("sku", case_insensitive=True),
        Column("quantity", Kind.INT, required=True, max_digits=9),
        _ref("store_ref"),
        Column("at", Kind.DATETIME, required=True, max_len=20),
    ),
    key=("sku", "store_ref"),
    latest_by="at",
    references=(Reference("product_ref", "products", "product_ref"),),
    notes=("Negative inventory quantities are accepted: stores oversell, and the reference "
           "does not forbid them.",),
)

PRODUCT_IMAGES = Entity(
    name="product_images",
    file_type="PRODUCT-IMAGES",
    versions=("V2",),
    columns=(
        _ref("product_ref", case_insensitive=True),
        Column("skus", Kind.LIST),
        Column("image_url", Kind.URL, required=True, max_len=65535),
        Column("position", Kind.INT, required=True, minimum=0, max_digits=9),
    ),
    key=("product_ref", "position"),
    replace_set_by=("product_ref",),
    references=(Reference("product_ref", "products", "product_ref"),),
)

SALES = Entity(
    name="sales",
    file_type="SALE",
    versions=("V2",),
    columns=(
        _ref("sale_ref"),
        _ref("product_ref", case_insensitive=True),
        Column("quantity", Kind.DECIMAL, required=True, max_len=7, max_digits=7),
        Column("price", Kind.DECIMAL, required=True, max_len=10, max_digits=10),
        Column("currency_code", Kind.CURRENCY, required=True, max_len=3),
        Column("created_at", Kind.DATETIME, required=True, max_len=19),
        _ref("sku", required=False, case_insensitive=True),
        _ref("shopper_ref"),
        _ref("store_ref", required=False),
        _ref("sales_associate_ref", required=False),
    ),
    key=("sale_ref", "product_ref", "sku"),
    optional_key=("sku",),
    references=(
        Reference("shopper_ref", "shoppers", "shopper_ref"),
        Reference("product_ref", "products", "product_ref"),
    ),
    month_column="created_at",
    notes=(
        "Whether sale_ref is unique per line is NOT FOUND: a line is keyed by sale_ref, "
        "product_ref and sku, so one ticket can carry several products.",
        "Returns are NOT FOUND: negative quantities and prices are accepted as returns.",
    ),
)

# Special orders (after-sale care, custom and back orders), version V2 like the core files.
ORDER_STATUS = ("open", "closed", "partial", "cancelled")

SPECIAL_ORDERS = Entity(
    name="special_orders",
    file_type="SPECIAL-ORDERS",
    versions=("V2",),
    columns=(
        Column("order_ref", required=True, min_len=3),
        _ref("shopper_id"),
        _ref("store_id"),
        _ref("sales_associate_id"),
        Column("description", max_len=65535),
        Column("total_amount", Kind.DECIMAL, minimum=0),
        Column("currency_code", Kind.CURRENCY, max_len=3, required_with=("total_amount",)),
        Column("created_at", Kind.DATETIME, required=True, max_len=None),
        Column("type", Kind.ENUM, required=True, choices=("back_order", "custom", "repair")),
        Column("status", Kind.ENUM, required=True, choices=ORDER_STATUS),
    ),
    key=("order_ref",),
    references=(Reference("shopper_id", "shoppers", "shopper_ref"),),
    notes=(
        "The columns are named *_id, as the reference names them; shopper_id names a SHOPPER "
        "record's shopper_ref, and an order waits for it like a sale. store_id and "
        "sales_associate_id are stored as sent, as a sale's store and associate are.",
        "created_at's length is given as \"10\" beside a 20-character example: any ISO 8601 "
        "date or date-time is accepted (a date is midnight UTC).",
        "total_amount below zero is rejected: an order's total is not a return.",
    ),
)

SPECIAL_ORDER_LINE_ITEMS = Entity(
    name="special_order_line_items",
    file_type="SPECIAL-ORDER-LINE-ITEMS",
    versions=("V2",),
    columns=(
        Column("order_ref", required=True, min_len=3),
        Column("line_item_ref", required=True, min_len=3),
        Column("product_ref", min_len=3),
        Column("sku"),
        Column("barcode"),
        Column("name", required=True),
        Column("description", max_len=65535),
        Column("image_url", Kind.URL, max_len=65535),
        Column("quantity", Kind.DECIMAL, required=True, minimum=0),
        Column("price", Kind.DECIMAL, minimum=0),
        Column("currency_code", Kind.CURRENCY, max_len=3, required_with=("price",)),
        Column("status", Kind.ENUM, required=True, choices=ORDER_STATUS),
    ),
    key=("line_item_ref",),
    references=(Reference("order_ref", "special_orders", "order_ref"),),
    notes=(
        "line_item_ref is unique across the brand's orders, as the reference says, so it alone is "
        "the key; a line waits for its order.",
        "product_ref and sku are stored as sent and not held for a product: a repair's line may "
        "name a service that is no PRODUCT record.",
        "quantity and price below zero are rejected (the reference gives no returns for orders).",
    ),
)

SPECIAL_ORDER_EVENTS = Entity(
    name="special_order_events",
    file_type="SPECIAL-ORDER-EVENTS",
    versions=("V2",),
    columns=(
        Column("order_ref", required=True, min_len=3),
        Column("line_item_ref", required=True, min_len=3),
        Column("sequence", Kind.INT, required=True, max_len=3, minimum=0, max_digits=3),
        Column("description", required=True),
        Column("created_at", Kind.DATETIME, required=True, max_len=None),
        Column("reference", max_len=65535),
        _bool("action_required", required=True),
    ),
    key=("order_ref", "sequence"),
    references=(
        Reference("order_ref", "special_orders", "order_ref"),
        Reference("line_item_ref", "special_order_line_items", "line_item_ref", agrees=(("order_ref", "order_ref"),)),
    ),
    append_only=True,
    notes=(
        "Events are append-only: an (order_ref, sequence) already stored is never changed. Sent "
        "again as stored it counts as unchanged; sent with other values it is rejected "
        "`append_only` (the reference says it is ignored: the rejects say so, and keep the row), "
        "whichever source sends it: events are not merged by precedence. One still held was never "
        "stored: a later version takes its place.",
        "action_required counts only on an order's last event (the highest sequence): "
        "`warehouse.special_orders.needing_action` lists the orders whose last event asks for it.",
    ),
)

# A metafield's declared types, from Shopify's list, which the platform's metafields follow (its
# own list is CUT OFF). `metafields.fits` checks a value against its type.
METAFIELD_TYPES = (
    "single_line_text_field", "multi_line_text_field", "rich_text_field", "boolean", "number_integer",
    "number_decimal", "date", "date_time", "url", "color", "json", "money", "weight", "volume",
    "dimension", "rating", "link", "id", "product_reference", "variant_reference", "collection_reference",
    "customer_reference", "company_reference", "file_reference", "page_reference", "metaobject_reference",
    "mixed_reference",
)
METAFIELD_TRUTH = ("true", "false")

METAFIELDS = Entity(
    name="metafields",
    file_type="METAFIELDS",
    versions=("V1", "V2", "V3"),
    columns=(
        Column("owner_type", Kind.ENUM, required=True, choices=("Shopper", "Product")),
        Column("owner_ref", required=True, case_insensitive_when=("owner_type", "Product")),
        Column("namespace", required=True),
        Column("key", required=True),
        _bool("is_list", required=True, truth=METAFIELD_TRUTH),
        Column("value_type", Kind.ENUM, required=True, choices=METAFIELD_TYPES),
        Column("value", Kind.TYPED, required=True, max_len=65535, typed_by=("value_type", "is_list")),
        _bool("active", required=True, truth=METAFIELD_TRUTH),
    ),
    key=("owner_type", "owner_ref", "namespace", "key"),
    references=(
        Reference("owner_ref", "shoppers", "shopper_ref", when=("owner_type", "Shopper")),
        Reference("owner_ref", "products", "product_ref", when=("owner_type", "Product")),
    ),
    notes=(
        "The file's prefix and version are NOT FOUND: `METAFIELDS`, version V1, V2 or V3, "
        "named like every other file.",
        "owner_type `Shopper` is documented; `Product` is accepted too: its owner_ref is a "
        "product_ref, matched in any case like every product_ref (`p-1` and `P-1` are one product's). "
        "A metafield waits for its owner like a sale.",
        "value_type's list is CUT OFF: Shopify's metafield types are accepted, and the value must "
        "fit its type (number_integer a whole number, number_decimal a number, boolean true/false, "
        "date YYYY-MM-DD, date_time ISO 8601, url http(s)/mailto/tel/sms, color #RRGGBB, json "
        "and the measured types JSON, single_line_text_field one line).",
        "A list's encoding is CUT OFF: with is_list true the value is a JSON array "
        "(`[\"Blue\",\"Red\"]`), as the Platform API's json_value writes it; each item fits the type.",
        "active false removes the metafield from what the platform shows (clients' metafields); the "
        "row stays, as the brand sent it.",
    ),
)

# The platform's documented dependency order; SHOPPER-ADDRESS comes right after SHOPPER; the
# metafields (of shoppers and products) after the products; special orders last, each after what
# it names.
ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        STORE_REGIONS,
        STORES,
        SALES_ASSOCIATES,
        SHOPPERS,
        SHOPPER_ADDRESSES,
        PRODUCTS,
        PRODUCT_VARIANTS,
        PRODUCT_PRICES,
        PRODUCT_INVENTORY,
        PRODUCT_IMAGES,
        METAFIELDS,
        SALES,
        SPECIAL_ORDERS,
        SPECIAL_ORDER_LINE_ITEMS,
        SPECIAL_ORDER_EVENTS,
    )
}
DEPENDENCY_ORDER: dict[str, int] = {name: i for i, name in enumerate(ENTITIES)}
BY_FILE_TYPE: dict[str, Entity] = {e.file_type: e for e in ENTITIES.values()}


def dependents(entity: str) -> list[str]:
    """Entities whose rows reference `entity` (and so may be held until it arrives)."""
    return [e.name for e in ENTITIES.values() if any(r.entity == entity for r in e.references)]


def referenced(entity: str) -> list[str]:
    return sorted({r.entity for r in ENTITIES[entity].references}, key=DEPENDENCY_ORDER.get)

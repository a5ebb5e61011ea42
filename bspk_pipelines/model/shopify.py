"""A Shopify shop as a source of a brand (`format: shopify`): where its GraphQL Admin API is, which
objects are pulled, and the files its pulls land as. Each pull or webhook batch lands as a JSONL
delivery (`customers_<stamp>.jsonl`, ...) that the same checks, precedence and apply take as a
file; which platform columns each Shopify field feeds is the built-in mapping below.

The built-in mapping is written in the brands' own mapping language (`FileMap`s, as a brand file's
`files:`), on the columns `shopify.records` reads: each named by its Shopify field path
(`defaultAddress.city`), a child's parent fields under the parent's name (`product.status`,
`order.name`), the shop's as `shop.currencyCode`. So a reject names the Shopify field a value came
from. Its choices:

- Refs are the numeric id, the GID's tail (`gid://shopify/Customer/207119551` is `207119551`): the
  id Shopify's admin and its REST payloads show. A variant's, price's, image's and sale line's
  product_ref is its product's; a sale's shopper_ref is the order customer's; store_ref a location's.
- shoppers: email from `defaultEmailAddress`, mobile_phone from `defaultPhoneNumber` as Shopify
  keeps it (E.164; anything else is rejected, never guessed), the address from `defaultAddress`
  (province as state, countryCodeV2 as country_code), tags as preferences, the language part of
  `locale` as languages (`fr-CA`: `fr`), the date of `createdAt` (UTC) as creation_date.
  email_contact is TRUE where `emailMarketingConsent.marketingState` is SUBSCRIBED, FALSE for any
  other state (NOT_SUBSCRIBED, PENDING, UNSUBSCRIBED, REDACTED, INVALID), blank where Shopify has
  no consent; chat_contact likewise from `smsMarketingConsent` (SMS is the platform's chat channel).
- products: the default row (no language_code): title, descriptionHtml, productType as its one
  category, vendor as its brand, published where `status` is ACTIVE (DRAFT, ARCHIVED: FALSE).
- product_variants: options from `selectedOptions` (Shopify has at most three), published as the
  product's status, language_code the source's `language` (the platform requires it with
  options). A variant without a SKU is rejected: the platform keys variants by SKU.
- product_prices: in the shop's currency. A variant whose `compareAtPrice` is above its `price` is
  on sale: compareAtPrice is its standard price (discounted FALSE) and price its sale price
  (discounted TRUE), two rows of its line, each naming its field. Any other variant has one price,
  its `price` (discounted FALSE); the reader leaves a compareAtPrice at or below the price out, as
  Shopify shows none, and says whether the line is on sale (`onSale`).
- product_images: the product's images (mediaContentType IMAGE; videos and 3D models are skipped,
  and so is an image Shopify has not processed yet, which has no URL), at their 1-based position
  among the product's images in the file (`position`, which the reader counts).
- stores: a location's name and address (address1 and address2 joined), its phone, the shop's
  currency, active from `isActive`.
- sales: one row per line item, of its order (`name`, `#1001`, as sale_ref), dated by the order's
  `processedAt` (else `createdAt`). quantity is `currentQuantity`: the units ordered less those
  refunded or removed, so a refunded or cancelled line stays with 0 and its month's totals are
  right. The price is the unit price before discounts, in the shop's currency. A line whose
  product was deleted (or a custom item) has no product and is rejected; an order without a
  customer (a guest checkout) is rejected, as the platform requires a shopper; test orders are
  skipped.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from bspk_pipelines.model.mapping import Dialect, EntityMap, FileMap, FileTimestamp, Strict

OBJECTS = ("customers", "products", "orders", "locations")
# A delivery's name: the object, what made it (a pull or a bulk operation) and when, to the microsecond
# in UTC: `customers_pull_20261202T013000123456Z.jsonl`. Names sort in the order they were made.
STAMP = "%Y%m%dT%H%M%S%fZ"
DELIVERY_KINDS = ("pull", "bulk")
ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"
# The oldest Admin API version whose fields the queries use (`shopify.queries`).
OLDEST_API_VERSION = "2025-04"


def delivery_name(obj: str, kind: str, stamp: str) -> str:
    return f"{obj}_{kind}_{stamp}.jsonl"


class ShopifySource(Strict):
    """A shop pulled through the GraphQL Admin API: incrementally on the brand's interval, through a
    bulk operation for the first load and backfills, and on its webhooks for near real time."""

    format: Literal["shopify"]
    shop: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$",
                      description="the shop's myshopify.com domain, e.g. maison-example.myshopify.com")
    api_version: str = Field(pattern=r"^20\d\d-(01|04|07|10)$", description="pinned stable version, e.g. 2026-01")
    token_env: str = Field(pattern=ENV_NAME, description="environment variable holding the Admin API access token")
    # The full GraphQL URL, for a stand-in of the API (tests, the demo); default Shopify's own.
    endpoint: str | None = Field(None, pattern=r"^https?://\S+$")
    webhook_secret_env: str | None = Field(None, pattern=ENV_NAME)
    objects: list[Literal[OBJECTS]] = Field(list(OBJECTS), min_length=1)  # type: ignore[valid-type]
    # Where pulls and webhooks write their deliveries before they land; default <brand>/shopify/<source>.
    drop: str | None = Field(None, pattern=r"^[^:]*$", description="a local folder: pulls write their files there")
    # The language of the shop's product texts: the platform requires it beside variant options.
    language: str = Field("en", pattern=r"^[a-z]{2}$")

    @field_validator("api_version")
    @classmethod
    def _recent_enough(cls, v: str) -> str:
        if v < OLDEST_API_VERSION:
            raise ValueError(f"{OLDEST_API_VERSION} or later: the pulls read Customer.defaultEmailAddress and "
                             f"defaultPhoneNumber, added in {OLDEST_API_VERSION}; found {v!r}")
        return v

    @field_validator("objects")
    @classmethod
    def _once(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"each object once; found {', '.join(v)}")
        return v

    @property
    def url(self) -> str:
        return self.endpoint or f"https://{self.shop}/admin/api/{self.api_version}/graphql.json"

    @property
    def dialect(self) -> Dialect:
        """Shopify's values as the built-in mapping reads them (ISO dates, `.` decimals)."""
        return Dialect()

    @property
    def files(self) -> list[FileMap]:
        """The deliveries of each pulled object and the entities they feed."""
        return [f for obj in self.objects for f in builtin_files(obj, self.language)]


def builtin_files(obj: str, language: str) -> list[FileMap]:
    """The file maps of one object's deliveries (see the module's docstring)."""
    timestamp = FileTimestamp(regex=rf"^{obj}_(?:{'|'.join(DELIVERY_KINDS)})_(\d{{8}}T\d{{12}})Z\.jsonl$",
                              format="%Y%m%dT%H%M%S%f")
    entities = {entity: EntityMap.model_validate(emap) for entity, emap in _entities(language)[obj].items()}
    return [FileMap(pattern=f"{obj}_*.jsonl", timestamp=timestamp, entities=entities)]


def _ref(field: str, kind: str, missing: str | None = None) -> dict:
    """A ref from a GID field: its numeric tail (`gid://shopify/Customer/207119551`: 207119551)."""
    return {"from": field, "transforms": [{"strip_prefix": f"gid://shopify/{kind}/"}],
            **({"missing": missing} if missing else {})}


def _is(field: str, value: str) -> dict:
    """TRUE where the field is `value`, FALSE for any other value, blank where it has none."""
    return {"from": field, "transforms": [{"lookup": {"values": {value: "TRUE"}, "default": "FALSE"}}]}


NO_SKU = ("the platform keys variants and prices by SKU: give the variant a SKU in Shopify (the product's "
          "variant, its Inventory section)")
NO_PRODUCT = ("the line item has no product: its product was deleted in Shopify, or it is a custom item, which "
              "the platform cannot hold as a sale")
NO_CUSTOMER = ("the order has no customer (a guest checkout): the platform requires a shopper on every sale, so "
               "guest orders cannot be held")


def _entities(language: str) -> dict[str, dict[str, dict]]:
    """Per object, the entities its deliveries feed, each mapped as a brand file writes it."""
    return {
        "customers": {"shoppers": {"columns": {
            "shopper_ref": _ref("id", "Customer"),
            "first_name": {"from": "firstName"},
            "last_name": {"from": "lastName"},
            "email": {"from": "defaultEmailAddress.emailAddress"},
            "mobile_phone": {"from": "defaultPhoneNumber.phoneNumber"},
            "address": {"from": "defaultAddress.address1"},
            "address_2": {"from": "defaultAddress.address2"},
            "city": {"from": "defaultAddress.city"},
            "state": {"from": "defaultAddress.province"},
            "zip_code": {"from": "defaultAddress.zip"},
            "country_code": {"from": "defaultAddress.countryCodeV2"},
            "preferences": {"from": "tags"},
            "languages": {"from": "locale", "transforms": [{"split": {"sep": "-", "index": 0}}, "lower"]},
            "email_contact": _is("emailMarketingConsent.marketingState", "SUBSCRIBED"),
            "chat_contact": _is("smsMarketingConsent.marketingState", "SUBSCRIBED"),
            "creation_date": {"from": "createdAt", "transforms": [{"split": {"sep": "T", "index": 0}}]},
        }}},
        "products": {
            "products": {"columns": {
                "product_ref": _ref("id", "Product"),
                "name": {"from": "title"},
                "description": {"from": "descriptionHtml"},
                "categories": {"from": "productType"},
                "product_brand": {"from": "vendor"},
                "published": _is("status", "ACTIVE"),
            }},
            "product_variants": {"columns": {
                "product_ref": _ref("product.id", "Product"),
                "sku": {"from": "sku", "missing": NO_SKU},
                "barcode": {"from": "barcode"},
                **{f"option_{i + 1}_{part}": {"from": f"selectedOptions[{i}].{part}"}
                   for i in range(3) for part in ("name", "value")},
                "language_code": {"constant": language},
                "published": _is("product.status", "ACTIVE"),
            }},
            "product_prices": {
                "unpivot": {"columns": ["compareAtPrice", "price"], "name": "priceField", "value": "amount"},
                # A variant not on sale has no compareAtPrice (see `shopify.records`): one price.
                "skip": [{"blank": "amount"}],
                "columns": {
                    "product_ref": _ref("product.id", "Product"),
                    "sku": {"from": "sku", "missing": NO_SKU},
                    "price": {"from": "amount"},
                    "currency_code": {"from": "shop.currencyCode"},
                    # Only the price of a variant on sale is a sale price.
                    "discounted": {"template": "{priceField} {onSale}",
                                   "transforms": [{"lookup": {"values": {"price TRUE": "TRUE"}, "default": "FALSE"}}]},
                },
            },
            "product_images": {
                "skip": [{"column": "mediaContentType", "not_in": ["IMAGE"]}, {"blank": "image.url"}],
                "columns": {
                    "product_ref": _ref("product.id", "Product"),
                    "image_url": {"from": "image.url"},
                    "position": {"from": "position"},
                },
            },
        },
        "orders": {"sales": {
            "skip": [{"column": "order.test", "in": ["true"]}],
            "columns": {
                "sale_ref": {"from": "order.name"},
                "product_ref": _ref("product.id", "Product", NO_PRODUCT),
                "sku": {"from": "sku"},
                "quantity": {"from": "currentQuantity"},
                "price": {"from": "originalUnitPriceSet.shopMoney.amount"},
                "currency_code": {"from": "originalUnitPriceSet.shopMoney.currencyCode"},
                # Shopify's times are UTC (`2026-01-15T10:00:00Z`); the platform's are written without the Z.
                "created_at": {"coalesce": ["order.processedAt", "order.createdAt"],
                               "transforms": [{"replace": {"pattern": "Z$", "with": ""}}]},
                "shopper_ref": _ref("order.customer.id", "Customer", NO_CUSTOMER),
            },
        }},
        "locations": {"stores": {"columns": {
            "store_ref": _ref("id", "Location"),
            "name": {"from": "name"},
            "address": {"concat": ["address.address1", "address.address2"], "sep": ", "},
            "city": {"from": "address.city"},
            "state": {"from": "address.province"},
            "zip_code": {"from": "address.zip"},
            "country_code": {"from": "address.countryCode"},
            "phone": {"from": "address.phone"},
            "currency_code": {"from": "shop.currencyCode"},
            "active": {"from": "isActive", "values": {"true": "TRUE", "false": "FALSE"}},
        }}},
    }

"""A Shopify shop as a source of a brand (`format: shopify`): where its GraphQL Admin API is, which
objects are pulled, and the files its pulls land as. Each pull or webhook batch lands as a JSONL
delivery (`customers_<stamp>.jsonl`, ...) that the same checks, precedence and apply take as a
file; which platform columns each Shopify field feeds is the built-in mapping below."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from bspk_pipelines.model.mapping import Dialect, FileMap, FileTimestamp, Strict

OBJECTS = ("customers", "products", "orders", "locations")
# A delivery's name: the object, what made it (pull, bulk or webhook) and when, to the microsecond
# in UTC: `customers_pull_20261202T013000123456Z.jsonl`. Names sort in the order they were made.
STAMP = "%Y%m%dT%H%M%S%fZ"
DELIVERY_KINDS = ("pull", "bulk", "webhook")
ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"


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
    drop: str | None = None
    # The language of the shop's product texts: the platform requires it beside variant options.
    language: str = Field("en", pattern=r"^[a-z]{2}$")

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
    raise NotImplementedError(obj, language, timestamp)

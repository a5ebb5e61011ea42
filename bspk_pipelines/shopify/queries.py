"""The GraphQL documents a Shopify pull sends, and the fields it reads of each object.

Each object is read with the same fields by a paginated pull and by a bulk operation, so both land
the same lines (see `shopify.pull`). Page sizes keep each query's requested cost under Shopify's
1,000-point cap by its documented model: an object costs 1, a connection 2 plus `first` times its
node's cost (`requested_cost` works it out for our documents; the stand-in charges the same).
"""

from __future__ import annotations

import re

SHOP = "query Shop { shop { id name currencyCode myshopifyDomain } }"
SCOPES = "query Scopes { currentAppInstallation { accessScopes { handle } } }"

CUSTOMER = """id firstName lastName locale note tags createdAt updatedAt
defaultEmailAddress { emailAddress } defaultPhoneNumber { phoneNumber }
emailMarketingConsent { marketingState } smsMarketingConsent { marketingState }
defaultAddress { address1 address2 city province zip countryCodeV2 }"""
PRODUCT = "id title handle status vendor productType tags descriptionHtml createdAt updatedAt"
VARIANT = "id sku barcode price compareAtPrice selectedOptions { name value }"
MEDIA = "id mediaContentType ... on MediaImage { image { url altText } }"
ORDER = "id name test createdAt processedAt updatedAt cancelledAt customer { id }"
LINE_ITEM = "id sku quantity currentQuantity originalUnitPriceSet { shopMoney { amount currencyCode } } product { id } variant { id }"
LOCATION = "id name isActive address { address1 address2 city province zip countryCode phone }"

PAGE_INFO = "pageInfo { hasNextPage endCursor }"

# Per object: the root connection, its node's fields, and its nested connections (name, fields,
# page size in a paginated pull). A nested connection with more nodes than its page is read on
# through `CHILD_PAGE` queries of its parent.
OBJECTS = {
    "customers": ("customers", CUSTOMER, ()),
    "products": ("products", PRODUCT, (("variants", VARIANT, 50), ("media", MEDIA, 20))),
    "orders": ("orders", ORDER, (("lineItems", LINE_ITEM, 20),)),
    "locations": ("locations", LOCATION, ()),
}
# Root page sizes: the most that keep the requested cost under 1,000 (see `requested_cost`).
PAGE_SIZE = {"customers": 150, "products": 6, "orders": 8, "locations": 100}
# Objects whose root connection takes `query:` and `sortKey: UPDATED_AT`; locations are read whole.
INCREMENTAL = ("customers", "products", "orders")
# The parent object each nested connection is read on from, by `node(id:)`.
PARENT_TYPE = {"products": "Product", "orders": "Order"}
CHILD_PAGE_SIZE = 100


def _nested(obj: str, paginated: bool) -> str:
    _, _, children = OBJECTS[obj]
    if paginated:
        return " ".join(f"{name}(first: {size}) {{ nodes {{ {fields} }} {PAGE_INFO} }}" for name, fields, size in children)
    return " ".join(f"{name} {{ edges {{ node {{ {fields} }} }} }}" for name, fields, _ in children)


def page_query(obj: str) -> str:
    """One page of the object's root connection, `$cursor` after `$q` (search syntax)."""
    root, fields, _ = OBJECTS[obj]
    if obj in INCREMENTAL:
        args = f"first: {PAGE_SIZE[obj]}, after: $cursor, query: $q, sortKey: UPDATED_AT"
        params = "($cursor: String, $q: String)"
    else:
        # Shopify leaves deactivated locations out unless asked: the platform keeps them, inactive.
        args, params = f"first: {PAGE_SIZE[obj]}, after: $cursor, includeInactive: true", "($cursor: String)"
    return f"query Page{params} {{ {root}({args}) {{ nodes {{ {fields} {_nested(obj, True)} }} {PAGE_INFO} }} }}"


def child_page_query(obj: str, child: str) -> str:
    """The rest of one parent's nested connection, `$cursor` on from its first page."""
    _, _, children = OBJECTS[obj]
    fields = next(f for name, f, _ in children if name == child)
    return (f"query ChildPage($id: ID!, $cursor: String) {{ node(id: $id) {{ ... on {PARENT_TYPE[obj]} {{ "
            f"{child}(first: {CHILD_PAGE_SIZE}, after: $cursor) {{ nodes {{ {fields} }} {PAGE_INFO} }} }} }} }}")


def bulk_query(obj: str, search: str | None) -> str:
    """The object's bulk operation query: every node, nested connections as lines of their own."""
    root, fields, _ = OBJECTS[obj]
    args = f'(query: "{_quoted(search)}")' if search else ""
    return f"{{ {root}{args} {{ edges {{ node {{ {fields} {_nested(obj, False)} }} }} }} }}"


BULK_RUN = """mutation Bulk($query: String!) {
  bulkOperationRunQuery(query: $query) { bulkOperation { id status } userErrors { field message } }
}"""
BULK_STATUS = """query BulkStatus($id: ID!) {
  node(id: $id) { ... on BulkOperation { id status errorCode objectCount rootObjectCount url partialDataUrl } }
}"""


def _quoted(search: str) -> str:
    return search.replace("\\", "\\\\").replace('"', '\\"')


def since(watermark: str) -> str:
    """Search syntax for nodes updated at or after `watermark` (quoted, so the time counts)."""
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", watermark):
        raise ValueError(f"a UTC timestamp such as 2026-01-01T00:00:00Z; found {watermark!r}")
    return f"updated_at:>='{watermark}'"


def requested_cost(obj: str) -> int:
    """A page query's requested cost by Shopify's model: each object 1, a connection 2 plus
    `first` times its node's cost. Scalars cost nothing."""
    def node_cost(fields: str) -> int:
        return 1 + fields.count("{") - fields.count("... on")  # each nested object selection costs 1
    _, fields, children = OBJECTS[obj]
    node = node_cost(fields) + sum(2 + size * node_cost(f) + 1 for _, f, size in children)  # + pageInfo
    return 2 + PAGE_SIZE[obj] * node + 1

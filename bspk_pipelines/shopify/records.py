"""Reading a landed Shopify delivery (JSONL) into rows of text, as `parse.read_batches` reads a CSV
file: columns named by Shopify field path, each row tagged with the line of the node it comes from.

A delivery, from a paginated pull and a bulk operation alike, is the shop's node on line 1 (`{"id":
"gid://shopify/Shop/1", "currencyCode": "EUR", ...}`), then one node per line as Shopify's bulk
operations write them: root nodes (Customer, Product, Order, Location, named by their GID) with
their nested objects inline, and the nodes of their nested connections (ProductVariant, the Media
of a product, LineItem) on lines of their own carrying `__parentId`, not necessarily after their
parent. The fields read are those `shopify.queries` asks for, so each node is read with an explicit
schema; numbers and booleans are read as their JSON text (`3`, `true`).

The rows of an entity are its nodes: a nested object's fields are `defaultAddress.city`, a list of
text is the platform's `;` list (tags), a list of objects gives its first items' fields as
`selectedOptions[0].name`; a child carries its parent's id and the parent fields its entity reads,
under the parent's name (`product.id`, `order.name`), and every row the shop's fields
(`shop.currencyCode`). Two columns are worked out where the platform needs more than a field:
a variant's `onSale` (its compareAtPrice is above its price; a compareAtPrice that is not is left
out, as Shopify shows none) and an image's `position` (1-based, among its product's images in the
file's order).

Memory and time stay bounded: the file's lines stream through in batches, and a line's JSON is
decoded in full only where the entity wants its node (a child's line is told by its `__parentId`
key before it is decoded); the other lines are only checked to be JSON objects. For children the
file is read once before for their parents, of which only the id and the fields the children carry
are kept (for 1,000,000 order lines of 333,000 orders: about 120 bytes an order, 40 MB; 4 s
to read them all on two cores).

A file fails as a whole (FileFailure) where it is not such a delivery: no shop node on line 1, a line
that is not a JSON object or is over MAX_ROW_BYTES.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from bspk_pipelines.ingest.parse import MAX_ROW_BYTES, FileFailure, ParsedBatch
from bspk_pipelines.model.entities import LINE
from bspk_pipelines.shopify import queries

# The fields of our documents that are GraphQL lists (every other field is an object or a scalar),
# and how many items of a list of objects are read (Shopify gives a variant at most three options).
LISTS = {"tags": None, "selectedOptions": 3}
# The GID types of a product's media.
MEDIA_TYPES = ("MediaImage", "Video", "ExternalVideo", "Model3d")
PARENT_ID = "__parentId"
WHAT_TO_DO = "is this a delivery of the Shopify connector, landed unchanged? Pull it again"


@dataclass(frozen=True)
class Nodes:
    """The nodes an entity's rows come from: their GID types and field selection, and for a
    child its parent's name (the prefix of its columns), GID type, selection and the parent
    fields the entity reads."""

    types: tuple[str, ...]
    fields: str
    parent: str | None = None
    parent_type: str | None = None
    parent_fields_selection: str = ""
    parent_fields: tuple[str, ...] = ()


_PRODUCT = {"parent": "product", "parent_type": "Product", "parent_fields_selection": queries.PRODUCT}
NODES = {
    "shoppers": Nodes(("Customer",), queries.CUSTOMER),
    "stores": Nodes(("Location",), queries.LOCATION),
    "products": Nodes(("Product",), queries.PRODUCT),
    "product_variants": Nodes(("ProductVariant",), queries.VARIANT, **_PRODUCT, parent_fields=("status",)),
    "product_prices": Nodes(("ProductVariant",), queries.VARIANT, **_PRODUCT),
    "product_images": Nodes(MEDIA_TYPES, queries.MEDIA, **_PRODUCT),
    "sales": Nodes(("LineItem",), queries.LINE_ITEM, parent="order", parent_type="Order",
                   parent_fields_selection=queries.ORDER,
                   parent_fields=("name", "test", "processedAt", "createdAt", "customer.id")),
}


def schema(selection: str) -> dict[str, pl.DataType]:
    """A GraphQL field selection (`id tags defaultAddress { city }`) as the polars schema of the
    nodes it gives; an inline fragment's fields (`... on MediaImage { image { url } }`) are the node's."""
    tokens = re.findall(r"\.\.\.\s*on\s+\w+|[{}]|\w+", selection)

    def fields(i: int) -> tuple[dict[str, pl.DataType], int]:
        out: dict[str, pl.DataType] = {}
        while i < len(tokens) and tokens[i] != "}":
            name = tokens[i]
            if i + 1 < len(tokens) and tokens[i + 1] == "{":
                inner, i = fields(i + 2)
                if name.startswith("..."):
                    out.update(inner)
                else:
                    out[name] = pl.List(pl.Struct(inner)) if name in LISTS else pl.Struct(inner)
            else:
                out[name] = pl.List(pl.Utf8) if name in LISTS else pl.Utf8
                i += 1
        return out, i + 1

    return fields(0)[0]


def _flat(name: str, dtype: pl.DataType, expr: pl.Expr) -> Iterator[pl.Expr]:
    """A field as text columns named by path: an object's fields, a list of text as a `;` list, a
    list of objects as its first items' fields."""
    if isinstance(dtype, pl.Struct):
        for f in dtype.fields:
            yield from _flat(f"{name}.{f.name}", f.dtype, expr.struct.field(f.name))
    elif isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
        for i in range(LISTS[name.rsplit(".", 1)[-1]]):
            yield from _flat(f"{name}[{i}]", dtype.inner, expr.list.get(i, null_on_oob=True))
    elif isinstance(dtype, pl.List):
        yield expr.list.join(";").alias(name)
    else:
        yield expr.alias(name)


def _columns(fields: dict[str, pl.DataType], prefix: str = "") -> list[pl.Expr]:
    """Every field of a node's schema as text columns, blanks as null."""
    exprs = [e for name, dtype in fields.items() for e in _flat(f"{prefix}{name}", dtype, pl.col(name))]
    return [pl.when(e.str.strip_chars() != "").then(e).alias(e.meta.output_name()) for e in exprs]


# A child's line: `"__parentId"` followed by a colon is a key (a string value is followed by `,`,
# `}` or `]`, and a quote inside a string is escaped), so a customer named `__parentId` is no child.
CHILD = pl.col("_raw").str.contains(f'"{PARENT_ID}"\\s*:')


def _of_type(types: tuple[str, ...]) -> pl.Expr:
    return pl.any_horizontal(pl.col("id").str.starts_with(f"gid://shopify/{t}/") for t in types)


def _lines(path: Path) -> pl.LazyFrame:
    """The file's lines as they are, numbered: JSON is decoded only where a node is wanted, which
    is many times faster than decoding every node in full."""
    return pl.scan_csv(path, has_header=False, separator="\x00", quote_char=None, infer_schema=False,
                       new_columns=["_raw"], encoding="utf8").with_row_index(LINE, offset=1)


def updated_since(path: Path, horizon: str) -> dict[str, str]:
    """The root nodes of a delivery updated at or after `horizon` (ISO, UTC): {id: updatedAt}."""
    roots = _lines(path).slice(1).filter(~CHILD).select(
        pl.col("_raw").str.json_path_match("$.id").alias("id"),
        pl.col("_raw").str.json_path_match("$.updatedAt").alias("updatedAt"))
    found = roots.filter(pl.col("updatedAt") >= horizon).collect(engine="streaming")
    return dict(zip(found["id"].to_list(), found["updatedAt"].to_list()))


def _nodes(lines: pl.DataFrame, fields: dict[str, pl.DataType], types: tuple[str, ...], prefix: str = "") -> pl.DataFrame:
    """Of some lines, the nodes of these types as text columns (`prefix` before their names), with
    their line and `__parentId`. A line that is not a JSON object fails (polars raises)."""
    decoded = lines.select(LINE, pl.col("_raw").str.json_decode(pl.Struct({**fields, PARENT_ID: pl.Utf8}))).unnest("_raw")
    return decoded.filter(_of_type(types)).select(pl.col(LINE).cast(pl.Int64), PARENT_ID, *_columns(fields, prefix))


def read_batches(path: Path, entity_name: str, batch_rows: int) -> Iterator[ParsedBatch]:
    """The rows of the entity in a landed Shopify delivery, in batches of at most `batch_rows`, in
    the file's order, each with the line of its node (see the module's docstring). Every line of
    the file is checked to be a JSON object, whichever entity it feeds."""
    nodes = NODES[entity_name]
    _check_lines(path)
    shop = _shop(path)
    fields = schema(nodes.fields)
    wanted = CHILD if nodes.parent else ~CHILD
    derive = DERIVED[entity_name]() if entity_name in DERIVED else None
    try:
        parents = _parents(path, nodes, batch_rows) if nodes.parent_fields else None
        # Line 1 is there (`_shop`): the file gives one batch at least, as a CSV file does.
        for chunk in _lines(path).collect_batches(chunk_size=batch_rows):
            chunk.filter(~wanted).select(pl.col("_raw").str.json_decode(pl.Struct({"id": pl.Utf8})))  # JSON objects?
            batch = _nodes(chunk.filter(wanted), fields, nodes.types)
            if parents is not None:
                batch = batch.join(parents, on=PARENT_ID, how="left", maintain_order="left")
            if derive:
                batch = derive(batch)
            if nodes.parent:
                batch = batch.rename({PARENT_ID: f"{nodes.parent}.id"})
            batch = batch.drop(PARENT_ID, strict=False).with_columns(
                pl.lit(v, dtype=pl.Utf8).alias(k) for k, v in shop.items())
            yield ParsedBatch(batch.select(pl.exclude(LINE), LINE), [])
    except pl.exceptions.PolarsError as e:
        raise _failure(path, e) from None


def _parents(path: Path, nodes: Nodes, batch_rows: int) -> pl.DataFrame:
    """The parents of a child entity's nodes: their id (as `__parentId`, to join on) and the fields
    the entity reads (`order.name`), nothing more."""
    fields = schema(nodes.parent_fields_selection)
    carried = [f"{nodes.parent}.{f}" for f in nodes.parent_fields]
    found = [_nodes(chunk, fields, (nodes.parent_type,), f"{nodes.parent}.")
             .select(pl.col(f"{nodes.parent}.id").alias(PARENT_ID), *carried)
             for chunk in _lines(path).filter(~CHILD).collect_batches(chunk_size=batch_rows)]
    return pl.concat(found)


def _prices():
    """A variant is on sale where its compareAtPrice is above its price; any other compareAtPrice
    is none (Shopify shows none)."""
    def derive(batch: pl.DataFrame) -> pl.DataFrame:
        above = (pl.col("compareAtPrice").cast(pl.Float64, strict=False)
                 > pl.col("price").cast(pl.Float64, strict=False)).fill_null(False)
        return batch.with_columns(pl.when(above).then(pl.col("compareAtPrice")).alias("compareAtPrice"),
                                  pl.when(above).then(pl.lit("TRUE")).otherwise(pl.lit("FALSE")).alias("onSale"))
    return derive


def _positions():
    """An image's 1-based position among its product's images, in the file's order, across
    batches: what is kept is a count per product."""
    before = pl.DataFrame(schema={PARENT_ID: pl.Utf8, "_before": pl.Int64})

    def derive(batch: pl.DataFrame) -> pl.DataFrame:
        nonlocal before
        image = pl.col("mediaContentType") == "IMAGE"
        counted = batch.join(before, on=PARENT_ID, how="left", maintain_order="left").with_columns(
            (pl.col("_before").fill_null(0) + image.cast(pl.Int64).cum_sum().over(PARENT_ID)).alias("_n"))
        seen = counted.group_by(PARENT_ID).agg(pl.col("_n").max().alias("_before"))
        before = pl.concat([before.join(seen, on=PARENT_ID, how="anti"), seen])
        return counted.with_columns(pl.when(image).then(pl.col("_n").cast(pl.Utf8)).alias("position")).drop("_before", "_n")
    return derive


# Per entity, a maker of what works out its derived columns batch after batch.
DERIVED = {"product_prices": _prices, "product_images": _positions}


def _shop(path: Path) -> dict[str, str | None]:
    """The shop's fields from line 1, as `shop.<field>` columns; FileFailure if line 1 is not the shop."""
    with path.open("rb") as f:
        first = f.readline(MAX_ROW_BYTES + 1)
    try:
        node = json.loads(first)
    except ValueError:
        node = None
    if not isinstance(node, dict) or not str(node.get("id", "")).startswith("gid://shopify/Shop/"):
        found = first[:100].decode("utf-8", "replace").strip() or "nothing"
        raise FileFailure(f"{path.name}: line 1: expected the shop's node ({{\"id\": \"gid://shopify/Shop/...\", "
                          f"\"currencyCode\": ...}}), which a delivery starts with; found {found!r}: {WHAT_TO_DO}")
    fields = re.search(r"shop \{(.*?)\}", queries.SHOP).group(1).split()
    return {f"shop.{f}": None if node.get(f) is None else str(node[f]) for f in fields}


def _check_lines(path: Path) -> None:
    """FileFailure at the first line over MAX_ROW_BYTES or blank (which is no node, and which polars
    would pass over, numbering the lines after it wrong). One pass in pieces: no line is held."""
    lines, run, previous = 0, 0, b"\n"  # lines ended before the piece; bytes since the last line feed
    with path.open("rb") as f:
        for piece in iter(lambda: f.read(MAX_ROW_BYTES), b""):
            first = piece.find(b"\n")
            if (run + len(piece) if first < 0 else run + first) > MAX_ROW_BYTES:
                raise FileFailure(f"{path.name}: line {lines + 1}: longer than {MAX_ROW_BYTES:,} bytes (1 MiB), more "
                                  f"than a node of ours holds: {WHAT_TO_DO}")
            joined = previous + piece
            blank = joined.find(b"\n\n")
            if blank >= 0:
                line = lines + 1 + joined.count(b"\n", 1, blank + 1)
                raise FileFailure(f"{path.name}: line {line}: a blank line, not a node: {WHAT_TO_DO}")
            run = run + len(piece) if first < 0 else len(piece) - piece.rfind(b"\n") - 1
            lines, previous = lines + piece.count(b"\n"), piece[-1:]


def _failure(path: Path, error: Exception) -> FileFailure:
    """Where polars could not read the file: the first line that is not a JSON object, or else
    (a node whose fields are not of the types asked for) what polars says."""
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                node = json.loads(line)
            except ValueError as e:
                return FileFailure(f"{path.name}: line {number}: not JSON ({e}): {WHAT_TO_DO}")
            if not isinstance(node, dict):
                return FileFailure(f"{path.name}: line {number}: a JSON {type(node).__name__}, not a node (an object): "
                                   f"{WHAT_TO_DO}")
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return FileFailure(f"{path.name}: a node is not in the shape the connector's queries ask for ({reason}): {WHAT_TO_DO}")

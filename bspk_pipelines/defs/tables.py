"""What the UI shows of the shape of a brand's data: the columns of its tables and files, and
the kind of storage that holds its platform tables."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

import dagster as dg
import sqlalchemy as sa

from bspk_pipelines.model.constraints import constraints, is_nullable, is_unique, value_rule
from bspk_pipelines.model.entities import ENTITIES, Entity
from bspk_pipelines.warehouse.schema import ENTITY_TABLES, folded_columns, polars_schema

# The warehouse's own columns beside the entity's: description, and whether they are keys.
BOOKKEEPING = {
    "brand": ("the brand the row belongs to", True),
    "_file": ("the file that last changed the row", False),
    "_updated_at": ("when the row last changed (UTC)", False),
}
# Dagster's kind (the icon in the UI) of the databases a warehouse URL may name.
KIND_OF_DIALECT = {"postgresql": "postgres", "sqlite": "sqlite"}


def column_schema(entity_name: str, types: dict[str, str]) -> dg.TableSchema:
    """The columns `types` names, in its order with the type their store gives them, described by
    the entity's spec: what a value must be, whether it is part of the key or required."""
    return dg.TableSchema(columns=[_column(ENTITIES[entity_name], name, type_) for name, type_ in types.items()])


def _column(entity: Entity, name: str, type_: str) -> dg.TableColumn:
    if name in BOOKKEEPING:
        description, key = BOOKKEEPING[name]
        return dg.TableColumn(name, type=type_, description=description, constraints=dg.TableColumnConstraints(
            nullable=False, other=["key"] if key else []))
    if name in folded_columns(entity):
        sent = folded_columns(entity)[name]
        return dg.TableColumn(name, type=type_, description=f"{sent} in lower case: what the key matches on, whatever "
                              "case the brand sends it in", constraints=dg.TableColumnConstraints(nullable=False, other=["key"]))
    spec = entity.column(name)
    return dg.TableColumn(
        name, type=type_, description=value_rule(spec),
        # A key of several columns is unique only as a whole; `other` says which columns are part of it.
        constraints=dg.TableColumnConstraints(nullable=is_nullable(entity, spec), unique=is_unique(entity, spec),
                                              other=constraints(entity, spec)),
    )


def table_schema(entity_name: str, dialect: sa.Dialect) -> dg.TableSchema:
    """The columns of an entity's platform table, with the types the warehouse stores."""
    return _table_schema(entity_name, dialect)


@cache  # the same for every brand of a build (one dialect object): built once, not once per brand
def _table_schema(entity_name: str, dialect: sa.Dialect) -> dg.TableSchema:
    return column_schema(entity_name, {c.name: c.type.compile(dialect=dialect) for c in ENTITY_TABLES[entity_name].columns})


def file_schema(entity_name: str, columns: Iterable[str]) -> dg.TableSchema:
    """The columns of validated or mapped rows (parquet), in the entity's order, as polars types them."""
    return _file_schema(entity_name, frozenset(columns))


@cache  # the same for every brand whose source sends these columns
def _file_schema(entity_name: str, wanted: frozenset[str]) -> dg.TableSchema:
    return column_schema(entity_name, {n: str(t) for n, t in polars_schema(ENTITIES[entity_name]).items() if n in wanted})


def warehouse_dialect(url: str) -> sa.Dialect:
    """The SQL dialect of a warehouse URL, without connecting or loading its driver."""
    return sa.engine.make_url(url).get_dialect()()


def table_kinds(dialect: sa.Dialect) -> set[str]:
    """`postgres` or `sqlite`; another database's tables are `sql` and its dialect's name."""
    kind = KIND_OF_DIALECT.get(dialect.name)
    return {kind} if kind else {"sql", dialect.name}

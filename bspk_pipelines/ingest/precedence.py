"""Precedence: which source may set which attribute of an entity fed by several sources."""

from __future__ import annotations

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.entities import ENTITIES

def owned_columns(brand: Brand, source: str, entity_name: str) -> list[str]:
    """The entity's key plus the attributes `source` may set under the brand's precedence."""
    entity = ENTITIES[entity_name]
    return list(entity.key) + [a for a in entity.attributes if source in brand.attribute_owners(entity_name, a)]

def provided_columns(brand: Brand, entity_name: str) -> dict[str, set[str]]:
    entity = ENTITIES[entity_name]
    out = {}
    for sid in brand.sources_of(entity_name):
        src = brand.sources[sid]
        if src.format == "bspk":
            out[sid] = set(entity.column_names)
        else:
            out[sid] = {c for f in src.files if entity_name in f.feeds for c in f.feeds[entity_name].columns}
    return out

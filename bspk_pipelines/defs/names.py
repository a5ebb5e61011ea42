"""Every Dagster name the project builds, from one place, so keys, jobs and sensors never drift apart."""

from __future__ import annotations

import dagster as dg

# The layers a brand's data passes through: the second part of its asset keys, the end of its groups.
RAW, VALIDATED, MAPPED, BSPK, OUTBOUND = "raw", "validated", "mapped", "bspk", "outbound"


def raw_key(brand: str, source: str) -> dg.AssetKey:
    """A source's delivered files as they came: a file lands once, whatever entities it feeds."""
    return dg.AssetKey([brand, RAW, source])


def validated_key(brand: str, source: str, entity: str) -> dg.AssetKey:
    return dg.AssetKey([brand, VALIDATED, source, entity])


def mapped_key(brand: str, source: str, entity: str) -> dg.AssetKey:
    return dg.AssetKey([brand, MAPPED, source, entity])


def bspk_key(brand: str, entity: str) -> dg.AssetKey:
    return dg.AssetKey([brand, BSPK, entity])


def group(brand: str, layer: str) -> str:
    """A brand's assets of one layer (`acme_raw`): the UI labels a node by its key's last part
    (the entity), so the group is what tells a raw file from its validated and mapped rows."""
    return f"{brand}_{layer}"


def file_partitions(brand: str, source: str) -> str:
    """A source's deliveries: one partition each, keyed by the delivery (`name`, `name@2`...)."""
    return f"{brand}__{source}__files"


def ingest_job(brand: str, source: str) -> str:
    return f"{brand}__{source}__ingest"


def apply_job(brand: str) -> str:
    return f"{brand}__apply"


# One of each per code location, for all its brands.
DROP_SENSOR = "drop_sensor"
WEBHOOK_SENSOR = "webhook_sensor"


def sync_schedule(brand: str) -> str:
    return f"{brand}__sync_schedule"


BRAND_TAG = "brand"
# A Shopify source's pull runs: limited to one at a time per `<brand>.<source>`, not by BRAND_TAG.
PULL_TAG = "bspk/pull"
FILE_TAG = "bspk/file"
# The sha256 of the file as the drop folder's look saw it: the run lands exactly those bytes.
SHA_TAG = "bspk/sha256"
# Dagster's own tags for a run that materialises a range of partitions.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def months_job(brand: str, entity: str) -> str:
    return f"{brand}__{entity}__months"


def extract_key(brand: str, entity: str) -> dg.AssetKey:
    return dg.AssetKey([brand, "extract", entity])


def webhooks_key(brand: str) -> dg.AssetKey:
    return dg.AssetKey([brand, "webhooks", "deliveries"])


def extract_job(brand: str) -> str:
    return f"{brand}__extract"


def extract_schedule(brand: str) -> str:
    return f"{brand}__extract_schedule"


SHOPIFY = "shopify"


def shopify_key(brand: str, source: str) -> dg.AssetKey:
    """A Shopify source's objects as its pulls find them: upstream of the source's raw deliveries."""
    return dg.AssetKey([brand, SHOPIFY, source])


def pull_job(brand: str, source: str) -> str:
    return f"{brand}__{source}__pull"


def pull_schedule(brand: str, source: str) -> str:
    return f"{brand}__{source}__pull_schedule"

"""`bspk entities [NAME]`: the reference of the platform's files (docs/entities.md), for one entity
or all of them, written from the entity specs without Dagster."""

from __future__ import annotations

import argparse
import sys

from bspk_pipelines.cli import print_or_write
from bspk_pipelines.model.entities import ENTITIES
from bspk_pipelines.model.reference import document, find, section


def run(args: argparse.Namespace) -> int:
    """Print (or, with --write, write) the reference; an unknown NAME is exit code 2."""
    if args.name:
        entity = find(args.name)
        if entity is None:
            print(f"bspk entities: unknown entity {args.name!r}; known: {', '.join(ENTITIES)}", file=sys.stderr)
            return 2
        text = section(entity)
    else:
        text = document()
    print_or_write(text, args.write)
    return 0

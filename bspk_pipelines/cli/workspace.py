"""`bspk workspace`: the Dagster workspace of a platform that splits its brands across code
locations, one entry per `location:` the brand files name (see `bspk_pipelines.locations`)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from bspk_pipelines.cli import print_or_write
from bspk_pipelines.model.brand_file import load_brands

HEADER = """# Written by `bspk workspace` from the brand files in {mappings}: one code location per
# `location:` they name, each its own code server loading only its brands. Write it again when a
# brand file names a new location.
{summary}
load_from:
"""
ENTRY = """  - python_module:
      module_name: bspk_pipelines.locations
      attribute: {location}
      location_name: {location}
      working_directory: {working_directory}
"""


def workspace_yaml(locations: Counter, mappings: Path, working_directory: str) -> str:
    summary = "\n".join(f"#   {loc}: {n} brand(s)" for loc, n in sorted(locations.items()))
    return HEADER.format(mappings=mappings, summary=summary) + "".join(
        ENTRY.format(location=loc, working_directory=working_directory) for loc in sorted(locations))


def run(args: argparse.Namespace) -> int:
    from bspk_pipelines.settings import Settings

    mappings = Settings.from_env().mappings_dir
    brands = load_brands(mappings)
    if not brands:
        print(f"bspk workspace: no brand file in {mappings}", file=sys.stderr)
        return 2
    locations = Counter(b.location for b in brands)
    text = workspace_yaml(locations, mappings, args.working_directory)
    print_or_write(text, args.write, f": {len(locations)} code location(s)")
    return 0

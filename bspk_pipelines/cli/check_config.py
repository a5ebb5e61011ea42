"""`bspk check-config`: every brand file validated, without Dagster, so it answers at once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bspk_pipelines.model.brand import ConfigError, load_brands


def run(args: argparse.Namespace) -> int:
    """Report every mistake in the brand files with file, key path, expected and found."""
    try:
        brands = load_brands(Path(args.mappings) if args.mappings else None)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(f"{len(e.problems)} problem(s) found", file=sys.stderr)
        return 1
    for b in brands:
        print(f"{b.brand}: ok ({', '.join(f'{s} ({src.format})' for s, src in b.sources.items())}; entities: {', '.join(b.entities)})")
    return 0

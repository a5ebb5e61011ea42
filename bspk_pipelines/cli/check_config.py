"""`bspk check-config`: every brand file validated, without Dagster, so it answers at once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bspk_pipelines.model.brand_file import ConfigError, load_brands
from bspk_pipelines.settings import SettingError, Settings


def run(args: argparse.Namespace) -> int:
    """Report every mistake in the brand files with file, key path, expected and found."""
    try:
        brands = load_brands(Path(args.mappings) if args.mappings else Settings.from_env().mappings_dir)
    except SettingError as e:  # as `environment.checked` does, without that module's imports (SQLAlchemy, outbound)
        print(e, file=sys.stderr)
        return 2
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(f"{len(e.problems)} problem(s) found", file=sys.stderr)
        return 1
    for b in brands:
        print(f"{b.brand}: ok ({', '.join(f'{s} ({src.format})' for s, src in b.sources.items())}; entities: {', '.join(b.entities)})")
    return 0

"""`bspk preview`: a dry run of one file by a brand's config. It is read, mapped and checked for
each entity it feeds, and shown: the first mapped rows, counts, rejects with line, column, value,
rule and hint, the rows its skip rules leave out with their rule, and the attributes its source
would set under precedence. Nothing is written to
the warehouse, the landing zone or the Dagster instance.

Without a brand (onboarding one from a file, before its config), with --detect, or when the name
fits none of the brand's files, it says what the file looks like instead and the dialect that
reads it (`cli.detect`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from bspk_pipelines.cli import detect
from bspk_pipelines.cli.environment import chosen_brands, deployment
from bspk_pipelines.ingest.check import DryRun, dry_run
from bspk_pipelines.ingest.drop import FileNameError, route
from bspk_pipelines.ingest.parse import LINE, FileFailure
from bspk_pipelines.model.entities import CELL

SHOWN_REJECTS = 20


def run(args: argparse.Namespace) -> int:
    """Exit 0 when the file can be read (rows may still be rejected), 1 when it cannot be read as
    a whole or its name fits no file mapping, 2 for a config error. A detection exits 0 when it
    suggests a dialect."""
    path = Path(args.file)
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 1
    if args.detect or args.brand is None:
        return detected(path, args.rows)
    [brand] = chosen_brands(deployment(), [args.brand])
    try:
        delivery = route(brand, path.name, args.source)
    except FileNameError as e:
        print(f"{path.name}: {e}", file=sys.stderr)
        detected(path, args.rows)
        return 1
    print(f"{path.name}: source {delivery.source} of {brand.brand}, feeds {', '.join(delivery.entities)} "
          "(a dry run: nothing is written)")
    failed = False
    for entity in delivery.entities:
        try:
            result = dry_run(brand, delivery.source, entity, path, args.rows)
        except FileFailure as e:
            print(f"\n{entity}: the file fails: {e}")
            failed = True
            continue
        print("\n" + report(result))
    return 1 if failed else 0


def detected(path: Path, rows: int) -> int:
    """What the file looks like and the dialect suggested (exit 0), or why it cannot be looked
    at, in one line (exit 1); so is a file of no shape the pipeline reads (a zip archive)."""
    try:
        found = detect.detect(path, rows)
    except detect.Unreadable as e:
        print(f"{path.name}: {e}", file=sys.stderr)
        return 1
    print(detect.report(path.name, found))
    return 0 if found.dialect is not None else 1


def report(result: DryRun) -> str:
    """A dry run for one entity as text: counts, what the source sets, the first rows, the rejects."""
    rejected = len({p.line for p in result.rejects})
    lines = [f"{result.entity}: {result.rows_read:,} rows read, {result.valid:,} valid, {rejected:,} rejected, "
             f"{result.skipped:,} skipped",
             f"  sets: {', '.join(result.sets) or 'nothing but the key'}"]
    if result.left_to_others:
        lines.append(f"  sends but does not set (another source owns them by precedence): {', '.join(result.left_to_others)}")
    if result.preview is not None and not result.preview.is_empty():
        with pl.Config(tbl_rows=len(result.preview), tbl_cols=-1, tbl_width_chars=160, fmt_str_lengths=40,
                       tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
            lines += ["  " + line for line in str(result.preview.drop(LINE, CELL, strict=False)).splitlines()]
    for p in result.rejects[:SHOWN_REJECTS]:
        lines.append(f"  line {p.line}, column {p.column}, value {p.value!r}: {p.rule}: {p.message}")
    if len(result.rejects) > SHOWN_REJECTS:
        lines.append(f"  ... and {len(result.rejects) - SHOWN_REJECTS:,} more rejects")
    for s in result.skips:
        lines.append(f"  skipped: line {s['line']}, column {s['column']}, value {s['value'] or ''!r}: {s['rule']}")
    if result.skipped > len(result.skips):
        lines.append(f"  ... and {result.skipped - len(result.skips):,} more skipped")
    for p in result.passed_over[:SHOWN_REJECTS]:
        lines.append(f"  passed over ({p.why}): line {p.line}: {p.text!r}")
    if len(result.passed_over) > SHOWN_REJECTS:
        lines.append(f"  ... and {len(result.passed_over) - SHOWN_REJECTS:,} more lines passed over")
    return "\n".join(lines)

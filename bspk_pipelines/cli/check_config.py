"""`bspk check-config`: every brand file validated, without Dagster, so it answers at once; with
`--sample`, each file mapping's columns checked against the header of a real file; with
`--connect`, each source's drop store (and the landing zone's bucket) opened and listed once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bspk_pipelines.ingest.drop import matches
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.brand_file import ConfigError, load_brands
from bspk_pipelines.settings import SettingError, Settings

NEWEST = "newest"


def run(args: argparse.Namespace) -> int:
    """Report every mistake in the brand files with file, key path, expected and found: exit 0
    when there is none, 1 when there are, 2 when the settings themselves are wrong."""
    try:
        settings = Settings.from_env()
        brands = load_brands(Path(args.mappings) if args.mappings else settings.mappings_dir)
    except SettingError as e:  # as `environment.checked` does, without that module's imports (SQLAlchemy, outbound)
        print(e, file=sys.stderr)
        return 2
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(f"{len(e.problems)} problem(s) found", file=sys.stderr)
        return 1
    problems = []
    for sample in args.sample or []:
        problems += check_samples(brands, settings.data_dir, None if sample == NEWEST else Path(sample))
    if args.connect:
        problems += check_stores(brands, settings)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    for b in brands:
        print(f"{b.brand}: ok ({', '.join(f'{s} ({_kind(src)})' for s, src in b.sources.items())}; entities: {', '.join(b.entities)})")
    return 0


def check_samples(brands: list[Brand], data_dir: Path, sample: Path | None) -> list[str]:
    """Each file mapping's `from` columns against the header of `sample` (the mappings whose
    pattern its name matches), or else of the newest file of its pattern in its drop folder: one
    message per entity whose columns the header lacks."""
    from bspk_pipelines.ingest.layout import Layout
    from bspk_pipelines.ingest.mapping import source_columns

    problems, checked = [], 0
    for brand in brands:
        for sid, source in brand.sources.items():
            if source.format == "shopify":
                continue  # its deliveries are the pulls' own JSONL, read by the built-in mapping
            if source.format == "bspk":
                found = _platform_samples(brand, sid, data_dir, sample)
                if found is not None:
                    checked, problems = checked + 1, problems + found
                continue
            for i, file_map in enumerate(source.files):
                folder = Layout(data_dir).drop(brand, sid)  # a remote store's files are checked as they land
                path = sample if sample else _newest(folder, file_map.pattern) if folder else None
                if path is None or not matches(path.name, file_map.pattern):
                    continue
                checked += 1
                for entity, entity_map in file_map.feeds.items():
                    problems += _header_problems(path, source.dialect, (source_columns(entity_map), [], False),
                                                 f"{brand.brand}.yaml: sources.{sid}.files[{i}] ({file_map.pattern}), {entity}")
    if sample and not checked:
        problems.append(f"{sample.name}: matches no file pattern of any brand: nothing to check it against")
    return problems


def _platform_samples(brand: Brand, sid: str, data_dir: Path, sample: Path | None) -> list[str] | None:
    """A source of the platform's format: `sample`'s header, or else every file's name in its drop
    folder and the header of the newest file of each type. None when `sample` is not the source's
    (its name does not parse for this brand)."""
    from bspk_pipelines.ingest.check import expected_header
    from bspk_pipelines.ingest.drop import FileNameError, classify
    from bspk_pipelines.ingest.layout import Layout

    folder = Layout(data_dir).drop(brand, sid)  # a remote store's files are checked as they land
    if sample is not None:
        paths = [sample]
    else:
        try:
            paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink()) if folder else []
        except FileNotFoundError:
            paths = []
    problems, newest = [], {}
    for path in paths:
        try:
            delivery = classify(brand, sid, path.name)
        except FileNameError as e:
            if sample is not None:
                return None
            problems.append(f"{brand.brand}.yaml: sources.{sid}: {e}")
            continue
        for entity in delivery.entities:
            if entity not in newest or delivery.sort_key > newest[entity][0]:
                newest[entity] = (delivery.sort_key, path)
    for entity, (_, path) in newest.items():
        problems += _header_problems(path, brand.sources[sid].dialect, expected_header(brand, sid, entity, path.name),
                                     f"{brand.brand}.yaml: sources.{sid}, {entity}")
    return problems


def _kind(source) -> str:
    """A source's format, and its files' shape where it is not delimited text: `csv, fixed_width`."""
    shape = source.dialect.shape
    return source.format if source.format != "csv" or shape == "csv" else f"{source.format}, {shape}"


def _header_problems(path: Path, dialect, header: tuple[list[str], list[str], bool], where: str) -> list[str]:
    """`path` read as a sample up to its first row: [] when its header fits (columns expected,
    optional, whether others are refused), else the one problem, prefixed with `where`."""
    from bspk_pipelines.ingest.parse import FileFailure
    from bspk_pipelines.ingest.read import read_batches

    try:
        next(read_batches(path, dialect, *header, batch_rows=1), None)
    except FileFailure as e:
        return [f"{where}: sample {e}"]
    except OSError as e:
        return [f"{path}: cannot be read as a sample: {e.strerror or e}"]
    return []


def check_stores(brands: list[Brand], settings: Settings) -> list[str]:
    """Each file source's drop store opened, listed once and closed (SFTP's host key and
    credentials tried, a bucket's permissions), and the landing zone's bucket listed once: a line
    printed for each that answered, a problem for each that did not."""
    from bspk_pipelines.ingest.layout import Layout
    from bspk_pipelines.ingest.stores import Refused, Snapshot

    layout = Layout(settings.data_dir, settings.landing_url, settings.known_hosts)
    problems = []
    for brand in brands:
        for sid, source in brand.sources.items():
            if source.format == "shopify":
                continue  # its folder is its pulls' own
            store = layout.drop_store(brand, sid)
            try:
                files = sum(isinstance(entry, Snapshot) for entry in store.entries().values())
                print(f"{brand.brand}: {sid}: {store.where}: ok ({files} file(s) there)")
            except Refused as e:
                problems.append(f"{brand.brand}.yaml: sources.{sid}.drop ({store.where}): {e}")
            finally:
                store.close()
    if settings.landing_url:
        problems += _check_landing(settings.landing_url)
    return problems


def _check_landing(url: str) -> list[str]:
    """The landing zone's bucket listed once: a line printed if it answered, else the problem."""
    from bspk_pipelines.ingest.stores import Refused, parse_drop, s3

    try:
        s3.check_landing(parse_drop(url))
    except Refused as e:
        return [str(e)]
    print(f"landing zone {url}: ok")
    return []


def _newest(folder: Path, pattern: str) -> Path | None:
    """The newest regular file of the pattern in a drop folder, if any (links are never followed)."""
    try:
        found = [p for p in folder.iterdir() if matches(p.name, pattern) and p.is_file() and not p.is_symlink()]
    except FileNotFoundError:
        return None
    return max(found, key=lambda p: p.stat().st_mtime, default=None)

"""Export shapes: rows read per second through `ingest.read.read_batches`, each shape against the
same rows as plain CSV.

Generates one synthetic product table once (`--rows`, default 1,000,000; 8 columns: id, a name
with non-ASCII letters, a price with decimals, a quantity, a date, a boolean, a category and a
free-text description sized so that the plain CSV passes 100 MB at 1M rows), then writes the
same rows in every shape a source's dialect names:

    csv             UTF-8, comma, a header: the baseline
    csv_cp1252      cp1252, `;`, CRLF
    csv_utf16       UTF-16 with a byte-order mark, tabs, CRLF
    csv_noheader    no header (the dialect's `columns`)
    csv_trailer     3 lines before the header and a trailer line (`skip_lines`, `trailer_pattern`)
    csv_pipes       `||` between fields
    fixed_width     every column at its characters (`fixed`)
    csv_gzip        the plain CSV gzipped (read through its decompression)
    csv_zip         the plain CSV as the member of a zip: the member's bytes copied as landing
                    copies them (`ZipMembers` over a `LocalFolder`, `drop.copy_delivered`), then read
    excel           .xlsx, the first `--excel-rows` rows only (default 200,000: Excel holds at most
                    1,048,576 rows, and writing a workbook of a million is slow)
    jsonl           JSON Lines
    json            a document `{"data": {"items": [...]}}`, `records: data.items`, the quantity
                    nested as `stock.qty`
    parquet         Parquet

Each file is read in a fresh process that runs `read_batches` over every batch and counts the
rows, `--repeat` times (default 3: on a shared machine a read can lose seconds to other work);
`wall` is the fastest such reading alone (the interpreter's start and the imports, the same for
every shape, are left out and printed once), peak RSS the highest of the processes' (VmHWM). Each line reads
`shape  rows  MB  wall  rows/s  peak RSS  ratio to plain CSV` (rows/s over the plain CSV's). The
benchmark then checks that every shape gave the rows it holds, no rejects, and the same text for
a sample of rows (first, a third, middle, two thirds, last) as the generated table: `same rows:
yes`, or what differed (and exits 1).

    .venv/bin/python benchmarks/shapes.py                  # 1M rows (~140 MB of plain CSV), a few minutes
    .venv/bin/python benchmarks/shapes.py --rows 100000 --excel-rows 20000
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COLUMNS = ["id", "name", "price", "quantity", "added_on", "active", "category", "description"]
SEED = 17
NAMES = ["Crème brûlée", "Café au lait", "Müsli", "Smørrebrød", "Jalapeño", "Straße", "Ærøskøbing",
         "Piñata", "Garçon", "Naïve tea", "Doppio", "Espresso", "Kaffee", "Gâteau", "Zoë's jam"]
SIZES = ["S", "M", "L", "XL", "250 g", "500 g", "1 kg", "€5 pack"]
CATEGORIES = ["Kitchen", "Garden", "Toys", "Épicerie", "Books", "Sport", "Beauté", "Office", "Pets",
              "Music", "Tools", "Bakery"]
WORDS = ("soft warm bright handmade organic classic compact durable light sturdy fresh natural "
         "recycled premium simple elegant vintage modern colourful quiet strong smooth gentle rich "
         "crisp golden silver wooden ceramic cotton linen leather steel glass paper bamboo wool "
         "for with and the your every day home kitchen table garden travel gift family morning "
         "evening weekend season winter summer spring autumn café crème naïve façade").split()
DESCRIPTION_WORDS = 11  # ~75 characters: a plain CSV row of ~145 bytes
SAMPLE_AT = (0, 1 / 3, 1 / 2, 2 / 3, 1)  # fractions of the rows whose values are compared
PREAMBLE = ["Product export", "Generated 2026-12-01 02:00", "Store: all stores"]
TRAILER_PATTERN = r"^TOTAL ROWS \d+$"


@dataclass
class Shape:
    name: str
    file: str
    dialect: dict
    rows: int
    expected: list[str]  # the columns read, in COLUMNS' order (json: the quantity as stock.qty)
    zip_member: str | None = None


# --- the data ----------------------------------------------------------------------------------


def generate(rows: int):
    """The table, typed (`typed`) and as the text a CSV file holds (`text`); the same rows."""
    import polars as pl

    def pick(values: list[str], salt: int) -> pl.Expr:
        return pl.lit(pl.Series(values)).gather(pl.col("i").hash(SEED + salt) % len(values))

    base = pl.DataFrame({"i": pl.int_range(rows, eager=True, dtype=pl.Int64)})
    cents = pl.col("i").hash(SEED + 3) % 99_899 + 101
    cents = cents + (cents % 100 == 0).cast(pl.UInt64)  # never a whole price: 12 reads "12" from a typed shape, "12.0" as text
    typed = base.select(
        (pl.col("i") + 1).alias("id"),
        pl.concat_str(pick(NAMES, 1), pick(SIZES, 2), (pl.col("i") % 997).cast(pl.Utf8), separator=" ").alias("name"),
        (cents.cast(pl.Float64) / 100).round(2).alias("price"),
        (pl.col("i").hash(SEED + 4) % 500).cast(pl.Int64).alias("quantity"),
        (pl.date(2020, 1, 1) + pl.duration(days=pl.col("i").hash(SEED + 5) % 2500)).alias("added_on"),
        (pl.col("i").hash(SEED + 6) % 3 != 0).alias("active"),
        pick(CATEGORIES, 7).alias("category"),
        pl.concat_str([pick(WORDS, 10 + k) for k in range(DESCRIPTION_WORDS)], separator=" ").alias("description"),
    )
    # Booleans as the platform's files write them, and typed shapes read them (TRUE/FALSE).
    text = typed.select(pl.when(pl.col(c)).then(pl.lit("TRUE")).otherwise(pl.lit("FALSE")).alias(c)
                        if typed.schema[c] == pl.Boolean else pl.col(c).cast(pl.Utf8) for c in COLUMNS)
    return typed, text


def write_lines(path: Path, text, sep: str, encoding: str = "utf-8", newline: str = "\n",
                head: list[str] = (), tail: list[str] = ()) -> None:
    """Every row's fields joined by `sep` (nothing quoted: no field holds a separator), with lines
    before and after them, in `encoding`."""
    import polars as pl

    body = text.select(pl.concat_str(pl.all(), separator=sep)).write_csv(
        None, include_header=False, quote_style="never", line_terminator=newline)
    lines = "".join(f"{h}{newline}" for h in head) + body + "".join(f"{t}{newline}" for t in tail)
    path.write_bytes(lines.encode(encoding))


def write_files(folder: Path, typed, text, excel_rows: int) -> tuple[list[Shape], str | None]:
    """Every shape's file in `folder`; the shapes, and why Excel is left out (None if it is not)."""
    import polars as pl

    n = typed.height
    header = ",".join(COLUMNS)
    shapes: list[Shape] = []

    def add(name, file, dialect, rows=n, expected=COLUMNS, member=None):
        shapes.append(Shape(name, file, dialect, rows, list(expected), member))

    plain = folder / "products.csv"
    write_lines(plain, text, ",", head=[header])
    add("csv", plain.name, {})
    write_lines(folder / "products_cp1252.csv", text, ";", "cp1252", "\r\n", head=[";".join(COLUMNS)])
    add("csv_cp1252", "products_cp1252.csv", {"encoding": "cp1252", "delimiter": ";"})
    write_lines(folder / "products_utf16.csv", text, "\t", "utf-16", "\r\n", head=["\t".join(COLUMNS)])
    add("csv_utf16", "products_utf16.csv", {"encoding": "utf-16", "delimiter": "\t"})
    write_lines(folder / "products_noheader.csv", text, ",")
    add("csv_noheader", "products_noheader.csv", {"header": False, "columns": COLUMNS})
    write_lines(folder / "products_trailer.csv", text, ",", head=[*PREAMBLE, header], tail=[f"TOTAL ROWS {n}"])
    add("csv_trailer", "products_trailer.csv", {"skip_lines": len(PREAMBLE), "trailer_pattern": TRAILER_PATTERN})
    write_lines(folder / "products_pipes.csv", text, "||", head=["||".join(COLUMNS)])
    add("csv_pipes", "products_pipes.csv", {"delimiter": "||"})

    # Fixed width: each column as wide as its longest value, a space between columns.
    widths = {c: max(len(c), text[c].str.len_chars().max() or 1) for c in COLUMNS}
    fixed, start = [], 1
    for c in COLUMNS:
        fixed.append({"name": c, "start": start, "width": widths[c]})
        start += widths[c] + 1
    padded = text.select(pl.col(c).str.pad_end(widths[c]) for c in COLUMNS)
    write_lines(folder / "products.txt", padded, " ")
    add("fixed_width", "products.txt", {"shape": "fixed_width", "fixed": fixed})

    with plain.open("rb") as src, gzip.open(folder / "products.csv.gz", "wb", compresslevel=6) as out:
        shutil.copyfileobj(src, out, 1 << 20)
    add("csv_gzip", "products.csv.gz", {})
    with zipfile.ZipFile(folder / "products.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        zf.write(plain, "products.csv")
    add("csv_zip", "products.zip", {}, member="products.csv")

    excel_missing = write_excel(folder / "products.xlsx", typed.head(excel_rows))
    if excel_missing is None:
        add("excel", "products.xlsx", {"shape": "excel"}, rows=min(n, excel_rows))

    typed.write_ndjson(folder / "products.jsonl")
    add("jsonl", "products.jsonl", {"shape": "jsonl"})
    nested = typed.select(*(pl.struct(qty=pl.col(c)).alias("stock") if c == "quantity" else pl.col(c) for c in COLUMNS))
    (folder / "products.json").write_text(f'{{"data": {{"exported": "2026-12-01", "items": {nested.write_json()}}}}}\n',
                                          encoding="utf-8")
    add("json", "products.json", {"shape": "json", "records": "data.items"},
        expected=["stock.qty" if c == "quantity" else c for c in COLUMNS])
    typed.write_parquet(folder / "products.parquet")
    add("parquet", "products.parquet", {"shape": "parquet"})
    return shapes, excel_missing


def write_excel(path: Path, typed) -> str | None:
    """An .xlsx of the rows, typed cells (numbers, dates, booleans): with polars' `write_excel`
    where xlsxwriter is installed, else openpyxl's streaming writer; why not, where neither is."""
    if importlib.util.find_spec("xlsxwriter") is not None:
        typed.write_excel(path, worksheet="products")
        return None
    try:
        from openpyxl import Workbook
    except ImportError:
        return "neither xlsxwriter nor openpyxl is installed"
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("products")
    ws.append(COLUMNS)
    for row in typed.iter_rows():
        ws.append(row)
    wb.save(path)
    return None


# --- one shape, in its own process ---------------------------------------------------------------


def child(spec: dict) -> int:
    """Read one file through `read_batches` (for a zip member, copied out of the archive first as
    landing does) and print, as JSON: rows, seconds, rejects, and the sampled rows' values."""
    sys.path.insert(0, str(REPO))
    from bspk_pipelines.ingest.drop import copy_delivered
    from bspk_pipelines.ingest.read import read_batches
    from bspk_pipelines.ingest.stores.archives import MEMBER, ZipMembers
    from bspk_pipelines.ingest.stores.local import LocalFolder
    from bspk_pipelines.model.mapping import Dialect

    dialect = Dialect.model_validate(spec["dialect"])
    path = Path(spec["path"])
    wanted = {int(k): None for k in spec["sample"]}
    expected = spec["expected"]
    rows = problems = set_aside = passed_over = 0
    started = time.perf_counter()
    scratch = tempfile.mkdtemp(prefix="bspk-bench-shape-")
    try:
        if spec["zip_member"]:
            store = ZipMembers(LocalFolder(path.parent))
            landed = Path(scratch) / spec["zip_member"]
            copy_delivered(store, f"{path.name}{MEMBER}{spec['zip_member']}", landed)
            store.close()
            path = landed
        for batch in read_batches(path, dialect, expected):
            for at in wanted:
                if rows <= at < rows + batch.rows.height:
                    wanted[at] = list(batch.rows.select(expected).row(at - rows))
            rows += batch.rows.height
            problems += len(batch.problems)
            set_aside += batch.set_aside
            passed_over += len(batch.passed_over)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds, "problems": problems, "set_aside": set_aside,
                      "passed_over": passed_over, "rss_mib": peak_rss_mib(),
                      "sample": {str(k): v for k, v in wanted.items()}}))
    return 0


def peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM, which exec resets (getrusage's ru_maxrss keeps the parent's
    size at the fork, which here holds the generated table)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Read:
    wall: float  # the process's, start to end
    code: int
    result: dict | None
    output: str


def run_child(args: list[str], log: Path) -> Read:
    """This script as a child process: its wall time, exit code, output and result (its last line, JSON)."""
    os.sync()  # the files just written are flushed now, not while a shape is read
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    log.write_text(proc.stdout)
    result = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                pass
            break
    return Read(wall, proc.returncode, result, proc.stdout)


# --- the run -------------------------------------------------------------------------------------


def sample_indices(rows: int) -> list[int]:
    return sorted({min(rows - 1, int(f * (rows - 1))) for f in SAMPLE_AT}) if rows else []


def benchmark(args: argparse.Namespace, work: Path) -> int:
    started = time.perf_counter()
    typed, text = generate(args.rows)
    shapes, excel_missing = write_files(work, typed, text, args.excel_rows)
    del typed
    print(f"generated {args.rows:,} rows, {len(COLUMNS)} columns, in {len(shapes)} shapes in "
          f"{time.perf_counter() - started:.1f} s, under {work}", flush=True)
    plain_mb = (work / "products.csv").stat().st_size / 1e6
    if plain_mb < 100:
        print(f"note: the plain CSV is {plain_mb:.1f} MB, under the 100 MB the figures are meant for "
              "(at the default 1,000,000 rows it passes it)")

    bare = run_child(["--child-imports"], work / "imports.log")
    print(f"each shape read in a fresh process; its start and imports ({bare.wall:.2f} s, "
          f"{(bare.result or {}).get('rss_mib', float('nan')):.0f} MiB) "
          "are not in wall", flush=True)
    print(f"{'shape':<13} {'rows':>10} {'MB':>8} {'wall':>9} {'rows/s':>11} {'peak RSS':>10} {'ratio':>7}", flush=True)
    baseline = None
    differences: list[str] = []
    for shape in shapes:
        sample = sample_indices(shape.rows)
        spec = {"path": str(work / shape.file), "dialect": shape.dialect, "expected": shape.expected,
                "sample": sample, "zip_member": shape.zip_member}
        mb = (work / shape.file).stat().st_size / 1e6
        lead = f"{shape.name:<13} {shape.rows:>10,} {mb:>8.1f}"
        reads = []
        for attempt in range(args.repeat):
            r = run_child(["--child", json.dumps(spec)], work / f"{shape.name}.{attempt}.log")
            if r.code != 0 or r.result is None:
                break
            reads.append(r.result)
        if r.code != 0 or r.result is None:
            tail = [line for line in r.output.splitlines() if line.strip()][-1:] or [f"exit {r.code}"]
            print(f"{lead}  failed: {tail[0][:200]}", flush=True)
            differences.append(f"{shape.name}: failed ({tail[0][:200]})")
            continue
        # The fastest of the reads (the others lost time to the machine's other work), the highest peak.
        res = min(reads, key=lambda x: x["seconds"]) | {"rss_mib": max(x["rss_mib"] for x in reads)}
        rate = res["rows"] / res["seconds"] if res["seconds"] > 0 else float("inf")
        if shape.name == "csv":
            baseline = rate
        ratio = f"{rate / baseline:6.2f}x" if baseline else "      -"
        note = f"  (the first {shape.rows:,} rows: --excel-rows)" if shape.name == "excel" and shape.rows < args.rows else ""
        print(f"{lead} {res['seconds']:7.2f} s {rate:>11,.0f} {res['rss_mib']:>6.0f} MiB {ratio}{note}", flush=True)
        for read in reads:
            differences += compare(shape, read, text)
    if excel_missing:
        print(f"{'excel':<13} skipped: {excel_missing}")
        differences.append(f"excel: not written ({excel_missing})")
    if not differences:
        print("same rows: yes")
        return 0
    print("same rows: no")
    for d in differences:
        print(f"  {d}")
    return 1


def compare(shape: Shape, res: dict, text) -> list[str]:
    """What a shape read differently from the generated rows: the count, rejects, sampled values."""
    found = []
    if res["rows"] != shape.rows:
        found.append(f"{shape.name}: {res['rows']:,} rows, expected {shape.rows:,}")
    if res["problems"] or res["set_aside"]:
        found.append(f"{shape.name}: {res['problems']:,} rejects, {res['set_aside']:,} set aside")
    want_passed = len(PREAMBLE) + 1 if shape.name == "csv_trailer" else 0
    if res["passed_over"] != want_passed:
        found.append(f"{shape.name}: {res['passed_over']} lines passed over, expected {want_passed}")
    for at, values in res["sample"].items():
        want = list(text.row(int(at)))
        if values != want:
            diff = {c: (v, w) for c, v, w in zip(COLUMNS, values or [None] * len(COLUMNS), want) if v != w}
            found.append(f"{shape.name}: row {int(at) + 1}: " + ", ".join(f"{c} {v!r}, expected {w!r}"
                                                                          for c, (v, w) in diff.items()))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--excel-rows", type=int, default=200_000,
                        help="rows of the .xlsx (Excel holds at most 1,048,576; a big workbook is slow to write)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="reads of each file, each in a fresh process: the fastest is printed (default 3)")
    parser.add_argument("--workdir", help="folder in which the run's temporary folder is made (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (the files, each read's log)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-imports", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    if args.child_imports:
        sys.path.insert(0, str(REPO))
        for module in ("bspk_pipelines.ingest.read", "bspk_pipelines.ingest.drop", "bspk_pipelines.ingest.stores.local"):
            importlib.import_module(module)  # what a shape's process imports before it reads
        print(json.dumps({"rss_mib": peak_rss_mib()}))
        return 0
    if args.rows < 1 or args.repeat < 1 or not 1 <= args.excel_rows <= 1_048_575:
        parser.error("needs --rows >= 1, --repeat >= 1 and 1 <= --excel-rows <= 1,048,575 (Excel's rows, less the header)")
    work = Path(tempfile.mkdtemp(prefix="bspk-shapes-", dir=args.workdir))
    try:
        return benchmark(args, work)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Bulk ingest throughput: `bspk sync` against a plain PostgreSQL COPY of the same files.

Generates a synthetic native-format brand `bench` (shoppers, products, years of sales lines),
then measures, each phase a subprocess under `/usr/bin/time -v` (wall time and peak RSS):

    floor       COPY of the three CSV files into unindexed text tables (psycopg2 copy_expert)
    floor_idx   COPY of the same files into tables with the warehouse's column types, primary keys
                added after the COPY: what holding these rows typed and keyed costs at the least
    initial     `bspk sync` of the three files into an empty warehouse
    tables      (PostgreSQL, for reference) COPY of the rows the initial load stored into empty
                tables with the warehouse's columns, types and indexes
    redelivery  the same bytes under new file names: nothing changed
    delta       every shopper again with 1% of them changed, and one new month of sales

first on a fresh PostgreSQL database, then (unless --skip-sqlite) on a SQLite warehouse. Then the
peers a data engineer would use instead (`benchmarks/peers.py`: dlt and sling, from the optional
`bench` extra; one not installed is reported skipped) run the same three phases on the same files,
each into a throwaway database of its own. Each line reads `warehouse phase  wall  rows/s  peak
RSS  wall / PostgreSQL floor`, a peer's also `peer / bspk`; the last lines say whether the
targets hold.

    .venv/bin/python benchmarks/ingest.py --shoppers 100000 --sales 700000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import peers
from daemon import Failed, daemon_deliveries, daemon_phases

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bspk_pipelines.model.entities import ENTITIES  # noqa: E402
from bspk_pipelines.warehouse.schema import column_type  # noqa: E402

BRAND, COMPANY = "bench", "Bench"
TIME = "/usr/bin/time"
# File-name timestamps: each phase's files come after the previous phase's (first in, first out).
STAMPS = {"initial": "202610310200", "redelivery": "202611010200", "delta": "202612010200"}
LAST_MONTH = 2026 * 12 + 9  # 2026-10, as months since year 0
LINES_PER_SALE = 2
CHANGED_EVERY = 100  # the delta changes every 100th shopper: 1%
PHASES = ("initial", "redelivery", "delta")
# The targets, PostgreSQL, same run: the initial load at most 1.5x floor_idx; every phase
# at least 2x faster than the faster peer; a small brand at most 2x sling's time.
INITIAL_OVER_FLOOR_IDX = 1.5
PEER_SPEEDUP = 2.0
SMALL_OVER_SLING = 2.0
SMALL_BRAND = (20_000, 100_000)  # shoppers, sale lines: the small brand
MAX_RSS_GIB = 2.0
# From the file appearing to its rows readable under a running daemon, over the floor.
DAEMON_TARGETS = {"redelivery": 0.1, "delta": 0.25}
LOCAL_POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
# The floor's child process: psycopg2 alone, so its peak RSS is the floor's too. Arguments: a
# libpq URL, then `table=path` per file; each file goes into a new text table named after it.
FLOOR_COPY = """
import sys, psycopg2
with psycopg2.connect(sys.argv[1]) as conn, conn.cursor() as cur:
    for spec in sys.argv[2:]:
        table, path = spec.split("=", 1)
        with open(path, "rb") as f:
            columns = f.readline().decode().strip().split(",")
            f.seek(0)
            cur.execute("CREATE TABLE %s (%s)" % (table, ", ".join('"%s" text' % c for c in columns)))
            cur.copy_expert("COPY %s FROM STDIN WITH (FORMAT csv, HEADER true)" % table, f)
conn.close()
"""
# The floor_idx line's child process. Arguments: a libpq URL, then a JSON list of
# [table, path, CREATE TABLE statement, ALTER TABLE ... ADD PRIMARY KEY statement].
FLOOR_IDX_COPY = """
import json, sys, psycopg2
with psycopg2.connect(sys.argv[1]) as conn, conn.cursor() as cur:
    for table, path, create, key in json.loads(sys.argv[2]):
        cur.execute(create)
        with open(path, "rb") as f:
            cur.copy_expert("COPY %s FROM STDIN WITH (FORMAT csv, HEADER true)" % table, f)
        cur.execute(key)
conn.close()
"""
# What the initial load stores, where it must live: the tables with their columns, types and indexes.
STORED = ("products", "shoppers", "sales", "clients")
# The tables line's child process. Arguments: a libpq URL, then `table=path` per table; each file
# (CSV without header, as COPY TO wrote it) goes into a new empty table like the warehouse's.
TABLES_COPY = """
import sys, psycopg2
with psycopg2.connect(sys.argv[1]) as conn, conn.cursor() as cur:
    for spec in sys.argv[2:]:
        table, path = spec.split("=", 1)
        cur.execute("CREATE TABLE ref_%s (LIKE %s INCLUDING ALL)" % (table, table))
        with open(path, "rb") as f:
            cur.copy_expert("COPY ref_%s FROM STDIN WITH (FORMAT csv)" % table, f)
conn.close()
"""


@dataclass
class Measured:
    wall: float
    rss_gib: float
    code: int
    output: str = ""


@dataclass
class Delivery:
    """The files one phase drops: entity -> (generated path, data rows)."""

    files: dict[str, tuple[Path, int]]

    @property
    def rows(self) -> int:
        return sum(rows for _, rows in self.files.values())


@dataclass
class Expected:
    """What the warehouse should hold after a phase."""

    tables: dict[str, int]
    files: dict[str, dict[str, object]] = field(default_factory=dict)  # file name -> column -> value


# --- synthetic brand --------------------------------------------------------------------------
# Every value is arithmetic on the row number: the same arguments write the same bytes, and
# polars builds millions of rows in seconds where a Python loop would take minutes.

FIRST = ["Emma", "Louise", "Alice", "Chloe", "Lina", "Rose", "Anna", "Julia",
         "Gabriel", "Louis", "Jules", "Adam", "Arthur", "Hugo", "Paul", "Victor"]  # first half F, second M
LAST = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
        "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier"]
CITIES = [("Paris", "75008"), ("Lyon", "69002"), ("Marseille", "13001"), ("Bordeaux", "33000"),
          ("Lille", "59000"), ("Toulouse", "31000"), ("Nice", "06000"), ("Strasbourg", "67000")]
PRODUCT_LINES = [("Jacket", "Apparel>>Coats"), ("Shirt", "Apparel>>Shirts"), ("Sneaker", "Footwear>>Sneakers"),
                 ("Tote", "Accessories>>Bags"), ("Scarf", "Accessories>>Scarves")]


def _pick(values: list[str], index: pl.Expr) -> pl.Expr:
    return index.mod(len(values)).replace_strict(list(range(len(values))), values, return_dtype=pl.Utf8)


def _digits(expr: pl.Expr, width: int) -> pl.Expr:
    return expr.cast(pl.Utf8).str.zfill(width)


def _platform_columns(entity: str, values: dict[str, pl.Expr]) -> list[pl.Expr]:
    """The entity's header columns in the platform's order; those not given are blank."""
    return [values.get(c.name, pl.lit(None, pl.Utf8)).alias(c.header or c.name)
            for c in ENTITIES[entity].columns if c.in_header]


def shopper_ref(i: pl.Expr) -> pl.Expr:
    return pl.concat_str(pl.lit("S"), _digits(i, 8))


def product_ref(i: pl.Expr) -> pl.Expr:
    return pl.concat_str(pl.lit("P"), _digits(i, 6))


def shoppers(n: int, changed: bool = False) -> pl.DataFrame:
    """`n` shoppers; with `changed`, every CHANGED_EVERY-th one has a new email and city."""
    i = pl.int_range(n, dtype=pl.Int64)
    first, last = _pick(FIRST, i * 7), _pick(LAST, i * 13)
    moved = (i % CHANGED_EVERY == 0) if changed else pl.lit(False)
    city = i + pl.when(moved).then(1).otherwise(0)
    domain = pl.when(moved).then(pl.lit("new.example")).otherwise(pl.lit("mail.example"))
    return pl.select(_platform_columns("shoppers", {
        "shopper_ref": shopper_ref(i),
        "first_name": first,
        "last_name": last,
        "gender": pl.when((i * 7) % len(FIRST) < len(FIRST) // 2).then(pl.lit("F")).otherwise(pl.lit("M")),
        "email": pl.concat_str(first.str.to_lowercase(), pl.lit("."), last.str.to_lowercase(), i.cast(pl.Utf8),
                               pl.lit("@"), domain),
        # +33 6xx xx xx xx: unique per shopper, as the platform requires of a mobile phone.
        "mobile_phone": pl.concat_str(pl.lit("+336"), _digits(i, 8)),
        "address": pl.concat_str((i % 200 + 1).cast(pl.Utf8), pl.lit(" rue de la Paix")),
        "city": _pick([c for c, _ in CITIES], city),
        "zip_code": _pick([z for _, z in CITIES], city),
        "country_code": pl.lit("FR"),
        "nationality": pl.lit("FR"),
        "languages": pl.lit("fr"),
        "email_contact": pl.when(i % 3 == 0).then(pl.lit("FALSE")).otherwise(pl.lit("TRUE")),
        "phone_call_contact": pl.when(i % 2 == 0).then(pl.lit("FALSE")).otherwise(pl.lit("TRUE")),
    }))


def products(n: int) -> pl.DataFrame:
    i = pl.int_range(n, dtype=pl.Int64)
    return pl.select(_platform_columns("products", {
        "product_ref": product_ref(i),
        "name": pl.concat_str(_pick([p for p, _ in PRODUCT_LINES], i), pl.lit(" "), i.cast(pl.Utf8)),
        "categories": _pick([c for _, c in PRODUCT_LINES], i),
        "product_brand": pl.lit(COMPANY),
        "published": pl.lit("TRUE"),
    }))


def sales(lines: int, first_sale: int, first_month: int, months: int, n_shoppers: int, n_products: int) -> pl.DataFrame:
    """`lines` sale lines, LINES_PER_SALE per sale (distinct products), sales numbered from
    `first_sale` in time order and spread evenly over `months` months from `first_month`."""
    j = pl.int_range(lines, dtype=pl.Int64)
    local = j // LINES_PER_SALE
    sale = local + first_sale
    count = -(-lines // LINES_PER_SALE)
    month = local * months // count + first_month
    created_at = pl.format(
        "{}-{}-{}T{}:{}:{}", (month // 12).cast(pl.Utf8), _digits(month % 12 + 1, 2), _digits(sale * 17 % 28 + 1, 2),
        _digits(sale % 9 + 10, 2), _digits(sale * 7 % 60, 2), _digits(sale * 11 % 60, 2),
    )
    return pl.select(_platform_columns("sales", {
        "sale_ref": pl.concat_str(pl.lit("T"), _digits(sale, 9)),
        "product_ref": product_ref((sale * 31 + j % LINES_PER_SALE) % n_products),
        "quantity": (j % 3 + 1).cast(pl.Utf8),
        "price": pl.concat_str((j * 37 % 480 + 20).cast(pl.Utf8), pl.lit("."), _digits(j * 13 % 100, 2)),
        "currency_code": pl.lit("EUR"),
        "created_at": created_at,
        "shopper_ref": shopper_ref((sale * 7919 + 13) % n_shoppers),
        "store_ref": pl.concat_str(pl.lit("ST"), _digits(sale % 20, 2)),
    }))


def file_name(entity: str, stamp: str) -> str:
    e = ENTITIES[entity]
    return f"{e.file_type}_{e.versions[0]}_{COMPANY}_{stamp}.csv"


def generate(args: argparse.Namespace, folder: Path) -> tuple[Delivery, Delivery, int]:
    """The initial files and the delta files; returns them and the number of changed shoppers."""
    folder.mkdir(parents=True)
    months = args.years * 12
    first_month = LAST_MONTH - months + 1
    delta_lines = max(1, round(args.sales / months))
    first_delta_sale = -(-args.sales // LINES_PER_SALE)

    def write(frame: pl.DataFrame, name: str) -> tuple[Path, int]:
        path = folder / name
        frame.write_csv(path)
        return path, frame.height

    initial = Delivery({
        "products": write(products(args.products), "products.csv"),
        "shoppers": write(shoppers(args.shoppers), "shoppers.csv"),
        "sales": write(sales(args.sales, 0, first_month, months, args.shoppers, args.products), "sales.csv"),
    })
    delta = Delivery({
        "shoppers": write(shoppers(args.shoppers, changed=True), "shoppers-delta.csv"),
        "sales": write(sales(delta_lines, first_delta_sale, LAST_MONTH + 1, 1, args.shoppers, args.products),
                       "sales-delta.csv"),
    })
    return initial, delta, len(range(0, args.shoppers, CHANGED_EVERY))


def month_text(month: int) -> str:
    return f"{month // 12}-{month % 12 + 1:02d}"


def write_brand(mappings: Path, history_start: str) -> None:
    mappings.mkdir(parents=True)
    (mappings / f"{BRAND}.yaml").write_text(
        f"brand: {BRAND}\ncompany_name: {COMPANY}\nhistory_start: \"{history_start}\"\n"
        f"sources:\n  main:\n    format: bspk\n    drop: drop/{BRAND}\n")


# --- measuring ---------------------------------------------------------------------------------


def timed(cmd: list[str], env: dict[str, str], log: Path) -> Measured:
    """Run `cmd` under /usr/bin/time -v; wall time, peak RSS, exit code, and its output (also kept in `log`)."""
    report = log.with_suffix(".time")
    # Dirty pages of the files just written are flushed now, not during the measured phase.
    os.sync()
    started = time.perf_counter()
    # A session of its own: if we are interrupted, the whole group goes, not just `time`.
    proc = subprocess.Popen([TIME, "-v", "-o", str(report), *cmd], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO, start_new_session=True)
    try:
        output, _ = proc.communicate()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    wall = time.perf_counter() - started
    log.write_text(output)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report.read_text())
    return Measured(wall, int(m.group(1)) / 2**20 if m else float("nan"), proc.returncode, output)


def line(warehouse: str, phase: str, m: Measured, rows: int, floor: float) -> str:
    return (f"{warehouse:<9} {phase:<16} {m.wall:8.1f} s {rows / m.wall:>12,.0f} rows/s "
            f"{m.rss_gib:6.2f} GiB {m.wall / floor:7.2f}x")


def target(what: str, holds: bool, figure: str) -> str:
    return f"target {what}: {'holds' if holds else 'misses'} ({figure})"


def checkpoint(url: str | None) -> None:
    """Write PostgreSQL's dirty buffers now, so a phase does not pay for the previous one's."""
    if not url:
        return
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")
    except sa.exc.DBAPIError:
        pass  # not a superuser: the phase just starts with whatever is pending
    finally:
        engine.dispose()


def tables_copy(url: str, root: Path, floor: float) -> Measured:
    """Time a COPY of what the warehouse stores after the initial load into empty tables shaped as
    its own (the physical cost of keeping these rows in them, validation and merging aside);
    prints its line and leaves the warehouse as it was."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    exported, rows = [], 0
    try:
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cur:
                for table in STORED:
                    path = root / f"stored_{table}.csv"
                    with path.open("wb") as f:
                        cur.copy_expert(f"COPY {table} TO STDOUT WITH (FORMAT csv)", f)
                    cur.execute(f"SELECT count(*) FROM {table}")
                    rows += cur.fetchone()[0]
                    exported.append(f"{table}={path}")
        finally:
            raw.close()
        checkpoint(url)
        dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        m = timed([sys.executable, "-c", TABLES_COPY, dsn, *exported], dict(os.environ), root / "tables.log")
        print(line("postgres", "tables", m, rows, floor), flush=True)
        with engine.begin() as conn:
            for table in STORED:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS ref_{table}")
    finally:
        engine.dispose()
        for spec in exported:
            Path(spec.split("=", 1)[1]).unlink(missing_ok=True)
    return m


def floor_idx_tables(files: dict[str, tuple[Path, int]]) -> list[list[str]]:
    """For each file: a table with the warehouse's column types for the file's columns, and its
    primary key on the entity key's columns (those the file fills: the generated sales leave
    `sku` blank), added after the COPY."""
    specs = []
    for entity_name, (path, _) in files.items():
        entity = ENTITIES[entity_name]
        header = path.open().readline().strip().split(",")
        columns = [entity.header_names.get(h, h) for h in header]
        types = [column_type(entity, c).compile(dialect=postgresql.dialect()) for c in columns]
        table = f"floor_idx_{entity_name}"
        create = f"CREATE TABLE {table} (" + ", ".join(f'"{c}" {t}' for c, t in zip(columns, types)) + ")"
        key = [k for k in entity.key if k not in entity.optional_key]
        specs.append([table, str(path), create, f"ALTER TABLE {table} ADD PRIMARY KEY ({', '.join(key)})"])
    return specs


def peer_phases(peer: str, admin: sa.Engine, database: str, root: Path, initial: Delivery, delta: Delivery,
                args: argparse.Namespace, floor: float, bspk: dict[str, Measured]) -> dict[str, Measured] | None:
    """The three phases by `peer` into a throwaway database of its own; prints a line each, with
    its wall time over bspk's. None (and a `skipped` line) if the peer is not installed here."""
    reason = peers.missing(peer)
    if reason:
        print(f"peer      {peer:<11} skipped: {reason}", flush=True)
        return None
    url = throwaway_database(admin, database)
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    tables = {"products": args.products, "shoppers": args.shoppers, "sales": args.sales}
    expected = {"initial": tables, "redelivery": tables,
                "delta": tables | {"sales": args.sales + delta.files["sales"][1]}}
    measured = {}
    try:
        for phase in PHASES:
            delivery = delta if phase == "delta" else initial
            files = {e: path for e, (path, _) in delivery.files.items()}
            checkpoint(url)
            m = timed(peers.command(peer, dsn, files, root / peer), dict(os.environ), root / f"{peer}_{phase}.log")
            measured[phase] = m
            print(line("peer", f"{peer} {phase}", m, delivery.rows, floor)
                  + (f" {m.wall / bspk[phase].wall:7.2f}x bspk" if phase in bspk else ""), flush=True)
            if m.code != 0:
                print(f"  {peer} exited with {m.code}; the end of its output:", *m.output.splitlines()[-20:],
                      sep="\n    ", flush=True)
                break
            found = peers.counts(peer, dsn)
            if found != expected[phase]:
                print(f"  warning: {peer} {phase}: holds {found}, expected {expected[phase]}", flush=True)
    finally:
        drop_throwaway(admin, database)
    return measured


def verify(url: str, expected: Expected) -> list[str]:
    """Differences between what the warehouse holds and what the phase should have left."""
    problems = []
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            for table, rows in expected.tables.items():
                found = conn.execute(sa.text(f"select count(*) from {table} where brand = :b"), {"b": BRAND}).scalar()
                if found != rows:
                    problems.append(f"{table} holds {found:,} rows, expected {rows:,}")
            for name, want in expected.files.items():
                row = conn.execute(sa.text("select * from files where brand = :b and name = :n"),
                                   {"b": BRAND, "n": name}).mappings().first()
                if row is None:
                    problems.append(f"{name} is not in the files table")
                    continue
                wrong = {k: row[k] for k, v in want.items() if row[k] != v}
                if wrong:
                    problems.append(f"{name}: " + ", ".join(f"{k} {row[k]!r}, expected {want[k]!r}" for k in wrong))
    except sa.exc.DBAPIError as e:
        problems.append(f"cannot read the warehouse: {str(e).splitlines()[0]}")
    finally:
        engine.dispose()
    return problems


def throwaway_database(admin: sa.Engine, name: str) -> str:
    """A new database on the admin engine's server (dropped by `drop_throwaway`); its URL."""
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return admin.url.set(database=name).render_as_string(hide_password=False)


def drop_throwaway(admin: sa.Engine, prefix: str) -> None:
    """Drop every database whose name starts with `prefix` (the run's, its instances', its peers')."""
    with admin.connect() as conn:
        names = conn.execute(sa.text("select datname from pg_database where starts_with(datname, :p)"), {"p": prefix}).scalars().all()
        for name in names:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_pipeline(warehouse: str, url: str | None, root: Path, mappings: Path, initial: Delivery, delta: Delivery,
                 changed: int, args: argparse.Namespace, floor: float, admin: sa.Engine, database: str) -> tuple[dict[str, Measured], dict[str, float], bool]:
    """Phases initial, redelivery and delta through `bspk sync` on one warehouse, then (PostgreSQL,
    unless --skip-daemon) the re-delivery and delta under the daemon; prints a line each. Returns
    the sync phases, the daemon's seconds per phase, and whether all went as expected."""
    home, data = root / "dagster_home", root / "data"
    home.mkdir(parents=True)
    instance = {}
    if args.instance == "postgres":
        # The production-shaped instance (runs, events, schedules in PostgreSQL), a database of its own.
        shutil.copyfile(REPO / "deploy" / "dagster-postgres.yaml", home / "dagster.yaml")
        instance["DAGSTER_PG_URL"] = throwaway_database(admin, f"{database}_dagster_{warehouse}")
    else:
        shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    drop = data / "drop" / BRAND
    drop.mkdir(parents=True)
    env = os.environ | instance | {"DAGSTER_HOME": str(home), "BSPK_DATA_DIR": str(data), "BSPK_MAPPINGS_DIR": str(mappings)}
    env.pop("BSPK_WAREHOUSE_URL", None)
    if url:
        env["BSPK_WAREHOUSE_URL"] = url
    check_url = url or f"sqlite:///{data / 'warehouse.sqlite'}"
    bspk = str(Path(sys.executable).parent / "bspk")

    tables = {"products": args.products, "shoppers": args.shoppers, "sales": args.sales}
    new_sales = delta.files["sales"][1]
    phases = {
        "initial": (initial, Expected(tables, {
            file_name(e, STAMPS["initial"]): {"status": "applied", "inserted": rows, "rejected": 0}
            for e, (_, rows) in initial.files.items()})),
        "redelivery": (initial, Expected(tables, {
            file_name(e, STAMPS["redelivery"]): {"status": "duplicate"} for e in initial.files})),
        "delta": (delta, Expected(tables | {"sales": args.sales + new_sales}, {
            file_name("shoppers", STAMPS["delta"]): {"status": "applied", "inserted": 0, "updated": changed,
                                                      "unchanged": args.shoppers - changed, "rejected": 0},
            file_name("sales", STAMPS["delta"]): {"status": "applied", "inserted": new_sales, "rejected": 0}})),
    }
    measured, ok = {}, True
    for phase, (delivery, expected) in phases.items():
        for entity, (path, _) in delivery.files.items():
            shutil.copyfile(path, drop / file_name(entity, STAMPS[phase]))
        checkpoint(url)
        m = timed([bspk, "sync", "--brand", BRAND, "--settle", "0"], env, root / f"{phase}.log")
        measured[phase] = m
        print(line(warehouse, phase, m, delivery.rows, floor), flush=True)
        if m.code != 0:
            ok = False
            print(f"  bspk sync exited with {m.code}; the end of its output:", *m.output.splitlines()[-20:],
                  sep="\n    ", flush=True)
        for problem in verify(check_url, expected):
            print(f"  warning: {warehouse} {phase}: {problem}", flush=True)
        if phase == "initial" and url:
            measured["tables"] = tables_copy(url, root, floor)
    daemon = {}
    if url and not args.skip_daemon and ok:
        daemon = under_daemon(env, drop, url, root, initial, delta, args, floor)
        ok &= len(daemon) == len(DAEMON_TARGETS)
    return measured, daemon, ok


def under_daemon(env: dict[str, str], drop: Path, url: str, root: Path, initial: Delivery, delta: Delivery,
                 args: argparse.Namespace, floor: float) -> dict[str, float]:
    """A re-delivery and a delta (new names, another 1% changed, a month 2026-12) as the drop sensor
    sees them under `dagster dev`: seconds from the files appearing to their rows readable (see
    benchmarks/daemon.py); prints a line each with the split, and the seconds over the floor."""
    phases = daemon_deliveries(root / "daemon-files", {e: p for e, (p, _) in initial.files.items()},
                               args.shoppers, args.products, delta.files["sales"][1])
    log = root / "dagster-dev.log"
    try:
        # dagster dev's process group, and each phase's split (and any warning) as it ends.
        seconds = daemon_phases(env, drop, url, phases, log, say=lambda text: print(f"  daemon {text.strip()}", flush=True))
    except Failed as e:
        tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
        print(f"  daemon phases failed: {e}", *tail, sep="\n    ", flush=True)
        return {}
    for phase, s in seconds.items():
        rows = sum(r for _, r in (delta if phase == "delta" else initial).files.values())
        print(f"{'postgres':<9} {'daemon ' + phase:<16} {s:8.1f} s {rows / s:>12,.0f} rows/s {'':>10} "
              f"{s / floor:7.2f}x", flush=True)
    return seconds


# --- the run -----------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace, work: Path) -> int:
    started = time.perf_counter()
    initial, delta, changed = generate(args, work / "files")
    size = sum(p.stat().st_size for p, _ in initial.files.values())
    print(f"generated {initial.rows:,} rows ({size / 2**20:,.0f} MiB) and a delta of {delta.rows:,} rows "
          f"in {time.perf_counter() - started:.1f} s, under {work}", flush=True)
    write_brand(work / "mappings", month_text(LAST_MONTH - args.years * 12 + 1))

    admin_url = sa.make_url(args.postgres)
    database = f"bspk_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    created = False
    try:
        url_text = throwaway_database(admin, database)
        created = True
        print(f"database {database} on {admin_url.host}:{admin_url.port or 5432}, dropped at the end", flush=True)
        dsn = sa.make_url(url_text).set(drivername="postgresql").render_as_string(hide_password=False)
        checkpoint(url_text)
        tables = [f"floor_{e}={path}" for e, (path, _) in initial.files.items()]
        floor = timed([sys.executable, "-c", FLOOR_COPY, dsn, *tables], dict(os.environ), work / "floor.log")
        if floor.code != 0:
            print(f"floor COPY failed ({floor.code}):\n{floor.output}", file=sys.stderr)
            return 1
        print(line("postgres", "floor", floor, initial.rows, floor.wall), flush=True)
        checkpoint(url_text)
        typed = floor_idx_tables(initial.files)
        floor_idx = timed([sys.executable, "-c", FLOOR_IDX_COPY, dsn, json.dumps(typed)], dict(os.environ),
                          work / "floor_idx.log")
        if floor_idx.code != 0:
            print(f"floor_idx COPY failed ({floor_idx.code}):\n{floor_idx.output}", file=sys.stderr)
            return 1
        print(line("postgres", "floor_idx", floor_idx, initial.rows, floor.wall), flush=True)
        floor_engine = sa.create_engine(url_text, poolclass=sa.pool.NullPool)
        with floor_engine.begin() as conn:  # out of the pipeline's way
            for entity in initial.files:
                conn.exec_driver_sql(f"DROP TABLE floor_{entity}")
            for table, *_ in typed:
                conn.exec_driver_sql(f"DROP TABLE {table}")
        floor_engine.dispose()

        pg, daemon, ok = run_pipeline("postgres", url_text, work / "postgres", work / "mappings", initial, delta, changed,
                                      args, floor.wall, admin, database)
        if not args.skip_sqlite:
            _, _, sqlite_ok = run_pipeline("sqlite", None, work / "sqlite", work / "mappings", initial, delta, changed,
                                           args, floor.wall, admin, database)
            ok &= sqlite_ok

        by_peer = {}
        for peer in peers.PEERS:
            measured = peer_phases(peer, admin, f"{database}_{peer}", work / "peers", initial, delta, args, floor.wall, pg)
            if measured is not None:
                by_peer[peer] = measured
                ok &= all(m.code == 0 for m in measured.values()) and len(measured) == len(PHASES)

        print(f"initial / tables: {pg['initial'].wall / pg['tables'].wall:.2f}x "
              "(the pipeline's wall time over the cost of storing its rows in the warehouse's tables)")
        ratio = pg["initial"].wall / floor_idx.wall
        print(target(f"initial <= {INITIAL_OVER_FLOOR_IDX}x floor_idx", pg["initial"].code == 0
                     and ratio <= INITIAL_OVER_FLOOR_IDX, f"{ratio:.2f}x"))
        for phase in PHASES:
            done = {p: m[phase] for p, m in by_peer.items() if phase in m and m[phase].code == 0}
            if not done:
                print(f"target {phase} {PEER_SPEEDUP:g}x faster than the faster peer: not measured (no peer ran)")
                continue
            fastest = min(done, key=lambda p: done[p].wall)
            speedup = done[fastest].wall / pg[phase].wall
            print(target(f"{phase} {PEER_SPEEDUP:g}x faster than the faster peer ({fastest})",
                         pg[phase].code == 0 and speedup >= PEER_SPEEDUP, f"{speedup:.2f}x faster"))
        small = args.shoppers <= SMALL_BRAND[0] and args.sales <= SMALL_BRAND[1]
        if not small:
            print(f"target small brand initial <= {SMALL_OVER_SLING:g}x sling: measured at --shoppers "
                  f"{SMALL_BRAND[0]} --sales {SMALL_BRAND[1]}")
        elif "sling" in by_peer and "initial" in by_peer["sling"]:
            ratio = pg["initial"].wall / by_peer["sling"]["initial"].wall
            print(target(f"small brand initial <= {SMALL_OVER_SLING:g}x sling", ratio <= SMALL_OVER_SLING, f"{ratio:.2f}x"))
        for phase, limit in DAEMON_TARGETS.items():
            if phase not in daemon:
                print(f"target daemon {phase} <= {limit}x floor: not measured" + (" (--skip-daemon)" if args.skip_daemon else ""))
                continue
            ratio = daemon[phase] / floor.wall
            print(target(f"daemon {phase} <= {limit}x floor", ratio <= limit, f"{ratio:.2f}x"))
        peak = max(m.rss_gib for m in pg.values())
        print(target(f"peak RSS <= {MAX_RSS_GIB:g} GiB", peak <= MAX_RSS_GIB, f"{peak:.2f} GiB"))
        return 0 if ok else 1
    finally:
        if created:
            drop_throwaway(admin, database)
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shoppers", type=int, default=1_000_000)
    parser.add_argument("--sales", type=int, default=7_000_000, help="sale lines")
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--years", type=int, default=30, help="months of sales history, in years, ending 2026-10")
    parser.add_argument("--workdir", help="folder in which the run's temporary folder is made (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (files, logs, instances)")
    parser.add_argument("--skip-sqlite", action="store_true", help="measure PostgreSQL only")
    parser.add_argument("--instance", choices=("sqlite", "postgres"), default="sqlite",
                        help="the Dagster instance's storage: the embedded default (dagster.yaml), or PostgreSQL "
                        "(deploy/dagster-postgres.yaml, in a throwaway database of its own)")
    parser.add_argument("--skip-daemon", action="store_true",
                        help="leave out the re-delivery and delta under `dagster dev` (as the drop sensor sees them)")
    parser.add_argument("--postgres", default=os.environ.get("BSPK_TEST_POSTGRES_URL", LOCAL_POSTGRES),
                        help="server on which a throwaway database is made (default: $BSPK_TEST_POSTGRES_URL or local)")
    args = parser.parse_args(argv)
    if args.products < LINES_PER_SALE or min(args.shoppers, args.sales, args.years) < 1 or args.shoppers > 10**8:
        parser.error(f"needs --products >= {LINES_PER_SALE}, 1 <= --shoppers <= 100,000,000, --sales and --years >= 1")
    if not os.access(TIME, os.X_OK):
        parser.error(f"{TIME} is needed to measure peak RSS (Debian: apt-get install time)")
    args.postgres = args.postgres.replace("postgresql://", "postgresql+psycopg2://", 1)
    # A plain SIGTERM (a test's timeout, say) must still drop the database and the folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="bspk-ingest-", dir=args.workdir))
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

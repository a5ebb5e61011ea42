"""Peer tools for the ingest benchmark: the same CSV files merged into PostgreSQL by dlt and by sling.

`benchmarks/ingest.py` times its phases (initial, redelivery, delta) for `bspk sync`; this module
gives it, for each peer a data engineer would reach for instead, the argv of a child process that
loads the same files into a throwaway database, merging on the warehouse's primary keys, so each
phase can run under the same `/usr/bin/time -v` and print `peer / bspk` ratios:

    for peer in PEERS:
        if (reason := missing(peer)):
            print(f"{peer}: skipped, {reason}")      # never a figure for a peer that is not here
            continue
        m = timed(command(peer, dsn, {"shoppers": path, ...}, work / peer), env, log)
        assert m.code == 0 and counts(peer, dsn) == expected

    dlt    a pipeline of one merge resource per file (pyarrow RecordBatches read from the CSV;
           dlt's default merge strategy, delete-insert), loaded through dlt's csv loader file
           format into the dataset (schema) `peer`
    sling  one replication of the files, mode incremental with a primary key and no update key
           (sling's "full data upsert"), into schema `public`

The dlt child is this file: `python benchmarks/peers.py dlt DSN WORK table=path...` runs it by hand.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PEERS = ("dlt", "sling")
# The warehouse's keys. The sales files' `sku` is blank in the generated data: the line's product identifies it.
PRIMARY_KEYS = {"products": ("product_ref",), "shoppers": ("shopper_ref",), "sales": ("sale_ref", "product_ref")}
# Where each peer puts the tables: dlt in its dataset (a schema of that name), sling where it is told.
SCHEMAS = {"dlt": "peer", "sling": "public"}
# What each peer needs importable; dlt's postgres destination talks through psycopg2.
MODULES = {"dlt": ("dlt", "pyarrow.csv", "psycopg2"), "sling": ("sling_linux_amd64",)}
DISTRIBUTIONS = {"dlt": "dlt", "sling": "sling-linux-amd64"}
INSTALL = "pip install -e '.[bench]'"
ENV = "/usr/bin/env"
SLING_CONN = "PEER_PG"


def missing(peer: str) -> str | None:
    """None when `peer` can run here, else why not (the benchmark then reports it skipped)."""
    if peer not in PEERS:
        return f"unknown peer (one of {', '.join(PEERS)})"
    for module in MODULES[peer]:
        try:
            importlib.import_module(module)
        except ImportError as e:
            return f"not installed: {e.name or module} ({INSTALL})"
    if peer == "sling" and not os.access(_sling_bin(), os.X_OK):
        return f"sling binary {_sling_bin()} is not executable"
    return None


def version(peer: str) -> str:
    """The installed version of `peer`'s package, to print beside its figures."""
    return importlib.metadata.version(DISTRIBUTIONS[peer])


def command(peer: str, dsn: str, files: dict[str, Path], work: Path) -> list[str]:
    """The argv of a child that merges `files` (table -> CSV path) into the database at libpq `dsn`
    and exits non-zero on failure. `work` holds the peer's state (for sling, the replication file
    written here): pass the same folder to every phase of one peer, as a scheduled job keeps it."""
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}")
    unknown = set(files) - set(PRIMARY_KEYS)
    if unknown:
        raise ValueError(f"no primary key known for {', '.join(sorted(unknown))}")
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    specs = [f"{table}={Path(path).resolve()}" for table, path in files.items()]
    if peer == "dlt":
        return [sys.executable, str(Path(__file__).resolve()), "dlt", dsn, str(work), *specs]
    replication = work / "replication.json"
    replication.write_text(json.dumps(_replication(files), indent=2))
    # The connection comes from the environment, sling's usual way for a script. HOME too: sling
    # keeps ~/.sling and its bundled drivers write caches under ~/.cache, which must stay in `work`;
    # telemetry is off so that no network call weighs on the timing.
    home = work / "home"
    return [ENV, f"{SLING_CONN}={_sling_dsn(dsn)}", f"HOME={home}", f"SLING_HOME_DIR={home / '.sling'}",
            "SLING_DISABLE_TELEMETRY=true", _sling_bin(), "run", "-r", str(replication)]


def counts(peer: str, dsn: str) -> dict[str, int]:
    """Rows in each of the peer's tables (products, shoppers, sales) that exist in the database."""
    import psycopg2

    found = {}
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        for table in PRIMARY_KEYS:
            cur.execute("SELECT to_regclass(%s)", (qualified(peer, table),))
            if cur.fetchone()[0] is not None:
                cur.execute(f"SELECT count(*) FROM {qualified(peer, table)}")
                found[table] = cur.fetchone()[0]
    conn.close()
    return found


def qualified(peer: str, table: str) -> str:
    """The peer's table as SQL: `"schema"."table"`."""
    return f'"{SCHEMAS[peer]}"."{table}"'


# --- sling ---------------------------------------------------------------------------------------


def _sling_bin() -> str:
    import sling_linux_amd64

    return sling_linux_amd64.SLING_BIN


def _sling_dsn(dsn: str) -> str:
    """`dsn` as sling's driver (lib/pq) takes it: lib/pq requires TLS unless told otherwise and
    knows no `prefer` (libpq's default), so a URL without sslmode gets `sslmode=disable`."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query)
    if any(key == "sslmode" for key, _ in query):
        return dsn
    return urlunsplit(parts._replace(query=urlencode([*query, ("sslmode", "disable")])))


def _replication(files: dict[str, Path]) -> dict:
    # No column types given: sling infers them from a sample of each file, its default.
    return {
        "source": "LOCAL",
        "target": SLING_CONN,
        "defaults": {"mode": "incremental"},
        "streams": {
            f"file://{Path(path).resolve()}": {"object": f"{SCHEMAS['sling']}.{table}",
                                               "primary_key": list(PRIMARY_KEYS[table])}
            for table, path in files.items()
        },
    }


# --- dlt (the child process) ---------------------------------------------------------------------


def _dlt_load(dsn: str, work: Path, files: dict[str, Path]) -> None:
    # Before dlt is imported: no telemetry is sent, and its data stay in `work`. Its global folder
    # (an anonymous id, written even with telemetry off) follows XDG_DATA_HOME unless ~/.dlt
    # exists; as root dlt uses /var/dlt whatever the environment says.
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["DLT_DATA_DIR"] = str(work / "data")
    os.environ["XDG_DATA_HOME"] = str(work / "xdg")
    import dlt
    from pyarrow import csv

    def batches(path: Path):
        # pyarrow's defaults, as a user would call it: column types inferred from the first block.
        with csv.open_csv(path) as reader:
            yield from reader

    resources = [dlt.resource(batches(path), name=table, write_disposition="merge",
                              primary_key=list(PRIMARY_KEYS[table])) for table, path in files.items()]
    pipeline = dlt.pipeline(pipeline_name="peer", pipelines_dir=str(work / "pipelines"), dataset_name=SCHEMAS["dlt"],
                            destination=dlt.destinations.postgres(credentials=_with_password(dsn)))
    info = pipeline.run(resources, loader_file_format="csv")
    info.raise_on_failed_jobs()


def _with_password(dsn: str) -> str:
    """`dsn` with an empty password if it has none: dlt refuses credentials without one, and to
    libpq an empty password is no password (trust or peer authentication still works)."""
    parts = urlsplit(dsn)
    user, at, host = parts.netloc.rpartition("@")
    if not at or ":" in user:
        return dsn
    return urlunsplit(parts._replace(netloc=f"{user}:@{host}"))


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "dlt":
        print("usage: peers.py dlt DSN WORK table=path...", file=sys.stderr)
        return 2
    files = dict(spec.split("=", 1) for spec in argv[3:])
    _dlt_load(argv[1], Path(argv[2]), {table: Path(path) for table, path in files.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

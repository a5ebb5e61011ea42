"""Peak memory of validating a file that holds one huge field, against the same rows without it.

Writes native PRODUCT files into a temporary folder: `--rows` ordinary products, and in the
`huge` variant one more product whose description is `--field-mb` MB. Two shapes:

    plain   the description unquoted on one line (the fast line splitter's kind of file)
    quoted  the description quoted, with commas and a line break every 80 characters (the
            csv module's kind of file)

Each file is landed and validated (`ingest.land`, `ingest.check.validate_file`, SQLite warehouse)
in a child process under `/usr/bin/time -v`. Each line reads `shape  variant  wall  peak RSS
status  rows  rejects  (rules)`; then, per shape, the huge variant's peak RSS over the
ordinary one's.

    .venv/bin/python benchmarks/huge_field.py                 # 100,000 rows, a 120 MB field
    .venv/bin/python benchmarks/huge_field.py --field-mb 20
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TIME = "/usr/bin/time"
NAME = "PRODUCT_V2_Bench_202601010000.csv"
# The child: land and validate one file as the validated asset does, then print what it found.
CHILD = """
import json, sys
from pathlib import Path
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.ingest.drop import classify
from bspk_pipelines.ingest.parse import FileFailure
from bspk_pipelines.ingest.check import validate_file
from bspk_pipelines.ingest.land import land
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.warehouse.engine import engine_for

root, drop = Path(sys.argv[1]), sys.argv[2]
brand = Brand.model_validate({"brand": "bench", "company_name": "Bench",
                              "sources": {"main": {"format": "bspk", "drop": drop}}})
engine = engine_for(f"sqlite:///{root / 'warehouse.sqlite'}")
layout = Layout(root / "data")
delivery = classify(brand, "main", Path(drop).joinpath(sys.argv[3]).name)
land(engine, layout, brand, delivery)
try:
    result = validate_file(engine, layout, brand, "main", delivery.entities[0], delivery.name)
    outcome = {"status": result.status, "rows": result.rows, "rejected": result.rejected}
except FileFailure as e:
    outcome = {"status": "failed", "rows": 0, "rejected": 0, "error": str(e)[:200]}
with engine.connect() as conn:
    rules = conn.exec_driver_sql("select rule, count(*) from rejects group by rule order by rule").fetchall()
outcome["rules"] = {r: n for r, n in rules}
print(json.dumps(outcome))
"""


def write_file(path: Path, rows: int, field_bytes: int, shape: str) -> None:
    """`rows` ordinary products, then (if `field_bytes`) one whose description is that long."""
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("product_ref,name,description,categories,language_code,brand,published\n")
        for i in range(rows):
            f.write(f"P{i},Jacket {i},A warm jacket,Men>>Coats,en,Acme,TRUE\n")
        if field_bytes:
            if shape == "plain":
                piece, opening, closing = "x" * 1023 + " ", "", ""
            else:
                piece, opening, closing = "lorem, ipsum dolor sit amet " * 2 + "consectetur adipisc\n", '"', '"'
            f.write(f"HUGE,Coat,{opening}")
            for _ in range(field_bytes // len(piece)):
                f.write(piece)
            f.write(f"{closing},,en,Acme,TRUE\n")
        f.write("LAST,Scarf,A last row after the huge one,,en,Acme,TRUE\n")


def measure(root: Path, path: Path) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS in MiB and the child's outcome of landing and validating `path`."""
    report = root / "time.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([TIME, "-v", "-o", str(report), sys.executable, "-c", CHILD, str(root), str(path.parent), path.name],
                          capture_output=True, text=True, env=env, cwd=root)
    if proc.returncode != 0:
        raise SystemExit(f"the child failed:\n{proc.stdout}\n{proc.stderr}")
    text = report.read_text()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", text)
    seconds = int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))
    return seconds, rss, json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="ordinary rows in each file (default 100,000)")
    parser.add_argument("--field-mb", type=float, default=120, help="size of the huge field in MB (default 120)")
    parser.add_argument("--shape", choices=["plain", "quoted"], action="append", help="default: both")
    args = parser.parse_args(argv)
    for shape in args.shape or ["plain", "quoted"]:
        peaks = {}
        for variant, field_bytes in (("ordinary", 0), ("huge", int(args.field_mb * 1_000_000))):
            with tempfile.TemporaryDirectory(prefix="bspk_huge_field_") as tmp:
                root = Path(tmp)
                (root / "drop").mkdir()
                path = root / "drop" / NAME
                write_file(path, args.rows, field_bytes, shape)
                size = path.stat().st_size / 1e6
                seconds, peaks[variant], out = measure(root, path)
            rules = ", ".join(f"{r} {n}" for r, n in out["rules"].items()) or "none"
            print(f"{shape:<7} {variant:<9} {size:8.1f} MB {seconds:6.1f} s {peaks[variant]:8.0f} MiB  {out['status']:<9} "
                  f"rows {out['rows']:,}  rejected {out['rejected']:,} ({rules}){'  ' + out['error'] if 'error' in out else ''}",
                  flush=True)
        print(f"{shape:<7} peak RSS huge / ordinary: {peaks['huge'] / peaks['ordinary']:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

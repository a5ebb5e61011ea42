"""benchmarks/shapes.py at a tiny size, so the script cannot rot: it runs, prints a line per shape,
finds every shape read the same rows, and cleans up. The figures are not asserted: at this size
they mean nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "shapes.py"
SHAPES = ("csv", "csv_cp1252", "csv_utf16", "csv_noheader", "csv_trailer", "csv_pipes", "fixed_width", "csv_gzip",
          "csv_zip", "excel", "jsonl", "json", "parquet")
FIGURES = r"\s+[\d,]+\s+\d+\.\d\s+\d+\.\d\d s\s+[\d,]+\s+\d+ MiB\s+\d+\.\d\dx"


def test_shapes_benchmark_runs(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--rows", "2000", "--excel-rows", "500", "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    for shape in SHAPES:
        assert re.search(rf"^{shape}{FIGURES}", out.stdout, re.M), \
            f"no line for {shape}\n{out.stdout}"
    assert re.search(r"^excel\s+500\s", out.stdout, re.M), out.stdout
    assert re.search(r"^csv\s+2,000\s.*\s1\.00x$", out.stdout, re.M), out.stdout
    assert re.search(r"^same rows: yes", out.stdout, re.M), out.stdout
    assert not list(tmp_path.iterdir()), "the benchmark left its temporary folder behind"

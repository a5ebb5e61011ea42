"""benchmarks/huge_field.py at a tiny size, so the script cannot rot: it runs and prints every line.
The figures are not asserted: at this size they mean nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "huge_field.py"


def test_huge_field_benchmark_runs():
    out = subprocess.run([sys.executable, str(SCRIPT), "--rows", "100", "--field-mb", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for shape in ("plain", "quoted"):
        assert re.search(rf"^{shape}\s+ordinary .* MiB\s+validated\s+rows 101\s+rejected 0 \(none\)$", out.stdout, re.M), out.stdout
        # The huge row is one reject; the row after it is read.
        assert re.search(rf"^{shape}\s+huge .* MiB\s+validated\s+rows 101\s+rejected 1 \(length 1\)$", out.stdout, re.M), out.stdout
        assert re.search(rf"^{shape}\s+peak RSS huge / ordinary: \d+\.\d\dx$", out.stdout, re.M), out.stdout

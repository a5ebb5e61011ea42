"""benchmarks/shopify.py at a tiny size, so the script cannot rot: it runs, reports and cleans up."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "shopify.py"


def test_shopify_benchmark_runs_and_reports_each_phase():
    done = subprocess.run([sys.executable, str(SCRIPT), "--customers", "40", "--products", "4", "--orders", "30",
                           "--lines", "2"], capture_output=True, text=True, timeout=300, cwd=SCRIPT.parent)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    for phase in ("download", "bulk load", "1% delta"):
        assert re.search(rf"^{phase} +\d+\.\d s +\d+\.\d\d GiB +\d+\.\d\dx", done.stdout, re.MULTILINE), done.stdout
    assert "shop: customers: bulk of everything: 40 customers (40 lines)" in done.stdout
    assert "shop: customers: pull of since" in done.stdout and ": 1 customers (1 lines)" in done.stdout
    assert "'shoppers': 40" in done.stdout

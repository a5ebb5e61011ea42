"""benchmarks/auth_flood.py at a tiny size, so the script cannot rot: it runs against a real
`bspk serve` and reports, and the flood meets the failed-authentication limit."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "auth_flood.py"


def test_auth_flood_benchmark_runs_and_reports():
    done = subprocess.run([sys.executable, str(SCRIPT), "--requests", "30", "--concurrency", "5", "--baseline", "3"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    out = done.stdout
    flood = re.search(r"^flood +30 wrong-secret requests, 5 at a time, from 1 address\(es\): \d+\.\d s; "
                      r"statuses (\{[\d:, ]+\})$", out, re.MULTILINE)
    assert flood, out
    # At most ten wrong secrets reach scrypt (401); the limit turns the rest away before it (429). On
    # a machine so loaded that a check waited over a second for its turn, that try is a 503 and is
    # not counted against the limit.
    statuses = ast.literal_eval(flood.group(1))
    assert set(statuses) <= {401, 429, 503} and sum(statuses.values()) == 30, out
    assert 1 <= statuses.get(401, 0) <= 10 and statuses.get(429, 0) >= 30 - 10 - statuses.get(503, 0), out
    assert re.search(r"^server +\d+\.\d CPU s during the flood$", out, re.MULTILINE), out
    assert re.search(r"^good key +during the flood: p50 \d+ ms +p90 \d+ ms +\(\d+ requests\)$", out, re.MULTILINE), out

"""benchmarks/extraction.py at a tiny size, so the script cannot rot: it loads both backends,
serves, times every request, walks, explains and cleans up. The figures are not checked against
the targets: at this size and on a shared machine they say nothing (see benchmarks/README.md)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from bspk_pipelines_tests.builders import postgres_or_skip
from bspk_pipelines_tests.test_benchmark_latency import live_members

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "extraction.py"
REQUESTS = [r"page 1", r"page 1, 304( \(its as_of\))?", r"keyset 1% \(page 2\)", r"keyset 50% \(page \d+\)",
            r"keyset 99% \(page \d+\)", r"offset page=\d+", r"offset page=\d+", r"client_ids \(100\)",
            r"from/to \(~100 rows\)"]


def test_extraction_benchmark_runs_and_cleans_up():
    url = postgres_or_skip()
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--clients", "3000", "--sqlite-clients", "1000", "--repeat", "3",
         "--walk-pages", "5", "--keys", "3", "--postgres", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the script stops its servers and drops its database on SIGTERM
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"the benchmark did not finish in time\n{out}\n{err}")
    assert proc.returncode == 0, f"{out}\n{err}"

    number = r"\d+\.\d ms"
    for backend in ("postgres", "sqlite"):
        assert re.search(rf"^{backend} +load +[\d,]+ clients in \d+\.\d s", out, re.MULTILINE), out
        lines = [line for line in out.splitlines() if re.match(rf"{backend} +(page|keyset|offset|client_ids|from)", line)]
        assert len(lines) == len(REQUESTS), out
        target = r"<= \d+ ms  (ok|MISSED)" if backend == "postgres" else r"\(no target\)"
        for line, name in zip(lines, REQUESTS):
            # Every request answered as expected (a 304 for the ETag): no `statuses` note.
            assert re.fullmatch(rf"{backend} +{name} +{number} +{number} +{target}", line), line
        assert re.search(rf"^{backend} +walk, one key +5 of \d+ pages in 4 stretches .*EXTRAPOLATED", out,
                         re.MULTILINE), out
        assert re.search(rf"^{backend} +walk vs rate limit +30 per 10 s alone: ", out, re.MULTILINE), out
    for label in ("page 1", "keyset 99%"):
        assert re.search(rf"^EXPLAIN {label}: page query\n  \S", out, re.MULTILINE), out
    assert "Execution Time" in out, out
    assert re.search(r"^targets at 3,000 clients \(PostgreSQL\): (all hold|not all hold)$", out, re.MULTILINE), out

    # Its servers stopped, its database dropped.
    for group in re.findall(r"process group (\d+)\)", out):
        assert not live_members(int(group)), f"bspk serve survived the benchmark\n{out}\n{err}"
    database = re.search(r"^database (bench_extraction_\w+) ", out, re.MULTILINE).group(1)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert not conn.execute(sa.text("select 1 from pg_database where datname = :d"), {"d": database}).first()
    finally:
        engine.dispose()

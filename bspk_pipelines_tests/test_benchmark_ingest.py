"""benchmarks/ingest.py at a tiny size, so the script cannot rot: it runs, prints every line and
cleans up. The figures are not asserted: at this size they mean nothing."""

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

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ingest.py"
TINY = ["--shoppers", "200", "--sales", "2000", "--products", "20", "--years", "2"]
FIGURES = r"\s+\d+\.\d s\s+[\d,]+ rows/s\s+\d+\.\d\d GiB\s+\d+\.\d\dx$"


def test_ingest_benchmark_runs_on_postgres_and_sqlite(tmp_path):
    url = postgres_or_skip()
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *TINY, "--postgres", url, "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the script drops its database and folder on SIGTERM
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"the benchmark did not finish in time\n{out}\n{err}")

    assert proc.returncode == 0, f"{out}\n{err}"
    # Under dagster dev, as the drop sensor sees them: a line each, with where the time went, and
    # dagster dev's whole process group gone after.
    group = re.search(r"^  daemon dagster dev pid \d+ \(process group (\d+)\)", out, re.MULTILINE)
    assert group, out
    for phase in ("redelivery", "delta"):
        assert re.search(rf"^postgres\s+daemon {phase}\s+\d+\.\d s\s+[\d,]+ rows/s\s+\d+\.\d\dx$", out, re.MULTILINE), out
        assert re.search(rf"^  daemon {phase}: \(wait for tick \d+\.\d\d s", out, re.MULTILINE), out
        assert re.search(rf"^target daemon {phase} <= [\d.]+x floor: (holds|misses) \(", out, re.MULTILINE), out
    assert "warning:" not in out, out
    assert not live_members(int(group.group(1))), f"dagster processes survived the benchmark\n{out}"
    pipeline = [(w, p) for w in ("postgres", "sqlite") for p in ("initial", "redelivery", "delta")]
    for warehouse, phase in [("postgres", "floor"), ("postgres", "floor_idx"), ("postgres", "tables"), *pipeline]:
        assert re.search(rf"^{warehouse}\s+{phase}{FIGURES}", out, re.MULTILINE), f"no {warehouse} {phase}\n{out}"
    # Each peer either ran its three phases, a figure each beside bspk's, or says why it did not:
    # never a figure for a peer that is not installed.
    for peer in ("dlt", "sling"):
        skipped = re.search(rf"^peer\s+{peer}\s+skipped: not installed: ", out, re.MULTILINE)
        ran = [re.search(rf"^peer\s+{peer} {p}{FIGURES[:-1]}\s+\d+\.\d\dx bspk$", out, re.MULTILINE)
               for p in ("initial", "redelivery", "delta")]
        assert bool(skipped) != all(ran), f"{peer}: neither skipped nor three figures\n{out}"
    for target in ("initial <= 1.5x floor_idx", "peak RSS"):
        assert re.search(rf"^target {target}.*: (holds|misses) \(", out, re.MULTILINE), f"no {target} target\n{out}"
    for phase in ("initial", "redelivery", "delta"):
        assert re.search(rf"^target {phase} 2x faster than the faster peer.*: "
                         r"((holds|misses) \(\d+\.\d\dx faster\)|not measured \(no peer ran\))$", out, re.MULTILINE), out
    assert re.search(r"^initial / tables: \d+\.\d\dx ", out, re.MULTILINE), out

    database = re.search(r"^database (bspk_bench_\w+) ", out, re.MULTILINE)
    assert database, out
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            left = conn.execute(sa.text("select 1 from pg_database where datname = :d"),
                                {"d": database.group(1)}).first()
    finally:
        engine.dispose()
    assert left is None, f"database {database.group(1)} was not dropped"
    assert not list(tmp_path.iterdir()), "the benchmark left its temporary folder behind"

"""benchmarks/brands.py at a tiny size, so the script cannot rot: two code locations of two
brands each, one file dropped, every figure reported and every process stopped."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.brands import idle_cpu
from bspk_pipelines_tests.test_benchmark_latency import live_members

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "brands.py"


def test_brands_benchmark_runs_over_two_code_locations_and_cleans_up():
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--brands", "4", "--brands-per-location", "2", "--files", "1", "--rows", "5",
         "--idle-seconds", "6", "--settle", "1", "--jitter", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out, err = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"the benchmark did not finish in time\n{out}\n{err}")
    assert proc.returncode == 0, f"{out}\n{err}"
    assert "FAILED" not in out + err, f"{out}\n{err}"
    # Each location loads only its own two brands, with one drop sensor for them.
    assert re.search(r"load loc00: .*\b112 assets\b.*\b2 sensors\b", out) and re.search(r"load loc01: ", out), out
    assert "loc00/drop_sensor" in out, out
    summary = re.search(r"^\s+4\s+2\s+224\s+.*$", out, re.MULTILINE)
    assert summary, out
    assert re.search(r"drop to row: p50 \d+\.\d s", out), out
    for group in re.findall(r"process group (\d+)", out):
        assert not live_members(int(group)), f"dagster processes survived the benchmark\n{out}\n{err}"


def test_idle_cpu_reports_each_step_of_its_window(tmp_path):
    """A process named like the daemon that uses half a second of CPU at its start and then
    sleeps: that half second lands in the window's first steps, none in its last."""
    script = tmp_path / "dagster-daemon"
    script.write_text("import time\nwhile time.process_time() < 0.5: pass\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    try:
        cpu = idle_cpu(proc.pid, 3, step=1)
    finally:
        proc.kill()
        proc.wait()
    steps = cpu["steps"]
    assert len(steps) >= 3, cpu
    assert steps[0] > 15 and steps[-1] < 5, cpu
    assert 10 < cpu["daemon"] < 30 and cpu["code servers"] == 0, cpu

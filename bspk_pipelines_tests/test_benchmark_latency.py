"""benchmarks/latency.py at a tiny size, so the script cannot rot: it runs, reports and cleans up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "latency.py"


def live_members(pgid: int) -> list[int]:
    """Processes still in the group, zombies aside (an orphan waits for init to reap it)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except ProcessLookupError:
            return []
    alive = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces and parentheses: fields start after the last ')'.
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            alive.append(int(stat.parent.name))
    return alive


def test_latency_benchmark_runs_and_cleans_up():
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--files", "2", "--rows", "5", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out, err = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the script stops its dagster dev on SIGTERM
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"the benchmark did not finish in time\n{out}\n{err}")

    group = re.search(r"process group (\d+)", out)
    assert group, f"no process group reported\n{out}\n{err}"
    assert proc.returncode == 0, f"{out}\n{err}"
    assert re.search(r"^p50 \d+\.\d s  p90 \d+\.\d s  \(2 files of 5 rows\)$", out, re.MULTILINE), out
    assert not live_members(int(group.group(1))), f"dagster processes survived the benchmark\n{out}\n{err}"

"""`make dev` stops on SIGTERM to make alone (started in the background) or on Ctrl-C (SIGINT to its
foreground group), leaving no process behind and its ports free."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bspk_pipelines.demo.shop import PORT as SHOP_PORT

REPO = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed server's TIME_WAIT is not a listener
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def processes() -> dict[int, tuple[int, int, str]]:
    """Every process on the machine: pid -> (parent pid, session id, state)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            found[int(entry)] = (int(fields[1]), int(fields[3]), fields[0])  # after the name: state, ppid, pgrp, session
    return found


def tree(root: int) -> dict[int, tuple[int, int, str]]:
    """`root` and its descendants."""
    table, found, todo = processes(), {}, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found[pid] = table[pid]
            todo += [child for child, (parent, _, _) in table.items() if parent == pid]
    return found


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("how", ["sigterm_to_make_started_in_the_background", "ctrl_c_to_its_foreground_group"])
def test_make_dev_stops_with_every_process_it_started(tmp_path, how):
    ui, api = free_port(), free_port()
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "acme.yaml").write_text("brand: acme\ncompany_name: Acme\nsources:\n  main: {format: bspk, drop: drop/acme}\n")
    # In a terminal, as a new user runs it, with the sample brands: Lune's shop is started beside them.
    sample_shop = how == "ctrl_c_to_its_foreground_group"
    if sample_shop:
        (mappings / "lune.yaml").write_text((REPO / "mappings" / "lune.yaml").read_text())
    env = {**os.environ, "PYTHONPATH": str(REPO), "DAGSTER_HOME": str(tmp_path / "home"),
           "BSPK_DATA_DIR": str(tmp_path / "data"), "BSPK_MAPPINGS_DIR": str(mappings)}
    # The virtualenv running the tests stands for the project's; `-o` keeps make from installing into it.
    make = (f"make -C {REPO} dev VENV={VENV} -o {VENV}/bin/bspk 'DEV_ARGS=--port {ui} --api-port {api}'"
            f" >{tmp_path / 'dev.log'} 2>&1")
    if how == "sigterm_to_make_started_in_the_background":
        # As from a script: `&` in a non-interactive shell starts make with SIGINT ignored.
        shell = subprocess.Popen(["sh", "-c", f"{make} & echo $!; wait $!"], env=env, stdout=subprocess.PIPE, text=True,
                                 start_new_session=True)
        make_pid = int(shell.stdout.readline())
        signo, stop = signal.SIGTERM, lambda: os.kill(make_pid, signal.SIGTERM)
    else:
        # As in a terminal: make leads the foreground group, and Ctrl-C signals the whole group.
        shell = subprocess.Popen(["sh", "-c", f"exec {make}"], env=env, start_new_session=True)
        make_pid = shell.pid
        signo, stop = signal.SIGINT, lambda: os.killpg(make_pid, signal.SIGINT)
    started: dict[int, tuple[int, int, str]] = {}
    try:
        deadline = time.monotonic() + 180
        while not (answers(f"http://127.0.0.1:{ui}/server_info") and answers(f"http://127.0.0.1:{api}/openapi.json")):
            assert shell.poll() is None and time.monotonic() < deadline, (tmp_path / "dev.log").read_text()
            time.sleep(1)
        if sample_shop:
            while port_is_free(SHOP_PORT):
                assert time.monotonic() < deadline, (tmp_path / "dev.log").read_text()
                time.sleep(0.5)
        started = tree(make_pid)
        sessions = {sid for _, sid, _ in started.values()}
        # make, dagster dev, its webserver, daemon and code server, the API, and what starts them.
        assert len(started) >= 6, started

        stopped_at = time.monotonic()
        stop()
        shell.wait(timeout=30)
        left = {pid: p for pid, p in processes().items() if p[1] in sessions}
        while left and time.monotonic() < stopped_at + 30:
            time.sleep(0.5)
            left = {pid: p for pid, p in processes().items() if p[1] in sessions}
        assert left == {}, (left, (tmp_path / "dev.log").read_text())
        assert port_is_free(ui) and port_is_free(api) and port_is_free(SHOP_PORT)
        log = (tmp_path / "dev.log").read_text()
        stopping = "dagster dev, bspk serve and the sample shop" if sample_shop else "dagster dev and bspk serve"
        assert f"bspk dev: {signo.name} received: stopping {stopping}" in log, log
        assert "bspk dev: stopped" in log and "killed" not in log, log
    finally:
        # Only if the test failed: each session this test started leads a group of the same id.
        for sid in ({sid for _, sid, _ in started.values()} | {shell.pid}) - {os.getsid(0)}:
            try:
                os.killpg(sid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shell.wait(timeout=10)


def test_a_process_started_in_a_group_after_the_stop_signal_hears_it_too(monkeypatch, capsys):
    """Under load Dagster's proxy may start a code server while `dagster dev` shuts down: that
    process was not there for the first signal. It gets it again, so nothing is left to kill."""
    import textwrap

    from bspk_pipelines.cli import dev

    monkeypatch.setattr(dev, "GRACE_SECONDS", 8.0)
    monkeypatch.setattr(dev, "RESIGNAL_SECONDS", 1.0)
    late = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(60)"
    parent = textwrap.dedent(f"""
        import signal, subprocess, sys, time
        def restart(*_):
            subprocess.Popen([sys.executable, "-c", {late!r}])  # in this group, after the signal
            time.sleep(0.5)
            sys.exit(0)
        signal.signal(signal.SIGTERM, restart)
        print("ready", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", parent], start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    started = time.monotonic()
    dev._stop({"the parent": child}, signal.SIGTERM, [])
    said = capsys.readouterr().err
    assert "killed" not in said and "bspk dev: stopped" in said, said
    assert time.monotonic() - started < 8.0

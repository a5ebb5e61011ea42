"""The brand's writer lock: one holder at a time across threads and processes, never across
brands, re-entrant within a thread, and let go when its holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from bspk_pipelines.warehouse import locks
from bspk_pipelines.warehouse.locks import brand_lock

HOLD = """
import sys, time
from bspk_pipelines.warehouse.locks import brand_lock
from bspk_pipelines.warehouse.engine import engine_for
with brand_lock(engine_for(sys.argv[1]), "acme"):
    print("held", flush=True)
    time.sleep(600)
"""


def _hold_in_thread(engine, brand: str, seconds: float) -> threading.Thread:
    taken = threading.Event()

    def hold():
        with brand_lock(engine, brand):
            taken.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait(10)
    return thread


def test_a_second_writer_waits_for_the_first_and_says_so(engine, monkeypatch, capsys):
    monkeypatch.setattr(locks, "REPORT_EVERY_SECONDS", 0.1)
    holder = _hold_in_thread(engine, "acme", 0.6)
    started = time.monotonic()
    with brand_lock(engine, "acme"):
        waited = time.monotonic() - started
    holder.join()
    assert waited >= 0.4
    assert "acme: waiting" in capsys.readouterr().err


def test_brands_do_not_wait_for_each_other_and_a_holder_may_take_the_lock_again(engine):
    holder = _hold_in_thread(engine, "acme", 2.0)
    started = time.monotonic()
    with brand_lock(engine, "maison"):
        pass
    assert time.monotonic() - started < 1.0
    holder.join()
    with brand_lock(engine, "acme"), brand_lock(engine, "acme"):  # a step calling a step
        pass


def test_a_writer_killed_while_holding_the_lock_leaves_the_brand_unlocked(engine, warehouse_url):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, warehouse_url], stdout=subprocess.PIPE, text=True,
                              env=os.environ | {"PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().strip() == "held"
        done = threading.Event()

        def wait_for_it():
            with brand_lock(engine, "acme"):
                done.set()

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        assert not done.wait(0.5)  # held by the other process
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert done.wait(10)  # the kernel or the server let go of it with its holder
        waiter.join()
    finally:
        holder.kill()

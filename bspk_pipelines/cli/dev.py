"""`bspk dev` (`make dev`): `dagster dev` and the REST API side by side, started and stopped together;
beside them, when a brand pulls the sample shop (Lune's, in `mappings/lune.yaml`), that shop on
the Shopify stand-in, so its schedule has something to pull.

Each runs in a session of its own, so that a signal reaches all of its processes (dagster dev's
webserver, daemon, code server and the runs they start) and nothing else. SIGTERM or SIGINT
(Ctrl-C) is passed on to both groups; whatever is left after GRACE_SECONDS (or at a second
signal) is killed; the launcher exits once both groups are empty. If either ends on its own,
the other is stopped the same way.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bspk_pipelines.cli.environment import PROJECT_ROOT, ensure_dagster_home
from bspk_pipelines.settings import daemon_environment

GRACE_SECONDS = 20.0
# How often the stop signal is sent again to what is left of the groups (see `_stop`).
RESIGNAL_SECONDS = 3
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def run(args: argparse.Namespace) -> int:
    """The Dagster UI, daemon and sensors (`dagster dev`) and the REST API, until SIGTERM or Ctrl-C
    stops them all."""
    ensure_dagster_home()
    return launch(PROJECT_ROOT / "workspace.yaml", args.host, args.port, args.api_port, _pulls_sample_shop())


def _pulls_sample_shop() -> bool:
    """Whether a brand's Shopify source is the sample shop's (the stand-in on 127.0.0.1:8470)."""
    from bspk_pipelines.demo.shop import PORT
    from bspk_pipelines.model.brand_file import ConfigError, load_brands
    from bspk_pipelines.model.shopify import ShopifySource
    from bspk_pipelines.settings import SettingError, Settings

    try:
        brands = load_brands(Settings.from_env().mappings_dir)
    except (ConfigError, SettingError):
        return False  # dagster dev says what is wrong with them
    return any(isinstance(s, ShopifySource) and (s.endpoint or "").startswith(f"http://127.0.0.1:{PORT}/")
               for b in brands for s in b.sources.values())


def launch(workspace: Path, host: str, port: int, api_port: int, sample_shop: bool = False) -> int:
    """Run the Dagster UI on `port` and the REST API on `api_port` (and the sample shop) until a
    signal or either of the first two ends; 0 after a requested stop, else the exit code of the
    one that ended first."""
    received: list[int] = []
    # Installed before the children start, which get the default dispositions back (exec resets
    # handlers, not ignored signals): started in the background, this process inherits SIGINT
    # ignored, and `dagster dev` gives SIGTERM whatever SIGINT does, so it would ignore both.
    for signo in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signo, lambda signo, _frame: received.append(signo))
    _adopt_orphans()
    commands = {
        "dagster dev": [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-h", host, "-p", str(port)],
        "bspk serve": [sys.executable, "-m", "bspk_pipelines.cli", "serve", "--host", host, "--port", str(api_port)],
    }
    essential = list(commands)
    if sample_shop:  # beside the others: if it cannot start (its port taken), they go on without it
        commands["the sample shop"] = [sys.executable, "-m", "bspk_pipelines.demo.shop"]
    environment = daemon_environment()
    children = {name: subprocess.Popen(command, start_new_session=True, env=environment) for name, command in commands.items()}
    while not received and all(children[name].poll() is None for name in essential):
        time.sleep(0.2)
        _reap(children)
    ended = None if received else next(name for name in essential if children[name].returncode is not None)
    _say(f"{ended} ended with {children[ended].returncode}: stopping" if ended else
         f"{signal.Signals(received[0]).name} received: stopping {_listed(list(commands))}")
    _stop(children, received[0] if received else signal.SIGTERM, received)
    if ended is None:
        return 0
    code = children[ended].returncode
    return code if code >= 0 else 128 - code


def _listed(names: list[str]) -> str:
    return " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"


def _stop(children: dict[str, subprocess.Popen], signo: int, received: list[int]) -> None:
    """Signal each child's process group, wait for the groups to empty, kill what stays. The
    groups still there get SIGTERM every RESIGNAL_SECONDS: a process started in a
    group after the first one (Dagster's proxy restarting a code server while it shuts down, under
    load) would otherwise never hear it and be killed at the deadline."""
    groups = {name: child.pid for name, child in children.items()}  # each child leads its group
    for pgid in groups.values():
        _signal_group(pgid, signo)
    signals_before = len(received)
    now = time.monotonic()
    deadline, resignal = now + GRACE_SECONDS, now + RESIGNAL_SECONDS
    while any(_alive(g) for g in groups.values()) and time.monotonic() < deadline and len(received) == signals_before:
        time.sleep(0.1)
        _reap(children)
        if time.monotonic() >= resignal:
            for pgid in groups.values():
                _signal_group(pgid, signal.SIGTERM)
            resignal = time.monotonic() + RESIGNAL_SECONDS
    left = [name for name, pgid in groups.items() if _alive(pgid)]
    if left:
        _say(f"{', '.join(left)} still running: killed")
        for name in left:
            _signal_group(groups[name], signal.SIGKILL)
        while any(_alive(g) for g in groups.values()):
            time.sleep(0.05)
            _reap(children)
    _say("stopped")


def _adopt_orphans() -> None:
    # A descendant whose parent ends before it comes to this process to be reaped (Linux), rather
    # than to PID 1, which in a container may never reap it: no zombie outlives `bspk dev`.
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _reap(children: dict[str, subprocess.Popen]) -> None:
    """Collect every child that ended: ours (keeping its exit code) and adopted orphans."""
    ours = {child.pid: child for child in children.values()}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in ours:
            ours[pid].returncode = os.waitstatus_to_exitcode(status)


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, signo: int) -> None:
    try:
        os.killpg(pgid, signo)
    except ProcessLookupError:
        pass


def _say(message: str) -> None:
    print(f"bspk dev: {message}", file=sys.stderr, flush=True)

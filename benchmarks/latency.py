"""Drop-to-warehouse latency under `dagster dev`: how long a dropped file takes to be readable.

Starts `dagster dev` on the repo's workspace with a throwaway instance, data folder and one
native brand, drops SHOPPER files one at a time (`.part` + rename + `.done` marker) and times
each until its rows are in the `shoppers` table. Each line splits the latency, from the
webserver's GraphQL, into: wait for the sensor's tick, the tick until the run is created, submit
(until enqueued), queue (until dequeued and starting), launch (run worker process until the run
starts) and run (until the rows are readable).

    .venv/bin/python benchmarks/latency.py --files 10 --rows 100
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bspk_pipelines.defs import names
from bspk_pipelines.model.entities import ENTITIES

REPO = Path(__file__).resolve().parent.parent

LOCATION = "bspk_pipelines"  # workspace.yaml's location_name
SENSOR_LOOP = 5.0  # Dagster's sensor daemon evaluates sensors at most this often (MIN_INTERVAL_LOOP_TIME)


class Failed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shopper_file(n: int, rows: int) -> str:
    columns = [c for c in ENTITIES["shoppers"].columns if c.in_header]
    lines = [",".join(c.header or c.name for c in columns)]
    for r in range(rows):
        # Refs and phones differ across files too: an unchanged row would keep its old `_file`.
        values = {
            "shopper_ref": f"F{n}S{r}", "first_name": "Marie", "last_name": f"Curie{r}", "gender": "F",
            "email": f"f{n}s{r}@example.com", "mobile_phone": f"+3361{n % 100:02d}{r:05d}", "city": "Paris",
            "country_code": "FR", "preferred_contact_channel": "email", "nationality": "FR", "languages": "fr",
            "email_contact": "TRUE", "phone_call_contact": "FALSE",
        }
        lines.append(",".join(values.get(c.name, "") for c in columns))
    return "\n".join(lines) + "\n"


def graphql(port: int, query: str, **variables) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["data"]


READY = """query($sensor: String!, $location: String!) {
  workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } }
  instance { daemonHealth { allDaemonStatuses { daemonType healthy } } }
  sensorOrError(sensorSelector: {repositoryLocationName: $location, repositoryName: "__repository__", sensorName: $sensor}) {
    ... on Sensor { sensorState { status ticks(limit: 1) { timestamp } } } }
}"""

RUNS = """query($file: String!, $sensor: String!, $location: String!) {
  runsOrError(filter: {tags: [{key: "bspk/file", value: $file}]}) {
    ... on Runs { results { runId creationTime startTime
      eventConnection(limit: 50) { events { __typename ... on MessageEvent { timestamp } } } } } }
  sensorOrError(sensorSelector: {repositoryLocationName: $location, repositoryName: "__repository__", sensorName: $sensor}) {
    ... on Sensor { sensorState { ticks(limit: 30) { timestamp endTimestamp runIds } } } }
}"""


def wait_until_ready(proc: subprocess.Popen, port: int, sensor: str, deadline: float, location: str = LOCATION) -> None:
    """Location loaded, sensor daemon healthy and our sensor (in code location `location`) ticked
    once: from then on a dropped file only waits for the sensor's interval, not for start-up."""
    while time.time() < deadline:
        if proc.poll() is not None:
            raise Failed(f"dagster dev exited with {proc.returncode} while starting")
        try:
            data = graphql(port, READY, sensor=sensor, location=location)
        except OSError:
            time.sleep(0.5)
            continue
        entries = (data.get("workspaceOrError") or {}).get("locationEntries") or []
        loaded = [e for e in entries if e["name"] == location and e["loadStatus"] == "LOADED"]
        if loaded and loaded[0]["locationOrLoadError"]["__typename"] == "PythonError":
            raise Failed(f"code location failed to load: {loaded[0]['locationOrLoadError']['message']}")
        daemons = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        sensor_daemon = any(d["daemonType"] == "SENSOR" and d["healthy"] for d in daemons)
        state = (data.get("sensorOrError") or {}).get("sensorState") or {}
        if loaded and sensor_daemon and state.get("ticks"):
            return
        time.sleep(0.5)
    raise Failed("dagster dev did not load the code location and tick the sensor in time")


def wait_for_rows(engine: sa.Engine, brand: str, name: str, rows: int, deadline: float) -> float:
    """When `name`'s rows are all readable in `shoppers`; Failed if its file failed or time ran out."""
    count = sa.text("select count(*) from shoppers where brand = :b and _file = :f")
    status = sa.text("select status, error from files where brand = :b and name = :f")
    while time.time() < deadline:
        try:
            with engine.connect() as conn:
                if conn.execute(count, {"b": brand, "f": name}).scalar() == rows:
                    return time.time()
                row = conn.execute(status, {"b": brand, "f": name}).first()
            if row and row.status in ("failed", "duplicate"):
                raise Failed(f"{name}: {row.status}: {row.error}")
        except sa.exc.DBAPIError:
            pass  # the warehouse or its tables do not exist until the project first touches them
        time.sleep(0.1)
    raise Failed(f"{name}: rows not in the warehouse within the timeout")


def phases(port: int, sensor: str, name: str, appeared: float, readable: float, location: str = LOCATION) -> str:
    """Where `name`'s latency went, in seconds, from its sensor tick (`sensor` in code location
    `location`) and its run's events."""
    try:
        data = graphql(port, RUNS, file=name, sensor=sensor, location=location)
        runs = data["runsOrError"]["results"]
        ticks = data["sensorOrError"]["sensorState"]["ticks"]
    except (OSError, KeyError, TypeError):
        return "(no breakdown: GraphQL did not answer)"
    if len(runs) != 1 or not runs[0]["startTime"]:
        return f"(no breakdown: {len(runs)} runs)"
    run = runs[0]
    tick = next((t for t in ticks if run["runId"] in t["runIds"]), None)
    events = {e["__typename"]: int(e["timestamp"]) / 1000 for e in reversed(run["eventConnection"]["events"])}
    if tick is None or not {"RunEnqueuedEvent", "RunStartingEvent"} <= events.keys():
        return "(no breakdown: tick or run events not found)"
    # One timeline, so the phases add up to the latency.
    marks = [appeared, tick["timestamp"], run["creationTime"], events["RunEnqueuedEvent"],
             events["RunStartingEvent"], run["startTime"], readable]
    labels = ["wait for tick", "tick", "submit", "queue", "launch", "run"]
    return "(" + ", ".join(f"{label} {b - a:.1f}s" for label, a, b in zip(labels, marks, marks[1:])) + ")"


def drop_and_time(engine: sa.Engine, drop: Path, brand: str, company: str, files: int, rows: int, timeout: float,
                  port: int, sensor: str, location: str = LOCATION, jitter: float = 0) -> list[float]:
    """`files` SHOPPER files of `rows` rows dropped into `drop` one at a time (written aside,
    renamed in, then a `.done` marker), each timed until its rows are in the warehouse and
    printed with its phases; up to `jitter` seconds' random pause before each (dropping right
    after the previous file lands locks drops to the sensor's cadence)."""
    latencies = []
    first = datetime(2026, 1, 1)
    for n in range(files):
        time.sleep(random.uniform(0, jitter))
        name = f"SHOPPER_V3_{company}_{first + timedelta(minutes=n):%Y%m%d%H%M}.csv"
        part = drop / f"{name}.part"
        part.write_text(shopper_file(n, rows))
        part.rename(drop / name)
        appeared = time.time()
        (drop / f"{name}.done").touch()
        readable = wait_for_rows(engine, brand, name, rows, appeared + timeout)
        latencies.append(readable - appeared)
        print(f"  {n + 1:>3}/{files} {name}  {latencies[-1]:5.1f} s  {phases(port, sensor, name, appeared, readable, location)}",
              flush=True)
    return latencies


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop(proc: subprocess.Popen) -> bool:
    """SIGTERM to the whole process group (webserver, daemon, code server, run workers), then
    SIGKILL; True once the group is gone."""
    pgid = proc.pid  # start_new_session: the group is the leader's pid
    # A second Ctrl-C must not cut the clean-up short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.time() + grace
        # Orphans stay in the group as zombies until init reaps them: give that a moment too.
        while time.time() < deadline:
            proc.poll()  # reap the leader ourselves
            if not group_alive(pgid):
                return True
            time.sleep(0.2)
    proc.poll()
    return not group_alive(pgid)


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def benchmark(args: argparse.Namespace, tmp: Path) -> int:
    home, data, mappings = tmp / "dagster_home", tmp / "data", tmp / "mappings"
    for d in (home, data, mappings):
        d.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    # A shared warehouse keeps earlier runs' files: a fresh brand keeps them from counting.
    suffix = secrets.token_hex(3) if args.warehouse_url else ""
    brand, company = f"lat{suffix}", f"Lat{suffix}"
    (mappings / f"{brand}.yaml").write_text(
        f"brand: {brand}\ncompany_name: {company}\nsources:\n  main:\n    format: bspk\n    drop: drop/{brand}\n")
    drop = data / "drop" / brand
    drop.mkdir(parents=True)
    url = args.warehouse_url or f"sqlite:///file:{data / 'warehouse.sqlite'}?mode=ro&uri=true"
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

    env = os.environ | {"DAGSTER_HOME": str(home), "BSPK_DATA_DIR": str(data), "BSPK_MAPPINGS_DIR": str(mappings)}
    env.pop("BSPK_WAREHOUSE_URL", None)
    if args.warehouse_url:
        env["BSPK_WAREHOUSE_URL"] = args.warehouse_url
    port = free_port()
    log = tmp / "dagster.log"
    proc = None
    try:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster"), "dev", "-w", str(REPO / "workspace.yaml"), "--port", str(port)],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        print(f"dagster dev pid {proc.pid} (process group {proc.pid}) on port {port}", flush=True)
        started = time.time()
        sensor = names.DROP_SENSOR
        wait_until_ready(proc, port, sensor, started + args.timeout)
        print(f"ready in {time.time() - started:.1f} s", flush=True)

        latencies = drop_and_time(engine, drop, brand, company, args.files, args.rows, args.timeout, port, sensor,
                                  jitter=args.jitter)
        print(f"p50 {percentile(latencies, 50):.1f} s  p90 {percentile(latencies, 90):.1f} s  "
              f"({args.files} files of {args.rows} rows)")
        return 0
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
        print("--- last lines of dagster dev's log ---", *tail, sep="\n", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
        if proc is not None:
            if not stop(proc):
                print(f"process group {proc.pid} still alive after SIGKILL", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=120, help="seconds for start-up, and for each file")
    parser.add_argument("--jitter", type=float, default=0, help="random pause of up to this many seconds before each drop")
    parser.add_argument("--warehouse-url", help="SQLAlchemy URL (default: a SQLite file in the temporary folder)")
    args = parser.parse_args(argv)
    # A plain SIGTERM (a test's timeout, say) must still run the clean-up in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="bspk-latency-"))
    try:
        return benchmark(args, tmp)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

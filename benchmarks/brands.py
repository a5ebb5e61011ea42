"""Many brands under `dagster dev`: definitions load time, idle CPU, sensor ticks and drop-to-row.

For each `--brands N` in turn, in a fresh temporary folder: N minimal native brands (`b000`,
`b001`... each one `bspk` source with an empty drop folder), then

- definitions load: for each code location, in a fresh subprocess with the environment
  `dagster dev` gets, what a code server does at load: import the module, its Definitions (or
  repository) made a RepositoryDefinition as Dagster does, `get_all_jobs()` and the repository's
  snapshot (`RepositorySnap`, every job's snapshot: what the webserver asks the code server for);
  the max over the locations and their sum, with the imports of dagster and bspk_pipelines alone
  for reference;
- `dagster dev` (its own process group, stopped whole): once every location is loaded and the
  drop sensor watching b000 has ticked, and `--settle` (240) seconds more, the CPU of every process
  in the group over `--idle-seconds` (300; from /proc/<pid>/stat), as % of one core, by kind: daemon, code
  servers, webserver, others (run workers, `dagster dev` itself); over a window of several minutes,
  daemon plus code servers minute by minute too;
- the mean interval between the ticks of b000's drop sensor in that window, and over a few
  brands' drop sensors (every location's, with several locations);
- `--files` SHOPPER files of `--rows` rows dropped one at a time into b000 (as latency.py), each
  timed until its rows are in the warehouse: p50 and p90.

With `--brands-per-location K`, brand i's file says `location: loc{i // K:02d}` and the workspace
has one code location per `locNN` (`bspk_pipelines.locations`, attribute `locNN`); with K = 0 the
repo's own workspace.yaml (one location). `--repo` measures another checkout of the project (a
`git worktree` of an older commit): its code is what every process imports (PYTHONPATH, cwd).

    .venv/bin/python benchmarks/brands.py --brands 10
    .venv/bin/python benchmarks/brands.py --repo /tmp/brands-before --brands 10 50 200
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
import yaml
from cryptography.fernet import Fernet

from bspk_pipelines.settings import DAEMON_ENVIRONMENT

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import REPO, SENSOR_LOOP, Failed, drop_and_time, free_port, graphql, percentile, stop, wait_until_ready  # noqa: E402

LOAD_TARGET = 5.0  # s per code location
IDLE_TARGET = 10.0  # % of one core, daemon + code servers
P50_TARGET = 5.0  # s, drop to row

# Run in a fresh interpreter per code location: what its code server does at load, timed.
LOADER = r"""
import importlib, json, sys, time
module_name, attribute = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
import dagster
t1 = time.perf_counter()
import bspk_pipelines
t2 = time.perf_counter()
module = importlib.import_module(module_name)
t3 = time.perf_counter()
# As a code server does: the attribute, or the module's one Definitions or repository (found as
# dagster's autodiscovery finds it), made a RepositoryDefinition.
from dagster._core.definitions.reconstruct import repository_def_from_target_def
if attribute:
    target = getattr(module, attribute)
else:
    from dagster._core.workspace.autodiscovery import loadable_targets_from_loaded_module
    found = loadable_targets_from_loaded_module(module)
    if len(found) != 1:
        sys.exit(f"{module_name}: {len(found)} loadable targets at module level")
    target = found[0].target_definition
t4 = time.perf_counter()
repo = repository_def_from_target_def(target)
t5 = time.perf_counter()
jobs = repo.get_all_jobs()
t6 = time.perf_counter()
snapshot_bytes = None
try:
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value
    snapshot_bytes = len(serialize_value(RepositorySnap.from_def(repo)))
except ImportError:
    pass
t7 = time.perf_counter()
print(json.dumps({
    "file": bspk_pipelines.__file__,
    "import_dagster": t1 - t0, "import_bspk": t2 - t1, "module": t3 - t2, "defs": t4 - t3,
    "repo": t5 - t4, "jobs": t6 - t5, "snapshot": t7 - t6 if snapshot_bytes is not None else None,
    "snapshot_bytes": snapshot_bytes,
    "assets": len(repo.asset_graph.get_all_asset_keys()), "jobs_n": len(jobs),
    "sensors": [s.name for s in repo.sensor_defs], "schedules": len(repo.schedule_defs),
}))
"""

LOCATIONS = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""

WATCHER = """query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) { __typename
    ... on AssetNode { repository { name location { name } sensors { name } } } }
}"""

TICKS = """query($location: String!, $sensor: String!, $after: Float!, $before: Float!) {
  sensorOrError(sensorSelector: {repositoryLocationName: $location, repositoryName: "__repository__", sensorName: $sensor}) {
    __typename ... on Sensor { sensorState {
      window: ticks(afterTimestamp: $after, beforeTimestamp: $before, limit: 100000) { timestamp }
      previous: ticks(beforeTimestamp: $after, limit: 1) { timestamp } } } }
}"""


def brand_id(i: int) -> str:
    return f"b{i:03d}"


def location_of(i: int, per_location: int) -> str:
    return f"loc{i // per_location:02d}"


def write_brands(n: int, per_location: int, mappings: Path, data: Path) -> None:
    """The README's minimum brand file for each brand, and its drop folder, empty."""
    for i in range(n):
        b = brand_id(i)
        location = f"location: {location_of(i, per_location)}\n" if per_location else ""
        (mappings / f"{b}.yaml").write_text(
            f"brand: {b}\ncompany_name: {b.upper()}\n{location}sources:\n  main:\n    format: bspk\n    drop: drop/{b}/main\n")
        (data / "drop" / b / "main").mkdir(parents=True)


def workspace(args: argparse.Namespace, n: int, tmp: Path) -> tuple[Path, list[dict]]:
    """The workspace file `dagster dev` gets and its locations (name, module, attribute, working directory)."""
    if args.brands_per_location:
        names = sorted({location_of(i, args.brands_per_location) for i in range(n)})
        entries = [{"python_module": {"module_name": "bspk_pipelines.locations", "attribute": name, "location_name": name,
                                      "working_directory": str(args.repo)}} for name in names]
        path = tmp / "workspace.yaml"
        path.write_text(yaml.safe_dump({"load_from": entries}, sort_keys=False))
    else:
        path = args.repo / "workspace.yaml"
        entries = yaml.safe_load(path.read_text())["load_from"]
    locations = []
    for entry in entries:
        module = entry["python_module"]
        module = {"module_name": module} if isinstance(module, str) else module
        locations.append({
            "name": module.get("location_name") or module["module_name"], "module": module["module_name"],
            "attribute": module.get("attribute") or "",
            "cwd": (path.parent / module.get("working_directory", ".")).resolve(),
        })
    return path, locations


def load_times(locations: list[dict], env: dict, timeout: float) -> list[dict]:
    results = []
    for loc in locations:
        try:
            out = subprocess.run([sys.executable, "-c", LOADER, loc["module"], loc["attribute"]], cwd=loc["cwd"], env=env,
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failed(f"definitions of {loc['name']} not loaded within {timeout:.0f} s") from None
        if out.returncode:
            raise Failed(f"definitions of {loc['name']} failed to load:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["load"] = r["module"] + r["defs"] + r["repo"] + r["jobs"] + (r["snapshot"] or 0)
        r["name"] = loc["name"]
        results.append(r)
        drop_sensors = [s for s in r["sensors"] if s.endswith("drop_sensor")]
        snap = (f", snapshot {r['snapshot']:.2f} s ({r['snapshot_bytes'] / 2**20:.1f} MiB)" if r["snapshot"] is not None
                else ", no snapshot (RepositorySnap not found)")
        print(f"  load {loc['name']}: {r['load']:.2f} s (module {r['module']:.2f} s, repo {r['repo'] + r['defs']:.2f} s, "
              f"jobs {r['jobs']:.2f} s{snap}); imports alone {r['import_dagster'] + r['import_bspk']:.2f} s "
              f"(dagster {r['import_dagster']:.2f}, bspk_pipelines {r['import_bspk']:.2f}); "
              f"{r['assets']} assets, {r['jobs_n']} jobs, {len(r['sensors'])} sensors ({len(drop_sensors)} drop: "
              f"{', '.join(drop_sensors[:3])}{'...' if len(drop_sensors) > 3 else ''}), {r['schedules']} schedules; "
              f"code {r['file']}", flush=True)
    return results


def wait_for_locations(proc: subprocess.Popen, port: int, names: set[str], deadline: float) -> None:
    while time.time() < deadline:
        if proc.poll() is not None:
            raise Failed(f"dagster dev exited with {proc.returncode} while starting")
        try:
            entries = graphql(port, LOCATIONS)["workspaceOrError"]["locationEntries"]
        except (OSError, KeyError, TypeError):
            time.sleep(1)
            continue
        loaded = {e["name"] for e in entries if e["loadStatus"] == "LOADED"}
        for e in entries:
            if e["name"] in loaded and e["locationOrLoadError"]["__typename"] == "PythonError":
                raise Failed(f"code location {e['name']} failed to load: {e['locationOrLoadError']['message']}")
        if names <= loaded:
            return
        time.sleep(1)
    raise Failed(f"code locations not all loaded in time: {sorted(names)}")


def watcher(port: int, brand: str) -> tuple[str, str]:
    """(location, sensor) of the drop sensor watching `brand`: the old code has `<brand>__drop_sensor`
    per brand, the new one a drop sensor per code location (the one holding the brand's raw asset)."""
    try:
        node = graphql(port, WATCHER, path=[brand, "raw", "main"])["assetNodeOrError"]
    except (OSError, KeyError, TypeError) as e:
        raise Failed(f"{brand}: GraphQL did not say where its raw asset is: {e!r}") from None
    if node.get("__typename") != "AssetNode":
        raise Failed(f"{brand}: no asset {brand}/raw/main in the workspace ({node.get('__typename')})")
    repo = node["repository"]
    candidates = [s["name"] for s in repo["sensors"] if s["name"].endswith("drop_sensor")]
    if f"{brand}__drop_sensor" in candidates:
        return repo["location"]["name"], f"{brand}__drop_sensor"
    if len(candidates) == 1:
        return repo["location"]["name"], candidates[0]
    raise Failed(f"{brand}: which drop sensor of {repo['location']['name']} watches it? {candidates}")


def tick_interval(port: int, location: str, sensor: str, after: float, before: float) -> tuple[int, float | None, bool]:
    """(ticks in the window, mean interval between them and the last tick before it, whether that
    is only a lower bound: no tick, or one, since the one before the window)."""
    state = graphql(port, TICKS, location=location, sensor=sensor, after=after, before=before)["sensorOrError"]["sensorState"]
    window = sorted(t["timestamp"] for t in state["window"])
    stamps = sorted(t["timestamp"] for t in state["previous"]) + window
    if len(stamps) > 1:
        return len(window), (stamps[-1] - stamps[0]) / (len(stamps) - 1), False
    return len(window), (before - stamps[0] if stamps else before - after), True


CLK_TCK = os.sysconf("SC_CLK_TCK")


def group_processes(pgid: int) -> dict[tuple[int, str], tuple[str, int]]:
    """Every process of the group (and any descendant of its leader that left it):
    (pid, start time) -> (command line, utime + stime in clock ticks)."""
    stats = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after the command's name, which may hold spaces
        stats[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[19], cmd, int(fields[11]) + int(fields[12]))
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in stats.items():
        children.setdefault(ppid, []).append(pid)
    ours, todo = set(), [pgid]
    while todo:  # the leader's descendants
        pid = todo.pop()
        if pid in stats and pid not in ours:
            ours.add(pid)
            todo += children.get(pid, [])
    ours |= {pid for pid, s in stats.items() if s[1] == pgid}
    return {(pid, stats[pid][2]): (stats[pid][3], stats[pid][4]) for pid in ours}


def kind(cmd: str) -> str:
    """`dagster dev` runs `python -m dagster._daemon run`, `-m dagster_webserver`, and per location
    `-m dagster code-server start` with its `-m dagster api grpc` child; run workers are others.
    By the command alone: the options (an instance ref's JSON) may hold any of these words."""
    cmd = short(cmd)
    if "dagster-daemon" in cmd or "dagster._daemon" in cmd:
        return "daemon"
    if "api grpc" in cmd or "code-server" in cmd:
        return "code servers"
    if "dagster-webserver" in cmd or "dagster_webserver" in cmd:
        return "webserver"
    return "others"


def short(cmd: str) -> str:
    """`dagster code-server start`, `dagster api grpc`...: a process's command without its options."""
    words = cmd.split()
    if "-m" in words:
        words = words[words.index("-m") + 1:]
    elif len(words) > 1 and "python" in Path(words[0]).name:
        words = [Path(words[1]).name, *words[2:]]
    return " ".join(w for w in words[:4] if not w.startswith("-")) or cmd[:40]


def idle_cpu(pgid: int, seconds: float, step: float = 60) -> dict:
    """% of one core by kind of process over `seconds`; a process that starts in the window counts
    from zero, one that ends counts until its last sample (every second). "steps": daemon plus code
    servers in each `step` seconds of the window, since Dagster's work comes in bursts (its daemon
    refetches every location's definitions about once a minute, one location after another)."""
    first = {key: ticks_ for key, (_cmd, ticks_) in group_processes(pgid).items()}
    last: dict[tuple[int, str], tuple[str, int]] = {}
    start = step_start = time.time()
    step_first = dict(first)
    steps = []
    while True:
        last.update(group_processes(pgid))
        now = time.time()
        if now - step_start >= step or now - start >= seconds:
            steps.append(sum(ticks_ - step_first.get(key, 0) for key, (cmd, ticks_) in last.items()
                             if kind(cmd) in ("daemon", "code servers")) / CLK_TCK / (now - step_start) * 100)
            step_start, step_first = now, {key: ticks_ for key, (_cmd, ticks_) in last.items()}
        if now - start >= seconds:
            break
        time.sleep(1)
    wall = time.time() - start
    cpu: dict = {"daemon": 0.0, "code servers": 0.0, "webserver": 0.0, "others": 0.0, "processes": [], "steps": steps}
    count = 0
    for key, (cmd, ticks_) in sorted(last.items()):
        k = kind(cmd)
        used = (ticks_ - first.get(key, 0)) / CLK_TCK / wall * 100
        cpu[k] += used
        count += k == "code servers"
        cpu["processes"].append(f"{key[0]} {short(cmd)} {used:.1f}%{'' if key in first else ' (started in the window)'}")
    cpu["code server processes"] = count
    return cpu


def stop_group(proc: subprocess.Popen) -> None:
    # latency.stop ignores Ctrl-C and SIGTERM for good: the next size must still be interruptible.
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        if not stop(proc):
            print(f"  process group {proc.pid} still alive after SIGKILL", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])


def one_size(args: argparse.Namespace, n: int, tmp: Path) -> dict:
    row: dict = {"brands": n}
    home, data, mappings = tmp / "dagster_home", tmp / "data", tmp / "mappings"
    for d in (home, data, mappings):
        d.mkdir()
    shutil.copyfile(args.repo / "dagster.yaml", home / "dagster.yaml")
    write_brands(n, args.brands_per_location, mappings, data)
    ws, locations = workspace(args, n, tmp)
    row["locations"] = len(locations)
    env = os.environ | {"DAGSTER_HOME": str(home), "BSPK_DATA_DIR": str(data), "BSPK_MAPPINGS_DIR": str(mappings),
                        "PYTHONPATH": os.pathsep.join([str(args.repo), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("BSPK_WAREHOUSE_URL", None)
    # What `bspk dev` gives the daemon (the "before" figures, c97fb81, ran without it).
    env = DAEMON_ENVIRONMENT | env
    # Required by the webhook sensors (as daemon.py): without it they would fail at every tick.
    env.setdefault("BSPK_WEBHOOK_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    startup = args.startup_base + args.startup_per_brand * n
    per_file = args.timeout + args.timeout_per_brand * n
    print(f"{n} brands, {len(locations)} code location(s), workspace {ws}; time-outs: start-up {startup:.0f} s, "
          f"each file {per_file:.0f} s", flush=True)

    loads = load_times(locations, env, startup)
    row["assets"] = sum(r["assets"] for r in loads)
    row["jobs"] = sum(r["jobs_n"] for r in loads)
    row["sensors"] = sum(len(r["sensors"]) for r in loads)
    row["schedules"] = sum(r["schedules"] for r in loads)
    row["load max"] = max(r["load"] for r in loads)
    row["load sum"] = sum(r["load"] for r in loads)
    print(f"  definitions load: max {row['load max']:.2f} s, sum {row['load sum']:.2f} s over {len(loads)} location(s)  "
          f"(target <= {LOAD_TARGET:.0f} s per code location: {'holds' if row['load max'] <= LOAD_TARGET else 'misses'})",
          flush=True)

    url = f"sqlite:///file:{data / 'warehouse.sqlite'}?mode=ro&uri=true"
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    port = free_port()
    log = tmp / "dagster.log"
    proc = None
    try:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster"), "dev", "-w", str(ws), "--port", str(port)],
                cwd=args.repo, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        print(f"  dagster dev pid {proc.pid} (process group {proc.pid}) on port {port}", flush=True)
        started = time.time()
        wait_for_locations(proc, port, {loc["name"] for loc in locations}, started + startup)
        print(f"  code locations loaded in {time.time() - started:.1f} s", flush=True)
        brand = brand_id(0)
        location, sensor = watcher(port, brand)
        wait_until_ready(proc, port, sensor, started + startup, location)
        print(f"  ready in {time.time() - started:.1f} s: {location}/{sensor} watches {brand} and has ticked", flush=True)

        sampled = {0, *(i * n // 5 for i in range(5))}
        if args.brands_per_location:
            sampled |= set(range(0, n, args.brands_per_location))
        sensors = dict.fromkeys(watcher(port, brand_id(i)) for i in sorted(sampled))

        time.sleep(args.settle)
        window = time.time()
        cpu = idle_cpu(proc.pid, args.idle_seconds)
        window_end = time.time()
        row["daemon %"], row["code servers %"] = cpu["daemon"], cpu["code servers"]
        idle = cpu["daemon"] + cpu["code servers"]
        print(f"  idle CPU over {args.idle_seconds:.0f} s (% of one core): daemon {cpu['daemon']:.1f}, code servers "
              f"{cpu['code servers']:.1f} ({cpu['code server processes']} processes), webserver {cpu['webserver']:.1f}, "
              f"others {cpu['others']:.1f}  (target daemon + code servers <= {IDLE_TARGET:.0f}%: "
              f"{'holds' if idle <= IDLE_TARGET else 'misses'}, {idle:.1f}%)", flush=True)
        if len(cpu["steps"]) > 1:
            print(f"    daemon + code servers minute by minute: {', '.join(f'{x:.1f}' for x in cpu['steps'])}%", flush=True)
        print(f"    by process: {'; '.join(cpu['processes'])}", flush=True)

        intervals = {}
        for loc, name in sensors:
            try:
                count, mean, bound = tick_interval(port, loc, name, window, window_end)
            except (OSError, KeyError, TypeError) as e:
                print(f"  ticks of {loc}/{name}: GraphQL did not answer ({e!r})")
                continue
            intervals[(loc, name)] = mean, bound
            if (loc, name) == (location, sensor):
                row["tick interval"] = f"{'>' if bound else ''}{mean:.1f}"
                print(f"  {location}/{sensor}: {count} ticks in the window, mean interval {row['tick interval']} s "
                      "(from the last tick before the window)", flush=True)
        if len(intervals) > 1:
            bound = any(b for _, b in intervals.values())
            print(f"  over {len(intervals)} drop sensors ({', '.join(loc + '/' + s for loc, s in intervals)}): mean interval "
                  f"{'>' if bound else ''}{statistics.mean(m for m, _ in intervals.values()):.1f} s", flush=True)

        latencies = drop_and_time(engine, data / "drop" / brand / "main", brand, brand.upper(), args.files, args.rows,
                                  per_file, port, sensor, location, jitter=args.jitter)
        row["p50"], row["p90"] = percentile(latencies, 50), percentile(latencies, 90)
        print(f"  drop to row: p50 {row['p50']:.1f} s  p90 {row['p90']:.1f} s  ({args.files} files of {args.rows} rows)  "
              f"(target p50 <= {P50_TARGET:.0f} s: {'holds' if row['p50'] <= P50_TARGET else 'misses'})", flush=True)
        return row
    except Failed as e:
        tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
        print(f"FAILED ({n} brands): {e}", "--- last lines of dagster dev's log ---", *tail, "---", sep="\n", flush=True)
        row["failed"] = True
        return row
    finally:
        engine.dispose()
        if proc is not None:
            stop_group(proc)


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def summary(rows: list[dict]) -> None:
    heads = ["brands", "locations", "assets", "jobs", "sensors", "load max", "load sum", "daemon %", "code servers %",
             "tick interval", "p50", "p90", "load<=5s", "idle<=10%", "p50<=5s"]
    table = []
    for r in rows:
        idle = r["daemon %"] + r["code servers %"] if "daemon %" in r else None

        def verdict(v, target):
            return "-" if v is None else "pass" if v <= target else "FAIL"

        table.append([str(r["brands"]), str(r.get("locations", "-")), str(r.get("assets", "-")), str(r.get("jobs", "-")),
                      str(r.get("sensors", "-")), _fmt(r.get("load max"), 2), _fmt(r.get("load sum"), 2),
                      _fmt(r.get("daemon %")), _fmt(r.get("code servers %")), r.get("tick interval", "-"),
                      _fmt(r.get("p50")), _fmt(r.get("p90")), verdict(r.get("load max"), LOAD_TARGET),
                      verdict(idle, IDLE_TARGET), verdict(r.get("p50"), P50_TARGET)])
        if r.get("failed"):
            table[-1].append("(FAILED)")
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(heads)]
    print("  ".join(h.rjust(w) for h, w in zip(heads, widths)))
    for t in table:
        print("  ".join(v.rjust(w) for v, w in zip(t, widths)), *t[len(heads):])
    print("load in s per code location (max) and over all (sum); CPU in % of one core over the idle window; "
          "tick interval in s (b000's drop sensor; >: a lower bound, under two ticks); p50/p90 drop to row in s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brands", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--jitter", type=float, default=SENSOR_LOOP,
                        help="random pause of up to this many seconds before each drop (default: one sensor loop), so "
                        "that a file lands at any moment of the sensor's cadence, as a brand's does")
    parser.add_argument("--idle-seconds", type=float, default=300,
                        help="the idle window, reported minute by minute too: one minute at 200 brands ranges from "
                        "40 to 92%% of a core, as Dagster's refetch of the definitions comes and goes")
    parser.add_argument("--settle", type=float, default=240,
                        help="seconds after ready before the idle window: past the freshness daemon's first look, "
                        "which writes a state for every asset (until about 300 s after start at 200 brands)")
    parser.add_argument("--brands-per-location", type=int, default=0,
                        help="K brands per code location (bspk_pipelines.locations); 0: the repo's workspace.yaml")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout of the project to measure (default: this one)")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--timeout-per-brand", type=float, default=1,
                        help="seconds for each file's rows: timeout + this per brand")
    parser.add_argument("--startup-base", type=float, default=60)
    parser.add_argument("--startup-per-brand", type=float, default=3,
                        help="start-up timeout (loads, dagster dev ready): base + this per brand")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args(argv)
    args.repo = args.repo.resolve()
    if not (args.repo / "bspk_pipelines").is_dir():
        parser.error(f"{args.repo}: no bspk_pipelines folder")
    if args.brands_per_location < 0:
        parser.error("--brands-per-location: 0 or more")
    found = importlib.util.find_spec("bspk_pipelines")
    print(f"repo {args.repo}; this script's own bspk_pipelines (file generation only) {found and found.origin}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows = []
    try:
        for n in args.brands:
            tmp = Path(tempfile.mkdtemp(prefix=f"bspk-brands-{n}-"))
            try:
                rows.append(one_size(args, n, tmp))
            except Failed as e:  # a definitions load
                print(f"FAILED ({n} brands): {e}", flush=True)
                rows.append({"brands": n, "failed": True})
            finally:
                if args.keep:
                    print(f"  kept {tmp}", flush=True)
                else:
                    shutil.rmtree(tmp, ignore_errors=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if rows:
            summary(rows)
    return 1 if any(r.get("failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Re-delivery and delta as the drop sensor sees them: seconds from files appearing in the drop
folder to their rows being readable, under a running `dagster dev` (webserver and daemon).

`daemon_phases` starts `dagster dev` on the repo's workspace once (its own process group,
throwaway ports), waits until the code location is loaded and the brand's drop sensor has
ticked, then for each phase writes its files as `<name>.part` (ignored by the drop folder),
renames them all into place at once (plus a `.done` marker each, unless `markers=False`) and
polls the warehouse every 50 ms until the phase is done:

    redelivery  every new name has its `files` rows at status `duplicate` (the sensor records
                them in its tick; no run)
    delta       every delta file's `files` rows are `applied` (the shoppers file once its run
                applied it to the table; the sales file once its run landed it in the month
                store) AND the sales table holds all the new month's rows (written by the month
                run the sensor requests once the sales file has landed)

The sensor daemon evaluates sensors every 5 s at best (Dagster's loop, whatever the sensor's
minimum interval), so a phase first waits 0 to 5 s for a tick: each drop happens at a random
point of that cycle (`jitter`), and each phase's line splits the wait from the rest.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (str(HERE), str(REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

# benchmarks/ingest.py may import this module at its top, so `ingest` is imported here only
# inside the functions that need it (a top-level `import ingest` would be circular).
from latency import LOCATION, SENSOR_LOOP, Failed, free_port, graphql, stop, wait_until_ready  # noqa: E402

from bspk_pipelines.defs import names  # noqa: E402
from bspk_pipelines.warehouse.schema import ENTITY_TABLES, files  # noqa: E402

__all__ = ["DaemonPhase", "Failed", "daemon_deliveries", "daemon_phases"]

POLL = 0.05  # seconds between two looks at the warehouse
# Later than ingest.STAMPS, so these deliveries come after the `bspk sync` phases' files.
STAMPS = {"redelivery": "202612020200", "delta": "202612020300"}
DELTA_MONTH = date(2026, 12, 1)  # after the sync delta's 2026-11; the brand's history ends this month
# The new month's sales are numbered from here: far past any initial or sync delta sale.
FIRST_DAEMON_SALE = 500_000_000
TERMINAL = ("applied", "duplicate", "failed", "refused")
ENDED = ("SUCCESS", "FAILURE", "CANCELED")  # Dagster run statuses that do not move on
# Where `bspk sync` ran: taken from the caller's `env` only, never from this process's environment.
INSTANCE_VARIABLES = ("DAGSTER_HOME", "BSPK_DATA_DIR", "BSPK_MAPPINGS_DIR", "BSPK_WAREHOUSE_URL")


@dataclass
class DaemonPhase:
    """One phase: files dropped together, and what marks them readable.

    `files`: generated file -> its name in the drop folder. Done once every `files` row of each
    name in `statuses` has that status and every count query in `counts` (selecting one number)
    gives its number. `verify`: per drop name, columns its `files` rows should then hold (a
    difference is reported, not waited for). A row that reaches another final status fails it.
    """

    name: str
    files: dict[Path, str]
    statuses: dict[str, str]
    counts: list[tuple[sa.Select, int]] = field(default_factory=list)
    verify: dict[str, dict[str, object]] = field(default_factory=dict)
    brand: str = "bench"

    def _rows(self, conn: sa.Connection) -> dict[str, list]:
        found: dict[str, list] = {n: [] for n in self.statuses}
        for r in conn.execute(sa.select(files.c.name, files.c.entity, files.c.status, files.c.error)
                              .where(files.c.brand == self.brand, files.c.name.in_(list(self.statuses)))):
            found[r.name].append(r)
        return found

    def done(self, conn: sa.Connection) -> bool:
        rows = self._rows(conn)
        for name, want in self.statuses.items():
            for r in rows[name]:
                if r.status != want and r.status in TERMINAL:
                    raise Failed(f"{self.name}: {name} ({r.entity or 'no entity'}) is {r.status}, expected {want}: "
                                 f"{r.error or ''}")
        if not all(rows[n] and all(r.status == want for r in rows[n]) for n, want in self.statuses.items()):
            return False
        return all(conn.execute(query).scalar() == n for query, n in self.counts)

    def missing(self, conn: sa.Connection) -> str:
        """What is not there yet, for a time-out's message."""
        rows = self._rows(conn)
        parts = [f"{n}: {', '.join(r.status for r in rows[n]) or 'not recorded'} (want {want})"
                 for n, want in self.statuses.items()]
        parts += [f"count {conn.execute(q).scalar()} of {n}" for q, n in self.counts]
        return "; ".join(parts)

    def differences(self, conn: sa.Connection) -> list[str]:
        problems = []
        for name, want in self.verify.items():
            for r in conn.execute(sa.select(files).where(files.c.brand == self.brand, files.c.name == name)).mappings():
                problems += [f"{name}: {k} {r[k]!r}, expected {v!r}" for k, v in want.items() if r[k] != v]
        return problems


# --- the phases benchmarks/ingest.py wants --------------------------------------------------------


def daemon_deliveries(folder: Path, initial: dict[str, Path], shoppers: int, products: int, sale_lines: int,
                      after_delta: bool = True) -> list[DaemonPhase]:
    """A second re-delivery and a second delta of ingest.py's `bench` brand, for after its sync phases.

    `initial`: entity -> the initial file (ingest's `initial.files`); `shoppers`, `products`: the
    brand's counts; `sale_lines`: lines of the new month (ingest's delta has a month's worth).
    The delta's shoppers change every CHANGED_EVERY-th one half-way between the ones ingest's
    delta changed (1% again); those it changed are sent as it left them (`after_delta`) or as
    the initial load did. Its sales are `sale_lines` new lines in 2026-12. Files go in `folder`.
    """
    import ingest
    import polars as pl

    folder.mkdir(parents=True, exist_ok=True)
    redelivery = {path: ingest.file_name(entity, STAMPS["redelivery"]) for entity, path in initial.items()}

    frame = ingest.shoppers(shoppers, changed=after_delta)
    every = ingest.CHANGED_EVERY
    i = pl.int_range(pl.len(), dtype=pl.Int64)
    again = i % every == every // 2
    email, city, zip_code = (_header("shoppers", c) for c in ("email", "city", "zip_code"))
    frame = frame.with_columns(
        pl.when(again).then(pl.col(email).str.replace("@mail.example", "@new.example", literal=True))
        .otherwise(pl.col(email)).alias(email),
        pl.when(again).then(ingest._pick([c for c, _ in ingest.CITIES], i + 1)).otherwise(pl.col(city)).alias(city),
        pl.when(again).then(ingest._pick([z for _, z in ingest.CITIES], i + 1)).otherwise(pl.col(zip_code)).alias(zip_code),
    )
    changed = len(range(every // 2, shoppers, every))
    month = DELTA_MONTH.year * 12 + DELTA_MONTH.month - 1
    if DELTA_MONTH > date.today():
        raise ValueError(f"{DELTA_MONTH:%Y-%m} is after this month: the brand would reject its sales")
    shoppers_path, sales_path = folder / "shoppers-daemon.csv", folder / "sales-daemon.csv"
    frame.write_csv(shoppers_path)
    ingest.sales(sale_lines, FIRST_DAEMON_SALE, month, 1, shoppers, products).write_csv(sales_path)

    shoppers_name, sales_name = ingest.file_name("shoppers", STAMPS["delta"]), ingest.file_name("sales", STAMPS["delta"])
    sales = ENTITY_TABLES["sales"]
    end = DELTA_MONTH.replace(year=DELTA_MONTH.year + 1, month=1) if DELTA_MONTH.month == 12 else \
        DELTA_MONTH.replace(month=DELTA_MONTH.month + 1)
    in_month = (sa.select(sa.func.count()).select_from(sales)
                .where(sales.c.brand == ingest.BRAND, sales.c.created_at >= datetime.combine(DELTA_MONTH, datetime.min.time()),
                       sales.c.created_at < datetime.combine(end, datetime.min.time())))
    return [
        DaemonPhase("redelivery", redelivery, {n: "duplicate" for n in redelivery.values()}, brand=ingest.BRAND),
        DaemonPhase(
            "delta", {shoppers_path: shoppers_name, sales_path: sales_name},
            {shoppers_name: "applied", sales_name: "applied"}, counts=[(in_month, sale_lines)],
            verify={shoppers_name: {"inserted": 0, "updated": changed, "unchanged": shoppers - changed, "rejected": 0},
                    sales_name: {"inserted": sale_lines, "rejected": 0}},
            brand=ingest.BRAND,
        ),
    ]


def _header(entity: str, column: str) -> str:
    from bspk_pipelines.model.entities import ENTITIES

    c = next(c for c in ENTITIES[entity].columns if c.name == column)
    return c.header or c.name


# --- measuring under dagster dev -------------------------------------------------------------------

SENSOR_STATE = """query($sensor: String!) {
  sensorOrError(sensorSelector: {repositoryLocationName: "%s", repositoryName: "__repository__", sensorName: $sensor}) {
    __typename ... on Sensor { sensorState { status } } }
}""" % LOCATION

START_SENSOR = """mutation($sensor: String!) {
  startSensor(sensorSelector: {repositoryLocationName: "%s", repositoryName: "__repository__", sensorName: $sensor}) {
    __typename ... on PythonError { message } }
}""" % LOCATION

RUNS = """query($brand: String!, $after: Float!, $sensor: String!) {
  runsOrError(filter: {tags: [{key: "%s", value: $brand}], createdAfter: $after}) {
    ... on Runs { results { runId jobName status creationTime startTime endTime tags { key value } } } }
  sensorOrError(sensorSelector: {repositoryLocationName: "%s", repositoryName: "__repository__", sensorName: $sensor}) {
    ... on Sensor { sensorState { ticks(limit: 50) { timestamp } } } }
}""" % (names.BRAND_TAG, LOCATION)


def sensor_running(proc: subprocess.Popen, port: int, sensor: str, deadline: float) -> None:
    """Once the location has loaded the sensor: start it if the instance holds it stopped (it
    runs by default, but a stored state wins)."""
    while time.time() < deadline:
        if proc.poll() is not None:
            raise Failed(f"dagster dev exited with {proc.returncode} while starting")
        try:
            found = graphql(port, SENSOR_STATE, sensor=sensor)["sensorOrError"]
        except (OSError, KeyError, TypeError):
            found = None
        if found and found["__typename"] == "Sensor":
            if found["sensorState"]["status"] != "RUNNING":
                started = graphql(port, START_SENSOR, sensor=sensor)["startSensor"]
                if started["__typename"] != "Sensor":
                    raise Failed(f"could not start {sensor}: {started}")
            return
        time.sleep(0.5)
    raise Failed(f"dagster dev did not load {sensor} in time")


def failed_runs(port: int, brand: str, after: float) -> list[str]:
    try:
        data = graphql(port, RUNS, brand=brand, after=after, sensor=names.DROP_SENSOR)
        runs = data["runsOrError"]["results"]
    except (OSError, KeyError, TypeError):
        return []
    return [f"{r['jobName']} run {r['runId'][:8]} {r['status']}" for r in runs if r["status"] in ("FAILURE", "CANCELED")]


def settle(port: int, brand: str, after: float, deadline: float) -> list[str]:
    """Wait (untimed) until the brand's runs since `after` have ended, so that none is cut short by
    the next phase or by stopping dagster dev (a run ends after its rows are readable: its
    checks and events); the ones that did not succeed."""
    while time.time() < deadline:
        try:
            runs = graphql(port, RUNS, brand=brand, after=after, sensor=names.DROP_SENSOR)["runsOrError"]["results"]
        except (OSError, KeyError, TypeError):
            runs = None
        if runs is not None and all(r["status"] in ENDED for r in runs):
            return [f"{r['jobName']} run {r['runId'][:8]} {r['status']}" for r in runs if r["status"] != "SUCCESS"]
        time.sleep(0.5)
    return ["runs since the phase began still going after the timeout"]


def wait_done(engine: sa.Engine, phase: DaemonPhase, port: int, appeared: float, deadline: float) -> float:
    """When the phase is done (the time its check returned); Failed if a file or run failed, or time ran out."""
    next_runs = appeared + 2
    while time.time() < deadline:
        try:
            with engine.connect() as conn:
                if phase.done(conn):
                    return time.time()
        except sa.exc.DBAPIError:
            pass  # a SQLite warehouse busy for a moment
        if time.time() >= next_runs:
            failed = failed_runs(port, phase.brand, appeared)
            if failed:
                raise Failed(f"{phase.name}: {', '.join(failed)}")
            next_runs = time.time() + 2
        time.sleep(POLL)
    with engine.connect() as conn:
        raise Failed(f"{phase.name}: not done within the timeout: {phase.missing(conn)}")


def _utc(value) -> float | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc).timestamp() if value else None


def breakdown(engine: sa.Engine, phase: DaemonPhase, port: int, appeared: float, readable: float) -> str:
    """Where the phase's seconds went: waiting for a sensor tick, the tick (looking, hashing,
    recording or requesting), queue and launch of each run (its process starting), its run, and
    the rest (the last commit to our look, the poll's 50 ms)."""
    try:
        data = graphql(port, RUNS, brand=phase.brand, after=appeared - 1, sensor=names.DROP_SENSOR)
        runs = sorted(data["runsOrError"]["results"], key=lambda r: r["creationTime"])
        ticks = sorted(t["timestamp"] for t in data["sensorOrError"]["sensorState"]["ticks"])
    except (OSError, KeyError, TypeError):
        return "(no breakdown: GraphQL did not answer)"
    with engine.connect() as conn:
        received = [_utc(r) for r in conn.execute(sa.select(files.c.received_at).where(
            files.c.brand == phase.brand, files.c.name.in_(list(phase.statuses)))).scalars()]
    spent = {"wait for tick": 0.0, "tick": 0.0, "launch": 0.0, "run": 0.0}
    waits = []

    def sensor(since: float, until: float) -> None:
        """[since, until] was spent on the sensor: waiting for the tick that ended it, then the tick."""
        until = min(max(until, since), readable)
        tick = max((t for t in ticks if since <= t <= until), default=since)
        if until > since:
            waits.append(tick - since)
        spent["wait for tick"] += tick - since
        spent["tick"] += until - tick

    ended = appeared
    steps = []
    for r in runs:
        created, start, end = r["creationTime"], r["startTime"] or readable, r["endTime"] or readable
        sensor(ended, created)
        start, end = min(max(start, created, ended), readable), min(end, readable)
        spent["launch"] += start - max(created, ended)
        spent["run"] += max(end - start, 0)
        ended = max(ended, end, start)
        tags = {t["key"]: t["value"] for t in r["tags"]}
        label = tags.get(names.FILE_TAG, "").split("_")[0] or r["jobName"].split("__")[-1]
        steps.append(label + " " + "/".join(f"+{r[k] - appeared:.2f}" if r[k] else "-"
                                            for k in ("creationTime", "startTime", "endTime")))
    if not runs and received and all(received):
        sensor(appeared, max(received))
    rest = readable - appeared - sum(spent.values())
    split = ", ".join(f"{k} {v:.2f} s" for k, v in spent.items() if runs or k not in ("launch", "run"))
    if len(waits) > 1:
        split = split.replace(" s, tick", f" s ({' + '.join(f'{w:.2f}' for w in waits)}), tick", 1)
    timeline = f"; runs created/started/ended: {', '.join(steps)}" if steps else "; no run"
    return f"({split}, rest {rest:.2f} s{timeline})"


def daemon_phases(env: dict[str, str], drop: Path, engine_url: str, phases: list[DaemonPhase], log: Path, *,
                  timeout: float = 600, start_timeout: float = 300, markers: bool = True, jitter: float = SENSOR_LOOP,
                  say: Callable[[str], None] | None = None) -> dict[str, float]:
    """Seconds from each phase's files appearing in `drop` to the phase being done, under one
    `dagster dev` (stopped, its whole process group, before returning or raising).

    `env`: DAGSTER_HOME, BSPK_DATA_DIR, BSPK_MAPPINGS_DIR and BSPK_WAREHOUSE_URL (when not SQLite)
    as `bspk sync` had them, over this process's environment (those four only from `env`; a
    throwaway BSPK_WEBHOOK_ENCRYPTION_KEYS if neither has one); `engine_url`: the warehouse to
    poll; `log`: dagster dev's output (appended). Each phase drops at a random moment up to
    `jitter` seconds after the previous one (the sensor's cadence), with `.done` markers if
    `markers` (else the files wait for a second look). `say` gets the dagster dev pid and, per
    phase, a breakdown line and any `verify` difference. Failed if dagster dev does not start,
    a file or run fails, or a phase is not done within `timeout` seconds.

    benchmarks/ingest.py's run_pipeline calls it after its `bspk sync` phases (this module imports
    ingest only inside `daemon_deliveries`, so ingest.py imports it at its top).
    """
    environment = {k: v for k, v in os.environ.items() if k not in INSTANCE_VARIABLES} | env
    if not environment.get("BSPK_WEBHOOK_ENCRYPTION_KEYS"):
        # A deployment's daemon has one: without it the webhook sensor fails every tick.
        from cryptography.fernet import Fernet

        environment["BSPK_WEBHOOK_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    brands = {p.brand for p in phases}
    engine = sa.create_engine(engine_url, pool_pre_ping=True)
    port = free_port()
    proc = None
    seconds: dict[str, float] = {}
    try:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster"), "dev", "-w", str(REPO / "workspace.yaml"),
                 "--port", str(port)],
                cwd=REPO, env=environment, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if say:
            say(f"dagster dev pid {proc.pid} (process group {proc.pid}) on port {port}, log {log}")
        started = time.time()
        for brand in sorted(brands):
            sensor_running(proc, port, names.DROP_SENSOR, started + start_timeout)
            wait_until_ready(proc, port, names.DROP_SENSOR, started + start_timeout)
        if say:
            say(f"dagster dev ready in {time.time() - started:.1f} s")
        for phase in phases:
            parts = []
            for source, name in phase.files.items():
                shutil.copyfile(source, drop / f"{name}.part")
                parts.append((drop / f"{name}.part", drop / name))
            os.sync()  # the copies' dirty pages are written now, not while the sensor hashes them
            time.sleep(random.uniform(0, jitter))
            appeared = time.time()
            for part, final in parts:
                part.rename(final)
            if markers:
                for _, final in parts:
                    final.with_name(f"{final.name}.done").touch()
            readable = wait_done(engine, phase, port, appeared, appeared + timeout)
            seconds[phase.name] = readable - appeared
            if say:
                say(f"  {phase.name}: {breakdown(engine, phase, port, appeared, readable)}")
                with engine.connect() as conn:
                    for problem in phase.differences(conn):
                        say(f"  warning: {phase.name}: {problem}")
            for problem in settle(port, phase.brand, appeared - 1, time.time() + timeout):
                if say:
                    say(f"  warning: {phase.name}: {problem}")
        return seconds
    finally:
        engine.dispose()
        if proc is not None:
            # latency.stop ignores SIGINT and SIGTERM while it stops the group: give them back after.
            handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
            try:
                stopped = stop(proc)
            finally:
                signal.signal(signal.SIGINT, handlers[0])
                signal.signal(signal.SIGTERM, handlers[1])
            if not stopped:
                print(f"process group {proc.pid} still alive after SIGKILL", file=sys.stderr)

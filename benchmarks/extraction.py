"""The Extraction API at size: a brand of N clients behind `bspk serve`, on PostgreSQL then SQLite.

Loads `--clients` clients (default 1,000,000) of one brand straight into the warehouse's
`clients` table of a throwaway PostgreSQL database (the schema made by the project's own
migration, then a COPY of generated rows, then VACUUM ANALYZE), starts `bspk serve` on it (its
own process group, stopped whole at the end), and times, with keep-alive connections and `--keys`
keys used in turn so that the rate limit does not get in the way, `--repeat` times each:

    page 1                 GET /clients?per_page=100 (a new listing: its own as_of)
    page 1, 304            the same with If-None-Match: the ETag page 1 answered
    keyset 1% / 50% / 99%  the `next` page starting at that depth of the listing: page 1's next
                           URL with the `after` cursor of the row before it (encode_cursor of its
                           updated_at and id, found with one SQL query) and its page number
    offset page=P/2, P-1   ?page=N&per_page=100, P the listing's pages (5000 and 9999 at 1M)
    client_ids (100)       100 ids of the brand's clients
    from/to window         from and to bounding about 1,000 rows in the middle (N/1000)

Each line: backend, request, p50 and p95 in ms, the target and whether it holds. Then the walk:
every page, following `next` links from page 1, with one fresh key at the documented rate limit
(a 429 waits its Retry-After), against the bound the rate limit alone sets (pages / requests per
second allowed). `--walk-pages K` walks only K pages, in `--walk-stretches` stretches spread over
the listing's depth (0%, 25%, 50%, 75% by default: early pages alone would flatter a deep-page
cost), and extrapolates to every page; the line says so. On PostgreSQL, the EXPLAIN (ANALYZE,
BUFFERS) of the statements the API itself runs for page 1 and for the 99% keyset page (captured
from the app in this process with SQLAlchemy's before_cursor_execute). Then the same on SQLite
(`--sqlite-clients`, default 200,000; figures printed, no target). The last lines say whether
the PostgreSQL targets hold: every request p50 <= 20 ms, the 304 <= 10 ms, the walk within
1.10x the rate limit's bound (Retry-After is whole seconds: waiting it out costs up to a second
per window).

    .venv/bin/python benchmarks/extraction.py                                   # 1M clients; the full walk ~1 h
    .venv/bin/python benchmarks/extraction.py --walk-pages 300                  # the walk sampled: ~2 min a backend
    .venv/bin/python benchmarks/extraction.py --clients 100000 --sqlite-clients 20000 --walk-pages 60
"""

from __future__ import annotations

import argparse
import io
import math
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import polars as pl
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from latency import free_port, stop  # noqa: E402
from bspk_pipelines.api.extraction import decode_cursor, encode_cursor  # noqa: E402
from bspk_pipelines.api.keys import create_key  # noqa: E402
from bspk_pipelines.settings import ApiSettings  # noqa: E402
from bspk_pipelines.warehouse.engine import engine_for  # noqa: E402
from bspk_pipelines.warehouse.platform import clients  # noqa: E402

BRAND = "bench"
PATH = "/api/extraction/v1/clients"
PER_PAGE = 100
LOCAL_POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
# The targets at 1M clients, PostgreSQL.
TARGET_MS = 20.0
TARGET_304_MS = 10.0
WALK_SLACK = 1.10
DEPTHS = (0.01, 0.50, 0.99)
START = datetime(2023, 1, 1)
SPAN = timedelta(days=3 * 365)  # updated_at spread over three years
CHUNK = 200_000  # rows generated and copied at a time
TIE_EVERY = 10  # of every 10 consecutive updated_at slots, the first 3 share one value


class Failed(Exception):
    pass


# --- the brand's clients ----------------------------------------------------------------------
# Arithmetic on the row number (same arguments, same rows). The row's place in updated_at order
# is a permutation of its id, so ids and update times are not in step (a client created early may
# have changed last), and 30% of the rows share their updated_at with two others: the keyset's
# tie-break on id is exercised.

FIRST = ["Emma", "Louise", "Alice", "Chloe", "Lina", "Rose", "Anna", "Julia",
         "Gabriel", "Louis", "Jules", "Adam", "Arthur", "Hugo", "Paul", "Victor"]
LAST = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau"]
CITIES = [("Paris", "75008"), ("Lyon", "69002"), ("Marseille", "13001"), ("Bordeaux", "33000"),
          ("Lille", "59000"), ("Toulouse", "31000"), ("Nice", "06000"), ("Strasbourg", "67000")]


def _pick(values: list[str], index: pl.Expr) -> pl.Expr:
    return index.mod(len(values)).replace_strict(list(range(len(values))), values, return_dtype=pl.Utf8)


def stride(n: int) -> int:
    """A multiplier coprime with n: i -> i * stride mod n is a permutation of 0..n-1."""
    for p in (999_983, 1_000_003, 7_919):
        if math.gcd(p, n) == 1:
            return p
    raise AssertionError(n)


def ref(i: int) -> str:
    return f"C{i:08d}"


def client_rows(n: int, start: int, stop_: int) -> pl.DataFrame:
    """Rows start..stop_-1 of n (ids from 1), every column of `clients` in the table's order."""
    i = pl.int_range(start, stop_, dtype=pl.Int64)
    slot = (i * stride(n)) % n
    slot = pl.when(slot % TIE_EVERY < 3).then(slot - slot % TIE_EVERY).otherwise(slot)
    step_us = int(SPAN.total_seconds() * 1_000_000) // n
    updated = pl.lit(START) + pl.duration(microseconds=slot * step_us)
    first, last = _pick(FIRST, i * 7), _pick(LAST, i * 13)
    values = {
        "id": i + 1,
        "brand": pl.lit(BRAND),
        "shopper_ref": pl.concat_str(pl.lit("C"), i.cast(pl.Utf8).str.zfill(8)),
        "first_name": first,
        "last_name": last,
        "gender": pl.when((i * 7) % len(FIRST) < len(FIRST) // 2).then(pl.lit("F")).otherwise(pl.lit("M")),
        "email": pl.concat_str(first.str.to_lowercase(), pl.lit("."), last.str.to_lowercase(), i.cast(pl.Utf8),
                               pl.lit("@mail.example")),
        "mobile_phone": pl.concat_str(pl.lit("+336"), i.cast(pl.Utf8).str.zfill(8)),
        "address": pl.concat_str((i % 200 + 1).cast(pl.Utf8), pl.lit(" rue de la Paix")),
        "city": _pick([c for c, _ in CITIES], i),
        "zip_code": _pick([z for _, z in CITIES], i),
        "country_code": pl.lit("FR"),
        "nationality": pl.lit("FR"),
        "languages": pl.lit("fr"),
        "preferred_contact_channel": pl.lit("email"),
        "email_contact": i % 3 != 0,
        "phone_call_contact": i % 2 == 0,
        "chat_contact": pl.lit(False),
        "do_not_contact": i % 50 == 0,
        "interested_in_new_products": i % 4 == 0,
        "birthday": pl.lit(datetime(1960, 1, 1).date()) + pl.duration(days=(i * 37) % 15_000),
        "store_ref": pl.concat_str(pl.lit("ST"), (i % 40).cast(pl.Utf8)),
        "segment": _pick(["VIC", "loyal", "new"], i),
        "created_at": pl.lit(START - timedelta(days=400)) + pl.duration(hours=i % 9_000),
        "updated_at": updated,
    }
    return pl.select([values.get(c.name, pl.lit(None, null_type(c.type))).alias(c.name) for c in clients.columns])


def null_type(kind: sa.types.TypeEngine) -> pl.DataType:
    if isinstance(kind, sa.DateTime):
        return pl.Datetime("us")
    if isinstance(kind, sa.Date):
        return pl.Date()
    if isinstance(kind, sa.Boolean):
        return pl.Boolean()
    return pl.Utf8()


def load_postgres(engine: sa.Engine, n: int) -> None:
    """COPY n generated clients into the migrated `clients` table, then VACUUM ANALYZE (the
    visibility map set as autovacuum leaves a table at rest: index-only scans can skip the heap)."""
    columns = ", ".join(f'"{c.name}"' for c in clients.columns)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for start in range(0, n, CHUNK):
            buf = io.BytesIO()
            client_rows(n, start, min(n, start + CHUNK)).write_csv(
                buf, include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.6f")
            buf.seek(0)
            cur.copy_expert(f"COPY clients ({columns}) FROM STDIN WITH (FORMAT csv)", buf)
        cur.execute("SELECT setval(pg_get_serial_sequence('clients', 'id'), %s)", (n,))
        raw.commit()
        raw.driver_connection.autocommit = True
        cur.execute("VACUUM ANALYZE")
        raw.driver_connection.autocommit = False
    finally:
        raw.close()


def load_sqlite(path: Path, n: int) -> None:
    """Insert n generated clients into the migrated SQLite warehouse, values as SQLAlchemy stores
    them there (times as text, booleans 0/1), then ANALYZE."""
    names = [c.name for c in clients.columns]
    casts = []
    for c in clients.columns:
        if isinstance(c.type, sa.DateTime):
            casts.append(pl.col(c.name).dt.strftime("%Y-%m-%d %H:%M:%S.%6f"))
        elif isinstance(c.type, sa.Date):
            casts.append(pl.col(c.name).dt.strftime("%Y-%m-%d"))
        elif isinstance(c.type, sa.Boolean):
            casts.append(pl.col(c.name).cast(pl.Int8))
        else:
            casts.append(pl.col(c.name))
    db = sqlite3.connect(path)
    try:
        insert = f"INSERT INTO clients ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        for start in range(0, n, CHUNK):
            frame = client_rows(n, start, min(n, start + CHUNK)).select(casts)
            db.executemany(insert, frame.iter_rows())
        db.commit()
        db.execute("ANALYZE")
        db.commit()
    finally:
        db.close()


def row_at(engine: sa.Engine, as_of: datetime, offset: int, rows: int = 1) -> list[tuple[datetime, int]]:
    """(updated_at, id) of the listing's rows from `offset` (0-based, the API's order), one query."""
    c = clients.c
    query = (sa.select(c.updated_at, c.id).where(c.brand == BRAND, c.updated_at <= as_of)
             .order_by(c.updated_at, c.id).offset(offset).limit(rows))
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


# --- the server and its keys ----------------------------------------------------------------


def server_env(tmp: Path, url: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = os.environ | {"BSPK_WAREHOUSE_URL": url, "BSPK_DATA_DIR": str(tmp / "data"),
                        "BSPK_MAPPINGS_DIR": str(tmp / "mappings"),
                        "BSPK_WEBHOOK_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
                        # The server runs the code this script imports (a copy's, when run from one).
                        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    for name in ("BSPK_API_RATE_LIMIT", "BSPK_API_RATE_WINDOW", "BSPK_API_PUBLIC_URL"):
        env.pop(name, None)  # the documented rate limit, and Link URLs naming the address we reach
    return env


def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bspk_pipelines.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise Failed(f"bspk serve exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{base}/openapi.json", timeout=5).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise Failed("bspk serve did not answer within 120 s")


def links(response: httpx.Response) -> dict[str, str]:
    """rel -> URL of the Link header."""
    out = {}
    for part in response.headers.get("link", "").split(","):
        if ";" in part:
            url, rel = part.split(";", 1)
            out[rel.strip().removeprefix("rel=").strip('"')] = url.strip().strip("<>")
    return out


@dataclass
class Keys:
    """Keys used in turn; one that used up its window rests until it is over (a 429's Retry-After,
    or a whole window after its last allowed request), so a timed request never meets the limit."""

    keys: list[str]
    window: float
    resting: dict[str, float] = field(default_factory=dict)
    turn: int = 0

    def get(self, http: httpx.Client, url: str, headers: dict[str, str] | None = None) -> tuple[httpx.Response, float]:
        while True:
            now = time.monotonic()
            free = [k for k in self.keys if self.resting.get(k, 0) <= now]
            if not free:
                time.sleep(max(0.0, min(self.resting.values()) - now))
                continue
            key = free[self.turn % len(free)]
            self.turn += 1
            started = time.perf_counter()
            r = http.get(url, headers={"Authorization": f"Bearer {key}", **(headers or {})})
            elapsed = time.perf_counter() - started
            if r.status_code == 429:
                self.resting[key] = time.monotonic() + float(r.headers.get("retry-after", self.window))
                continue
            if r.headers.get("x-ratelimit-remaining") == "0":
                self.resting[key] = time.monotonic() + self.window
            return r, elapsed


# --- the measurements -----------------------------------------------------------------------


@dataclass
class Request:
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    expect: int = 200
    also: tuple[int, ...] = ()  # statuses accepted too (named on the line)
    target: float | None = TARGET_MS
    samples: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def cursor_maker(api_cursor: str):
    """(updated_at, id) -> an `after` cursor as the API writes it: its own `encode_cursor`, with
    whatever else the API's cursor of the same listing carries after those two (`decode_cursor`'s
    further values, e.g. the listing's count), so the built cursors belong to that listing."""
    carried = decode_cursor(api_cursor, int)[2:]
    return lambda updated_at, row_id: encode_cursor(updated_at, row_id, *carried)


def keyset_url(next_url: str, cursor: str, page: int) -> str:
    """Page 1's next URL (its as_of and whatever else the API carries) at another cursor and page."""
    return str(httpx.URL(next_url).copy_set_param("after", cursor).copy_set_param("page", str(page)))


def requests_to_time(engine: sa.Engine, http: httpx.Client, keys: Keys, base: str, n: int) -> tuple[list[Request], dict]:
    """The timed requests, built from one page 1 (its ETag, its next URL and as_of) and a few SQL
    look-ups of the rows at the depths; checks that the cursor built here is the API's own."""
    first, _ = keys.get(http, f"{base}{PATH}?per_page={PER_PAGE}")
    if first.status_code != 200:
        raise Failed(f"page 1: {first.status_code} {first.text[:300]}")
    total = int(first.headers["x-total-count"])
    if total != n:
        raise Failed(f"page 1: X-Total-Count {total}, {n} clients loaded")
    pages = math.ceil(total / PER_PAGE)
    nxt = links(first).get("next")
    if not nxt:
        raise Failed(f"page 1 has no next link: {first.headers.get('link')}")
    as_of = naive(httpx.URL(nxt).params["as_of"])
    cursor = cursor_maker(httpx.URL(nxt).params["after"])
    # The cursor of page 1's last row, built here, must be the one the API wrote.
    (at, row_id), = row_at(engine, as_of, PER_PAGE - 1)
    if cursor(at, row_id) != httpx.URL(nxt).params["after"]:
        raise Failed(f"the API's next cursor {httpx.URL(nxt).params['after']!r} is not encode_cursor of page 1's last "
                     f"row, {cursor(at, row_id)!r}: the benchmark's cursors would not be the API's")
    # A client polling for changes sends page 1's URL again with its ETag; should the API only
    # answer 304 within one snapshot, the URL with page 1's as_of is timed instead (and named so).
    page_1, name_304 = f"{base}{PATH}?per_page={PER_PAGE}", "page 1, 304"
    again, _ = keys.get(http, page_1, {"If-None-Match": first.headers["etag"]})
    if again.status_code != 304:
        page_1_as_of = str(httpx.URL(page_1).copy_set_param("as_of", httpx.URL(nxt).params["as_of"]))
        tagged, _ = keys.get(http, page_1_as_of)
        page_1, name_304 = page_1_as_of, "page 1, 304 (its as_of)"
        etag = tagged.headers["etag"]
    else:
        etag = first.headers["etag"]
    reqs = [Request("page 1", f"{base}{PATH}?per_page={PER_PAGE}"),
            Request(name_304, page_1, {"If-None-Match": etag}, expect=304, target=TARGET_304_MS)]
    firsts = {}
    for depth in DEPTHS:
        page = max(2, min(pages, round(depth * pages)))  # the page that starts at this depth
        before, starting = row_at(engine, as_of, (page - 1) * PER_PAGE - 1, 2)
        reqs.append(Request(f"keyset {depth:.0%} (page {page})", keyset_url(nxt, cursor(*before), page)))
        firsts[reqs[-1].name] = starting[1]
    for page in (max(1, pages // 2), max(1, pages - 1)):
        # A documented bound on page numbers (a 422 pointing at next links) is an answer too.
        reqs.append(Request(f"offset page={page}", f"{base}{PATH}?per_page={PER_PAGE}&page={page}", also=(422,)))
    ids = ",".join(ref(i) for i in random.Random(18).sample(range(n), min(100, n)))
    reqs.append(Request(f"client_ids ({min(100, n)})", f"{base}{PATH}?per_page={PER_PAGE}&client_ids={ids}"))
    width = max(PER_PAGE, n // 1000)
    (lo, _), = row_at(engine, as_of, n // 2)
    (hi, _), = row_at(engine, as_of, min(n - 1, n // 2 + width - 1))
    window = httpx.QueryParams({"per_page": PER_PAGE, "from": lo.isoformat() + "Z", "to": hi.isoformat() + "Z"})
    reqs.append(Request(f"from/to (~{width:,} rows)", f"{base}{PATH}?{window}"))
    context = {"total": total, "pages": pages, "next": nxt, "as_of": as_of, "firsts": firsts, "cursor": cursor,
               "limit": int(first.headers["x-ratelimit-limit"])}
    return reqs, context


def naive(text: str) -> datetime:
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return at.replace(tzinfo=None) if at.utcoffset() is None else (at - at.utcoffset()).replace(tzinfo=None)


def measure(http: httpx.Client, keys: Keys, reqs: list[Request], repeat: int, firsts: dict[str, int]) -> None:
    """One untimed round (warm caches; checks each keyset page starts where it should), then
    `repeat` rounds, the requests interleaved so that the machine's moods spread over them all."""
    for req in reqs:
        r, _ = keys.get(http, req.url, req.headers)
        if req.name in firsts and r.status_code == 200 and r.json()[0]["id"] != firsts[req.name]:
            raise Failed(f"{req.name}: the page starts at id {r.json()[0]['id']}, the listing has {firsts[req.name]} there")
    for _ in range(repeat):
        for req in reqs:
            r, elapsed = keys.get(http, req.url, req.headers)
            req.samples.append(elapsed * 1000)
            req.statuses[r.status_code] = req.statuses.get(r.status_code, 0) + 1


def request_line(backend: str, req: Request, with_target: bool) -> tuple[str, bool | None]:
    p50, p95 = percentile(req.samples, 50), percentile(req.samples, 95)
    held = None
    if with_target and req.target is not None:
        held = p50 <= req.target
        verdict = f"<= {req.target:g} ms  {'ok' if held else 'MISSED'}"
    else:
        verdict = "(no target)"
    odd = {s: c for s, c in req.statuses.items() if s != req.expect}
    unexpected = set(odd) - set(req.also)
    note = (f"  statuses {dict(sorted(req.statuses.items()))}"
            + (f", expected {req.expect}" if unexpected else " (a bound the API documents)")) if odd else ""
    return f"{backend:<9} {req.name:<26} {p50:>8.1f} ms {p95:>8.1f} ms   {verdict}{note}", held


@dataclass
class Walk:
    pages: int  # walked
    of: int  # the listing's
    wall: float
    busy: float  # the answered requests' own time
    limited: int  # 429s waited out
    stretches: int

    def estimate(self, bound: float) -> float:
        """The whole walk's time: measured, or the sample's time a page times the pages (at least
        the rate limit's bound, which a sample within one window has not met yet)."""
        return self.wall if self.pages >= self.of else max(bound, self.wall / self.pages * self.of)


def walk(engine: sa.Engine, http: httpx.Client, key: str, base: str, ctx: dict, limit_pages: int | None,
         stretches: int) -> Walk:
    """Follow `next` from page 1 with one key, a 429 waiting its Retry-After. With fewer pages
    than the listing's, `stretches` runs of them, starting at 0, 1/s, 2/s... of its depth."""
    pages = ctx["pages"]
    todo = pages if limit_pages is None or limit_pages >= pages else limit_pages
    stretches = 1 if todo >= pages else max(1, min(stretches, todo))
    starts = [f"{base}{PATH}?per_page={PER_PAGE}"]
    for s in range(1, stretches):
        page = 1 + (pages * s) // stretches
        (before,) = row_at(engine, ctx["as_of"], (page - 1) * PER_PAGE - 1)
        starts.append(keyset_url(ctx["next"], ctx["cursor"](*before), page))
    lengths = [todo // stretches + (1 if s < todo % stretches else 0) for s in range(stretches)]
    auth = {"Authorization": f"Bearer {key}"}
    done = limited = 0
    busy = 0.0
    started = time.monotonic()
    for url, length in zip(starts, lengths):
        for _ in range(length):
            t = time.perf_counter()
            r = http.get(url, headers=auth)
            if r.status_code == 429:
                limited += 1
                time.sleep(float(r.headers.get("retry-after", "1")))
                t = time.perf_counter()
                r = http.get(url, headers=auth)
                if r.status_code == 429:
                    raise Failed(f"walk: still limited after Retry-After: {r.text[:200]}")
            busy += time.perf_counter() - t
            if r.status_code != 200:
                raise Failed(f"walk: {r.status_code} at {url}: {r.text[:200]}")
            done += 1
            url = links(r).get("next")
            if url is None:
                break
    wall = time.monotonic() - started
    if todo >= pages and done != pages:
        raise Failed(f"walk: {done} pages followed, the listing has {pages}")
    return Walk(done, pages, wall, busy, limited, stretches)


def walk_lines(backend: str, w: Walk, limit: int, window: float, with_target: bool) -> tuple[list[str], bool | None]:
    rate = limit / window
    bound = w.of / rate
    est = w.estimate(bound)
    ratio = est / bound
    if w.pages >= w.of:
        what = f"all {w.of:,} pages: {fmt_s(w.wall)}"
    else:
        what = (f"{w.pages:,} of {w.of:,} pages in {w.stretches} stretches over the depth: {fmt_s(w.wall)}; "
                f"EXTRAPOLATED to all {w.of:,}: {fmt_s(est)} (its time a page x pages, at least the bound below)")
    held = ratio <= WALK_SLACK if with_target else None
    verdict = (f"<= {WALK_SLACK:.2f}x  {'ok' if held else 'MISSED'}") if with_target else "(no target)"
    return [f"{backend:<9} walk, one key                {what}",
            f"{backend:<9} walk vs rate limit           {limit} per {window:g} s alone: {fmt_s(bound)} for {w.of:,} pages; "
            f"walk {ratio:.2f}x   {verdict}",
            f"{backend:<9} walk detail                  answered requests' own time {fmt_s(w.busy)} "
            f"({w.busy / max(1, w.pages) * 1000:.0f} ms a page), {w.limited} x 429 waited out"], held


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# --- the plans --------------------------------------------------------------------------------


def explain(url: str, tmp: Path, next_url_of: callable) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the SELECTs the API runs for page 1 and the 99% keyset page:
    the app in this process (the route, as `bspk serve` runs it) over an engine whose statements
    are captured as they go to the database."""
    from cryptography.fernet import Fernet

    from bspk_pipelines.api.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's notice about httpx
        from fastapi.testclient import TestClient

    os.environ.setdefault("BSPK_WEBHOOK_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    engine = engine_for(url)
    captured: list[tuple[str, object]] = []
    capturing = [False]

    def capture(conn, cursor, statement, parameters, context, executemany):
        if capturing[0] and statement.lstrip().upper().startswith(("SELECT", "WITH")) and "api_keys" not in statement:
            captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    out = []
    try:
        _, key = create_key(engine, BRAND, "explain")
        app = create_app(engine=engine, brands=[], data_dir=tmp / "data", settings=ApiSettings(rate_limit=10**6))
        with TestClient(app) as client:
            auth = {"Authorization": f"Bearer {key}"}
            client.get(PATH, params={"per_page": PER_PAGE}, headers=auth)  # the key verified, outside the capture
            plans = []
            for label, target in (("page 1", f"{PATH}?per_page={PER_PAGE}"), ("keyset 99%", None)):
                if target is None:
                    target = next_url_of(client.get(PATH, params={"per_page": PER_PAGE}, headers=auth))
                captured.clear()
                capturing[0] = True
                r = client.get(target, headers=auth)
                capturing[0] = False
                if r.status_code != 200:
                    raise Failed(f"explain {label}: {r.status_code} {r.text[:200]}")
                plans += [(label, s, p) for s, p in captured]
        capturing[0] = False
        with engine.connect() as conn:
            for label, statement, parameters in plans:
                kind = "count" if "count(" in statement.lower() else "page"
                rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).scalars().all()
                out.append(f"EXPLAIN {label}: {kind} query")
                out += [f"  {line}" for line in shorten(rows)]
    finally:
        engine.dispose()
    return out


def shorten(plan: list[str], width: int = 170) -> list[str]:
    """The plan's node lines with their index conditions, filters and rows removed, the whole
    query's buffers (the top node's) and the execution time; each line cut at `width`."""
    keep = ("->", "Index Cond", "Filter", "Rows Removed", "Execution Time", "Workers", "SubPlan", "InitPlan")
    out, planning, buffers = [], False, False
    for i, line in enumerate(plan):
        stripped = line.strip()
        planning = (planning or stripped.startswith("Planning")) and not stripped.startswith("Execution Time")
        top_buffers = stripped.startswith("Buffers") and not buffers and not planning
        buffers = buffers or top_buffers
        if i == 0 or top_buffers or (not planning and stripped.startswith(keep)):
            out.append(line if len(line) <= width else line[:width - 3] + "...")
    return out[:40]


# --- one backend -------------------------------------------------------------------------------


def run_backend(backend: str, url: str, tmp: Path, n: int, args: argparse.Namespace) -> tuple[list[bool], list[str]]:
    """Load, serve, time, walk (and on PostgreSQL explain); prints as it goes. Returns whether
    each target held (PostgreSQL) and the lines naming them."""
    with_target = backend == "postgres"
    started = time.monotonic()
    engine = engine_for(url)  # the project's own migration makes the schema
    try:
        if backend == "postgres":
            load_postgres(engine, n)
        else:
            load_sqlite(Path(engine.url.database), n)
        print(f"{backend:<9} load                       {n:,} clients in {time.monotonic() - started:.1f} s "
              f"(schema by migrate, rows by {'COPY, VACUUM ANALYZE' if backend == 'postgres' else 'executemany, ANALYZE'})",
              flush=True)
        settings = ApiSettings()
        keys = [create_key(engine, BRAND, f"bench {i}")[1] for i in range(args.keys + 1)]
        walker, keys = keys[0], Keys(keys[1:], settings.rate_window)
        proc = None
        try:
            proc, base = start_server(server_env(tmp, url), tmp / f"serve_{backend}.log")
            print(f"{backend:<9} bspk serve                 {base}, pid {proc.pid} (process group {proc.pid}); "
                  f"{args.keys} keys in turn", flush=True)
            with httpx.Client(timeout=120) as http:
                reqs, ctx = requests_to_time(engine, http, keys, base, n)
                measure(http, keys, reqs, args.repeat, ctx["firsts"])
                held, names = [], []
                for req in reqs:
                    line, ok = request_line(backend, req, with_target)
                    print(line, flush=True)
                    if ok is not None:
                        held.append(ok and not (set(req.statuses) - {req.expect, *req.also}))
                        names.append(f"{req.name} p50 <= {req.target:g} ms")
                w = walk(engine, http, walker, base, ctx, args.walk_pages, args.walk_stretches)
                lines, ok = walk_lines(backend, w, ctx["limit"], settings.rate_window, with_target)
                print(*lines, sep="\n", flush=True)
                if ok is not None:
                    held.append(ok)
                    names.append(f"walk <= {WALK_SLACK:.2f}x the rate limit's bound"
                                 + (" (extrapolated)" if w.pages < w.of else ""))
        finally:
            if proc is not None and not stop(proc):
                print(f"process group {proc.pid} still alive after SIGKILL", file=sys.stderr)
            signal.signal(signal.SIGINT, signal.default_int_handler)  # `stop` ignores them while it works
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        if backend == "postgres" and not args.skip_explain:
            def next_at_99(r: httpx.Response) -> str:
                page = max(2, min(ctx["pages"], round(0.99 * ctx["pages"])))
                nxt = httpx.URL(links(r)["next"])
                (before,) = row_at(engine, naive(nxt.params["as_of"]), (page - 1) * PER_PAGE - 1)
                return keyset_url(str(nxt), cursor_maker(nxt.params["after"])(*before), page)

            print(*explain(url, tmp, next_at_99), sep="\n", flush=True)
        return held, names
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1_000_000, help="clients on PostgreSQL (default 1,000,000)")
    parser.add_argument("--sqlite-clients", type=int, default=200_000, help="clients on SQLite (0: leave it out)")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests of each kind")
    parser.add_argument("--keys", type=int, default=20, help="keys used in turn for the timed requests")
    parser.add_argument("--walk-pages", type=int, help="walk only this many pages and extrapolate (default: all)")
    parser.add_argument("--walk-stretches", type=int, default=4, help="with --walk-pages: runs spread over the depth")
    parser.add_argument("--skip-explain", action="store_true", help="leave out the PostgreSQL plans")
    parser.add_argument("--postgres", default=os.environ.get("BSPK_TEST_POSTGRES_URL", LOCAL_POSTGRES),
                        help="a PostgreSQL server to make the throwaway database on (default: $BSPK_TEST_POSTGRES_URL "
                             "or the local one)")
    args = parser.parse_args(argv)
    if args.clients < 2 * PER_PAGE or (args.sqlite_clients and args.sqlite_clients < 2 * PER_PAGE):
        parser.error(f"at least {2 * PER_PAGE} clients a backend: the keyset pages need a page after page 1")
    # A plain SIGTERM (a test's timeout, say) must still run the clean-up in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="bspk-extraction-"))
    (tmp / "mappings").mkdir()
    (tmp / "mappings" / f"{BRAND}.yaml").write_text(
        f"brand: {BRAND}\ncompany_name: Bench\nsources:\n  main: {{format: bspk, drop: drop/{BRAND}}}\n")
    admin = sa.create_engine(sa.make_url(args.postgres.replace("postgresql://", "postgresql+psycopg2://", 1)),
                             isolation_level="AUTOCOMMIT")
    database = f"bench_extraction_{uuid.uuid4().hex[:10]}"
    created = False
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
        created = True
        url = admin.url.set(database=database).render_as_string(hide_password=False)
        print(f"database {database} on {admin.url.host}:{admin.url.port or 5432}, dropped at the end", flush=True)
        held, names = run_backend("postgres", url, tmp, args.clients, args)
        if args.sqlite_clients:
            run_backend("sqlite", f"sqlite:///{tmp / 'data' / 'warehouse.sqlite'}", tmp, args.sqlite_clients, args)
        for ok, name in zip(held, names):
            print(f"target {name}: {'holds' if ok else 'misses'}")
        print(f"targets at {args.clients:,} clients (PostgreSQL): {'all hold' if all(held) else 'not all hold'}")
        return 0
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if created:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

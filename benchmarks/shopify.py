"""A Shopify source at size: the bulk load of a large shop, an incremental pull, and the latency
from a webhook to the row in the warehouse.

The Shopify stand-in (bspk_pipelines/demo/shopify_standin.py) runs in this process, filled with
`--customers` customers and `--orders` orders of `--lines` lines (default 200,000 customers and
1,000,000 order lines). Each phase is a subprocess under `/usr/bin/time -v` (wall time, peak RSS):

| line | what is timed |
|---|---|
| `download` | the floor: every bulk operation of the shop run and its JSONL downloaded to a file, nothing parsed |
| `bulk load` | `bspk backfill --source shop`: the same bulk operations, then each delivery landed, checked, mapped and applied |
| `1% delta` | 1% of the customers changed in the shop, then `bspk sync`: an incremental pull of what changed, applied |

Each line: wall time, peak RSS and the ratio to the download floor; then the objects and lines
each pull took and the throttle waits. With `--webhooks N`, `dagster dev` and `bspk serve` are
started (each in a process group of its own, ended whole), a customer is changed in the shop N
times and its `customers/update` webhook sent, signed, to `bspk serve`; each line is the time
until the new name is readable in the warehouse, and the last line the p50 and p90.

    .venv/bin/python benchmarks/shopify.py                       # 200,000 customers, 1,000,000 lines
    .venv/bin/python benchmarks/shopify.py --customers 2000 --orders 2500 --webhooks 10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import Fernet

from ingest import timed  # noqa: E402 (benchmarks/, beside this script)
from latency import Failed, free_port, percentile, stop, wait_until_ready  # noqa: E402

from bspk_pipelines.defs import names
from bspk_pipelines.demo.shopify_standin import ShopifyStandin
from bspk_pipelines.shopify import queries

REPO = Path(__file__).resolve().parent.parent
BRAND, TOKEN, SECRET = "bench", "shpat_bench", "bench-webhook-secret"
# `bspk serve` stores webhook signing secrets encrypted: it starts only with a key to do it with.
ENV = {"BENCH_SHOPIFY_TOKEN": TOKEN, "BENCH_SHOPIFY_WEBHOOK_SECRET": SECRET,
       "BSPK_WEBHOOK_ENCRYPTION_KEYS": Fernet.generate_key().decode()}


def write_brand(mappings: Path, shop: ShopifyStandin) -> None:
    (mappings / f"{BRAND}.yaml").write_text(json.dumps({
        "brand": BRAND, "company_name": "Bench", "history_start": "2015-01",
        "sources": {"shop": {"format": "shopify", "shop": shop.domain, "api_version": "2026-01",
                             "token_env": "BENCH_SHOPIFY_TOKEN", "endpoint": shop.url,
                             "webhook_secret_env": "BENCH_SHOPIFY_WEBHOOK_SECRET",
                             "objects": ["locations", "customers", "products", "orders"]}}}))


DOWNLOAD = """
import sys, time, requests
url, token, out = sys.argv[1:4]
queries = sys.argv[4:]
headers = {"X-Shopify-Access-Token": token}
def ask(q, v=None):
    return requests.post(url, json={"query": q, "variables": v or {}}, headers=headers, timeout=60).json()["data"]
with open(out, "wb") as f:
    for q in queries:
        op = ask(%r, {"query": q})["bulkOperationRunQuery"]["bulkOperation"]
        while (op := ask(%r, {"id": op["id"]})["node"])["status"] != "COMPLETED":
            time.sleep(0.2)
        with requests.get(op["url"], stream=True, timeout=60) as r:
            for chunk in r.iter_content(1 << 20):
                f.write(chunk)
""" % (queries.BULK_RUN, queries.BULK_STATUS)


def row_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(sa.text(f"select count(*) from {t} where brand = :b"), {"b": BRAND}).scalar()
                    for t in ("shoppers", "products", "product_variants", "product_prices", "product_images", "stores",
                              "sales")}
    finally:
        engine.dispose()


def shoppers(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text("select shopper_ref from shoppers where brand = :b "
                                                       "order by shopper_ref"), {"b": BRAND})]
    finally:
        engine.dispose()


def pulled_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines()
            if re.search(r"shop: (\w+: (bulk|pull|snapshot) of|waited .* for .* bucket)", line)]


def serving(proc: subprocess.Popen, port: int, deadline: float) -> None:
    while time.time() < deadline:
        if proc.poll() is not None:
            raise Failed(f"bspk serve exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise Failed("bspk serve did not answer in time")


def webhook_latency(args, env: dict[str, str], shop: ShopifyStandin, root: Path, url: str) -> list[float]:
    """Customers changed one at a time, each change's webhook sent to `bspk serve`; the seconds
    until the warehouse shows it, under `dagster dev`'s sensors."""
    home = root / "dagster_home"
    port, api = free_port(), free_port()
    bin_dir = Path(sys.executable).parent
    procs = []
    try:
        with (root / "dev.log").open("wb") as log:
            procs.append(subprocess.Popen([str(bin_dir / "dagster"), "dev", "-w", str(REPO / "workspace.yaml"),
                                           "--port", str(port)], cwd=REPO, env=env | {"DAGSTER_HOME": str(home)},
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
            procs.append(subprocess.Popen([str(bin_dir / "bspk"), "serve", "--port", str(api)], cwd=REPO, env=env,
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
        wait_until_ready(procs[0], port, names.DROP_SENSOR, time.time() + 180)
        serving(procs[1], api, time.time() + 60)
        engine = sa.create_engine(url)
        customers = shoppers(url)[-args.webhooks:]
        target = f"http://127.0.0.1:{api}/webhooks/shopify/{BRAND}"
        latencies = []
        for i, ref in enumerate(customers):
            gid, name = f"gid://shopify/Customer/{ref}", f"Webhook{i}"
            shop.update_customer(gid, firstName=name)
            sent = time.time()
            answer = shop.send_webhook(target, "customers/update", shop.rest_payload(gid), SECRET)
            if answer.status_code != 200:
                raise Failed(f"the webhook was answered {answer.status_code}: {answer.text[:200]}")
            answered = time.time() - sent
            while time.time() < sent + 120:
                with engine.connect() as conn:
                    if conn.execute(sa.text("select first_name from shoppers where brand = :b and shopper_ref = :r"),
                                    {"b": BRAND, "r": ref}).scalar() == name:
                        break
                time.sleep(0.1)
            else:
                raise Failed(f"customer {ref}: the change did not reach the warehouse in 120 s")
            latencies.append(time.time() - sent)
            print(f"  webhook {i + 1:>3}/{len(customers)}  answered in {answered * 1000:.0f} ms, "
                  f"row readable after {latencies[-1]:5.1f} s", flush=True)
        engine.dispose()
        return latencies
    finally:
        for proc in procs:
            stop(proc)


def phase(label: str, cmd: list[str], env: dict[str, str], root: Path, floor: float) -> bool:
    """One timed phase, its line and what its pulls did; False (its output's end said) if it failed."""
    m = timed(cmd, env, root / f"{label.replace(' ', '_').replace('%', '')}.log")
    if m.code:
        print(m.output[-3000:], file=sys.stderr)
        return False
    print(f"{label:<10} {m.wall:8.1f} s {m.rss_gib:6.2f} GiB {m.wall / floor:7.2f}x", flush=True)
    print("  " + "\n  ".join(pulled_lines(m.output)), flush=True)
    return True


def benchmark(args: argparse.Namespace, root: Path) -> int:
    data, mappings = root / "data", root / "mappings"
    mappings.mkdir()
    url = f"sqlite:///{data / 'warehouse.sqlite'}"
    with ShopifyStandin(TOKEN, scopes=["read_customers", "read_products", "read_orders", "read_all_orders",
                                       "read_locations"], maximum_available=1000, restore_rate=100) as shop:
        started = time.perf_counter()
        shop.generate(customers=args.customers, products=args.products, orders=args.orders,
                      lines_per_order=args.lines, locations=5, seed=1)
        print(f"stand-in filled in {time.perf_counter() - started:.1f} s: {args.customers:,} customers, "
              f"{args.products:,} products, {args.orders:,} orders x {args.lines} lines", flush=True)
        write_brand(mappings, shop)
        env = os.environ | ENV | {"BSPK_DATA_DIR": str(data), "BSPK_MAPPINGS_DIR": str(mappings),
                                  "DAGSTER_HOME": str(root / "dagster_home"), "PYTHONPATH": str(REPO)}
        env.pop("BSPK_WAREHOUSE_URL", None)
        bspk = str(Path(sys.executable).parent / "bspk")
        bulk_queries = [queries.bulk_query(o, None) for o in ("customers", "products", "orders")]
        floor = timed([sys.executable, "-c", DOWNLOAD, shop.url, TOKEN, str(root / "download.jsonl"), *bulk_queries],
                      env, root / "download.log")
        size = (root / "download.jsonl").stat().st_size
        print(f"{'download':<10} {floor.wall:8.1f} s {floor.rss_gib:6.2f} GiB {1:7.2f}x   "
              f"({size / 2**20:,.0f} MiB of JSONL)", flush=True)
        if not phase("bulk load", [bspk, "backfill", "--brand", BRAND, "--source", "shop"], env, root, floor.wall):
            return 1
        print(f"  warehouse: {row_counts(url)}", flush=True)
        changed = [ref for i, ref in enumerate(shoppers(url)) if i % 100 == 0]
        for ref in changed:
            shop.update_customer(f"gid://shopify/Customer/{ref}", firstName="Changed")
        time.sleep(3)  # past the settling window, so the changes are in the next pull's window
        if not phase("1% delta", [bspk, "sync", "--brand", BRAND, "--settle", "0"], env, root, floor.wall):
            return 1
        print(f"throttled answers from the stand-in: {shop.throttled}")
        if args.webhooks:
            try:
                latencies = webhook_latency(args, env, shop, root, url)
            except Failed as e:
                print(f"FAILED: {e}", file=sys.stderr)
                print(*(root / "dev.log").read_text(errors="replace").splitlines()[-30:], sep="\n", file=sys.stderr)
                return 1
            print(f"webhook to row: p50 {percentile(latencies, 50):.1f} s  p90 {percentile(latencies, 90):.1f} s  "
                  f"({len(latencies)} webhooks)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--products", type=int, default=2_000)
    parser.add_argument("--orders", type=int, default=250_000)
    parser.add_argument("--lines", type=int, default=4, help="line items per order")
    parser.add_argument("--webhooks", type=int, default=0, help="webhooks whose latency to measure under dagster dev")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="bspk-shopify-"))
    try:
        return benchmark(args, root)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

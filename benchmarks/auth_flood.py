"""A wrong-secret flood against `bspk serve`: what it costs the server, and a good key meanwhile.

Starts `bspk serve` (uvicorn, one process) on 127.0.0.1 over a throwaway SQLite warehouse with
one brand and two keys from `bspk api-keys create`: a good one, and one whose id the flood
presents with a wrong secret (key ids are public: webhook payloads carry them). The good key
makes a few requests first (the baseline, which also verifies it once in the server), then keeps
making requests, one at a time, while `--requests` wrong-secret requests are sent `--concurrency`
at a time, from `--addresses` loopback source addresses (127.0.0.2, 127.0.0.3, ...) in turn.
Reports the server process's CPU seconds (user + system, from /proc/<pid>/stat) spent during the
flood, the flood's status codes and the good key's p50 / p90 latency before and during it.

    .venv/bin/python benchmarks/auth_flood.py                        # 300 requests from one address
    .venv/bin/python benchmarks/auth_flood.py --addresses 30         # the same spread over 30 addresses
    .venv/bin/python benchmarks/auth_flood.py --code /tmp/old-tree   # the server from another source tree

`--code` names the folder holding the `bspk_pipelines` package the server (and the key commands)
import, so the same flood measures an earlier version of the code. They run in the throwaway
folder, as `python -m` would put the current folder's package before it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
PATH = "/api/extraction/v1/clients"
BRAND = "brand: bench\ncompany_name: Bench\nsources:\n  main: {format: bspk, drop: drop/bench}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process so far."""
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def create_key(env: dict[str, str], folder: Path, name: str) -> str:
    out = subprocess.run([sys.executable, "-m", "bspk_pipelines.cli", "api-keys", "create", "--brand", "bench",
                          "--name", name], env=env, cwd=folder, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def wait_until_up(base: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not start")


def timed_get(http: httpx.Client, key: str) -> float:
    started = time.perf_counter()
    r = http.get(PATH, headers={"Authorization": f"Bearer {key}"}, params={"per_page": 1})
    elapsed = time.perf_counter() - started
    if r.status_code != 200:
        raise SystemExit(f"the good key got {r.status_code}: {r.text[:200]}")
    return elapsed


def flood(base: str, wrong: str, requests: int, concurrency: int, addresses: int) -> Counter[int]:
    """`requests` wrong-secret requests, `concurrency` at a time, each address with its own connections."""
    clients = [httpx.Client(base_url=base, timeout=60, transport=httpx.HTTPTransport(local_address=f"127.0.0.{2 + i}"))
               for i in range(addresses)]

    def one(n: int) -> int:
        return clients[n % addresses].get(PATH, headers={"Authorization": f"Bearer {wrong}"}).status_code

    try:
        with ThreadPoolExecutor(concurrency) as pool:
            return Counter(pool.map(one, range(requests)))
    finally:
        for client in clients:
            client.close()


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=10) if len(samples) > 1 else samples * 9
    return f"p50 {statistics.median(samples) * 1000:.0f} ms  p90 {cuts[8] * 1000:.0f} ms  ({len(samples)} requests)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--addresses", type=int, default=1, help="loopback source addresses the flood comes from")
    parser.add_argument("--baseline", type=int, default=20, help="good-key requests before the flood")
    parser.add_argument("--code", type=Path, default=REPO, help="folder with the bspk_pipelines the server imports")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bspk_auth_flood_"))
    (folder / "mappings").mkdir()
    (folder / "mappings" / "bench.yaml").write_text(BRAND)
    env = {**os.environ, "PYTHONPATH": str(args.code.resolve()), "BSPK_DATA_DIR": str(folder / "data"),
           "BSPK_MAPPINGS_DIR": str(folder / "mappings"), "BSPK_WAREHOUSE_URL": f"sqlite:///{folder / 'warehouse.sqlite'}",
           # The good key's own request limit is not what is measured here.
           "BSPK_API_RATE_LIMIT": "1000000"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = None
    try:
        good = create_key(env, folder, "good")
        target = create_key(env, folder, "flooded")
        wrong = target[:-1] + ("B" if target[-1] == "A" else "A")
        server = subprocess.Popen([sys.executable, "-m", "bspk_pipelines.cli", "serve", "--host", "127.0.0.1",
                                   "--port", str(port)], env=env, cwd=folder,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_up(base, server)
        with httpx.Client(base_url=base, timeout=60) as http:
            baseline = [timed_get(http, good) for _ in range(args.baseline)]
            during: list[float] = []
            done = threading.Event()

            def keep_asking() -> None:
                while not done.is_set():
                    during.append(timed_get(http, good))

            asker = threading.Thread(target=keep_asking)
            cpu_before, started = cpu_seconds(server.pid), time.monotonic()
            asker.start()
            try:
                statuses = flood(base, wrong, args.requests, args.concurrency, args.addresses)
            finally:
                done.set()
                asker.join()
            elapsed, cpu = time.monotonic() - started, cpu_seconds(server.pid) - cpu_before
        print(f"flood     {args.requests} wrong-secret requests, {args.concurrency} at a time, from {args.addresses} "
              f"address(es): {elapsed:.1f} s; statuses {dict(sorted(statuses.items()))}")
        print(f"server    {cpu:.1f} CPU s during the flood")
        print(f"good key  before the flood: {percentiles(baseline)}")
        print(f"good key  during the flood: {percentiles(during)}")
        return 0
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

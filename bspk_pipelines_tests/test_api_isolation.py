"""Brand isolation: a key of one brand, on every endpoint, against the other brand's objects (both
directions, SQLite and PostgreSQL). Lists come back without them, objects are 404, writes never
reach them. The matrix is printed (`pytest -s`) so it can be quoted."""

from __future__ import annotations

import json
import re

import pytest

from bspk_pipelines.api.imports import import_id
from bspk_pipelines.outbound.views import VIEWS
from bspk_pipelines_tests.builders import SHOPPER, World, make_world, seed, shopper_row, url, view_records

WEBHOOKS = "/api/platform/v1/webhook_endpoints"
IMPORTS = "/api/platform/v1/imports"
CLIENTS = {"acme": ("S1", "S2", "S3"), "bravo": ("B1", "B2")}


@pytest.fixture
def world(engine, tmp_path) -> World:
    w = make_world(engine, tmp_path)
    seed(w, "acme", CLIENTS["acme"])
    seed(w, "bravo", CLIENTS["bravo"], associates=("Karl,Lagerfeld", "Yves,Saint Laurent"))
    return w


def objects_of(world: World, brand: str) -> dict:
    """The brand's objects beyond its records: a webhook endpoint, an applied import, a waiting one."""
    h = world.harness[brand]
    company = h.brand.company_name
    endpoint = world.post(brand, WEBHOOKS, json={"target_url": f"https://{brand}.example.com/hooks",
                                                 "events": ["client.updated"]}).json()
    applied, waiting = f"SHOPPER_V3_{company}_202405010000.csv", f"SHOPPER_V3_{company}_202405020000.csv"
    bad = SHOPPER + shopper_row(f"{brand}-x", email="not-an-email")
    for name in (applied, waiting):
        assert world.post(brand, IMPORTS, files={"file": (name, bad.encode(), "text/csv")}).status_code == 202
    assert h.ingest(applied)["status"] == "applied"
    return {"endpoint": endpoint, "applied": import_id("main", applied), "waiting": import_id("main", waiting),
            "waiting_name": waiting}


def state(world: World, brand: str) -> str:
    """Everything of the brand the API could show or change, to compare before and after."""
    records = {name: view_records(world, name, brand) for name in VIEWS}
    endpoints = world.get(brand, WEBHOOKS).json()
    return json.dumps([records, endpoints], sort_keys=True)


def isolation_matrix(world: World, me: str, other: str, theirs: dict) -> list[tuple[str, str, str, str]]:
    """(endpoint, the other brand's object, status, outcome) for `me`'s key on every endpoint."""
    before = state(world, other)
    rows = []

    def row(endpoint: str, target: str, status: int, ok: bool, outcome: str) -> None:
        assert ok, (endpoint, target, status, outcome)
        rows.append((endpoint, target, str(status), outcome))

    for name, view in VIEWS.items():
        mine, foreign = view_records(world, name, me), view_records(world, name, other)
        r = world.get(me, url(name))
        got = r.json()
        leaked = [rec for rec in got if rec in foreign]
        row(f"GET {url(name)}", f"{other}'s {len(foreign)} {name}", r.status_code,
            r.status_code == 200 and got == mine and not leaked, f"only {me}'s {len(mine)}; 0 of {other}'s")
        if view.client_column:
            r = world.get(me, url(name), params={"client_ids": ",".join(CLIENTS[other])})
            row(f"GET {url(name)}?client_ids=", f"{other}'s client ids", r.status_code,
                r.status_code == 200 and r.json() == [], "empty")
        r = world.get(me, url(name), params={"sales_associate_ids": "SA1,SA2"})
        row(f"GET {url(name)}?sales_associate_ids=", "SA1,SA2 (both brands use these ids)", r.status_code,
            r.status_code == 200 and not [rec for rec in r.json() if rec in foreign], f"only {me}'s")
    for path, wrapper in (("clients", "client"), ("shoppers", "shopper")):
        ref = CLIENTS[other][0] if path == "clients" else CLIENTS[other][1]
        r = world.post(me, f"/api/platform/v1/{path}", json={wrapper: {"shopper_ref": ref, "segment": "Hijack"}})
        row(f"POST /api/platform/v1/{path}", f"{other}'s client {ref}", r.status_code,
            r.status_code == 201 and r.json()["client_id"] == ref,
            f"201: a new client of {me}; {other}'s {ref} unchanged")
    endpoint = theirs["endpoint"]
    r = world.post(me, WEBHOOKS, json={"target_url": endpoint["target_url"], "events": ["client.created"]})
    row(f"POST {WEBHOOKS}", f"{other}'s endpoint URL", r.status_code, r.status_code == 201 and r.json()["id"] != endpoint["id"],
        f"201: a new endpoint of {me} (URLs are unique per brand: no conflict reveals {other}'s)")
    r = world.get(me, WEBHOOKS)
    row(f"GET {WEBHOOKS}", f"{other}'s endpoint {endpoint['id']}", r.status_code,
        r.status_code == 200 and endpoint["id"] not in [e["id"] for e in r.json()], "not listed")
    for method, kwargs in (("GET", {}), ("PATCH", {"json": {"is_enabled": False}}), ("DELETE", {})):
        r = world.request(me, method, f"{WEBHOOKS}/{endpoint['id']}", **kwargs)
        row(f"{method} {WEBHOOKS}/{{id}}", f"{other}'s endpoint {endpoint['id']}", r.status_code,
            r.status_code == 404, "404, unchanged")
    other_company = world.harness[other].brand.company_name
    name = f"SHOPPER_V3_{other_company}_202406010000.csv"
    r = world.post(me, IMPORTS, files={"file": (name, SHOPPER.encode(), "text/csv")})
    drops = world.layout.data_dir / "drop"
    row(f"POST {IMPORTS}", f"a file named for {other} ({name})", r.status_code,
        r.status_code == 422 and not list(drops.rglob(name)), "422: not the key's naming rule; nothing written")
    for label, value in (("applied import", theirs["applied"]), ("waiting import", theirs["waiting"])):
        for suffix in ("", "/rejects"):
            r = world.get(me, f"{IMPORTS}/{value}{suffix}")
            row(f"GET {IMPORTS}/{{id}}{suffix}", f"{other}'s {label}", r.status_code, r.status_code == 404, "404")
    assert state(world, other) == before, "the other brand's data changed"
    return rows


def test_a_brands_key_never_reaches_another_brands_objects(world, request):
    objects = {brand: objects_of(world, brand) for brand in ("acme", "bravo")}
    matrix = isolation_matrix(world, "acme", "bravo", objects["bravo"]) + isolation_matrix(world, "bravo", "acme", objects["acme"])
    backend = request.node.callspec.params["warehouse_url"] if hasattr(request.node, "callspec") else ""
    lines = [f"Brand isolation matrix ({backend}): key of the first brand named, objects of the other",
             "| endpoint | object of the other brand | status | outcome |", "|---|---|---|---|"]
    lines += [f"| {e} | {t} | {s} | {o} |" for e, t, s, o in matrix]
    print("\n" + "\n".join(lines))
    tried = {e.split("?")[0] for e, *_ in matrix}
    operations = {f"{method.upper()} {re.sub(r'{[a-z_]+}', '{id}', path)}"
                  for path, item in world.app.openapi()["paths"].items() for method in item}
    assert operations == tried  # every operation of the API, in both directions

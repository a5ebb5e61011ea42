"""Webhook security: signing secrets encrypted at rest, under Fernet keys from the environment
that can be rotated; a missing or bad key stops the commands with one line.

Receivers are real HTTP servers on 127.0.0.1; databases are SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from bspk_pipelines.cli import main
from bspk_pipelines.defs import names
from bspk_pipelines.defs.project import build_definitions
from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource
from bspk_pipelines.outbound.settings import SettingError
from bspk_pipelines.outbound.webhooks import deliver
from bspk_pipelines.warehouse.apply import now
from bspk_pipelines.warehouse.platform import webhook_endpoints
from bspk_pipelines.warehouse.schema import engine_for, writing
from bspk_pipelines_tests.conftest import tick
from bspk_pipelines_tests.test_api import make_world
from bspk_pipelines_tests.test_webhooks import Receiver, deliveries, new_brand, new_secret

KEYS = "BSPK_WEBHOOK_ENCRYPTION_KEYS"
WEBHOOKS = "/api/platform/v1/webhook_endpoints"
PROJECT = Path(__file__).resolve().parent.parent


def fernet_key() -> str:
    return Fernet.generate_key().decode()


def stored_secret(engine: sa.Engine, endpoint_id: int) -> str:
    e = webhook_endpoints
    with engine.connect() as conn:
        return conn.execute(sa.select(e.c.secret).where(e.c.id == endpoint_id)).scalar_one()


# ---------------------------------------------------------------------------------------------
# Secrets at rest


def test_an_api_endpoints_secret_is_stored_encrypted_and_signs_deliveries(engine, tmp_path, monkeypatch):
    key = fernet_key()
    monkeypatch.setenv(KEYS, key)
    world = make_world(engine, tmp_path)
    receiver = Receiver([]).start()
    try:
        created = world.post("acme", WEBHOOKS, json={"target_url": receiver.url, "events": ["client.created"]}).json()
        secret = created["secret"]
        receiver.secrets.append(secret)
        stored = stored_secret(engine, created["id"])
        assert secret not in stored and not stored.startswith("whsec_")
        assert Fernet(key).decrypt(stored.encode()).decode() == secret
        assert world.post("acme", "/api/platform/v1/clients", json={"client": {"shopper_ref": "N1"}}).status_code == 201
        assert deliver(engine, [world.harness["acme"].brand]).delivered == 1
        assert [a.verified for a in receiver.arrivals] == [True]
    finally:
        receiver.stop()


def test_rotate_key_reencrypts_every_secret_and_encrypts_plaintext_rows(warehouse_url, tmp_path, monkeypatch, capsys):
    engine = engine_for(warehouse_url)
    old, new = fernet_key(), fernet_key()
    monkeypatch.setenv(KEYS, old)
    world = make_world(engine, tmp_path)
    receiver = Receiver([]).start()
    try:
        made = world.post("acme", WEBHOOKS, json={"target_url": receiver.url, "events": ["client.created"]}).json()
        legacy_secret = new_secret()  # a row written in clear by an earlier version
        with writing(engine) as conn:
            legacy_id = conn.execute(webhook_endpoints.insert().values(
                brand="acme", target_url=receiver.url.replace("/hook", "/legacy"), events='["client.created"]',
                is_enabled=True, origin="api", secret=legacy_secret, created_at=now(), updated_at=now())).inserted_primary_key[0]
        receiver.secrets.extend([made["secret"], legacy_secret])

        monkeypatch.setenv(KEYS, f"{new} {old}")  # the new key first; the old one still reads
        mappings = tmp_path / "mappings"
        mappings.mkdir()
        (mappings / "acme.yaml").write_text("brand: acme\ncompany_name: Acme\nsources:\n  main: {format: bspk, drop: drop/acme}\n")
        monkeypatch.setenv("BSPK_MAPPINGS_DIR", str(mappings))
        monkeypatch.setenv("BSPK_WAREHOUSE_URL", warehouse_url)
        assert main(["webhooks", "rotate-key"]) == 0
        out = capsys.readouterr().out
        assert "2 secret(s) encrypted under the newest key (1 of them stored in clear before)" in out, out
        for endpoint_id, secret in ((made["id"], made["secret"]), (legacy_id, legacy_secret)):
            stored = stored_secret(engine, endpoint_id)
            assert Fernet(new).decrypt(stored.encode()).decode() == secret
            with pytest.raises(InvalidToken):
                Fernet(old).decrypt(stored.encode())

        monkeypatch.setenv(KEYS, new)  # the old key is gone: everything still signs
        assert world.post("acme", "/api/platform/v1/clients", json={"client": {"shopper_ref": "N1"}}).status_code == 201
        assert deliver(engine, [world.harness["acme"].brand]).delivered == 2
        assert len(receiver.arrivals) == 2 and all(a.verified for a in receiver.arrivals)
    finally:
        receiver.stop()


def test_a_secret_under_a_key_no_longer_given_is_a_failed_attempt_naming_the_variable(engine, tmp_path, monkeypatch):
    monkeypatch.setenv(KEYS, fernet_key())
    world = make_world(engine, tmp_path)
    world.post("acme", WEBHOOKS, json={"target_url": "http://127.0.0.1:9/hook", "events": ["client.created"]})
    world.post("acme", "/api/platform/v1/clients", json={"client": {"shopper_ref": "N1"}})
    monkeypatch.setenv(KEYS, fernet_key())
    brand = world.harness["acme"].brand
    report = deliver(engine, [brand])
    assert (report.attempted, report.retried) == (1, 1)
    [row] = deliveries(engine, brand)
    assert KEYS in row["last_error"] and "decrypt" in row["last_error"], row["last_error"]


# ---------------------------------------------------------------------------------------------
# Start-up errors: one line, no stack trace


def run_bspk(args: list[str], tmp_path: Path, **env: str | None) -> subprocess.CompletedProcess:
    mappings = tmp_path / "mappings"
    mappings.mkdir(exist_ok=True)
    (mappings / "acme.yaml").write_text("brand: acme\ncompany_name: Acme\nsources:\n  main: {format: bspk, drop: drop/acme}\n")
    environ = {**os.environ, "PYTHONPATH": str(PROJECT), "BSPK_MAPPINGS_DIR": str(mappings),
               "BSPK_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    for name, value in env.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return subprocess.run([sys.executable, "-m", "bspk_pipelines.cli", *args], env=environ, capture_output=True,
                          text=True, timeout=30, cwd=tmp_path)


@pytest.mark.parametrize("args", [["serve", "--port", "0"], ["webhooks", "deliver", "--budget", "1"],
                                  ["webhooks", "rotate-key"]])
def test_a_missing_or_bad_key_is_a_one_line_start_up_error(args, tmp_path):
    for value, says in ((None, "is not set"), ("", "is not set"), ("not-a-key", "is not a Fernet key")):
        done = run_bspk(args, tmp_path, **{KEYS: value})
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, (args, value, done.returncode, done.stderr)
        assert KEYS in lines[0] and says in lines[0] and "Fernet.generate_key()" in lines[0], lines[0]
        assert "Traceback" not in done.stderr + done.stdout


def test_the_webhook_sensor_fails_its_tick_with_the_same_line(warehouse_url, tmp_path, monkeypatch):
    brand = new_brand([])
    defs = build_definitions([brand], {"warehouse": WarehouseResource(url=warehouse_url),
                                       "folders": BrandFoldersResource(data_dir=str(tmp_path / "data"))})
    monkeypatch.delenv(KEYS)
    with pytest.raises(SettingError, match=f"^{KEYS} is not set: .*" + re.escape("Fernet.generate_key()")):
        tick(defs, names.webhook_sensor(brand.brand))



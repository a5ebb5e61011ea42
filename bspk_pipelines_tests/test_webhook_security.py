"""Webhook security: signing secrets encrypted at rest, under Fernet keys from the environment
that can be rotated; receivers on internal networks refused, when an endpoint is created or
changed and again on the address each delivery connects to; a missing or bad setting stops the
commands with one line.

Receivers are real HTTP servers on 127.0.0.1, databases SQLite and PostgreSQL. The test session
allows 127.0.0.0/8 (as `make demo` does); a test that needs the default takes the variable away.
Only DNS rebinding needs a resolver of the test's own: no real name server answers differently
on each call.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from cryptography import x509
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bspk_pipelines.cli import main
from bspk_pipelines.defs import names
from bspk_pipelines.defs.project import build_definitions
from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource
from bspk_pipelines.outbound.targets import RefusedTarget, TargetPolicy, guarded_session
from bspk_pipelines.outbound.webhooks.admin import dead_letters
from bspk_pipelines.outbound.webhooks.delivery import deliver
from bspk_pipelines.settings import SettingError
from bspk_pipelines.warehouse.apply import now
from bspk_pipelines.warehouse.platform import webhook_endpoints
from bspk_pipelines.warehouse.engine import engine_for, writing
from bspk_pipelines_tests.builders import FakeClock, Receiver, deliveries, emit, make_world, new_brand, new_secret, tick

KEYS = "BSPK_WEBHOOK_ENCRYPTION_KEYS"
ALLOW = "BSPK_WEBHOOK_ALLOW_NETWORKS"
WEBHOOKS = "/api/platform/v1/webhook_endpoints"
PROJECT = Path(__file__).resolve().parent.parent

# One URL of each refused kind, with the word the refusal names it by.
REFUSED = [
    ("http://127.0.0.1:3000/graphql", "loopback"),
    ("http://localhost:5432/", "loopback"),
    ("https://app.localhost/", "loopback"),
    ("http://[::1]:8080/", "loopback"),
    ("https://2130706433/", "loopback"),  # 127.0.0.1 written as one number
    ("https://169.254.169.254/latest/meta-data/", "metadata"),
    ("https://[fd00:ec2::254]/latest/meta-data/", "metadata"),
    ("https://10.0.0.1/admin", "private"),
    ("https://172.16.5.4/", "private"),
    ("https://192.168.1.1/", "private"),
    ("https://100.64.0.1/", "private"),  # carrier-grade NAT
    ("https://[::ffff:10.0.0.1]/", "private"),  # IPv4-mapped IPv6
    ("https://169.254.10.1/", "link-local"),
    ("https://[fe80::1]/", "link-local"),
    ("https://[fd12:3456::1]/", "unique-local"),
    ("https://0.0.0.0/", "unspecified"),
    ("https://[::]/", "unspecified"),
    ("https://224.0.0.1/", "multicast"),
    ("https://[ff02::1]/", "multicast"),
]


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


@pytest.mark.parametrize("args", [["serve", "--port", "0"], ["webhooks", "deliver", "--budget", "1"]])
def test_a_bad_allowed_network_is_a_one_line_start_up_error(args, tmp_path):
    done = run_bspk(args, tmp_path, **{ALLOW: "127.0.0.0/8, intranet"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, (args, done.returncode, done.stderr)
    assert ALLOW in lines[0] and "'intranet'" in lines[0] and "Traceback" not in done.stderr


def test_the_webhook_sensor_fails_its_tick_with_the_same_line(warehouse_url, tmp_path, monkeypatch):
    brand = new_brand([])
    defs = build_definitions([brand], {"warehouse": WarehouseResource(url=warehouse_url),
                                       "folders": BrandFoldersResource(data_dir=str(tmp_path / "data"))})
    monkeypatch.delenv(KEYS)
    with pytest.raises(SettingError, match=f"^{KEYS} is not set: .*" + re.escape("Fernet.generate_key()")):
        tick(defs, names.WEBHOOK_SENSOR)


# ---------------------------------------------------------------------------------------------
# Targets: at creation and update


def test_internal_targets_are_refused_at_creation_and_update(engine, tmp_path, monkeypatch):
    monkeypatch.delenv(ALLOW)
    world = make_world(engine, tmp_path)
    good = world.post("acme", WEBHOOKS, json={"target_url": "https://crm.example.com/in", "events": ["client.created"]})
    assert good.status_code == 201, good.text
    table = []
    for url, kind in REFUSED:
        created = world.post("acme", WEBHOOKS, json={"target_url": url, "events": ["client.created"]})
        patched = world.request("acme", "PATCH", f"{WEBHOOKS}/{good.json()['id']}", json={"target_url": url})
        table.append((url, created.status_code, patched.status_code))
        for r in (created, patched):
            assert r.status_code == 422, (url, r.status_code, r.text)
            message = r.json()["error"]["message"]
            assert message.startswith("target_url: ") and kind in message, (url, message)
            assert " a unspecified" not in message
    print(f"\n{engine.dialect.name}: POST / PATCH webhook_endpoints")
    for url, post, patch in table:
        print(f"  {url:<45} {post} {patch}")
    assert [e["target_url"] for e in world.get("acme", WEBHOOKS).json()] == ["https://crm.example.com/in"]


def test_an_allowed_network_is_accepted_and_only_that_one(engine, tmp_path, monkeypatch):
    monkeypatch.setenv(ALLOW, "127.0.0.0/8, fd12:3456::/32")
    world = make_world(engine, tmp_path)
    for url in ("http://127.0.0.1:3000/graphql", "http://localhost:8765/hooks", "https://[fd12:3456::1]/"):
        r = world.post("acme", WEBHOOKS, json={"target_url": url, "events": ["client.created"]})
        assert r.status_code == 201, (url, r.text)
    for url in ("https://10.0.0.1/admin", "https://169.254.169.254/", "http://[::1]:8080/"):
        assert world.post("acme", WEBHOOKS, json={"target_url": url, "events": ["client.created"]}).status_code == 422


# ---------------------------------------------------------------------------------------------
# Targets: at delivery, on the address connected to


def test_a_host_the_http_client_cannot_parse_is_a_failed_attempt_not_a_crash(engine, tmp_path):
    """A label over 63 characters passes the URL pattern; urllib3 refuses it with its own error."""
    world = make_world(engine, tmp_path)
    url = f"https://{'a' * 64}.example.com/hook"
    assert world.post("acme", WEBHOOKS, json={"target_url": url, "events": ["client.created"]}).status_code == 201
    world.post("acme", "/api/platform/v1/clients", json={"client": {"shopper_ref": "N1"}})
    brand = world.harness["acme"].brand
    report = deliver(engine, [brand])
    assert (report.attempted, report.retried) == (1, 1)
    [row] = deliveries(engine, brand)
    assert row["last_error"].startswith("request failed: ") and "label empty or too long" in row["last_error"], row["last_error"]


def test_a_name_resolving_to_loopback_is_refused_when_sent_then_delivered_once_allowed(warehouse_url, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    receiver = Receiver([new_secret()]).start()
    try:
        monkeypatch.setenv("WH_LOCAL_SECRET", receiver.secrets[0])
        url = f"http://localhost:{receiver.port}/hook"  # a name: the address is only known once resolved
        brand = new_brand([{"url": url, "events": ["client.updated"], "secret_env": "WH_LOCAL_SECRET"}])
        emit(engine, brand, "C1", 1, clock())
        monkeypatch.delenv(ALLOW)
        refused = deliver(engine, [brand], clock=clock)
        assert (refused.attempted, refused.retried, refused.delivered) == (1, 1, 0)
        assert receiver.arrivals == []
        [row] = deliveries(engine, brand)
        assert row["status"] == "pending" and row["attempts"] == 1 and row["last_status_code"] is None
        assert row["last_error"].startswith("refused: localhost resolves to 127.0.0.1 (loopback)"), row["last_error"]
        assert ALLOW in row["last_error"]

        monkeypatch.setenv(ALLOW, "127.0.0.0/8")
        clock.advance(minutes=1)
        assert deliver(engine, [brand], clock=clock).delivered == 1
        assert [a.verified for a in receiver.arrivals] == [True]
    finally:
        receiver.stop()


def test_every_refused_kind_fails_at_delivery_and_dead_letters(warehouse_url, monkeypatch):
    """Config endpoints (the brand's YAML is not checked by the API) and rows an earlier version
    accepted through the API both meet the check when sent."""
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    monkeypatch.delenv(ALLOW)
    monkeypatch.setenv("WH_ANY_SECRET", new_secret())
    urls = [u for u, _ in REFUSED if u.startswith("https://") and "localhost" not in u]
    brand = new_brand([{"url": u, "events": ["client.updated"], "secret_env": "WH_ANY_SECRET"} for u in urls])
    with writing(engine) as conn:
        conn.execute(webhook_endpoints.insert().values(
            brand=brand.brand, target_url="http://127.0.0.1:9/old-api-row", events='["client.updated"]',
            is_enabled=True, origin="api", secret=new_secret(), created_at=clock(), updated_at=clock()))
    emit(engine, brand, "C1", 1, clock())
    report = deliver(engine, [brand], clock=clock)
    assert (report.attempted, report.retried) == (len(urls) + 1, len(urls) + 1), report.summary()
    kinds = dict(REFUSED) | {"http://127.0.0.1:9/old-api-row": "loopback"}
    with engine.connect() as conn:
        url_of = {r.id: r.target_url for r in conn.execute(sa.select(webhook_endpoints).where(
            webhook_endpoints.c.brand == brand.brand))}
    for row in deliveries(engine, brand):
        kind = kinds[url_of[row["endpoint_id"]]]  # "10.0.0.1 is a private address", "2130706433 resolves to 127.0.0.1 (loopback)"
        assert row["last_error"].startswith("refused: ") and re.search(rf"[( ]{kind}[ )]", row["last_error"]), \
            (url_of[row["endpoint_id"]], row["last_error"])
    clock.advance(hours=97)
    assert deliver(engine, [brand], clock=clock).dead == len(urls) + 1
    with engine.connect() as conn:
        letters = dead_letters(conn, brand.brand)
    assert len(letters) == len(urls) + 1 and all(d.last_error.startswith("refused: ") for d in letters)


def test_dns_rebinding_gains_nothing_the_checked_address_is_the_one_connected_to(warehouse_url, monkeypatch):
    """The name answers an allowed address to the first look-up and the receiver's (refused)
    address to every later one: a check followed by a second look-up would reach the receiver."""
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    receiver = Receiver([new_secret()]).start()
    real = socket.getaddrinfo
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.example":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.2" if len(lookups) == 1 else "127.0.0.1"  # nothing listens on 127.0.0.2
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    try:
        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        monkeypatch.setenv(ALLOW, "127.0.0.2/32")
        brand = new_brand([])
        with writing(engine) as conn:
            conn.execute(webhook_endpoints.insert().values(
                brand=brand.brand, target_url=f"http://rebind.example:{receiver.port}/hook", events='["client.updated"]',
                is_enabled=True, origin="api", secret=receiver.secrets[0], created_at=clock(), updated_at=clock()))
        emit(engine, brand, "C1", 1, clock())
        report = deliver(engine, [brand], clock=clock, timeout=2)
        assert (report.attempted, report.delivered) == (1, 0)
        assert receiver.arrivals == [] and lookups == ["rebind.example"]
        [row] = deliveries(engine, brand)
        assert row["last_error"].startswith("connection failed") and "127.0.0.2" in row["last_error"], row["last_error"]
    finally:
        receiver.stop()


def test_a_proxy_in_the_environment_is_not_used(warehouse_url, monkeypatch):
    """The address checked must be the one connected to: a proxy would resolve the name itself."""
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    receiver = Receiver([new_secret()]).start()
    try:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("WH_PROXY_SECRET", receiver.secrets[0])
        brand = new_brand([{"url": f"http://localhost:{receiver.port}/hook", "events": ["client.updated"],
                            "secret_env": "WH_PROXY_SECRET"}])
        emit(engine, brand, "C1", 1, clock())
        assert deliver(engine, [brand], clock=clock).delivered == 1
        assert len(receiver.arrivals) == 1
    finally:
        receiver.stop()


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A certificate for `name` (and its key), signed by itself, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.now(UTC) - timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(start + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_connects_to_the_checked_address_and_verifies_the_certificate_by_name(tmp_path):
    cert, key = self_signed(tmp_path, "localhost")
    receiver = Receiver([new_secret()])
    receiver.start()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    try:
        session = guarded_session(TargetPolicy.parse("127.0.0.0/8"), 1)
        answer = session.post(f"https://localhost:{receiver.port}/hook", data=b"{}", verify=str(cert), timeout=5)
        assert answer.status_code == 200 and len(receiver.arrivals) == 1
        with pytest.raises(requests.exceptions.SSLError, match="127.0.0.1"):  # the name is what the certificate is for
            session.post(f"https://127.0.0.1:{receiver.port}/hook", data=b"{}", verify=str(cert), timeout=5)
        with pytest.raises(RefusedTarget):
            guarded_session(TargetPolicy(), 1).post(f"https://localhost:{receiver.port}/hook", verify=str(cert), timeout=5)
        assert len(receiver.arrivals) == 1
    finally:
        receiver.stop()

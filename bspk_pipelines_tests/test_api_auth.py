"""Failed authentications: limited per client address and per key id before any scrypt check, a
key verified before never locked out, and scrypt checks bounded at a time (on a real server)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from bspk_pipelines.api import auth, keys
from bspk_pipelines.api.ratelimit import RateLimiter
from bspk_pipelines_tests.builders import World, serving, url

CALLS = url("calls")


@pytest.fixture
def scrypt_checks(monkeypatch) -> list[str]:
    """The secrets scrypt checks, in order (the real check still runs)."""
    checked = []
    real = keys.secret_matches

    def counted(secret: str, stored: str) -> bool:
        checked.append(secret)
        return real(secret, stored)

    monkeypatch.setattr(keys, "secret_matches", counted)
    return checked


@pytest.fixture
def one_window(bare) -> None:
    """The failed-authentication limits on a clock that stands still: the windows are fixed (one
    per minute of the clock), so a test that started near a minute's end would count in two."""
    auth_ = bare.app.state.service.auth
    auth_.by_address = RateLimiter(auth_.by_address.limit, auth_.window, clock=lambda: 1000.0)
    auth_.by_key = RateLimiter(auth_.by_key.limit, auth_.window, clock=lambda: 1000.0)


def wrong_secret(world: World, brand: str) -> dict[str, str]:
    key = world.keys[brand]
    return {"Authorization": f"Bearer {key[:-1]}{'B' if key[-1] == 'A' else 'A'}"}


def from_address(world: World, host: str) -> TestClient:
    return TestClient(world.app, client=(host, 40000), raise_server_exceptions=False)


def test_failed_authentications_are_limited_per_client_address_before_scrypt(bare, scrypt_checks, one_window):
    assert bare.get("acme", CALLS).status_code == 200  # acme's key, verified once
    answers = [bare.client.get(CALLS, headers=wrong_secret(bare, "acme")) for _ in range(40)]
    assert [r.status_code for r in answers] == [401] * 10 + [429] * 30
    assert len(scrypt_checks) == 11  # the good key once, then the 10 tries the address was allowed
    over = answers[-1]
    assert over.json()["error"]["status"] == 429 and "per client address" in over.json()["error"]["message"]
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert bare.get("acme", CALLS).status_code == 200  # the key verified before still passes ...
    assert len(scrypt_checks) == 11  # ... without scrypt
    assert bare.get("bravo", CALLS).status_code == 429  # a key not verified yet, from that address, waits
    # Elsewhere bravo's key is fine, and acme's id is not locked: the 30 tries refused by the
    # address's limit did not count against the key id (its limit is 30).
    other = from_address(bare, "203.0.113.9")
    assert other.get(CALLS, headers=bare.auth("bravo")).status_code == 200
    assert other.get(CALLS, headers=wrong_secret(bare, "acme")).status_code == 401


def test_failed_authentications_are_limited_per_key_id_from_many_addresses(bare, scrypt_checks, one_window):
    assert bare.get("acme", CALLS).status_code == 200
    statuses = [from_address(bare, f"198.51.100.{i}").get(CALLS, headers=wrong_secret(bare, "acme")).status_code
                for i in range(35)]
    assert statuses == [401] * 30 + [429] * 5 and len(scrypt_checks) == 31
    refused = from_address(bare, "198.51.100.200").get(CALLS, headers=wrong_secret(bare, "acme"))
    assert refused.status_code == 429 and "per key id" in refused.json()["error"]["message"]
    assert bare.get("acme", CALLS).status_code == 200 and len(scrypt_checks) == 31  # the owner's verified key


def test_a_key_locked_by_others_tries_passes_after_the_window_and_stays_verified(bare):
    ticks = [1000.0]
    service = bare.app.state.service
    service.auth.by_key = RateLimiter(3, 60.0, clock=lambda: ticks[0])
    tries = [from_address(bare, f"192.0.2.{i}").get(CALLS, headers=wrong_secret(bare, "acme")) for i in range(4)]
    assert [r.status_code for r in tries] == [401, 401, 401, 429]
    assert bare.get("acme", CALLS).status_code == 429  # not verified in this process yet: it waits too
    ticks[0] += 60
    assert bare.get("acme", CALLS).status_code == 200
    for i in range(5):
        from_address(bare, f"192.0.2.{10 + i}").get(CALLS, headers=wrong_secret(bare, "acme"))
    assert bare.get("acme", CALLS).status_code == 200  # the key id is over its limit again; the key is known


def test_ipv6_clients_count_by_their_64_network():
    assert auth.client_bucket(("2001:db8:1:2:aaaa::1", 1)) == auth.client_bucket(("2001:db8:1:2:ffff::9", 1))
    assert auth.client_bucket(("2001:db8:1:2::1", 1)) != auth.client_bucket(("2001:db8:1:3::1", 1))
    assert auth.client_bucket(("::ffff:192.0.2.1", 1)) == auth.client_bucket(("192.0.2.1", 1)) == "192.0.2.1"


def _concurrent_wrong_secrets(world: World, base: str, n: int) -> list[httpx.Response]:
    def one(i: int) -> httpx.Response:
        transport = httpx.HTTPTransport(local_address=f"127.0.0.{2 + i}")  # one address each: under its limit
        with httpx.Client(base_url=base, timeout=30, transport=transport) as http:
            return http.get(CALLS, headers=wrong_secret(world, "acme"))

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_scrypt_checks_run_one_at_a_time_on_a_real_server(bare, monkeypatch):
    running, most = [0], [0]
    real = keys.secret_matches

    def watched(secret: str, stored: str) -> bool:
        running[0] += 1
        most[0] = max(most[0], running[0])
        try:
            time.sleep(0.02)  # long enough for the checks of concurrent requests to overlap, if they may
            return real(secret, stored)
        finally:
            running[0] -= 1

    monkeypatch.setattr(keys, "secret_matches", watched)
    monkeypatch.setattr(auth, "SCRYPT_WAIT", 60.0)  # on a loaded machine a turn may take long: this test counts overlaps
    with serving(bare.app) as base:
        answers = _concurrent_wrong_secrets(bare, base, 8)
        with httpx.Client(base_url=base, timeout=30) as http:
            assert http.get(CALLS, headers=bare.auth("acme")).status_code == 200
    assert [r.status_code for r in answers] == [401] * 8
    assert most[0] == auth.SCRYPT_AT_ONCE == 1


def test_a_check_that_waits_too_long_for_its_turn_is_503(bare, monkeypatch):
    real = keys.secret_matches

    def slow(secret: str, stored: str) -> bool:
        time.sleep(0.3)
        return real(secret, stored)

    monkeypatch.setattr(keys, "secret_matches", slow)
    monkeypatch.setattr(auth, "SCRYPT_WAIT", 0.05)
    with serving(bare.app) as base:
        answers = _concurrent_wrong_secrets(bare, base, 4)
    busy = [r for r in answers if r.status_code == 503]
    assert busy and {r.status_code for r in answers} <= {401, 503}
    assert busy[0].headers["retry-after"] == "1" and busy[0].json()["error"]["status"] == 503

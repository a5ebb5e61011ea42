"""Who a request is: its bearer key, checked so that a flood of wrong secrets stays cheap.

Checking a secret is scrypt, tens of milliseconds of CPU on purpose, and key ids are public
(webhook payloads and the client change log carry them), so anyone can make the server check
secrets of a real key. Hence, in this order:

- a key this process has verified before is recognised by its HMAC mark (`KeyStore.remembers`):
  no scrypt and no limit below, so a key in use keeps working whatever others send in its name;
- any other key counts as a failed authentication of the client address (at most `per_address`,
  default 10, per `window`, default 60 s) and then of the key id (at most `per_key`, default 30),
  before the database is read or scrypt runs, so that concurrent tries cannot all slip under the
  limits; over either limit the answer is 429 with Retry-After. A key whose secret checks out,
  or a try that waited too long for its check (below), is taken back off both counts: what stays
  counted is wrong secrets and unknown, revoked or malformed keys;
- a try refused by its address's limit does not count against the key id, so one client cannot
  lock a key out. Many clients together can, for the rest of a window, and only a key this
  process has not verified yet (after a restart);
- an IPv6 client counts by its /64 network, which one host usually holds whole;
- at most `SCRYPT_AT_ONCE` scrypt checks run at once, so a flood never takes every core; a check
  waits up to `SCRYPT_WAIT` seconds for its turn (in the event loop, holding no thread), else
  503 with Retry-After.

Counts are per process and in memory, as the request limit's (`ratelimit`). The client address
is the connection's, or the one uvicorn takes from X-Forwarded-For when the connection comes
from a proxy it trusts (uvicorn's FORWARDED_ALLOW_IPS, 127.0.0.1 by default).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import anyio
from starlette.concurrency import run_in_threadpool

from bspk_pipelines.api.keys import ApiKey, KeyStore, Presented
from bspk_pipelines.api.ratelimit import RateLimiter

SCRYPT_AT_ONCE = 1  # each takes a core for its tens of milliseconds; first checks of good keys are rare
SCRYPT_WAIT = 1.0  # seconds
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="bspk"'}


@dataclass(frozen=True)
class Refusal:
    """Why a request is not let in, as its answer says it."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


MISSING = Refusal(401, "an API key is required: send `Authorization: Bearer <key>`", CHALLENGE)
INVALID = Refusal(401, "the API key is not valid, or was revoked", CHALLENGE)


def client_bucket(client: tuple[str, int] | None) -> str:
    """What tries are counted under for a client: its address, or its /64 network for IPv6."""
    host = client[0] if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP address (a test client, a Unix socket): counted under its name
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Authenticator:
    """The key of a request, or the refusal to answer it with."""

    def __init__(self, keys: KeyStore, per_address: int, per_key: int, window: float):
        self.keys = keys
        self.by_address = RateLimiter(per_address, window)
        self.by_key = RateLimiter(per_key, window)
        self.window = window
        self._scrypt = anyio.CapacityLimiter(SCRYPT_AT_ONCE)

    async def authenticate(self, authorization: str, client: tuple[str, int] | None) -> ApiKey | Refusal:
        """Check the Authorization header's Bearer key of a request from `client` (host, port)."""
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return MISSING
        presented = self.keys.presented(token)
        if presented is not None and self.keys.remembers(presented):
            active = await run_in_threadpool(self.keys.active, presented)
            return active.key if active else INVALID
        refused = self._try(self.by_address, client_bucket(client), "client address")
        if refused is None and presented is not None:
            refused = self._try(self.by_key, presented.key_id, "key id")
        if refused is not None:
            return refused
        if presented is None:
            return INVALID
        active = await run_in_threadpool(self.keys.active, presented)
        if active is None:
            return INVALID
        try:
            with anyio.fail_after(SCRYPT_WAIT):
                await self._scrypt.acquire()
        except TimeoutError:
            self._refund(client, presented)  # not checked: neither a failure nor a success
            return Refusal(503, "too many API keys are being checked at once; retry in 1 s", {"Retry-After": "1"})
        try:
            confirmed = await run_in_threadpool(self.keys.confirm, presented, active)
        finally:
            self._scrypt.release()
        if not confirmed:
            return INVALID
        self._refund(client, presented)
        return active.key

    def _refund(self, client: tuple[str, int] | None, presented: Presented) -> None:
        """Take a try back off both counts: counted before its check, it turned out no failure."""
        self.by_address.refund(client_bucket(client))
        self.by_key.refund(presented.key_id)

    def _try(self, limiter: RateLimiter, name: str, kind: str) -> Refusal | None:
        """Count a try of `name`; the 429 when it is over its limit."""
        allowance = limiter.hit(name)
        if allowance.allowed:
            return None
        return Refusal(429, f"too many failed authentications: at most {allowance.limit} per {self.window:g} s per "
                            f"{kind}; retry in {allowance.retry_after} s", {"Retry-After": allowance.retry_after})

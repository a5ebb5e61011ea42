"""The REST API's bearer keys: created and revoked with `bspk api-keys`, stored hashed, each scoped
to one brand; a brand may have several active at once (one per integration, or two during a
rotation).

A key reads `bspk_<key id>_<secret>`. The key id is public (it is listed, and names the key in the
client change log); the secret is shown once, when the key is created, and only its scrypt hash
(random salt, parameters stored with it) is kept. A verified key is remembered in the process as
an HMAC under a per-process pepper, so scrypt runs once per key and process, not per request;
revocation still takes effect on the next request, as every request reads the key's row. Which
checks a request may cost, and how many at a time, `auth` decides.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from bspk_pipelines.warehouse.apply import now
from bspk_pipelines.warehouse.platform import api_keys
from bspk_pipelines.warehouse.engine import writing

PREFIX = "bspk"
KEY = re.compile(r"^bspk_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
# scrypt's interactive-login parameters: about 16 MiB and a few tens of milliseconds per check.
SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class ApiKey:
    """The key a request presented, once verified: whose it is."""

    key_id: str
    brand: str
    name: str


@dataclass(frozen=True)
class ActiveKey:
    """A key's row, as a check needs it: whose it is and its stored hash."""

    key: ApiKey
    key_hash: str


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """`scrypt$n$r$p$salt$hash`, so the parameters can be raised later without losing old keys."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode("utf-8"), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def secret_matches(secret: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        actual = hashlib.scrypt(secret.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))


def create_key(engine: sa.Engine, brand: str, name: str) -> tuple[str, str]:
    """A new key for `brand`; returns (key id, the key). The key is not stored and cannot be shown again."""
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with writing(engine) as conn:
        conn.execute(api_keys.insert().values(brand=brand, key_id=key_id, key_hash=hash_secret(secret), name=name,
                                              created_at=now()))
    return key_id, f"{PREFIX}_{key_id}_{secret}"


def list_keys(conn: sa.Connection, brand: str) -> list[KeyInfo]:
    k = api_keys.c
    rows = conn.execute(sa.select(k.key_id, k.name, k.created_at, k.revoked_at).where(k.brand == brand).order_by(k.id))
    return [KeyInfo(*row) for row in rows]


def revoke_key(engine: sa.Engine, brand: str, key_id: str) -> bool:
    """Revoke one of the brand's keys now; False if the brand has no such active key."""
    k = api_keys.c
    with writing(engine) as conn:
        return conn.execute(api_keys.update().where(k.brand == brand, k.key_id == key_id, k.revoked_at.is_(None))
                            .values(revoked_at=now())).rowcount == 1


@dataclass(frozen=True)
class Presented:
    """A bearer token shaped like a key, not yet checked: the key id and secret it names, and its
    mark (its HMAC under the store's pepper), by which a key verified before is recognised."""

    key_id: str
    secret: str
    mark: bytes


class KeyStore:
    """Checks presented keys against the warehouse, remembering the ones it has verified.

    A check is in steps, so that the caller can decide between them what a check may cost:
    `presented` and `remembers` are free, `active` is one indexed read, `confirm` is scrypt."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._pepper = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}

    def presented(self, token: str) -> Presented | None:
        """The key `token` would be, or None when it is not shaped like one."""
        m = KEY.match(token)
        if not m:
            return None
        return Presented(m["key_id"], m["secret"], hmac.new(self._pepper, token.encode("utf-8"), hashlib.sha256).digest())

    def remembers(self, presented: Presented) -> bool:
        """Whether this very key was verified before in this process (its secret need not be checked again)."""
        known = self._verified.get(presented.key_id)
        return known is not None and hmac.compare_digest(known, presented.mark)

    def active(self, presented: Presented) -> ActiveKey | None:
        """The key's row, unless it is unknown or revoked; read on every request, so a revocation
        takes effect on the next one."""
        k = api_keys.c
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(k.brand, k.name, k.key_hash).where(
                k.key_id == presented.key_id, k.revoked_at.is_(None))).first()
        return None if row is None else ActiveKey(ApiKey(presented.key_id, row.brand, row.name), row.key_hash)

    def confirm(self, presented: Presented, active: ActiveKey) -> bool:
        """Whether the secret is the key's (scrypt), remembering the key when it is."""
        if not secret_matches(presented.secret, active.key_hash):
            return False
        self._verified[presented.key_id] = presented.mark
        return True

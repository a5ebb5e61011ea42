"""Signing secrets at rest: the `whsec_` secret of an endpoint made through the API is stored
as a Fernet token (`cryptography`: AES-128-CBC with HMAC-SHA256), never in clear.

The deployment gives one or more keys, newest first (MultiFernet): the newest encrypts, any of
them decrypts. A key is rotated by putting a new one in front, running `reencrypt_secrets`
(`bspk webhooks rotate-key`) and then removing the old one. Rows stored in clear by versions
before this one (they start with `whsec_`, which no Fernet token does) are read as they are
until that command encrypts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bspk_pipelines.warehouse.platform import webhook_endpoints
from bspk_pipelines.warehouse.engine import writing

CLEAR_PREFIX = "whsec_"


class UnreadableSecret(ValueError):
    """A stored secret none of the keys decrypts: it was encrypted under a key no longer given."""


class SecretBox:
    """Encrypts signing secrets for storage and decrypts them for signing, with the deployment's
    Fernet keys (newest first)."""

    def __init__(self, keys: Sequence[str]):
        fernets = []
        for n, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key))
            except ValueError:
                raise ValueError(f"key {n} of {len(keys)} is not a Fernet key (32 url-safe base64-encoded bytes)") from None
        self._keys = MultiFernet(fernets)

    def encrypt(self, secret: str) -> str:
        return self._keys.encrypt(secret.encode()).decode("ascii")

    def decrypt(self, stored: str) -> str:
        if stored.startswith(CLEAR_PREFIX):
            return stored
        try:
            return self._keys.decrypt(stored.encode("ascii")).decode()
        except (InvalidToken, UnicodeEncodeError):
            raise UnreadableSecret("none of the keys decrypts the stored secret") from None

    def reencrypt(self, stored: str) -> str:
        """The stored secret encrypted under the newest key (a secret stored in clear: encrypted)."""
        return self.encrypt(self.decrypt(stored))


class Reencrypted(NamedTuple):
    secrets: int  # stored secrets now under the newest key
    were_clear: int  # of them, stored in clear before


def reencrypt_secrets(engine: sa.Engine, box: SecretBox) -> Reencrypted:
    """Every stored secret encrypted again under the newest key, in one transaction: if one
    cannot be decrypted, nothing changes and UnreadableSecret names its endpoint."""
    e = webhook_endpoints
    with writing(engine) as conn:
        rows = conn.execute(sa.select(e.c.id, e.c.brand, e.c.secret).where(e.c.secret.is_not(None))
                            .order_by(e.c.id).with_for_update()).all()
        for row in rows:
            try:
                secret = box.reencrypt(row.secret)
            except UnreadableSecret:
                raise UnreadableSecret(f"{row.brand}'s endpoint {row.id}: none of the keys decrypts its secret; "
                                       "give the key it was encrypted under too") from None
            conn.execute(e.update().where(e.c.id == row.id).values(secret=secret))
    return Reencrypted(len(rows), sum(row.secret.startswith(CLEAR_PREFIX) for row in rows))

"""Signing (Standard Webhooks): endpoints' secrets read and parsed, the body serialised, the
headers signed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Sequence

from bspk_pipelines.outbound.encryption import SecretBox, UnreadableSecret
from bspk_pipelines.settings import ENCRYPTION_KEYS, brand_secret


class SecretError(ValueError):
    """An endpoint's secret is missing or not a `whsec_` secret."""


def parse_secrets(text: str | None, where: str) -> list[tuple[str, bytes]]:
    """`whsec_...` secrets separated by whitespace, as (secret, HMAC key) pairs."""
    secrets = (text or "").split()
    if not secrets:
        raise SecretError(f"no signing secret: {where} is empty or not set")
    keys = []
    for secret in secrets:
        try:
            key = base64.b64decode(secret.removeprefix("whsec_") + "==", validate=False)
        except (binascii.Error, ValueError) as e:
            raise SecretError(f"{where}: a secret is not base64 after whsec_ ({e})") from None
        if not secret.startswith("whsec_") or not key:
            raise SecretError(f"{where}: secrets are whsec_ followed by base64 bytes")
        keys.append((secret, key))
    return keys


def endpoint_secrets(origin: str, secret_env: str | None, stored: str | None, box: SecretBox) -> list[tuple[str, bytes]]:
    """Config endpoints read their secret(s) from the environment, API endpoints from their row
    (`stored`, encrypted)."""
    if origin == "config":
        if not secret_env:
            raise SecretError("config endpoint without secret_env")
        return parse_secrets(brand_secret(secret_env), f"environment variable {secret_env}")
    try:
        secret = box.decrypt(stored) if stored else None
    except UnreadableSecret:
        raise SecretError(f"the endpoint's secret cannot be decrypted with the keys in {ENCRYPTION_KEYS}: "
                          "give the key it was encrypted under too") from None
    return parse_secrets(secret, "the endpoint's secret")


def envelope(event_name: str, payload: str) -> bytes:
    """The request body: `{"event_name": ..., "object": ...}`, serialised once."""
    return json.dumps({"event_name": event_name, "object": json.loads(payload)},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(message_id: str, timestamp: int, body: bytes, keys: Sequence[bytes]) -> str:
    """The `webhook-signature` header: one `v1,<signature>` per key, space-separated."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in keys
    )


def signed_headers(message_id: str, body: bytes, secrets: Sequence[tuple[str, bytes]], timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(message_id, timestamp, body, [k for _, k in secrets]),
        "X-Bspk-Secret": secrets[0][0],
    }

"""The webhook settings a deployment gives in its environment, read when a process starts.

- BSPK_WEBHOOK_ENCRYPTION_KEYS (required by `bspk serve` and by every deliverer): Fernet keys,
  newest first, separated by spaces or commas, that encrypt the signing secrets stored for
  endpoints made through the API (`outbound.encryption`).
- BSPK_WEBHOOK_ALLOW_NETWORKS (optional, default none): networks receivers may be on although
  they are internal, e.g. `127.0.0.0/8` for a receiver on this machine (`outbound.targets`).

A value missing or wrong is a `SettingError` whose message is one line naming the variable and
what to put there; the commands print it as it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from bspk_pipelines.outbound.encryption import SecretBox
from bspk_pipelines.outbound.targets import TargetPolicy

ENCRYPTION_KEYS = "BSPK_WEBHOOK_ENCRYPTION_KEYS"
ALLOW_NETWORKS = "BSPK_WEBHOOK_ALLOW_NETWORKS"
MAKE_KEY = """python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"""


class SettingError(ValueError):
    """A webhook setting of the deployment is missing or wrong."""


@dataclass(frozen=True)
class WebhookSettings:
    """The keys for stored secrets and the networks receivers may be on."""

    box: SecretBox
    targets: TargetPolicy

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WebhookSettings:
        keys = environ.get(ENCRYPTION_KEYS, "").replace(",", " ").split()
        if not keys:
            raise SettingError(f"{ENCRYPTION_KEYS} is not set: it holds the Fernet key that encrypts stored webhook "
                               f"secrets; make one with {MAKE_KEY}")
        try:
            box = SecretBox(keys)
        except ValueError as e:
            raise SettingError(f"{ENCRYPTION_KEYS}: {e}; make one with {MAKE_KEY}") from None
        try:
            targets = TargetPolicy.parse(environ.get(ALLOW_NETWORKS, ""))
        except ValueError as e:
            raise SettingError(f"{ALLOW_NETWORKS}: {e}") from None
        return cls(box, targets)

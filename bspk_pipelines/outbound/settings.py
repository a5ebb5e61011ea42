"""The webhook security settings as the outbound code uses them: the deployment's Fernet keys
as a `SecretBox` (`outbound.encryption`) and its allowed networks as a `TargetPolicy`
(`outbound.targets`).

`bspk_pipelines.settings` reads the variables (BSPK_WEBHOOK_ENCRYPTION_KEYS,
BSPK_WEBHOOK_ALLOW_NETWORKS); what only these classes can check (each key a Fernet key, each
network a network) is checked here, with the same one-line `SettingError` naming the variable.
"""

from __future__ import annotations

from dataclasses import dataclass

from bspk_pipelines.outbound.encryption import SecretBox
from bspk_pipelines.outbound.targets import TargetPolicy
from bspk_pipelines.settings import ALLOW_NETWORKS, ENCRYPTION_KEYS, MAKE_KEY, SettingError, WebhookSecurity


@dataclass(frozen=True)
class WebhookSettings:
    """The keys for stored secrets and the networks receivers may be on."""

    box: SecretBox
    targets: TargetPolicy

    @classmethod
    def from_env(cls) -> WebhookSettings:
        security = WebhookSecurity.from_env()
        try:
            box = SecretBox(security.encryption_keys)
        except ValueError as e:
            raise SettingError(f"{ENCRYPTION_KEYS}: {e}; make one with {MAKE_KEY}") from None
        try:
            targets = TargetPolicy.parse(security.allow_networks)
        except ValueError as e:
            raise SettingError(f"{ALLOW_NETWORKS}: {e}") from None
        return cls(box, targets)

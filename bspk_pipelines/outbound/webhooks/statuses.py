"""The statuses of a webhook delivery and the clock type shared by the webhook modules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

PENDING, DELIVERED, REJECTED, DEAD = "pending", "delivered", "rejected", "dead"
DEAD_LETTER_STATUSES = (DEAD, REJECTED)

Clock = Callable[[], datetime]

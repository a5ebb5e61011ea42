"""Talking to a shop's GraphQL Admin API: one query at a time, within Shopify's limits.

Shopify limits an app by a leaky bucket of query cost (`extensions.cost.throttleStatus`): a query
the bucket cannot hold is answered `THROTTLED`, and we wait until it can instead of failing
(`(requested - available) / restoreRate` seconds). HTTP 429 and 5xx answers and timeouts are
retried with exponential back-off. A refused token is one clear failure: no retry fixes it.
Facts and their sources: shared/reference/shopify.md sections 1.1, 1.2 and 2.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from datetime import datetime
from typing import Any

import requests

from bspk_pipelines.model.shopify import ShopifySource
from bspk_pipelines.settings import brand_secret

log = logging.getLogger(__name__)

# Tries of one query against 429, 5xx and timeouts before the pull gives up.
TRIES = 6
BACKOFF_SECONDS, MAX_BACKOFF_SECONDS = 1.0, 30.0
# Waits on THROTTLED for one query: past this the bucket is not refilling and something is wrong.
MAX_THROTTLE_WAITS = 50
TIMEOUT_SECONDS = 30


class ShopifyError(Exception):
    """A pull that cannot go on; the message says, on one line, what happened and what to do."""


@dataclass
class Throttle:
    """What the bucket said last, and how long the pull has waited on it."""

    available: float | None = None
    restore_rate: float | None = None
    waits: int = 0
    waited_seconds: float = 0.0


@dataclass
class Client:
    """A session with one shop's Admin API. `sleep` is time.sleep unless a test gives another."""

    source: ShopifySource
    source_id: str
    token: str
    session: requests.Session = field(default_factory=requests.Session)
    sleep: Callable[[float], None] = time.sleep
    throttle: Throttle = field(default_factory=Throttle)
    # The shop's clock: the Date header of its last answer.
    server_time: datetime | None = None
    _deprecations: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, source_id: str, source: ShopifySource) -> Client:
        token = (brand_secret(source.token_env) or "").strip()
        if not token:
            raise ShopifyError(f"{source_id}: set {source.token_env} to {source.shop}'s Admin API access token "
                               "(Settings > Apps > Develop apps in the shop's admin)")
        return cls(source, source_id, token)

    def query(self, document: str, variables: dict[str, Any] | None = None, cost: int | None = None) -> dict[str, Any]:
        """The `data` of the query's answer. With the query's requested `cost`, waits first when
        the bucket is known to be too low for it, as Shopify advises."""
        self._wait_for(cost)
        attempt = throttled = 0
        while True:
            answer = self._post(document, variables, attempt + 1)
            if answer is None:  # a failed try, waited for: one of TRIES (`_back_off` gives up after the last)
                attempt += 1
                continue
            codes = [(e.get("extensions") or {}).get("code") for e in answer.get("errors") or [] if isinstance(e, dict)]
            if "THROTTLED" in codes:  # no failure: the bucket refills, so each wait is no try
                throttled += 1
                if throttled > MAX_THROTTLE_WAITS:
                    raise ShopifyError(f"{self.source_id}: {self.source.shop} throttled one query {throttled - 1} times "
                                       "in a row: its bucket does not refill (another app using it?); try again later")
                self._wait_for(answer.get("extensions", {}).get("cost", {}).get("requestedQueryCost") or cost, True)
                continue
            if answer.get("errors"):
                raise ShopifyError(f"{self.source_id}: {self.source.shop} refused the query: {_messages(answer['errors'])}")
            return answer.get("data") or {}

    def _post(self, document: str, variables: dict[str, Any] | None, attempt: int) -> dict[str, Any] | None:
        """The answer's JSON, or None after waiting when the try should be made again."""
        try:
            r = self.session.post(self.source.url, json={"query": document, "variables": variables or {}},
                                  headers={"X-Shopify-Access-Token": self.token, "Content-Type": "application/json"},
                                  timeout=TIMEOUT_SECONDS)
        except (requests.Timeout, requests.ConnectionError) as e:
            self._back_off(attempt, f"{type(e).__name__}")
            return None
        self._note(r)
        if r.status_code in (401, 403):
            raise ShopifyError(f"{self.source_id}: {self.source.shop} refused the access token in "
                               f"{self.source.token_env} (HTTP {r.status_code}): it is expired, revoked or lacks a scope; "
                               f"make a new one in the shop's admin and set {self.source.token_env}")
        if r.status_code == 404:
            raise ShopifyError(f"{self.source_id}: no Admin API at {self.source.url} (HTTP 404): check shop and "
                               f"api_version ({self.source.api_version}) in the brand file")
        if r.status_code == 429 or r.status_code >= 500:
            self._back_off(attempt, f"HTTP {r.status_code}", _retry_after(r))
            return None
        try:
            answer = r.json()
        except ValueError:
            self._back_off(attempt, f"HTTP {r.status_code} with a body that is not JSON")
            return None
        if not isinstance(answer, dict):
            self._back_off(attempt, f"HTTP {r.status_code} with JSON that is no GraphQL answer")
            return None
        cost = answer.get("extensions", {}).get("cost", {}).get("throttleStatus")
        if cost:
            self.throttle.available = float(cost.get("currentlyAvailable", 0))
            self.throttle.restore_rate = float(cost.get("restoreRate") or 0) or None
        return answer

    def _note(self, r: requests.Response) -> None:
        """The shop's clock, and deprecated fields the query uses (logged once each)."""
        if r.headers.get("Date"):
            try:
                self.server_time = parsedate_to_datetime(r.headers["Date"])
            except (TypeError, ValueError):
                pass
        reason = r.headers.get("X-Shopify-API-Deprecated-Reason")
        if reason and reason not in self._deprecations:
            self._deprecations.add(reason)
            log.warning("%s: %s says the query uses deprecated fields of API %s: %s", self.source_id,
                        self.source.shop, self.source.api_version, reason)

    def _wait_for(self, cost: float | None, throttled: bool = False) -> None:
        """Sleep until the bucket holds `cost`, at its restore rate (a throttled query waits at least a moment)."""
        t = self.throttle
        if cost is None or t.available is None or not t.restore_rate:
            if throttled:
                self._sleep_throttled(1.0)
            return
        missing = float(cost) - t.available
        if missing > 0 or throttled:
            self._sleep_throttled(max(missing / t.restore_rate, 0.1))
            t.available = float(cost)

    def _sleep_throttled(self, seconds: float) -> None:
        self.throttle.waits += 1
        self.throttle.waited_seconds += seconds
        self.sleep(seconds)

    def _back_off(self, attempt: int, why: str, retry_after: float | None = None) -> None:
        if attempt >= TRIES:
            raise ShopifyError(f"{self.source_id}: {self.source.shop} answered {why} {TRIES} times in a row; nothing "
                               "was applied: the next pull starts from the same place")
        seconds = retry_after if retry_after is not None else min(BACKOFF_SECONDS * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
        log.info("%s: %s answered %s; trying again in %.1f s", self.source_id, self.source.shop, why, seconds)
        self.sleep(seconds)


def _retry_after(r: requests.Response) -> float | None:
    try:
        return min(float(r.headers["Retry-After"]), MAX_BACKOFF_SECONDS)
    except (KeyError, ValueError):
        return None


def _messages(errors: Any) -> str:
    if isinstance(errors, str):
        return errors[:300]
    return "; ".join(str(e.get("message", e) if isinstance(e, dict) else e) for e in errors)[:300]

"""Shopify's webhooks, taken for near real time: verified, taken once, and turned into a pull.

A webhook is only a signal. Its payload is Shopify's REST shape, not the GraphQL nodes the
built-in mapping reads, and Shopify may drop or reorder deliveries; so a create or update of a
customer, product or order asks for an incremental pull of that object (`Pulls`), which lands a
delivery like any other and misses nothing the webhooks missed. A customer's deletion, which no
pull can see, is applied from the webhook itself, in the transaction that takes it, once the
shop's API confirms the customer is gone (a signed body sent again under another topic deletes
nothing).

Order of work on a request (shared/reference/shopify.md section 5): the signature over the raw body
first (`X-Shopify-Hmac-Sha256`, base64 HMAC-SHA256 with the app's secret, compared in constant
time; during a rotation the secret variable holds the new and the old secret separated by a
space), then `X-Shopify-Webhook-Id` taken once (Shopify delivers at least once), then the answer,
well inside Shopify's 5 s, the pull running after it in the background. Until the signature is
verified every refusal is the same 401, so an unsigned caller learns no brand, shop or setting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa

from bspk_pipelines.engagement.clients import ClientError, delete_client
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.shopify import OBJECTS, ShopifySource
from bspk_pipelines.settings import brand_secret
from bspk_pipelines.shopify.client import Client, ShopifyError
from bspk_pipelines.shopify.pull import SETTLE, pull_source
from bspk_pipelines.warehouse.engine import insert_ignoring_conflicts, writing
from bspk_pipelines.warehouse.schema import shopify_webhooks

log = logging.getLogger("bspk.shopify")

# Shopify's webhook payloads are single resources: a body past this is not one.
MAX_BODY_BYTES = 2 << 20
DELETIONS = ("customers/delete",)


class Refused(Exception):
    """A webhook not taken: its HTTP status and one line saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


UNVERIFIED = Refused(401, "the X-Shopify-Hmac-Sha256 signature does not match the body with a secret of this "
                          "brand's shop")
# Sources whose webhooks came while their secret was not set: said once each in the log.
_unset_said: set[tuple[str, str]] = set()


def verified_source(brand: Brand | None, shop_domain: str, body: bytes, signature: str) -> tuple[str, ShopifySource]:
    """The brand's Shopify source for the shop that sent the webhook, once `signature` is the
    body's HMAC with one of its secrets; UNVERIFIED otherwise, whatever the reason (no such
    brand or shop, no secret set, another signature), the reason logged."""
    found = [(sid, s) for sid, s in (brand.sources.items() if brand else ())
             if isinstance(s, ShopifySource) and s.shop == shop_domain.strip().lower()]
    if not found:
        log.info("a webhook for %r from the shop %r matches no Shopify source", brand and brand.brand, shop_domain[:100])
        raise UNVERIFIED
    [(source_id, source)] = found
    secrets = (brand_secret(source.webhook_secret_env) or "").split() if source.webhook_secret_env else []
    if not secrets:
        if (brand.brand, source_id) not in _unset_said:
            _unset_said.add((brand.brand, source_id))
            log.error("%s: %s: webhooks come but %s is not set: they cannot be verified, so they are refused",
                      brand.brand, source_id, source.webhook_secret_env or "webhook_secret_env")
        raise UNVERIFIED
    given = signature.strip().encode()
    if not any(hmac.compare_digest(base64.b64encode(hmac.new(s.encode(), body, hashlib.sha256).digest()), given)
               for s in secrets):
        raise UNVERIFIED
    return source_id, source


@dataclass(frozen=True)
class Received:
    """A verified webhook, and what it asks for."""

    brand: str
    source: str
    webhook_id: str
    topic: str
    resource: str | None
    triggered_at: str | None
    # When it came (time.monotonic()): the change it tells of is at most this recent.
    at: float = field(default_factory=time.monotonic)

    @property
    def action(self) -> str:
        if self.topic in DELETIONS:
            return f"delete {self.topic.split('/')[0]}"
        if self.topic.endswith("/delete"):
            return "none"  # no pull sees a deletion, and the platform has no other to apply
        obj = self.topic.split("/")[0]
        return f"pull {obj}" if obj in OBJECTS else "none"


def received(brand: str, source: str, headers, body: bytes) -> Received:
    """The webhook a verified request carries; Refused (400) when its headers or body are not Shopify's."""
    webhook_id, topic = headers.get("x-shopify-webhook-id", "").strip(), headers.get("x-shopify-topic", "").strip()
    if not webhook_id or not topic:
        raise Refused(400, "a Shopify webhook carries X-Shopify-Webhook-Id and X-Shopify-Topic")
    try:
        payload = json.loads(body)
    except ValueError:
        raise Refused(400, "the body is not JSON") from None
    resource = payload.get("id") if isinstance(payload, dict) else None
    return Received(brand, source, webhook_id[:200], topic[:100], None if resource is None else str(resource)[:100],
                    headers.get("x-shopify-triggered-at"))


GONE = "query Gone($id: ID!) { node(id: $id) { id } }"


def take_once(engine: sa.Engine, hook: Received, source: ShopifySource) -> tuple[bool, str]:
    """Record the webhook, and apply a customer's deletion with it in one transaction; whether it
    was new (False: Shopify sent it again), and what was done. A deletion the shop's API does not
    confirm is recorded as done with nothing; one the API cannot be asked about is Refused (503),
    so that Shopify sends it again."""
    action = hook.action
    if action.startswith("delete ") and hook.resource:
        try:
            still = Client.of(hook.source, source).query(GONE, {"id": f"gid://shopify/Customer/{hook.resource}"}, cost=1)
        except ShopifyError as e:
            log.error("%s: %s: customers/delete %s not confirmed: %s", hook.brand, hook.source, hook.resource, e)
            raise Refused(503, "the deletion could not be confirmed with the shop's API; send it again") from None
        if still.get("node"):
            action = "none: the customer is still in the shop"
    with writing(engine) as conn:
        new = insert_ignoring_conflicts(conn, shopify_webhooks, {
            "brand": hook.brand, "source": hook.source, "webhook_id": hook.webhook_id, "topic": hook.topic,
            "resource": hook.resource, "triggered_at": hook.triggered_at, "action": action,
            "received_at": datetime.now(timezone.utc).replace(tzinfo=None)})
        if new and action.startswith("delete "):
            _delete(conn, hook)
    return new, action


def _delete(conn: sa.Connection, hook: Received) -> None:
    """A customer deleted in Shopify: its client is marked deleted on the platform (kept, and
    `client.deleted` goes out), as a deletion the brand's system made."""
    try:
        delete_client(conn, hook.brand, hook.resource, "import", f"shopify:{hook.source}",
                      datetime.now(timezone.utc).replace(tzinfo=None))
    except ClientError:
        log.info("%s: %s: customer %s deleted in Shopify was never applied here", hook.brand, hook.source, hook.resource)


class Pulls:
    """The pulls webhooks ask for, done one at a time in a background thread: requests for one
    source that wait together make one pull. `close` when the service stops."""

    def __init__(self, engine: sa.Engine, layout: Layout, brands: dict[str, Brand]):
        self.engine, self.layout, self.brands = engine, layout, brands
        self._work: queue.Queue[Received | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ask(self, hook: Received) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shopify-webhook-pulls", daemon=True)
                self._thread.start()
        self._work.put(hook)

    def close(self) -> None:
        if self._thread is not None:
            self._work.put(None)
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while (hook := self._work.get()) is not None:
            batch = [hook]
            while not self._work.empty():
                more = self._work.get()
                if more is None:
                    self._work.put(None)
                    break
                batch.append(more)
            # A pull's window ends SETTLE before the shop's clock: the change a webhook tells of is
            # in it once that long has passed (and a second more, as the shop's clock is in seconds).
            time.sleep(max(0.0, max(h.at for h in batch) + SETTLE.total_seconds() + 1 - time.monotonic()))
            for (brand, source), asked in _pulls_of(batch).items():
                objects = [o for o in asked if o in self.brands[brand].sources[source].objects]
                if objects:
                    self._do(lambda: pull_source(self.engine, self.layout, self.brands[brand], source, objects=objects),
                             f"{brand}: {source}: pull of {', '.join(objects)}")

    def _do(self, work, what: str) -> None:
        try:
            work()
        except ShopifyError as e:
            log.error("%s failed: %s", what, e)
        except Exception:
            log.exception("%s failed", what)


def _pulls_of(batch: list[Received]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for h in batch:
        if h.action.startswith("pull "):
            objects = out.setdefault((h.brand, h.source), [])
            if h.action[5:] not in objects:
                objects.append(h.action[5:])
    return out

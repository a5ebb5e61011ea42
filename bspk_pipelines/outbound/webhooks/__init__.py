"""Webhook delivery: from the outbox (`webhook_events`) to the brands' receivers, signed, in order,
retried for 96 hours, never sent twice at once.

The steps, each run by `deliver` (a sensor tick calls it):

1. `sync_endpoints`: the endpoints in the brand's YAML become rows of `webhook_endpoints`
   (origin `config`). Endpoints created through the Platform API (origin `api`) are never touched,
   and a `disabled_reason` (a 410 Gone) stays until `enable_endpoint` clears it.
2. `fan_out`: each outbox event not yet fanned out gets one `webhook_deliveries` row per endpoint
   that is enabled and subscribed to it, in one transaction; the event is then marked fanned out.
   An endpoint subscribed to a `shopper.*` name receives the `client.*` event of the same kind and
   the envelope carries the name it subscribed with (worked out when the delivery is sent, from
   the endpoint's subscriptions, as the deliveries table records no name).
3. Sending: a delivery is due when it is pending, its time has come, its endpoint is enabled, and
   it is the head of its queue: no pending delivery to the same endpoint with the same ordering
   key (one client's events) has a lower event id. So a client's events reach each receiver in the
   order they were written, and a failing event holds back the later ones of that client only,
   until it is delivered, rejected or dead. Due deliveries are claimed with a lease (their
   `next_attempt_at` moved a minute ahead by a compare-and-set update), so two deliverers running
   at once never send the same delivery; then they are POSTed from a thread pool, through a
   session that connects only to addresses the deployment's `TargetPolicy` permits (no internal
   networks unless allowed; `outbound.targets`), whichever origin the endpoint has.

Signing follows Standard Webhooks (standardwebhooks.com): `webhook-id` is the event's message id,
the same on every retry, so receivers de-duplicate on it; `webhook-timestamp` is the wall-clock
time of the send (receivers reject stale timestamps, so it is never the injected clock);
`webhook-signature` carries `v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{body}` for each
secret the endpoint has (two during a key rotation). `X-Bspk-Secret` carries the first secret,
as the platform's documentation describes. The body is serialised once and signed as sent.
Config endpoints' secrets come from the environment; API endpoints' are stored encrypted and
decrypted for each send (`outbound.encryption`).

Outcomes: any 2xx is delivered. 422 is rejected and not retried. 410 Gone disables the endpoint
(`disabled_reason`): its deliveries stay pending, parked, without using up their retries, until
`enable_endpoint`. Anything else (3xx, other 4xx, 5xx, a timeout after 5 s, a refused connection,
a receiver on a refused network, a missing or undecryptable secret) is retried after
`backoff(attempts)` (10 s doubling up to 12 h, ±10 % jitter; 19 retries take about 95 h) or after
the receiver's `Retry-After` if longer. After the 20th attempt, or 96 h after the first, the
delivery is dead. Dead and rejected deliveries are the dead letters:
`dead_letters` lists them, `replay` sends them again with the same webhook-id.

Ordering relies on the outbox writers: events of one key are written by transactions that lock
the same client row, so their ids follow their commit order. A replayed dead letter goes out after
the later events of its client that were already delivered; receivers should compare the
object's `updated_at` when that matters.

Time comes from `clock` (naive UTC), injectable so tests run the 96-hour window in seconds;
`deliver` never sleeps, it returns when nothing is due or its time budget is spent. Its
settings are the deployment's (`outbound.settings`, from `bspk_pipelines.settings`) unless given.

The modules: `fanout` (steps 1 and 2), `signing`, `delivery` (step 3, the retry schedule and
`deliver`), `admin` (counts, endpoints, dead letters, `replay`, `enable_endpoint`); `statuses`
holds the delivery statuses and the clock type they share.
"""

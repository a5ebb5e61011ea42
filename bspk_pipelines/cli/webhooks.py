"""`bspk webhooks`: brands' webhooks delivered, inspected, replayed and re-enabled; their stored
secrets encrypted again under the newest key; or received locally."""

from __future__ import annotations

import argparse
import sys

from bspk_pipelines.cli.environment import chosen_brands, deployment, warehouse_engine, webhook_settings
from bspk_pipelines.demo.receiver import Receiver, describe
from bspk_pipelines.outbound.encryption import UnreadableSecret, reencrypt_secrets
from bspk_pipelines.outbound.webhooks.admin import dead_letters, delivery_counts, enable_endpoint, endpoints, replay
from bspk_pipelines.outbound.webhooks.delivery import deliver
from bspk_pipelines.settings import brand_secret


def run(args: argparse.Namespace) -> int:
    """Deliver, inspect, replay and re-enable brands' webhooks; re-encrypt their stored secrets
    under the newest key; or receive them locally."""
    if args.action == "receive":
        return _receive(args)
    if args.action == "rotate-key":
        return _rotate_key()
    webhooks = webhook_settings() if args.action == "deliver" else None
    settings = deployment()
    brands = chosen_brands(settings, args.brand)
    engine = warehouse_engine(settings)
    if args.action == "deliver":
        print(deliver(engine, brands, budget_seconds=args.budget, settings=webhooks).summary())
    elif args.action == "list":
        with engine.connect() as conn:
            for brand in brands:
                print(f"{brand.brand}:")
                for e in endpoints(conn, brand.brand):
                    state = "disabled: " + e.disabled_reason if e.disabled_reason else "enabled" if e.is_enabled else "off"
                    print(f"  endpoint {e.id} {e.target_url} ({state}) events: {', '.join(e.events)}")
                print("  deliveries: " + ", ".join(f"{k} {v}" for k, v in delivery_counts(conn, brand.brand).items()))
                for d in dead_letters(conn, brand.brand):
                    print(f"  {d.status} {d.message_id} {d.event_name} -> endpoint {d.endpoint_id} after {d.attempts} "
                          f"attempt(s): {d.last_error}")
    elif args.action == "replay":
        for brand in brands:
            n = replay(engine, brand.brand, endpoint_id=args.endpoint, message_id=args.event)
            print(f"{brand.brand}: {n} dead-lettered deliver{'y' if n == 1 else 'ies'} queued again")
    elif args.action == "enable":
        if args.endpoint is None:
            print("enable needs --endpoint (see `bspk webhooks list`)", file=sys.stderr)
            return 2
        for brand in brands:
            done = enable_endpoint(engine, brand.brand, args.endpoint)
            print(f"{brand.brand}: endpoint {args.endpoint} " + ("enabled again" if done else "not found"))
    return 0


def _rotate_key() -> int:
    """Every stored webhook secret encrypted again under the newest key, or nothing changed."""
    box = webhook_settings().box
    try:
        done = reencrypt_secrets(warehouse_engine(deployment()), box)
    except UnreadableSecret as e:
        print(f"nothing changed: {e}", file=sys.stderr)
        return 1
    print(f"{done.secrets} secret(s) encrypted under the newest key ({done.were_clear} of them stored in clear before)")
    return 0


def _receive(args: argparse.Namespace) -> int:
    secret = brand_secret(args.secret_env)
    if not secret:
        print(f"set {args.secret_env} to the endpoint's whsec_ secret", file=sys.stderr)
        return 2
    receiver = Receiver(secret.split()[0], port=args.port, path=args.path, on_event=lambda e: print(describe(e), flush=True))
    print(f"receiving on {receiver.url}, verifying signatures with {args.secret_env}; Ctrl-C stops", flush=True)
    try:
        receiver.thread.join()
    except KeyboardInterrupt:
        receiver.stop()
    return 0

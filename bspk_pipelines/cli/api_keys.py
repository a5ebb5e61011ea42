"""`bspk api-keys`: a brand's API keys created, listed and revoked."""

from __future__ import annotations

import argparse
import sys

from bspk_pipelines.api import keys
from bspk_pipelines.cli.environment import chosen_brands, deployment, warehouse_engine


def run(args: argparse.Namespace) -> int:
    """Create, list and revoke a brand's API keys. `create` prints the key alone on stdout, once."""
    settings = deployment()
    brand = chosen_brands(settings, [args.brand])[0].brand
    engine = warehouse_engine(settings)
    if args.action == "create":
        if not args.name:
            print("create needs --name: what the key is for", file=sys.stderr)
            return 2
        key_id, key = keys.create_key(engine, brand, args.name)
        # The warehouse named, so a key made in another one than `bspk serve` reads is seen at once.
        where = engine.url.render_as_string(hide_password=True)
        print(f"{brand}: key {key_id} ({args.name}) created in {where}; it is shown this once, keep it secret:",
              file=sys.stderr)
        print(key)
    elif args.action == "list":
        with engine.connect() as conn:
            for k in keys.list_keys(conn, brand):
                state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
                print(f"{k.key_id}  {state:<24} created {k.created_at:%Y-%m-%d %H:%M}  {k.name}")
    elif args.action == "revoke":
        if not args.key_id:
            print("revoke needs --key-id (see `bspk api-keys list`)", file=sys.stderr)
            return 2
        done = keys.revoke_key(engine, brand, args.key_id)
        print(f"{brand}: key {args.key_id} " + ("revoked" if done else "not found among the active keys"))
        return 0 if done else 1
    return 0

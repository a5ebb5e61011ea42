"""Lune's shop, for the demo: the Shopify stand-in on 127.0.0.1:8470, filled with a small luxury
shop (customers, products with variants and images, four years of orders, three boutiques).

`bspk demo` starts it around its syncs; `python -m bspk_pipelines.demo.shop` serves it until
Ctrl-C, so that `make dev`'s schedule can pull it. `mappings/lune.yaml` points its source there.
"""

from __future__ import annotations

import signal
import sys
import time

from bspk_pipelines.demo.shopify_standin import ShopifyStandin
from bspk_pipelines.settings import brand_secret
from bspk_pipelines.shopify.pull import SETTLE

PORT = 8470
DOMAIN = "lune-paris.myshopify.com"
TOKEN_ENV = "LUNE_SHOPIFY_TOKEN"
SCOPES = ["read_customers", "read_products", "read_orders", "read_all_orders", "read_locations"]


def lune_shop(seed: int = 7) -> ShopifyStandin:
    """The shop, serving; OSError when its port is taken, KeyError when its token is not set."""
    token = brand_secret(TOKEN_ENV)
    if not token:
        raise KeyError(TOKEN_ENV)
    shop = ShopifyStandin(token, scopes=SCOPES, name="Lune Paris", domain=DOMAIN, currency="EUR",
                          timezone="Europe/Paris", port=PORT)
    shop.generate(customers=150, products=24, orders=400, lines_per_order=2, locations=3, seed=seed)
    return shop


def a_day_later(shop: ShopifyStandin) -> list[str]:
    """Customers edit their profiles in the shop: what changed, for the demo to say. Returns once
    the edits are older than a pull's settling time, so the next pull's window holds them."""
    changed = []
    table = shop.store.table("Customer")
    for n in list(table.ids())[:3]:
        gid, row = f"gid://shopify/Customer/{n}", table.get(n)
        shop.update_customer(gid, lastName=f"{row['lastName']}-Duval", tags=[*row["tags"], "vip"])
        changed.append(f"{row['firstName']} {row['lastName']}-Duval")
    time.sleep(SETTLE.total_seconds() + 1)
    return changed


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        shop = lune_shop()
    except (OSError, KeyError) as e:
        print(f"lune's shop cannot start: {e}", file=sys.stderr)
        return 1
    print(f"lune's shop (Shopify stand-in) on {shop.url}", flush=True)
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        shop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

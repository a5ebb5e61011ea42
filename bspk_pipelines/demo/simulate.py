"""Associates at work, for the demo: calls, messages, notes, appointments and a few client edits,
recorded through the same write API the platform uses (`engagement.activity`)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import sqlalchemy as sa

from bspk_pipelines.engagement.activity import CHANNELS, Platform
from bspk_pipelines.warehouse.platform import clients
from bspk_pipelines.warehouse.schema import ENTITY_TABLES

NOTES = ("Prefers silk and cashmere", "Birthday next month", "Asked about the new collection", "Size 38, fits small")
TITLES = ("Private fitting", "Collection preview", "Alteration pick-up", "Gift advice")


def simulate(platform: Platform, actions: int, seed: int = 11) -> Counter[str]:
    """`actions` random associate actions on the brand's known clients; what was done, by kind."""
    rng = random.Random(seed)
    with platform.engine.connect() as conn:
        associates = conn.execute(sa.select(ENTITY_TABLES["sales_associates"].c.sales_associate_ref).where(
            ENTITY_TABLES["sales_associates"].c.brand == platform.brand).order_by(sa.text("1"))).scalars().all()
        refs = conn.execute(sa.select(clients.c.shopper_ref).where(
            clients.c.brand == platform.brand, clients.c.deleted_at.is_(None)).order_by(clients.c.id)).scalars().all()
        products = conn.execute(sa.select(ENTITY_TABLES["products"].c.product_ref).where(
            ENTITY_TABLES["products"].c.brand == platform.brand).order_by(sa.text("1")).limit(50)).scalars().all()
    done: Counter[str] = Counter()
    if not associates or not refs:
        return done
    for associate in associates:
        platform.set_associate_profile(associate, username=associate.lower(), job_title=rng.choice(("Advisor", "Manager")),
                                       imessage_enabled=rng.random() < 0.5, wechat_enabled=rng.random() < 0.2)
    for _ in range(actions):
        associate, client = rng.choice(associates), rng.choice(refs)
        kind = rng.choices(("call", "message", "email", "note", "appointment", "reminder", "edit", "slice", "ideabook"),
                           weights=(20, 25, 10, 15, 8, 8, 8, 3, 3))[0]
        when = platform.clock() + timedelta(days=rng.randint(1, 30), hours=rng.randint(9, 18))
        if kind == "call":
            platform.log_call(associate, client)
        elif kind == "message":
            platform.send_message(associate, client, "Your order is ready for pick-up", rng.choice(CHANNELS))
        elif kind == "email":
            platform.send_email(associate, client, template_id="T-NEWS", template_name="New season")
        elif kind == "note":
            platform.write_note(associate, client, rng.choice(NOTES))
        elif kind == "appointment":
            platform.book_appointment(associate, client, rng.choice(TITLES), when, when + timedelta(hours=1))
        elif kind == "reminder":
            platform.set_reminder(associate, client, "Follow up", when)
        elif kind == "edit":
            if not platform.update_client(client, {"segment": rng.choice(("VIP", "Regular", "Prospect"))}, by=associate):
                continue
        elif kind == "slice":
            platform.create_slice(associate, "Picks for you", rng.sample(products, min(3, len(products))))
        else:
            platform.ideabook_action(associate, client, f"IB-{client}", "item_added", rng.choice(products) if products else None)
        done[kind] += 1
    return done

"""What a brand's special orders mean beyond their rows: the orders whose associate is alerted.

An event's `action_required` counts only on the order's last event, its highest `sequence`
(the reference: 3 "Sent to boutique" FALSE, 4 "Received at boutique" TRUE alerts the associate,
5 "Delivered to client" FALSE clears it), whatever order the events arrived in.
"""

from __future__ import annotations

import sqlalchemy as sa

from bspk_pipelines.warehouse.schema import ENTITY_TABLES


def needing_action(conn: sa.Connection, brand: str) -> list[dict]:
    """The brand's orders whose last event asks for action: order, event, its time and the order's
    associate (the one alerted), oldest event first. An order's status does not silence it: the
    reference ties the alert to the last event alone."""
    events, orders = ENTITY_TABLES["special_order_events"], ENTITY_TABLES["special_orders"]
    last = (sa.select(events.c.order_ref, sa.func.max(events.c.sequence).label("sequence"))
            .where(events.c.brand == brand).group_by(events.c.order_ref).subquery())
    query = (
        sa.select(events.c.order_ref, events.c.sequence, events.c.description, events.c.created_at,
                  orders.c.sales_associate_id)
        .join(last, sa.and_(events.c.order_ref == last.c.order_ref, events.c.sequence == last.c.sequence))
        .outerjoin(orders, sa.and_(orders.c.brand == brand, orders.c.order_ref == events.c.order_ref))
        .where(events.c.brand == brand, events.c.action_required.is_(True))
        .order_by(events.c.created_at, events.c.order_ref)
    )
    return [dict(r) for r in conn.execute(query).mappings()]

"""lsp-summary: "how is my LSP doing?" in one answer, added up from what the listing
commands return, so the two always agree: JIT sessions and orders as their rows
(lsps/lsps2/listing.py, lsps/orders/payment.py summary_row), the rest as listed. Pure:
the listings, the time (unix s) and the block height come in; a role that is off is
given as None and shown as null.

Every state a section counts is always present (0 when none), so the keys are stable.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional

import lsps.lsps2.client as C
import lsps.lsps2.service as S
import lsps.orders.payment as P
from bolt12ext import hold as H

# The windows JIT channels are added up over: (name, seconds or None for all time).
WINDOWS = (("last_24h", 86_400), ("last_7d", 7 * 86_400), ("all_time", None))
SESSION_STATES = (S.WAITING, S.COLLECTING, S.OPENING, S.FORWARDING, S.DONE, S.FAILED)
ORDER_STATES = (P.CREATED, P.COMPLETED, P.FAILED)
HOLD_STATES = (H.WAITING, H.HELD, H.RELEASED, H.FAILED)
BUY_STATES = (C.WAITING, C.PAID, C.EXPIRED)
PAYMENT_STATES = ("pending", "complete", "failed")
DEFAULT_EXPIRING_WITHIN_BLOCKS = 1008


def by_state(items: Iterable[dict], states: Iterable[str], key: str = "state") -> Dict[str, int]:
    """How many items are in each state: every known state, then any other seen."""
    counts = {state: 0 for state in states}
    for item in items:
        counts[item[key]] = counts.get(item[key], 0) + 1
    return counts


# --- LSP roles --------------------------------------------------------------------------
def lsps0(served: Dict[str, int], rejected: Dict[int, int]) -> dict:
    """Requests answered with a result (per method) and with an error (per code)."""
    return {"requests_served": dict(sorted(served.items())),
            "served_requests": sum(served.values()),
            "requests_rejected": {str(code): n for code, n in sorted(rejected.items())},
            "rejected_requests": sum(rejected.values())}


def jit_channels(sessions: List[dict], now: int) -> Dict[str, dict]:
    """JIT channels that carried their payment, per window of when they did: how many,
    their capacity, the on-chain fees paid to open them and the opening fees earned."""
    opened = [s for s in sessions if s["forwarded_at"] is not None]
    out = {}
    for name, span in WINDOWS:
        chosen = [s for s in opened if span is None or s["forwarded_at"] > now - span]
        out[name] = {
            "count": len(chosen),
            "capacity_sat": sum(s["channel_sat"] or 0 for s in chosen),
            "onchain_fee_sat": sum(s["funding_fee_sat"] or 0 for s in chosen),
            "onchain_fee_unknown": sum(1 for s in chosen if s["funding_fee_sat"] is None),
            "opening_fees_earned_msat": sum(s["opening_fee_earned_msat"] for s in chosen)}
    return out


def lsps2(sessions: List[dict], now: int) -> dict:
    return {"sessions_by_state": by_state(sessions, SESSION_STATES),
            "held_parts": sum(s["held_parts"] for s in sessions),
            "jit_channels": jit_channels(sessions, now)}


def refunds(orders: List[dict]) -> dict:
    """Lightning payments refunded (their HTLCs failed back: nothing left to send) and
    on-chain payments sent back or still owed back."""
    onchain = [o["onchain_refund"] for o in orders if o.get("onchain_refund")]
    return {
        "lightning_refunded": sum(1 for o in orders if any(
            o["payment_states"].get(m) == P.REFUNDED for m in P.LIGHTNING)),
        "onchain_refunded": sum(1 for r in onchain if r["refunded_sat"]),
        "onchain_refunded_sat": sum(r["refunded_sat"] for r in onchain),
        "onchain_pending": sum(1 for r in onchain if r["pending_sat"]),
        "onchain_pending_sat": sum(r["pending_sat"] for r in onchain)}


def lsps1(orders: List[dict], height: Optional[int], within_blocks: int) -> dict:
    """Channel orders; the leases sold that are still open and those that expire
    within `within_blocks` of `height` (or have expired, not yet closed)."""
    leases = [o for o in orders if o["order_state"] == P.COMPLETED
              and o.get("closed_at_block") is None and o.get("lease_expiry_block")]
    expiring = [o for o in leases
                if height is not None and o["lease_expiry_block"] - height <= within_blocks]
    return {"orders_by_state": by_state(orders, ORDER_STATES, "order_state"),
            "leases_open": len(leases),
            "leases_expiring": len(expiring),
            "leases_expiring_within_blocks": within_blocks,
            "nearest_lease_expiry_block": min((o["lease_expiry_block"] for o in leases),
                                              default=None),
            "refunds": refunds(orders)}


def lsps7(orders: List[dict]) -> dict:
    return {"orders_by_state": by_state(orders, ORDER_STATES, "order_state"),
            "refunds": refunds(orders)}


def lsps5(view: dict) -> dict:
    return {"clients": len(view["clients"]),
            "webhooks": sum(len(c["webhooks"]) for c in view["clients"]),
            "notifications_sent": dict(sorted(view["notifications_sent"].items()))}


def held_htlcs(holds: List[dict]) -> dict:
    """Async payments held for their recipients: the HTLCs still held, their amount,
    and the nearest deadlines (the hold's expiry time and the HTLCs' CLTV)."""
    open_holds = [h for h in holds if h["state"] in (H.WAITING, H.HELD)]
    htlcs = [x for h in holds if h["state"] == H.HELD for x in h["htlcs"]]
    return {"holds_by_state": by_state(holds, HOLD_STATES),
            "held_htlcs": len(htlcs),
            "held_amount_msat": sum(x["amount_msat"] for x in htlcs),
            "nearest_expiry_at": min((h["expires_at"] for h in open_holds), default=None),
            "nearest_cltv_expiry": min((x["cltv_expiry"] for x in htlcs), default=None)}


def static_invoices(invoices: List[dict], mailbox: Optional[dict]) -> dict:
    """Static invoices kept for offline recipients, and the onion messages kept for
    offline peers (waiting / capacity)."""
    box = dict(mailbox or {})
    return {"static_invoices": len(invoices),
            "recipients": len({i["recipient_id"] for i in invoices}),
            "static_invoice_bytes": sum(i["invoice_bytes"] for i in invoices),
            "nearest_invoice_expiry_at": min((i["expires_at"] for i in invoices),
                                             default=None),
            "mailbox_waiting": box.pop("waiting", 0),
            "mailbox_capacity": box.pop("capacity", 0),
            "mailbox_counts": dict(sorted(box.items()))}


# --- the client role --------------------------------------------------------------------
def client(buys: List[dict], orders: List[dict], offers: List[dict],
           payments: List[dict]) -> dict:
    """What this node bought and pays as a client of LSPs and as an async recipient."""
    received = [p for o in offers for p in o["payments"]]
    return {"lsps2_buys_by_state": by_state(buys, BUY_STATES),
            "lsps1_orders_by_state": by_state(orders, ORDER_STATES, "order_state"),
            "async_offers": len(offers),
            "async_payments_received": len(received),
            "async_received_msat": sum(p.get("amount_msat") or 0 for p in received),
            "async_payments_sent_by_state": by_state(payments, PAYMENT_STATES)}

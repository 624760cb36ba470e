"""The operator's overview (lsp-summary, and the metrics made from it): the running
services' own listings (for sessions and orders, the rows of them the sums need, kept
for the archive so that it is listed once), added up by lsps/summary.py."""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

import lsps.summary as summary


class Overview:
    """`services` is the plugin's running services by name (lsps/app.py fills it)."""

    def __init__(self, services: Dict[str, Any]):
        self.services = services

    def listings(self) -> Dict[str, Any]:
        """What each running role lists, as its listing command returns it, or for
        sessions and orders the rows of it that are added up (None for a role that is
        off)."""
        s = self.services
        jit, orders, wake = s.get("lsps2_service"), s.get("lsps1_service"), \
            s.get("lsps5_service")
        holder, server, messenger = s.get("holder"), s.get("asyncpay_server"), \
            s.get("messenger")
        dispatcher = getattr(s.get("lsps0"), "dispatcher", None)
        recipient, payer = s.get("async_recipient"), s.get("async_payer")
        order_rows = None if orders is None else orders.summary_rows()

        def of_kind(kind):
            return None if order_rows is None else [r for r in order_rows if r["kind"] == kind]
        return {
            "lsps0": None if dispatcher is None else dispatcher.answer_counts(),
            "lsps2_sessions": None if jit is None else jit.summary_rows(),
            "lsps1_orders": of_kind("lsps1"),
            "lsps7_orders": of_kind("lsps7"),
            "lsps5": None if wake is None else wake.view(None),
            "held": None if holder is None else holder.list()["held"],
            "static_invoices": None if server is None else server.invoices()["invoices"],
            "mailbox": (messenger.stats().get("mailbox")
                        if messenger is not None and server is not None else None),
            "buys": s["lsps2_client"].list_buys() if "lsps2_client" in s else [],
            "client_orders": s["lsps1_client"].list_orders(None) if "lsps1_client" in s else [],
            "async_offers": recipient.list_offers()["offers"] if recipient else [],
            "async_payments": payer.list()["payments"] if payer else [],
        }

    def summary(self, expiring_within_blocks: int = summary.DEFAULT_EXPIRING_WITHIN_BLOCKS,
                listings: Optional[Dict[str, Any]] = None) -> dict:
        got = listings if listings is not None else self.listings()
        now = int(time.time())
        node = self.services.get("node")
        height = node.blockheight() if node is not None else None

        def role(name, make):
            return None if got[name] is None else make(got[name])
        return {
            "at": now, "blockheight": height,
            "lsps0": role("lsps0", lambda counts: summary.lsps0(*counts)),
            "lsps2": role("lsps2_sessions", lambda ss: summary.lsps2(ss, now)),
            "lsps1": role("lsps1_orders",
                          lambda os: summary.lsps1(os, height, expiring_within_blocks)),
            "lsps7": role("lsps7_orders", summary.lsps7),
            "lsps5": role("lsps5", summary.lsps5),
            "asyncpay_hold": role("held", summary.held_htlcs),
            "asyncpay_server": role("static_invoices",
                                    lambda inv: summary.static_invoices(inv, got["mailbox"])),
            "client": summary.client(got["buys"], got["client_orders"], got["async_offers"],
                                     got["async_payments"]),
        }

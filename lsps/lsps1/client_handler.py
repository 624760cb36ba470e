"""LSPS1 client at run time: orders we placed with LSPs, persisted."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional

import lsps.orders.payment as P
from lsps.lsps0.client import ClientError
from lsps.lsps1.client import (
    ORDER_TOTAL_MISMATCH,
    PAYMENT_FAILED,
    REQUEST_FIELDS,
    check_invoice_amount,
    check_offer_invoice,
    check_order_matches,
    check_order_result,
    parse_info,
    to_pay,
)
from lsps.node.rpc import ClnNode, RpcError
from lsps.node.store import Area, Store

BOUGHT = Area("lsps1-bought")    # {lsp_id, order, updated_at}


class Lsps1Client:
    def __init__(self, node: ClnNode, store: Store, request: Callable[[str, str, dict], Any],
                 log: Callable[[str, str], None]):
        """`request(lsp, method, params)` blocks for the LSP's answer (or raises)."""
        self.node = node
        self.store = store
        self.request = request
        self.log = log
        self.lock = threading.Lock()
        self.bought: Dict[str, dict] = {}

    def start(self) -> None:
        with self.lock:
            self.bought.update(self.store.list(BOUGHT))

    def get_info(self, lsp_id: str) -> dict:
        return parse_info(lsp_id, self.request(lsp_id, "lsps1.get_info", {}))

    def order(self, lsp_id: str, wanted: dict, pay: Optional[str] = None) -> dict:
        """lsps1.create_order with what the operator gave; unset values take the
        LSP's advertised minimum confirmations / fastest funding / longest lease.
        `pay` ("bolt11", "bolt12"): then pay it that way and answer its new state."""
        info = self.get_info(lsp_id)
        defaults = {"required_channel_confirmations": info["min_required_channel_confirmations"],
                    "funding_confirms_within_blocks": info["min_funding_confirms_within_blocks"],
                    "channel_expiry_blocks": info["max_channel_expiry_blocks"]}
        params = {k: (defaults.get(k) if v is None else v) for k, v in wanted.items()}
        params = {k: v for k, v in params.items() if v is not None}
        for amount in ("lsp_balance_sat", "client_balance_sat"):
            params[amount] = str(params.get(amount, 0))
        order = self.create_order(lsp_id, params)
        if pay is None:
            return order
        paid = self.pay(lsp_id, order, pay)
        return {**self.get_order(lsp_id, order["order_id"]), "paid": paid}

    def pay(self, lsp_id: str, order: dict, method: str) -> dict:
        """Pay a checked order (LSPS1 or LSPS7) by its bolt11 invoice, or by an invoice
        fetched for its bolt12 offer; returns when the LSP settled (after the open or
        the extension) or failed it back (error 1302, with the order)."""
        target = to_pay(lsp_id, order, method)
        try:
            invoice = target if method == "bolt11" else self.node.fetch_invoice(target)
            if method == "bolt12":
                check_offer_invoice(lsp_id, order, invoice)
            paid = self.node.pay(invoice)
        except RpcError as e:
            raise ClientError(PAYMENT_FAILED, f"{lsp_id}: paying order {order['order_id']} "
                              f"by {method} failed: {e.error.get('message', e)}",
                              {"order": order, "error": e.error}) from None
        self.log(f"lsps1: order {order['order_id']} paid by {method}", "info")
        return {"method": method, **paid}

    def create_order(self, lsp_id: str, params: dict) -> dict:
        order = check_order_result(lsp_id, self.request(lsp_id, "lsps1.create_order", params))
        check_order_matches(lsp_id, order, params)
        self._remember(lsp_id, order)
        return order

    def get_order(self, lsp_id: str, order_id: str) -> dict:
        order = check_order_result(lsp_id, self.request(lsp_id, "lsps1.get_order",
                                                        {"order_id": order_id}))
        with self.lock:
            known = self.bought.get(order_id)
        if known is not None and known["lsp_id"] == lsp_id:
            check_order_matches(lsp_id, order, {f: known["order"][f] for f in REQUEST_FIELDS
                                                if f in known["order"]})
        else:
            check_invoice_amount(lsp_id, order, ORDER_TOTAL_MISMATCH)
        self._remember(lsp_id, order)
        return order

    def _remember(self, lsp_id: str, order: dict) -> None:
        record = {"lsp_id": lsp_id, "order": order, "updated_at": int(time.time())}
        self.store.put(BOUGHT, order["order_id"], record)
        with self.lock:
            self.bought[order["order_id"]] = record

    def list_orders(self, lsp_id: Optional[str]) -> List[dict]:
        with self.lock:
            records = [r for r in self.bought.values() if lsp_id in (None, r["lsp_id"])]
        return [{"lsp_id": r["lsp_id"], "last_seen_at": r["updated_at"], **r["order"]}
                for r in sorted(records, key=lambda r: r["order"].get("created_at", ""))]

    def accepts_zeroconf_from(self, peer_id: str) -> bool:
        """An LSP we ordered a zero-confirmation channel from, not yet delivered."""
        with self.lock:
            return any(r["lsp_id"] == peer_id
                       and r["order"].get("required_channel_confirmations") == 0
                       and r["order"].get("order_state") == P.CREATED
                       for r in self.bought.values())

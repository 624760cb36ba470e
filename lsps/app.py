"""Composition: the services built from the options, and how node events reach them.

OrderService: LSPS1 channel orders and LSPS7 lease extensions are both paid by a
held invoice (or on chain), so one book serves both; each protocol adds its methods."""

from __future__ import annotations

from typing import Callable, List, Optional

import lsps.lsps1.service as S
import lsps.lsps7.service as X
from lsps.lsps0.service import Dispatcher, MethodSpec
from lsps.lsps1.service_handler import Lsps1Orders
from lsps.lsps7.service_handler import Lsps7Leases
from lsps.node.rpc import ClnNode
from lsps.node.store import Store
from lsps.orders.book import OrderBook


class OrderService(Lsps1Orders, Lsps7Leases, OrderBook):
    def __init__(self, node: ClnNode, store: Store, policy: S.Policy, dispatcher: Dispatcher,
                 schedule, is_connected: Callable[[str], bool], htlc_expiry_margin: int,
                 log: Callable[[str, str], None], lsps7: X.Policy,
                 prune_after_s: int = 86400, close_expired: bool = False):
        super().__init__(node, store, policy, schedule, is_connected, htlc_expiry_margin, log,
                         prune_after_s)
        self.lsps7 = lsps7
        self.close_expired = close_expired
        dispatcher.register(MethodSpec("lsps1.get_info", 1, lambda call: self.policy.info()))
        dispatcher.register(MethodSpec("lsps1.create_order", 1, self._create_order,
                                       required=S.CREATE_ORDER_REQUIRED,
                                       optional=S.CREATE_ORDER_OPTIONAL))
        dispatcher.register(MethodSpec("lsps1.get_order", 1, self._get_order,
                                       required=frozenset({"order_id"})))
        dispatcher.register(MethodSpec("lsps7.get_extendable_channels", 7,
                                       self._get_extendable))
        dispatcher.register(MethodSpec("lsps7.create_order", 7, self._create_extension,
                                       required=X.CREATE_ORDER_REQUIRED,
                                       optional=X.CREATE_ORDER_OPTIONAL))
        dispatcher.register(MethodSpec("lsps7.get_order", 7, self._get_extension,
                                       required=frozenset({"order_id"})))

    def list_orders(self, order_id: Optional[str], peer_id: Optional[str],
                    kind: str = "lsps1") -> List[dict]:
        with self.lock:
            out = []
            for o in self.orders.values():
                if order_id and o["order_id"] != order_id or peer_id and o["client_id"] != peer_id:
                    continue
                if o.get("kind", "lsps1") != kind:
                    continue
                if kind == "lsps7":
                    out.append({**X.order_json(o, self._stored_lease(o), self.lsps7,
                                               self.policy),
                                "peer_id": o["client_id"], "channel_id": o["channel_id"],
                                "failure": o["failure"]})
                    continue
                lease = self.leases.get(o["channel_id"] or "")
                out.append({**S.order_json(o, self.policy), "peer_id": o["client_id"],
                            "payment_hash": o["bolt11"]["payment_hash"],
                            "parts": [{"htlc": p["key"], "amount_msat": p["amount_msat"],
                                       "cltv_expiry": p["cltv_expiry"]} for p in o["parts"]],
                            "channel_id": o["channel_id"],
                            "lease_expiry_block": (lease or {}).get(
                                "expiration_block", o["lease_expiry_block"]),
                            "closed_at_block": o.get("closed_at_block"),
                            "failure": o["failure"]})
            return sorted(out, key=lambda o: o["created_at"])

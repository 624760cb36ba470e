"""LSPS7 service at run time: the lsps7.* methods and the act of an extension
order, recording the lease's new expiry once its payment is held (mixed into
OrderService)."""

from __future__ import annotations

from typing import Dict

import lsps.lsps7.service as X
import lsps.orders.payment as P
from lsps.orders.book import LEASES
from lsps.runtime.threads import now_ms


class Lsps7Leases:
    def _leases_of(self, peer_id: str) -> Dict[str, dict]:
        """short_channel_id -> lease, for the peer's channels that can be extended; each
        lease also under the channel's other scids: a zero-conf channel is listed by its
        alias until it confirms, and an order placed then is paid after."""
        out = {}
        height = self.height
        for c in self.node.channels(peer_id):
            if c["state"] not in ("CHANNELD_NORMAL", "CHANNELD_AWAITING_LOCKIN") or \
                    not c["short_channel_id"]:
                continue
            with self.lock:
                lease = self.leases.get(c["channel_id"])
                bought = self.orders.get(self.sold.get(c["channel_id"], ""))
                if bought is not None and bought["order_state"] != P.COMPLETED:
                    bought = None
            if lease is None and bought is not None:
                lease = {"expiration_block": bought["lease_expiry_block"],
                         "original_order_id": bought["order_id"], "extension_order_ids": []}
            elif lease is None and self.lsps7.extend_any_channel:
                lease = {"expiration_block": height, "original_order_id": None,
                         "extension_order_ids": []}
            if lease is None:
                continue
            lease = {**lease, "channel_id": c["channel_id"], "client_id": peer_id,
                     "short_channel_id": c["short_channel_id"],
                     "capacity_sat": c["capacity_sat"]}
            for scid in [c["short_channel_id"], *c.get("scids", [])]:
                out.setdefault(scid, lease)
        return out

    def _get_extendable(self, call):
        def listed(peer, params):
            leases = {lease["channel_id"]: lease for lease in self._leases_of(peer).values()}
            return {"extendable_channels": [X.extendable_json(lease, self.lsps7)
                                            for lease in leases.values()]}
        return self._off_loop(call, listed)

    def _create_extension(self, call):
        def do(peer, params):
            lease, blocks, token = X.check_order(self.lsps7, params, self._leases_of(peer),
                                                 self._address_ok)
            self._admit(peer)
            order = X.new_order(peer, lease, blocks, token, self.lsps7, now_ms(),
                                refund_onchain_address=params.get("refund_onchain_address"),
                                onchain=self.policy.onchain)
            self._add_order(order, f"LSPS7 lease extension {order['order_id']}",
                            self.lsps7.order_valid_for_s)
            self.log(f"lsps7: order {order['order_id']} extends {lease['short_channel_id']} "
                     f"by {blocks} blocks", "info")
            return X.order_json(order, lease, self.lsps7, self.policy)
        return self._off_loop(call, do)

    def _get_extension(self, call):
        def do(peer, params):
            order = self._find(peer, params["order_id"], "lsps7")   # may read the archive
            lease = self._leases_of(peer).get(order["short_channel_id"]) or \
                self._stored_lease(order)
            return X.order_json(order, lease, self.lsps7, self.policy)
        return self._off_loop(call, do)

    def _stored_lease(self, order: dict) -> dict:
        """The lease of a channel that is no longer open (the order is history)."""
        lease = self.leases.get(order["channel_id"]) or {
            "expiration_block": order["new_channel_expiry_block"]
            - order["channel_extension_expiry_blocks"], "extension_order_ids": []}
        return {**lease, "short_channel_id": order["short_channel_id"]}

    def _extend(self, order_id: str) -> None:
        """LSPS7 payment held: record the new expiry (write-ahead), then settle."""
        with self.lock:
            order = self.orders[order_id]
        try:
            lease = self._leases_of(order["client_id"]).get(order["short_channel_id"])
        except Exception as e:
            self.log(f"lsps7: looking up the lease of {order_id} failed: {e!r}", "warn")
            lease = None
        with self.lock:
            order["_opening"] = False
            if not P.may_open(order):
                return
            if lease is None:
                self._apply(order, P.on_open_failed(order, "channel no longer extendable",
                                                    self.height, now_ms()))
                return
            d = X.on_held(order, lease, now_ms())
            record = {k: lease[k] for k in ("channel_id", "client_id", "short_channel_id",
                                             "capacity_sat", "expiration_block",
                                             "original_order_id", "extension_order_ids")}
            self.leases[lease["channel_id"]] = record
            self.store.put(LEASES, lease["channel_id"], record)
            self._apply(order, d)

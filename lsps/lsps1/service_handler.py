"""LSPS1 service at run time: the lsps1.* methods and the act of an LSPS1 order,
opening the channel once its payment is held (mixed into OrderService)."""

from __future__ import annotations

import lsps.lsps1.service as S
import lsps.orders.payment as P
from lsps.runtime.threads import now_ms


class Lsps1Orders:
    def _create_order(self, call):
        return self._off_loop(call, self._do_create)

    def _do_create(self, client_id: str, params: dict) -> dict:
        request = S.check_order(self.policy, params, self._address_ok)
        self._admit(client_id)
        order = S.new_order(client_id, request, self.policy, now_ms())
        self._add_order(order, f"LSPS1 channel order {order['order_id']}",
                        self.policy.order_valid_for_s)
        self.log(f"lsps1: order {order['order_id']} for {client_id}: "
                 f"{request.lsp_balance_sat}+{request.client_balance_sat} sat", "info")
        return S.order_json(order, self.policy)

    def _get_order(self, call) -> dict:
        order = self._find(call.peer_id, call.params["order_id"], "lsps1")  # may read the archive
        with self.lock:
            return S.order_json(order, self.policy)

    def _close_expired_leases(self, height: int) -> None:
        """lsp-lsps1-close-expired: close channels whose lease (with its
        extensions) has run out. The intent is recorded before the close."""
        with self.lock:
            due = []
            for order in list(self.live.values()):
                if order.get("kind", "lsps1") != "lsps1" or order["order_state"] != P.COMPLETED \
                        or order.get("closed_at_block") is not None:
                    continue
                lease = self.leases.get(order["channel_id"])
                expiry = lease["expiration_block"] if lease else order["lease_expiry_block"]
                if expiry is not None and height >= expiry:
                    order["closed_at_block"] = height
                    self._persist(order)
                    due.append((order["order_id"], order["channel_id"]))
        for order_id, channel_id in due:
            self.before_lease_close(self.orders[order_id]["client_id"])
            self.workers.submit(self._close, order_id, channel_id)

    def _close(self, order_id: str, channel_id: str) -> None:
        try:
            self.node.close_channel(channel_id)
            self.log(f"lsps1: lease of order {order_id} ended, channel {channel_id} closed",
                     "info")
        except Exception as e:
            self.log(f"lsps1: closing {channel_id} (order {order_id}) failed: {e}", "warn")

    def _open(self, order_id: str) -> None:
        with self.lock:
            order = self.orders[order_id]
            r = order["request"]
            if not P.may_open(order):
                order["_opening"] = False
                return
        try:
            if order.get("pre_channels") is None:
                # Write-ahead: the open is marked, with the channels that existed
                # before, so a restart mid-open adopts the one we made.
                pre = [c["channel_id"] for c in self.node.channels(order["client_id"])]
                with self.lock:
                    order["pre_channels"] = pre
                    self._persist(order)
            opened = self._adopt(order) or self.node.fund_channel(
                order["client_id"], r["lsp_balance_sat"] + r["client_balance_sat"],
                announce=r["announce_channel"], mindepth=r["required_channel_confirmations"],
                push_msat=r["client_balance_sat"] * 1000)
        except Exception as e:  # FundingError, or lightningd unreachable
            self.log(f"lsps1: open for order {order_id} failed: {e}", "warn")
            with self.lock:
                order["_opening"] = False
                self._apply(order, P.on_open_failed(order, str(e), self.height, now_ms()))
            return
        with self.lock:
            order["_opening"] = False
            self._apply(order, S.on_channel_opened(order, opened["channel_id"],
                                                   opened["funding_outpoint"], self.height,
                                                   now_ms()))

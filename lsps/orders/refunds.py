"""Refunds of on-chain payments at run time (mixed into the order book): one refund
in flight per order, write-ahead (prepared, recorded with its txid, then sent), and
after a crash that txid alone says whether it went out."""

from __future__ import annotations

from typing import List

import lsps.orders.payment as P
from lsps.addresses import segwit_script
from lsps.runtime.threads import now_ms


class Refunds:
    """Needs the order book's state: orders, lock, node, store, refunding."""

    def _send_refund(self, order_id: str, outpoints: List[str]) -> None:
        """Send the value of these outputs, minus the refund's fee, to the
        client's refund address (from the wallet, so CLN's emergency reserve
        never shortens it). One refund in flight per order, write-ahead: the
        transaction is prepared (inputs reserved), recorded with its txid, then
        broadcast; after a crash that txid, and nothing else, says if it went out."""
        with self.lock:
            order = self.orders.get(order_id)
            if order is None or order_id in self.refunding:
                return
            self.refunding.add(order_id)
        try:
            self._refund(order, outpoints)
        except Exception as e:
            self.log(f"lsps1: refund for {order_id} failed, retried next block: {e!r}", "warn")
        finally:
            with self.lock:
                self.refunding.discard(order_id)

    def _refund(self, order: dict, outpoints: List[str]) -> None:
        onchain = order["onchain"]
        destination = order["request"]["refund_onchain_address"]
        with self.lock:
            pending = onchain.get("refund_pending")
        if pending is not None and not self._finish_refund(order, pending, destination):
            outpoints = list(dict.fromkeys(pending["outpoints"] + outpoints))
        with self.lock:
            outpoints = [o for o in outpoints if o not in onchain["refunding"]]
            value = sum(o["amount_sat"] for o in onchain["outputs"] if o["outpoint"] in outpoints)
        if not outpoints:
            return
        amount = value - self.node.refund_fee_sat()
        if amount <= 0:
            self.log(f"lsps1: outputs {outpoints} of order {order['order_id']} are worth less "
                     "than a refund's fee: kept", "warn")
            self._refund_sent(order, outpoints, "none", amount)
            return
        prepared = self.node.prepare_onchain(destination, amount)
        with self.lock:
            onchain["refund_pending"] = {"outpoints": outpoints, "amount_sat": amount,
                                         "txid": prepared["txid"], "psbt": prepared["psbt"]}
            self._persist(order)
        self.node.send_prepared(prepared["txid"])
        self._refund_sent(order, outpoints, prepared["txid"], amount)

    def _finish_refund(self, order: dict, pending: dict, destination: str) -> bool:
        """A refund recorded before a crash: True once it is known sent (now or
        before); False if it never went out (its inputs are given back)."""
        txid = pending.get("txid")
        if txid is None:  # recorded by a version that sent with withdraw
            script = segwit_script(destination, self.network)
            txid = script and self.node.sent_to(script, pending["amount_sat"])
            if txid:
                self._refund_sent(order, pending["outpoints"], txid, pending["amount_sat"])
                return True
            return False
        if not self.node.wallet_has_tx(txid):
            try:
                self.node.send_prepared(txid)
            except Exception:
                self.node.discard_prepared(txid, pending.get("psbt"))
                with self.lock:
                    order["onchain"]["refund_pending"] = None
                    self._persist(order)
                return False
        self._refund_sent(order, pending["outpoints"], txid, pending["amount_sat"])
        return True

    def _refund_sent(self, order: dict, outpoints: List[str], txid: str, amount: int) -> None:
        self.log(f"lsps1: refunded {amount} sat of order {order['order_id']} in {txid}", "info")
        with self.lock:
            P.on_refund_sent(order, outpoints, txid, now_ms())
            order["onchain"]["refund_pending"] = None
            self._persist(order)
            self.schedule(self.prune_after_s + 0.05, self._prune)

"""What is kept of orders, and for how long (mixed into the order book): failed orders
with nothing left to refund are forgotten after lsp-lsps1-prune-after; orders nothing
can happen to any more move to an archive, so start-up reads only what can change."""

from __future__ import annotations

import lsps.orders.payment as P
from lsps.node.store import Area
from lsps.runtime.threads import now_ms

ORDERS = Area("lsps1-orders")    # order dicts (lsps/orders/payment.py)
# Orders nothing can happen to any more, their invoice expired: moved out of ORDERS
# so start-up reads only what can still change; read on demand (get_order, views).
ORDERS_DONE = Area("lsps1-orders-done")
ORDERS_DONE_INDEX = Area("lsps1-orders-done-days")   # day -> archived failed orders to forget
PRUNE_EVERY_MS = 3600 * 1000
ARCHIVE_AFTER_EXPIRY_MS = 3600 * 1000
# ... and once every HTLC it held is this far past its CLTV expiry: lightningd can no
# longer replay one (a restart between our `resolve` and its commit) that we must settle.
ARCHIVE_MARGIN_BLOCKS = 6


class Retention:
    """Needs the order book's state: orders, live, by_hash, lock, store, archive,
    refunding, height, workers, prune_after_s."""

    def _prune(self) -> None:
        """Forget failed orders with nothing left to refund, long after expiry:
        lsps1.get_order then answers 101."""
        cutoff = now_ms() - self.prune_after_s * 1000
        with self.lock:
            for order_id, order in list(self.orders.items()):
                onchain = order.get("onchain")
                owed = onchain and any(o["outpoint"] not in onchain["refunding"]
                                       for o in onchain["outputs"])
                if order["order_state"] == P.FAILED and not owed and \
                        order["expires_ms"] <= cutoff and order["updated_ms"] <= cutoff:
                    self._forget(order)
                    self.store.delete(ORDERS, order_id)

    def _prune_if_due(self) -> None:
        """Each block, but at most once an hour: a block does not walk every order."""
        if now_ms() >= self._next_prune_ms:
            self._next_prune_ms = now_ms() + PRUNE_EVERY_MS
            self._prune()
            self.workers.submit(self._archive)

    def _archive(self) -> None:
        """Orders that can no longer change, whose invoice has expired (lightningd then
        refuses an HTLC for it by itself) and whose HTLCs are all long expired move to
        the archive; archived failed orders are forgotten after lsp-lsps1-prune-after,
        like the others."""
        now = now_ms()
        with self.lock:
            done = [o for o in self.orders.values() if not P.is_live(o)
                    and o["expires_ms"] + ARCHIVE_AFTER_EXPIRY_MS <= now
                    and o["order_id"] not in self.refunding and not o.get("_opening")
                    and all(p["cltv_expiry"] + ARCHIVE_MARGIN_BLOCKS <= self.height
                            for p in o["parts"])]
        for order in done:   # archive first: a crash in between leaves both copies
            forget_at = (max(order["expires_ms"], order["updated_ms"]) + self.prune_after_s * 1000
                         if order["order_state"] == P.FAILED else None)
            self.archive.put(order["order_id"], P.stored_record(order), forget_at)
            self.store.delete(ORDERS, order["order_id"])
            with self.lock:
                self._forget(order)
        self.archive.forget_due(now, lambda order: order["order_state"] == P.FAILED and max(
            order["expires_ms"], order["updated_ms"]) + self.prune_after_s * 1000 <= now)

    def _forget(self, order: dict) -> None:
        """Out of memory and the indexes. Caller holds the lock."""
        self.orders.pop(order["order_id"], None)
        self.live.pop(order["order_id"], None)
        for payment_hash in P.payment_hashes(order):
            self.by_hash.pop(payment_hash, None)

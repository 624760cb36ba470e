"""The order book at run time: orders paid by a held invoice or on chain, persisted.

Shared by LSPS1 (a channel) and LSPS7 (a lease extension): the `htlc_accepted`
hook keeps the parts of an order's invoice pending until the order's act (open,
extend) is done, then settles them with our preimage, or fails them back;
on-chain payments are watched each block and refunded when owed. The act itself
is the protocol's: `_open` (lsps1/service_handler.py) and `_extend`
(lsps7/service_handler.py), mixed into `OrderService` (orders/service_handler.py).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional

import lsps.orders.payment as P
import lsps.quota as quota
from bolt12ext.recipient import blinded_final_payload
from lsps.addresses import segwit_address_ok
from lsps.lsps0.msgs import LspsError
from lsps.lsps0.service import answer_later
from lsps.node.events import Htlc
from lsps.node.replies import htlc_continue, htlc_fail, htlc_resolve
from lsps.node.rpc import ClnNode
from lsps.node.store import Archive, Area, Store
from lsps.orders.refunds import Refunds
from lsps.orders.retention import ORDERS, ORDERS_DONE, ORDERS_DONE_INDEX, Retention
from lsps.runtime.threads import arm_deadline, now_ms

LEASES = Area("leases")          # channel_id -> lease after an LSPS7 extension
MAX_UNPAID_ORDERS_PER_PEER = 10
MAX_UNPAID_ORDERS_TOTAL = 10_000
REPLAY_GRACE_S = 15
# Blocks beyond cltv-final plus the hold margin asked of payers in the invoice, so an
# honest payment a block behind still passes the arrival check.
INVOICE_CLTV_SLACK = 2


Responder = Callable[[dict], None]


def _bolt12_part(htlc: Htlc) -> P.Part:
    """An HTLC with the order's bolt12 payment hash, as its blinded final payload reads
    (lightningd cannot parse a payment on a path it did not make). Without a path key
    or our encrypted data it has no `path_data`, and is refused."""
    payload = blinded_final_payload(htlc.payload, htlc.extra_tlvs) if htlc.final else None
    payload = payload or {}
    data = payload.get("encrypted_recipient_data")
    forward = payload.get("amt_to_forward", 0)
    return P.Part(key=htlc.key, amount_msat=htlc.amount_msat, cltv_expiry=htlc.cltv_expiry,
                  forward_msat=forward, outgoing_cltv=payload.get("outgoing_cltv_value", 0),
                  total_msat=payload.get("total_amount_msat", forward), payment_secret=None,
                  method="bolt12",
                  path_data=hashlib.sha256(data).hexdigest() if data else None)


def payment_secret(preimage: bytes) -> str:
    """The payment_secret lightningd gives an invoice with this preimage:
    SHA256(preimage with its first byte's low bit flipped)."""
    return hashlib.sha256(bytes([preimage[0] ^ 1]) + preimage[1:]).hexdigest()


class OrderBook(Refunds, Retention):
    """State and payment of every order; the subclass adds the protocols' methods."""

    def __init__(self, node: ClnNode, store: Store, policy: Any, schedule,
                 is_connected: Callable[[str], bool], htlc_expiry_margin: int,
                 log: Callable[[str, str], None], prune_after_s: int = 86400):
        self.node = node
        self.store = store
        self.policy = policy  # LSPS1's: it also carries the on-chain payment options
        self.prune_after_s = prune_after_s
        self.leases: Dict[str, dict] = {}  # channel_id -> lease (once extended)
        self.schedule = schedule
        self.is_connected = is_connected
        self.margin = htlc_expiry_margin
        self.log = log
        # A lease is about to be closed: wake its client (LSPS5), given by lsps/app.py.
        self.before_lease_close: Callable[[str], object] = lambda peer_id: None
        # payment.bolt12 (bLIP-51): who makes an order's offer and answers its
        # invoice_requests (lsps/asyncpay/order_offers.py), given by lsps/app.py.
        self.bolt12: Optional[Any] = None
        self.lock = threading.RLock()
        self.orders: Dict[str, dict] = {}
        # Indexes, so that no request, HTLC or block costs O(stored orders):
        self.live: Dict[str, dict] = {}        # order id -> order that can still change
        self.claimed: set = set()              # channel ids any order names
        self.sold: Dict[str, str] = {}         # channel id -> the LSPS1 order that sold it
        self._next_prune_ms = 0
        self.archive = Archive(store, ORDERS_DONE, ORDERS_DONE_INDEX)
        self.by_hash: Dict[str, str] = {}
        self.waiting: Dict[str, Responder] = {}
        self.height = 0
        self.network = "regtest"
        self.cltv_final = 18
        self.refunding: set = set()  # order ids with a refund being sent right now
        # Channels another service owns (LSPS2 JIT channels): never adopted.
        self.claimed_elsewhere: Callable[[str], bool] = lambda channel_id: False
        self.workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="clnlsp-lsps1")

    def start(self) -> None:
        self.height = self.node.blockheight()
        self.network = self.node.network()
        self.cltv_final = int(self.node.config("cltv-final") or 18)
        with self.lock:
            self.leases.update(self.store.list(LEASES))
            for order in self.store.list(ORDERS).values():
                self.orders[order["order_id"]] = order
                for payment_hash in P.payment_hashes(order):
                    self.by_hash[payment_hash] = order["order_id"]
                self._index(order)
                self._arm(order)
        self.schedule(REPLAY_GRACE_S, self._after_replay)
        self._prune_if_due()

    def _after_replay(self) -> None:
        """A held order whose open was cut short by a restart: open now."""
        with self.lock:
            for order in list(self.live.values()):
                if P.may_open(order) and not order.get("_opening"):
                    self._start_open(order)

    # --- LSPS1 methods ------------------------------------------------------------
    def _off_loop(self, call, do):
        """Run do(peer, params) on a worker (it makes RPC calls) and answer."""
        return answer_later(self.workers.submit, call, do, self.log)

    def _address_ok(self, address: str) -> bool:
        return segwit_address_ok(address, self.network)

    def _admit(self, client_id: str) -> None:
        """Unpaid orders are bounded per peer and in total (LSPS1 and LSPS7 alike)."""
        channel_peers = {c["peer_id"] for c in self.node.channels()}
        with self.lock:
            unpaid: Dict[str, int] = {}
            for o in self.live.values():
                if o["order_state"] == P.CREATED and P.lightning_unpaid(o):
                    unpaid[o["client_id"]] = unpaid.get(o["client_id"], 0) + 1
        why = quota.refusal(unpaid, client_id, MAX_UNPAID_ORDERS_PER_PEER,
                            MAX_UNPAID_ORDERS_TOTAL, channel_peers)
        if why:
            raise LspsError(1, f"client rejected: {why} (unpaid orders)")

    def _add_order(self, order: dict, description: str, valid_for_s: int) -> None:
        """Give the order its (held) invoice and on-chain address and record it, before
        answering.

        The preimage is ours: held parts are settled with `resolve`, which no
        invoice expiry can refuse however long the open takes."""
        if order["onchain"] is not None:
            order["onchain"]["address"] = self.node.new_address()
        label = f"clnlsp-{order.get('kind', 'lsps1')}-{order['order_id']}"
        preimage = secrets.token_bytes(32)
        invoice = self.node.create_invoice(
            order["order_total_sat"] * 1000, label, description, valid_for_s,
            preimage=preimage.hex(), cltv=self.cltv_final + self.margin + INVOICE_CLTV_SLACK)
        order["bolt11"].update(invoice=invoice["bolt11"], payment_hash=invoice["payment_hash"],
                               label=label, preimage=preimage.hex(),
                               payment_secret=payment_secret(preimage))
        if self.bolt12 is not None:
            try:
                order["bolt12"] = self.bolt12.offer_for(
                    order, description, self.cltv_final + self.margin + INVOICE_CLTV_SLACK)
            except Exception as e:   # the order is still sold, by its other options
                self.log(f"lsps1: no bolt12 offer for order {order['order_id']}: {e!r}",
                         "warn")
        with self.lock:
            self.orders[order["order_id"]] = order
            for payment_hash in P.payment_hashes(order):
                self.by_hash[payment_hash] = order["order_id"]
            self._persist(order)
            self._arm(order)

    def bolt12_terms(self, order_id: str) -> Optional[dict]:
        """The order (a copy) while its offer may be paid, for its invoice_requests."""
        with self.lock:
            order = self.orders.get(order_id)
            if order is None or not order.get("bolt12") or not P.takes_payment(order, now_ms()):
                return None
            return P.stored_record(order)

    def _find(self, peer_id: str, order_id, kind: str) -> dict:
        """The peer's own order of this kind, else 101 (others' orders do not exist)."""
        order = self._stored(order_id) if isinstance(order_id, str) else None
        if order is None or order["client_id"] != peer_id or order.get("kind", "lsps1") != kind:
            raise LspsError(P.ORDER_NOT_FOUND, "order not found", {})
        return order

    # --- LSPS7 methods ---------------------------------------------------------------
    # --- node events --------------------------------------------------------------
    def owns_payment(self, htlc: Htlc) -> bool:
        if htlc.next_scid:
            return False
        with self.lock:
            return htlc.payment_hash in self.by_hash

    def on_htlc(self, htlc: Htlc, respond: Responder) -> None:
        with self.lock:
            order = self.orders[self.by_hash[htlc.payment_hash]]
            bolt12 = htlc.payment_hash == (order.get("bolt12") or {}).get("payment_hash")
            part = _bolt12_part(htlc) if bolt12 else P.Part(
                key=htlc.key, amount_msat=htlc.amount_msat, cltv_expiry=htlc.cltv_expiry,
                forward_msat=htlc.amount_msat if htlc.forward_msat is None
                else htlc.forward_msat, outgoing_cltv=htlc.outgoing_cltv or 0,
                total_msat=htlc.total_msat, payment_secret=htlc.payment_secret)
            self.waiting[part.key] = respond
            d = P.on_htlc(order, part, htlc.height, now_ms(),
                          self.cltv_final + self.margin)
            if d.why:
                self.log(f"lsps1: HTLC {part.key} for order {order['order_id']} refused: "
                         f"{d.why}", "info")
            self._apply(order, d)

    def on_block(self, height: int) -> None:
        with self.lock:
            self.height = height
            for order in list(self.live.values()):
                self._apply(order, P.on_block(order, height, self.margin, now_ms(),
                                              opening=bool(order.get("_opening"))))
            watching = any(o.get("onchain") and o["onchain"]["address"]
                           for o in self.live.values())
            retry = [(o["order_id"], o["onchain"]["refund_pending"]["outpoints"])
                     for o in self.live.values()
                     if o.get("onchain") and o["onchain"].get("refund_pending")]
        for order_id, outpoints in retry:
            self.workers.submit(self._send_refund, order_id, outpoints)
        if self.close_expired:
            self._close_expired_leases(height)
        if watching:
            self.workers.submit(self._scan_onchain, height)
        self._prune_if_due()

    def _scan_onchain(self, height: int) -> None:
        """What each order's address received, with its confirmations."""
        by_address: Dict[str, List[dict]] = {}
        for o in self.node.wallet_outputs():
            confirmations = height - o["blockheight"] + 1 if o["blockheight"] else 0
            by_address.setdefault(o["address"], []).append(
                {"outpoint": o["outpoint"], "amount_sat": o["amount_sat"],
                 "confirmations": confirmations})
        with self.lock:
            for order in list(self.live.values()):
                onchain = order.get("onchain")
                if not onchain or not onchain["address"]:
                    continue
                self._apply(order, P.on_onchain_outputs(
                    order, by_address.get(onchain["address"], []),
                    self.policy.min_onchain_payment_confirmations, now_ms()))

    def on_connect(self, peer_id: str) -> None:
        with self.lock:
            for order in list(self.live.values()):
                if order["client_id"] == peer_id and order.get("_waiting_peer"):
                    order["_waiting_peer"] = False
                    if P.may_open(order):
                        self._start_open(order)

    # --- decisions ------------------------------------------------------------------
    def _apply(self, order: dict, d: P.Decision) -> None:
        """Caller holds the lock. Persist, then answer."""
        if d.changed:
            self._persist(order)
        for key, failure in d.fail.items():
            respond = self.waiting.pop(key, None)
            if respond:
                respond(htlc_fail(failure))
        for key in d.settle:
            respond = self.waiting.pop(key, None)
            preimage = P.preimage_of(order, key)
            if respond:  # orders from before own preimages: lightningd settles
                respond(htlc_resolve(preimage) if preimage else htlc_continue())
        if d.refund:
            self.workers.submit(self._send_refund, order["order_id"], list(d.refund))
        if d.open:
            self._start_open(order)
        self._arm(order)

    def _start_open(self, order: dict) -> None:
        """Caller holds the lock."""
        if not P.may_open(order) or order.get("_opening"):
            return
        if order.get("kind") == "lsps7":
            order["_opening"] = True
            self.workers.submit(self._extend, order["order_id"])
            return
        if not self.is_connected(order["client_id"]):
            # bLIP-51: wait for the peer; the connect notification resumes.
            order["_waiting_peer"] = True
            self.log(f"lsps1: order {order['order_id']} paid, waiting for "
                     f"{order['client_id']} to connect", "info")
            return
        order["_opening"] = True
        self.workers.submit(self._open, order["order_id"])

    def claims(self, channel_id: str) -> bool:
        """Is this channel an order's (sold, or adopted after a restart)?"""
        with self.lock:
            return channel_id in self.claimed

    def _adopt(self, order: dict) -> Optional[dict]:
        """A channel an interrupted open of this order already made: opened by us
        after the open was marked, of the order's size, and nobody else's (not
        another order's, not a JIT channel, not one the operator opened by hand
        to a different size)."""
        pre = set(order.get("pre_channels") or [])
        r = order["request"]
        size = r["lsp_balance_sat"] + r["client_balance_sat"]
        for c in self.node.channels(order["client_id"]):
            if c["channel_id"] in pre or c["opener"] != "local" or not c["funding_outpoint"] \
                    or c["capacity_sat"] != size:
                continue
            if self.claims(c["channel_id"]) or self.claimed_elsewhere(c["channel_id"]):
                continue
            self.log(f"lsps1: order {order['order_id']} adopts channel {c['channel_id']}", "info")
            return {"channel_id": c["channel_id"], "funding_outpoint": c["funding_outpoint"]}
        return None

    def _arm(self, order: dict) -> None:
        if order["order_state"] != P.CREATED:
            return
        if order["parts"] and P.lightning_unpaid(order):
            at = order["first_part_ms"] + P.HOLD_COLLECTION_MS
        elif P.lightning_unpaid(order):
            at = order["expires_ms"]
        else:
            return
        order_id = order["order_id"]
        arm_deadline(self.schedule, order, at, now_ms(), lambda: self._tick(order_id))

    def _tick(self, order_id: str) -> None:
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                return
            order.pop("_armed_at", None)
            self._apply(order, P.on_tick(order, self.height, now_ms()))
            if order["order_state"] == P.FAILED:
                self.schedule(self.prune_after_s + 0.05, self._prune)

    def _stored(self, order_id: str) -> Optional[dict]:
        """An order, live or archived."""
        with self.lock:
            order = self.orders.get(order_id)
        return order if order is not None else self.archive.get(order_id)

    def _index(self, order: dict) -> None:
        """Keep the indexes right after an order changed. Caller holds the lock."""
        if P.is_live(order):
            self.live[order["order_id"]] = order
        else:
            self.live.pop(order["order_id"], None)
        if order["channel_id"]:
            self.claimed.add(order["channel_id"])
            if order.get("kind", "lsps1") == "lsps1":
                self.sold[order["channel_id"]] = order["order_id"]

    def _persist(self, order: dict) -> None:
        self._index(order)
        self.store.put(ORDERS, order["order_id"], P.stored_record(order))

"""LSPS1 at run time: orders (service) and purchases (client), persisted.

The service sells channels paid by a hold invoice: the `htlc_accepted` hook
keeps the parts of an order's invoice pending until the channel is open,
then lets lightningd settle them, or fails them back.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional

import lsps.bolt11 as B11
import lsps.lsps1_service as S
import lsps.lsps7_service as X
import lsps.quota as quota
from lsps.addresses import segwit_address_ok, segwit_script
from lsps.lsps0.client import BAD_RESPONSE, ClientError
from lsps.lsps0.msgs import INTERNAL_ERROR, LspsError
from lsps.lsps0.service import DEFERRED, Dispatcher, MethodSpec
from lsps.lsps2.msgs import ProtocolError, parse_msat, parse_uint
from lsps.node.events import htlc_height, htlc_onion_fields, msat
from lsps.node.replies import htlc_continue, htlc_fail, htlc_resolve
from lsps.node.rpc import ClnNode
from lsps.node.store import Store
from lsps.runtime.threads import arm_deadline, now_ms

ORDERS = "lsps1-orders"
BOUGHT = "lsps1-bought"
LEASES = "leases"
MAX_UNPAID_ORDERS_PER_PEER = 10
MAX_UNPAID_ORDERS_TOTAL = 10_000
REPLAY_GRACE_S = 15
# Blocks beyond cltv-final plus the hold margin asked of payers in the invoice, so an
# honest payment a block behind still passes the arrival check.
INVOICE_CLTV_SLACK = 2
# RPC error codes of the client: fee_total_sat + client_balance_sat != order_total_sat;
# LSPS7 expiration_block + extension != new_channel_expiry_block.
ORDER_TOTAL_MISMATCH = 1301
EXTENSION_MISMATCH = 1701


Responder = Callable[[dict], None]


def payment_secret(preimage: bytes) -> str:
    """The payment_secret lightningd gives an invoice with this preimage:
    SHA256(preimage with its first byte's low bit flipped)."""
    return hashlib.sha256(bytes([preimage[0] ^ 1]) + preimage[1:]).hexdigest()


class Lsps1Service:
    """LSPS1 channel orders and LSPS7 lease extensions: both are paid by a
    held invoice, so one runtime serves both kinds of order."""

    def __init__(self, node: ClnNode, store: Store, policy: S.Policy, dispatcher: Dispatcher,
                 schedule, is_connected: Callable[[str], bool], htlc_expiry_margin: int,
                 log: Callable[[str, str], None], lsps7: X.Policy,
                 prune_after_s: int = 86400, close_expired: bool = False):
        self.node = node
        self.store = store
        self.policy = policy
        self.lsps7 = lsps7
        self.prune_after_s = prune_after_s
        self.close_expired = close_expired
        self.leases: Dict[str, dict] = {}  # channel_id -> lease (once extended)
        self.schedule = schedule
        self.is_connected = is_connected
        self.margin = htlc_expiry_margin
        self.log = log
        self.lock = threading.RLock()
        self.orders: Dict[str, dict] = {}
        self.by_hash: Dict[str, str] = {}
        self.waiting: Dict[str, Responder] = {}
        self.height = 0
        self.network = "regtest"
        self.cltv_final = 18
        self.refunding: set = set()  # order ids with a refund being sent right now
        # Channels another service owns (LSPS2 JIT channels): never adopted.
        self.claimed_elsewhere: Callable[[str], bool] = lambda channel_id: False
        self.workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="clnlsp-lsps1")
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

    def start(self) -> None:
        self.height = self.node.blockheight()
        self.network = self.node.network()
        self.cltv_final = int(self.node.config("cltv-final") or 18)
        with self.lock:
            self.leases.update(self.store.list(LEASES))
            for order in self.store.list(ORDERS).values():
                self.orders[order["order_id"]] = order
                if order["bolt11"]["payment_hash"]:
                    self.by_hash[order["bolt11"]["payment_hash"]] = order["order_id"]
                self._arm(order)
        self.schedule(REPLAY_GRACE_S, self._after_replay)
        self._prune()

    def _after_replay(self) -> None:
        """A held order whose open was cut short by a restart: open now."""
        with self.lock:
            for order in self.orders.values():
                paid = order["bolt11"]["state"] == S.HOLD or (
                    order.get("onchain") and order["onchain"]["state"] == S.PAID)
                if paid and S.may_open(order) and not order.get("_opening"):
                    self._start_open(order)

    # --- LSPS1 methods ------------------------------------------------------------
    def _create_order(self, call):
        return self._off_loop(call, self._do_create)

    def _off_loop(self, call, do):
        """Run do(peer, params) on a worker (it makes RPC calls) and answer."""
        def work():
            try:
                call.respond(do(call.peer_id, call.params))
            except LspsError as e:
                call.fail(e)
            except Exception as e:
                self.log(f"{call.method} from {call.peer_id} failed: {e!r}", "warn")
                call.fail(LspsError(INTERNAL_ERROR, "internal error"))
        self.workers.submit(work)
        return DEFERRED

    def _address_ok(self, address: str) -> bool:
        return segwit_address_ok(address, self.network)

    def _do_create(self, client_id: str, params: dict) -> dict:
        request = S.check_order(self.policy, params, self._address_ok)
        self._admit(client_id)
        order = S.new_order(client_id, request, self.policy, now_ms())
        if order["onchain"] is not None:
            order["onchain"]["address"] = self.node.new_address()
        self._add_order(order, f"LSPS1 channel order {order['order_id']}",
                        self.policy.order_valid_for_s)
        self.log(f"lsps1: order {order['order_id']} for {client_id}: "
                 f"{request.lsp_balance_sat}+{request.client_balance_sat} sat", "info")
        return S.order_json(order, self.policy)

    def _admit(self, client_id: str) -> None:
        """Unpaid orders are bounded per peer and in total (LSPS1 and LSPS7 alike)."""
        channel_peers = {c["peer_id"] for c in self.node.channels()}
        with self.lock:
            unpaid: Dict[str, int] = {}
            for o in self.orders.values():
                if o["order_state"] == S.CREATED and o["bolt11"]["state"] == S.EXPECT_PAYMENT:
                    unpaid[o["client_id"]] = unpaid.get(o["client_id"], 0) + 1
        why = quota.refusal(unpaid, client_id, MAX_UNPAID_ORDERS_PER_PEER,
                            MAX_UNPAID_ORDERS_TOTAL, channel_peers)
        if why:
            raise LspsError(1, f"client rejected: {why} (unpaid orders)")

    def _add_order(self, order: dict, description: str, valid_for_s: int) -> None:
        """Give the order its (held) invoice and record it, before answering.

        The preimage is ours: held parts are settled with `resolve`, which no
        invoice expiry can refuse however long the open takes."""
        label = f"clnlsp-{order.get('kind', 'lsps1')}-{order['order_id']}"
        preimage = secrets.token_bytes(32)
        invoice = self.node.create_invoice(
            order["order_total_sat"] * 1000, label, description, valid_for_s,
            preimage=preimage.hex(), cltv=self.cltv_final + self.margin + INVOICE_CLTV_SLACK)
        order["bolt11"].update(invoice=invoice["bolt11"], payment_hash=invoice["payment_hash"],
                               label=label, preimage=preimage.hex(),
                               payment_secret=payment_secret(preimage))
        with self.lock:
            self.orders[order["order_id"]] = order
            self.by_hash[invoice["payment_hash"]] = order["order_id"]
            self._persist(order)
            self._arm(order)

    def _find(self, peer_id: str, order_id, kind: str) -> dict:
        """The peer's own order of this kind, else 101 (others' orders do not exist)."""
        order = self.orders.get(order_id) if isinstance(order_id, str) else None
        if order is None or order["client_id"] != peer_id or order.get("kind", "lsps1") != kind:
            raise LspsError(S.ORDER_NOT_FOUND, "order not found", {})
        return order

    def _get_order(self, call) -> dict:
        with self.lock:
            return S.order_json(self._find(call.peer_id, call.params["order_id"], "lsps1"),
                                self.policy)

    # --- LSPS7 methods ---------------------------------------------------------------
    def _leases_of(self, peer_id: str) -> Dict[str, dict]:
        """short_channel_id -> lease, for the peer's channels that can be extended."""
        out = {}
        height = self.height
        for c in self.node.channels(peer_id):
            if c["state"] not in ("CHANNELD_NORMAL", "CHANNELD_AWAITING_LOCKIN") or \
                    not c["short_channel_id"]:
                continue
            with self.lock:
                lease = self.leases.get(c["channel_id"])
                bought = next((o for o in self.orders.values()
                               if o.get("kind", "lsps1") == "lsps1"
                               and o["channel_id"] == c["channel_id"]
                               and o["order_state"] == S.COMPLETED), None)
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
            out[c["short_channel_id"]] = lease
        return out

    def _get_extendable(self, call):
        return self._off_loop(call, lambda peer, params: {"extendable_channels": [
            X.extendable_json(lease, self.lsps7) for lease in self._leases_of(peer).values()]})

    def _create_extension(self, call):
        def do(peer, params):
            lease, blocks, token = X.check_order(self.lsps7, params, self._leases_of(peer),
                                                 self._address_ok)
            self._admit(peer)
            order = X.new_order(peer, lease, blocks, token, self.lsps7, now_ms(),
                                refund_onchain_address=params.get("refund_onchain_address"),
                                onchain=self.policy.onchain)
            if order["onchain"] is not None:
                order["onchain"]["address"] = self.node.new_address()
            self._add_order(order, f"LSPS7 lease extension {order['order_id']}",
                            self.lsps7.order_valid_for_s)
            self.log(f"lsps7: order {order['order_id']} extends {lease['short_channel_id']} "
                     f"by {blocks} blocks", "info")
            return X.order_json(order, lease, self.lsps7, self.policy)
        return self._off_loop(call, do)

    def _get_extension(self, call):
        def do(peer, params):
            with self.lock:
                order = self._find(peer, params["order_id"], "lsps7")
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

    # --- node events --------------------------------------------------------------
    def owns_payment(self, onion: dict, htlc: dict) -> bool:
        if onion.get("short_channel_id"):
            return False
        with self.lock:
            return htlc["payment_hash"] in self.by_hash

    def on_htlc(self, onion: dict, htlc: dict, respond: Responder) -> None:
        fields = htlc_onion_fields(onion)
        amount = msat(htlc["amount_msat"])
        part = S.Part(key=f"{htlc['short_channel_id']}/{htlc['id']}", amount_msat=amount,
                      cltv_expiry=htlc["cltv_expiry"],
                      forward_msat=fields["forward_msat"] if fields["forward_msat"] is not None
                      else amount,
                      outgoing_cltv=fields["outgoing_cltv"] or 0,
                      total_msat=fields["total_msat"], payment_secret=fields["payment_secret"])
        with self.lock:
            order = self.orders[self.by_hash[htlc["payment_hash"]]]
            self.waiting[part.key] = respond
            d = S.on_htlc(order, part, htlc_height(htlc), now_ms(),
                          self.cltv_final + self.margin)
            if d.why:
                self.log(f"lsps1: HTLC {part.key} for order {order['order_id']} refused: "
                         f"{d.why}", "info")
            self._apply(order, d)

    def on_block(self, height: int) -> None:
        with self.lock:
            self.height = height
            for order in self.orders.values():
                self._apply(order, S.on_block(order, height, self.margin, now_ms(),
                                              opening=bool(order.get("_opening"))))
            watching = any(o.get("onchain") and o["onchain"]["address"]
                           for o in self.orders.values())
            retry = [(o["order_id"], o["onchain"]["refund_pending"]["outpoints"])
                     for o in self.orders.values()
                     if o.get("onchain") and o["onchain"].get("refund_pending")]
        for order_id, outpoints in retry:
            self.workers.submit(self._send_refund, order_id, outpoints)
        if self.close_expired:
            self._close_expired_leases(height)
        if watching:
            self.workers.submit(self._scan_onchain, height)
        self._prune()

    def _close_expired_leases(self, height: int) -> None:
        """lsp-lsps1-close-expired: close channels whose lease (with its
        extensions) has run out. The intent is recorded before the close."""
        with self.lock:
            due = []
            for order in self.orders.values():
                if order.get("kind", "lsps1") != "lsps1" or order["order_state"] != S.COMPLETED \
                        or order.get("closed_at_block") is not None:
                    continue
                lease = self.leases.get(order["channel_id"])
                expiry = lease["expiration_block"] if lease else order["lease_expiry_block"]
                if expiry is not None and height >= expiry:
                    order["closed_at_block"] = height
                    self._persist(order)
                    due.append((order["order_id"], order["channel_id"]))
        for order_id, channel_id in due:
            self.workers.submit(self._close, order_id, channel_id)

    def _close(self, order_id: str, channel_id: str) -> None:
        try:
            self.node.close_channel(channel_id)
            self.log(f"lsps1: lease of order {order_id} ended, channel {channel_id} closed",
                     "info")
        except Exception as e:
            self.log(f"lsps1: closing {channel_id} (order {order_id}) failed: {e}", "warn")

    def _scan_onchain(self, height: int) -> None:
        """What each order's address received, with its confirmations."""
        by_address: Dict[str, List[dict]] = {}
        for o in self.node.wallet_outputs():
            confirmations = height - o["blockheight"] + 1 if o["blockheight"] else 0
            by_address.setdefault(o["address"], []).append(
                {"outpoint": o["outpoint"], "amount_sat": o["amount_sat"],
                 "confirmations": confirmations})
        with self.lock:
            for order in self.orders.values():
                onchain = order.get("onchain")
                if not onchain or not onchain["address"]:
                    continue
                self._apply(order, S.on_onchain_outputs(
                    order, by_address.get(onchain["address"], []),
                    self.policy.min_onchain_payment_confirmations, now_ms()))

    def on_connect(self, peer_id: str) -> None:
        with self.lock:
            for order in self.orders.values():
                if order["client_id"] == peer_id and order.get("_waiting_peer"):
                    order["_waiting_peer"] = False
                    if S.may_open(order):
                        self._start_open(order)

    # --- decisions ------------------------------------------------------------------
    def _apply(self, order: dict, d: S.Decision) -> None:
        """Caller holds the lock. Persist, then answer."""
        if d.changed:
            self._persist(order)
        for key, failure in d.fail.items():
            respond = self.waiting.pop(key, None)
            if respond:
                respond(htlc_fail(failure))
        preimage = order["bolt11"].get("preimage")
        for key in d.settle:
            respond = self.waiting.pop(key, None)
            if respond:  # orders from before own preimages: lightningd settles
                respond(htlc_resolve(preimage) if preimage else htlc_continue())
        if d.refund:
            self.workers.submit(self._send_refund, order["order_id"], list(d.refund))
        if d.open:
            self._start_open(order)
        self._arm(order)

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
            S.on_refund_sent(order, outpoints, txid, now_ms())
            order["onchain"]["refund_pending"] = None
            self._persist(order)
            self.schedule(self.prune_after_s + 0.05, self._prune)

    def _start_open(self, order: dict) -> None:
        """Caller holds the lock."""
        if not S.may_open(order) or order.get("_opening"):
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

    def _open(self, order_id: str) -> None:
        with self.lock:
            order = self.orders[order_id]
            r = order["request"]
            if not S.may_open(order):
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
                self._apply(order, S.on_open_failed(order, str(e), self.height, now_ms()))
            return
        with self.lock:
            order["_opening"] = False
            self._apply(order, S.on_channel_opened(order, opened["channel_id"],
                                                   opened["funding_outpoint"], self.height,
                                                   now_ms()))

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
            if not S.may_open(order):
                return
            if lease is None:
                self._apply(order, S.on_open_failed(order, "channel no longer extendable",
                                                    self.height, now_ms()))
                return
            d = X.on_held(order, lease, now_ms())
            record = {k: lease[k] for k in ("channel_id", "client_id", "short_channel_id",
                                             "capacity_sat", "expiration_block",
                                             "original_order_id", "extension_order_ids")}
            self.leases[lease["channel_id"]] = record
            self.store.put(LEASES, lease["channel_id"], record)
            self._apply(order, d)

    def claims(self, channel_id: str) -> bool:
        """Is this channel an order's (sold, or adopted after a restart)?"""
        with self.lock:
            return any(o["channel_id"] == channel_id for o in self.orders.values())

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
        if order["order_state"] != S.CREATED:
            return
        if order["parts"] and order["bolt11"]["state"] == S.EXPECT_PAYMENT:
            at = order["first_part_ms"] + S.HOLD_COLLECTION_MS
        elif order["bolt11"]["state"] == S.EXPECT_PAYMENT:
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
            self._apply(order, S.on_tick(order, self.height, now_ms()))
            if order["order_state"] == S.FAILED:
                self.schedule(self.prune_after_s + 0.05, self._prune)

    def _prune(self) -> None:
        """Forget failed orders with nothing left to refund, long after expiry:
        lsps1.get_order then answers 101."""
        cutoff = now_ms() - self.prune_after_s * 1000
        with self.lock:
            for order_id, order in list(self.orders.items()):
                onchain = order.get("onchain")
                owed = onchain and any(o["outpoint"] not in onchain["refunding"]
                                       for o in onchain["outputs"])
                if order["order_state"] == S.FAILED and not owed and \
                        order["expires_ms"] <= cutoff and order["updated_ms"] <= cutoff:
                    del self.orders[order_id]
                    self.by_hash.pop(order["bolt11"]["payment_hash"], None)
                    self.store.delete(ORDERS, order_id)

    def _persist(self, order: dict) -> None:
        self.store.put(ORDERS, order["order_id"],
                       {k: v for k, v in order.items() if not k.startswith("_")})

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


# --- client ------------------------------------------------------------------------

INFO_FIELDS_UINT = ("min_required_channel_confirmations", "min_funding_confirms_within_blocks",
                    "max_channel_expiry_blocks")
INFO_FIELDS_SAT = ("min_initial_client_balance_sat", "max_initial_client_balance_sat",
                   "min_initial_lsp_balance_sat", "max_initial_lsp_balance_sat",
                   "min_channel_balance_sat", "max_channel_balance_sat")


def parse_info(lsp_id: str, result: Any) -> dict:
    """lsps1.get_info in the flat form, or the older one nested in `options`."""
    if isinstance(result, dict) and isinstance(result.get("options"), dict):
        result = {**result["options"], **{k: v for k, v in result.items() if k != "options"}}
    try:
        if not isinstance(result, dict):
            raise ProtocolError("result is not an object")
        out: dict = {k: parse_uint(result.get(k), k, 0xFFFFFFFF) for k in INFO_FIELDS_UINT}
        out.update({k: parse_msat(result.get(k), k) for k in INFO_FIELDS_SAT})
        zero_reserve = result.get("supports_zero_channel_reserve", False)
        if not isinstance(zero_reserve, bool):
            raise ProtocolError("supports_zero_channel_reserve must be a boolean")
        out["supports_zero_channel_reserve"] = zero_reserve
    except ProtocolError as e:
        raise ClientError(BAD_RESPONSE, f"{lsp_id} sent an invalid lsps1.get_info: {e}",
                          {"result": result}) from None
    return out


def check_order_result(lsp_id: str, result: Any) -> dict:
    """The order object: ids, totals; CANCELLED read as REFUNDED."""
    if not isinstance(result, dict) or not isinstance(result.get("order_id"), str):
        raise ClientError(BAD_RESPONSE, f"{lsp_id} sent an order without order_id",
                          {"result": result})
    client_balance = parse_msat(result.get("client_balance_sat", "0"), "client_balance_sat")
    payment = result.get("payment") if isinstance(result.get("payment"), dict) else {}
    for kind, option in payment.items():
        if not isinstance(option, dict):
            continue
        if option.get("state") == "CANCELLED":
            option["state"] = S.REFUNDED
        try:
            fee = parse_msat(option.get("fee_total_sat"), "fee_total_sat")
            total = parse_msat(option.get("order_total_sat"), "order_total_sat")
        except ProtocolError as e:
            raise ClientError(BAD_RESPONSE, f"{lsp_id}: payment.{kind}: {e}",
                              {"result": result}) from None
        if fee + client_balance != total:
            raise ClientError(ORDER_TOTAL_MISMATCH,
                              f"{lsp_id}: payment.{kind}: fee_total_sat {fee} + "
                              f"client_balance_sat {client_balance} != order_total_sat {total}",
                              {"order": result})
    return result


REQUEST_FIELDS = ("lsp_balance_sat", "client_balance_sat", "required_channel_confirmations",
                  "funding_confirms_within_blocks", "channel_expiry_blocks", "announce_channel")


def _same(field: str, asked, got) -> bool:
    if field.endswith("_sat"):
        try:
            return parse_msat(got, field) == parse_msat(asked, field)
        except ProtocolError:
            return False
    return got == asked and type(got) is type(asked)


def check_invoice_amount(lsp_id: str, order: dict, code: int) -> None:
    """The bolt11 invoice asks exactly order_total_sat (else `code`)."""
    bolt11 = (order.get("payment") or {}).get("bolt11")
    if not isinstance(bolt11, dict):
        return
    try:
        amount = B11.amount_msat(B11.decode(str(bolt11.get("invoice"))))
        total = parse_msat(bolt11.get("order_total_sat"), "order_total_sat")
    except (B11.Bolt11Error, ProtocolError) as e:
        raise ClientError(BAD_RESPONSE, f"{lsp_id}: payment.bolt11: {e}",
                          {"order": order}) from None
    if amount != total * 1000:
        raise ClientError(code, f"{lsp_id}: the invoice asks {amount} msat, the order total is "
                          f"{total} sat", {"order": order})


def check_order_matches(lsp_id: str, order: dict, asked: dict) -> None:
    """The order is the one we asked for (error 1301 otherwise): an LSP may not
    sell other balances, another lease, announcement or confirmations."""
    for field in REQUEST_FIELDS:
        if field in asked and not _same(field, asked[field], order.get(field)):
            raise ClientError(ORDER_TOTAL_MISMATCH, f"{lsp_id}: {field} is "
                              f"{order.get(field)!r}, not the {asked[field]!r} asked for",
                              {"order": order})
    check_invoice_amount(lsp_id, order, ORDER_TOTAL_MISMATCH)


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

    def order(self, lsp_id: str, wanted: dict) -> dict:
        """lsps1.create_order with what the operator gave; unset values take the
        LSP's advertised minimum confirmations / fastest funding / longest lease."""
        info = self.get_info(lsp_id)
        defaults = {"required_channel_confirmations": info["min_required_channel_confirmations"],
                    "funding_confirms_within_blocks": info["min_funding_confirms_within_blocks"],
                    "channel_expiry_blocks": info["max_channel_expiry_blocks"]}
        params = {k: (defaults.get(k) if v is None else v) for k, v in wanted.items()}
        params = {k: v for k, v in params.items() if v is not None}
        for amount in ("lsp_balance_sat", "client_balance_sat"):
            params[amount] = str(params.get(amount, 0))
        return self.create_order(lsp_id, params)

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

    # --- LSPS7 ---------------------------------------------------------------------
    def get_extendable_channels(self, lsp_id: str) -> dict:
        result = self.request(lsp_id, "lsps7.get_extendable_channels", {})
        channels = result.get("extendable_channels") if isinstance(result, dict) else None
        if not isinstance(channels, list) or not all(isinstance(c, dict) for c in channels):
            raise ClientError(BAD_RESPONSE, f"{lsp_id} sent an invalid extendable channel list",
                              {"result": result})
        return {"extendable_channels": channels}

    def create_extension(self, lsp_id: str, params: dict) -> dict:
        return self._check_extension(lsp_id, self.request(lsp_id, "lsps7.create_order", params),
                                     params["channel_extension_expiry_blocks"])

    def get_extension(self, lsp_id: str, order_id: str) -> dict:
        return self._check_extension(lsp_id, self.request(lsp_id, "lsps7.get_order",
                                                          {"order_id": order_id}), None)

    def _check_extension(self, lsp_id: str, order: Any, asked: Optional[int]) -> dict:
        """expiration_block + extension == new_channel_expiry_block (draft bLIP-57);
        the fee total is checked like LSPS1's with no client balance."""
        if not isinstance(order, dict) or not isinstance(order.get("order_id"), str):
            raise ClientError(BAD_RESPONSE, f"{lsp_id} sent an extension order without order_id",
                              {"result": order})
        check_order_result(lsp_id, {**order, "client_balance_sat": "0"})
        check_invoice_amount(lsp_id, order, EXTENSION_MISMATCH)
        try:
            blocks = parse_uint(order.get("channel_extension_expiry_blocks"),
                                "channel_extension_expiry_blocks", 0xFFFFFFFF)
            new = order.get("new_channel_expiry_block", order.get("new_channel_expiry_blocks"))
            new = parse_uint(new, "new_channel_expiry_block", 0xFFFFFFFF)
            channel = order.get("channel") if isinstance(order.get("channel"), dict) else {}
            expiration = parse_uint(channel.get("expiration_block"), "channel.expiration_block",
                                    0xFFFFFFFF)
        except ProtocolError as e:
            raise ClientError(BAD_RESPONSE, f"{lsp_id}: invalid extension order: {e}",
                              {"result": order}) from None
        if asked is not None and blocks != asked:
            raise ClientError(EXTENSION_MISMATCH, f"{lsp_id} extends by {blocks} blocks, "
                              f"not the {asked} asked for", {"order": order})
        # Before payment the channel shows the current expiry; once the lease is
        # extended it already includes this extension.
        if order.get("order_state") == S.CREATED and expiration + blocks != new:
            raise ClientError(EXTENSION_MISMATCH,
                              f"{lsp_id}: expiration_block {expiration} + {blocks} != "
                              f"new_channel_expiry_block {new}", {"order": order})
        return order

    def accepts_zeroconf_from(self, peer_id: str) -> bool:
        """An LSP we ordered a zero-confirmation channel from, not yet delivered."""
        with self.lock:
            return any(r["lsp_id"] == peer_id
                       and r["order"].get("required_channel_confirmations") == 0
                       and r["order"].get("order_state") == S.CREATED
                       for r in self.bought.values())

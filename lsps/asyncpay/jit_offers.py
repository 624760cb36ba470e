"""JIT channels behind offers (LSPS2 over BOLT12): the recipient's part.

`lsps2-buyoffer` makes an offer whose message path is introduced by the LSP (a
connected peer: no channel needed) and ends at our virtual node. Each
invoice_request is answered on a small pool of its own, since it may wait for the
LSP: through a channel with the LSP that can take the amount (no fee), else through
a JIT purchase (an unused one of this offer, or a fresh `lsps2.buy`). That invoice's
single payment path is [LSP --jit scid--> us] with the opening fee inside the LSP
hop's encrypted relay and a free payinfo (lsps/lsps2/bolt12.py): the payer pays the
amount, the LSP's lightningd forwards it minus the fee, and the payment is claimed
when no more than that fee is missing.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Protocol

from bolt12ext import recipient
from bolt12ext.blinding import PaymentHop, payment_path
from lsps.asyncpay.messenger import now_s
from lsps.lsps0.client import ClientError
from lsps.lsps2.bolt12 import fee_segments, free_payinfo, jit_hop

JIT_INVREQ = "jit_invreq"
# The offer's message path lives as long as the offer (forgotten with it).
JIT_OFFER_PATH_TTL_S = 10 * 365 * 86400
# invoice_requests waiting for the LSP, at most; more are dropped (anyone may send them).
MAX_JIT_PENDING = 20


class JitSeller(Protocol):
    """What the recipient needs of the LSPS2 client (lsps/lsps2/client_handler.py)."""
    def get_info(self, lsp_id: str, token: Optional[str]) -> dict: ...
    def offer_purchase(self, lsp_id: str, offer_id: str, amount_msat: Optional[int],
                       token: Optional[str], max_fee_msat: Optional[int],
                       invoice_life_s: Optional[int] = None) -> dict: ...
    def offer_paid(self, scid: str, incoming_scid: str, amount_msat: int,
                   fee_msat: int) -> None: ...
    def offer_purchases(self, offer_id: str) -> List[dict]: ...


class JitOffers:
    """Mixin of AsyncRecipient: offers paid through a JIT channel bought per invoice."""

    def __init__(self, jit: Optional[JitSeller]):
        self.jit = jit
        self._jit_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="clnlsp-jit")
        self._jit_pending = 0

    def create_jit_offer(self, lsp_id: str, description: str, amount_msat: Optional[int],
                         token: Optional[str], max_fee_msat: Optional[int]) -> dict:
        if self.jit is None:
            raise ClientError(-32602, "this node has no LSPS2 client")
        self.jit.get_info(lsp_id, token)   # the LSP sells JIT channels (to this token)
        offer_id = os.urandom(16).hex()
        path = self.messenger.new_path(JIT_INVREQ, JIT_OFFER_PATH_TTL_S,
                                       via=bytes.fromhex(lsp_id), offer_id=offer_id)[0]
        offer = recipient.make_offer(self.issuer_id, [path], description, amount_msat,
                                     None, self.node.network())
        record = {"offer_id": offer_id, "server_id": None, "slot": None, "lsp_id": lsp_id,
                  "token": token, "max_fee_msat": max_fee_msat, "offer": offer.hex(),
                  "description": description, "amount_msat": amount_msat,
                  "serve_path": None, "created_at": now_s(), "state": "ready",
                  "invoice_expires_at": None, "persisted_at": None, "releases_sent": 0,
                  "invoices_issued": 0, "peer_address": self.node.peer_address(lsp_id)}
        self._save(record)
        return self.view(self.offers[offer_id])

    def jit_view(self, record: dict) -> dict:
        if not jit_lsp(record):
            return {"jit": False}
        purchases = self.jit.offer_purchases(record["offer_id"]) if self.jit else []
        return {"jit": True, "lsp_id": jit_lsp(record), "max_fee_msat":
                record.get("max_fee_msat"), "purchases": [
                    {k: p.get(k) for k in ("jit_channel_scid", "state", "valid_until",
                                           "opening_fee_msat", "received_msat",
                                           "jit_channel_id", "invoices")}
                    for p in purchases]}

    def answer_jit_request(self, record: dict, request: dict, invreq: bytes,
                           reply_path) -> None:
        with self._lock:
            if self._jit_pending >= MAX_JIT_PENDING:
                self.messenger.drop("too many invoice_requests waiting for the LSP")
                return
            self._jit_pending += 1

        def run():
            try:
                self._answer_jit(record, request, invreq, reply_path)
            except Exception as e:   # the pool must go on for the next request
                self.log(f"JIT offer {record['offer_id']}: no invoice: {e!r}", "warn")
            finally:
                with self._lock:
                    self._jit_pending -= 1
        self._jit_pool.submit(run)

    def _answer_jit(self, record: dict, request: dict, invreq: bytes, reply_path) -> None:
        amount = recipient.expected_amount(request)
        lsp = jit_lsp(record)
        if self.inbound_from(lsp) >= amount:   # a channel can take it: no opening fee
            self.issue_invoice(record, request, invreq, reply_path,
                               lambda payment_hash, ttl: self._payment_paths(
                                   record, "invoice", ttl, payment_hash.hex()))
            return
        try:
            purchase = self.jit.offer_purchase(lsp, record["offer_id"], amount,
                                               record.get("token"), record.get("max_fee_msat"))
        except ClientError as e:
            self.log(f"JIT offer {record['offer_id']}: no JIT channel for {amount} msat: "
                     f"{e}", "info")
            self.messenger.drop("no JIT channel for an invoice_request")
            return
        self.issue_invoice(record, request, invreq, reply_path,
                           self._jit_paths(record, purchase, amount),
                           relative_expiry=purchase["invoice_expiry_s"])

    def _jit_paths(self, record: dict, purchase: dict, amount_msat: int) -> Callable:
        def make(payment_hash: bytes, ttl_s: int) -> list:
            fee = purchase["fee_msat"]
            hop = jit_hop(purchase["lsp_id"], purchase["jit_channel_scid"],
                          purchase["lsp_cltv_expiry_delta"], amount_msat, fee)
            path, info = payment_path(
                os.urandom(32), [hop], self.messenger.node_id, os.urandom(32),
                self.node.blockheight() + recipient.CLTV_ROOM_BLOCKS, amount_msat,
                recipient.MIN_FINAL_CLTV_EXPIRY_DELTA)
            self.keep_path(path, jit_context(record, purchase, hop.relay, "invoice",
                                             payment_hash.hex(), ttl_s))
            return [(path, free_payinfo(info))]
        return make

    # --- static invoices (async recipients) -----------------------------------------------------
    def inbound_from(self, peer_id: str) -> int:
        """What our channels with `peer_id` can receive, through a known policy."""
        return max([c["receivable_msat"] for c in self.node.channels(peer_id)
                    if can_receive_through(c)] or [0])

    def static_jit_paths(self, record: dict, ttl_s: int) -> Optional[tuple]:
        """(payment paths, relative expiry) of a static invoice through a JIT channel
        bought from the offer's server, or None. The amount is not known yet: one
        path per fee segment (lsps/lsps2/bolt12.py fee_segments), each leaving the
        server its opening fee for every amount of its htlc range. The invoice ends
        before the purchase's valid_until."""
        if self.jit is None:
            return None
        server = record["server_id"]
        try:
            purchase = self.jit.offer_purchase(server, record["offer_id"],
                                               record["amount_msat"], None, None,
                                               invoice_life_s=ttl_s)
        except ClientError as e:
            self.log(f"async offer {record['offer_id']}: no JIT channel from {server}: {e}",
                     "info")
            return None
        height = self.node.blockheight()
        out = []
        for lo, hi, fee in fee_segments(purchase["opening_fee_params"],
                                        record["amount_msat"] or 1):
            relay = dataclasses.replace(fee, cltv_expiry_delta=purchase["lsp_cltv_expiry_delta"])
            hop = PaymentHop(bytes.fromhex(server), purchase["jit_channel_scid"], relay, 0)
            # the range is the payer's (payinfo), not a constraint on what reaches us
            path, info = payment_path(
                os.urandom(32), [hop], self.messenger.node_id, os.urandom(32),
                height + recipient.CLTV_ROOM_BLOCKS, hi, recipient.MIN_FINAL_CLTV_EXPIRY_DELTA)
            self.keep_path(path, jit_context(record, purchase, relay, "static", None, ttl_s))
            out.append((path, dataclasses.replace(free_payinfo(info), htlc_minimum_msat=lo)))
        return (out, purchase["invoice_expiry_s"]) if out else None


def can_receive_through(channel: dict) -> bool:
    """A channel a payment path to us can use: normal, its peer's policy and the scid
    the peer knows it by are known."""
    return bool(channel["state"] == "CHANNELD_NORMAL" and channel["remote_policy"]
                and channel["inbound_scid"])


def jit_lsp(record: dict) -> Optional[str]:
    """Who sells this offer its JIT channels: the LSP of an lsps2-buyoffer offer, or
    the server of an async offer whose static invoice goes through one."""
    return record.get("lsp_id") or (record["server_id"] if record.get("static_jit") else None)


def jit_context(record: dict, purchase: dict, relay, kind: str,
                payment_hash: Optional[str], ttl_s: int) -> dict:
    """A JIT payment path's context: whose it is, and the relay whose fee the LSP keeps."""
    return {"offer_id": record["offer_id"], "kind": kind, "payment_hash": payment_hash,
            "expires_at": now_s() + ttl_s, "via": purchase["lsp_id"],
            "jit_channel_scid": purchase["jit_channel_scid"],
            "jit_relay": [relay.fee_base_msat, relay.fee_proportional_millionths]}

"""payment.bolt12 of LSPS1 / LSPS7 orders (bLIP-51) at run time: the LSP's offer for
an order, and the invoices it answers for it.

lightningd cannot hold a payment of its own offers, so the order's offer is ours:
its message path ends at our virtual node (invoice_requests reach us, not the
`offers` plugin) and its invoices pay a blinded path of ours alone, with the
order's own payment hash. The order book (lsps/orders/book.py) holds those HTLCs
like the bolt11 ones and settles them with the preimage kept in the order, only
once the channel is open or the lease extended.

One payment path and one payment hash per order, made with the order and stored in
it: however many invoice_requests a peer sends, nothing more is stored, and
whichever invoice is paid, the order sees one payment."""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Optional

from bolt12ext import encoding, onionmsg, recipient
from bolt12ext.blinding import BlindedPath, PayInfo, payment_path
from bolt12ext.build import offer_string
from bolt12ext.sphinx import pubkey
from bolt12ext.tlv import DecodeError
from lsps.asyncpay.messenger import OnionMessenger, now_s
from lsps.node.rpc import ClnNode
from lsps.orders import payment as P

ORDER_INVREQ = "order_invreq"
ISSUER_LABEL = "clnlsp/order-issuer/v1"
# The offer's message path outlives the order a little: a payer that fetched its
# invoice just before expiry gets a clean "expired", not a dead path.
PATH_SLACK_S = 600


class OrderOffers:
    def __init__(self, node: ClnNode, messenger: OnionMessenger,
                 terms: Callable[[str], Optional[dict]], log: Callable[[str, str], None]):
        """`terms(order_id)`: the order while its bolt12 payment may still come (a
        copy), else None."""
        self.node = node
        self.messenger = messenger
        self.terms = terms
        self.log = log
        self.issuer_secret = node.makesecret(ISSUER_LABEL)
        self.issuer_id = pubkey(self.issuer_secret)
        messenger.register([ORDER_INVREQ], self.on_invoice_request)

    def offer_for(self, order: dict, description: str, final_cltv_delta: int) -> dict:
        """The order's `bolt12` record: offer, payment hash, preimage and payment path
        (made before the order is stored, so before its answer leaves)."""
        total_msat = order["order_total_sat"] * 1000
        expires_s = order["expires_ms"] // 1000
        message_path = self.messenger.new_path(
            ORDER_INVREQ, max(1, expires_s - now_s()) + PATH_SLACK_S,
            order_id=order["order_id"])[0]
        offer = offer_string(recipient.make_offer(
            self.issuer_id, [message_path], description, total_msat, expires_s,
            self.node.network()))
        if len(offer) > P.MAX_OFFER_CHARS:   # one short path: never near it
            raise ValueError(f"order offer of {len(offer)} characters")
        preimage = os.urandom(32)
        path, payinfo = payment_path(
            os.urandom(32), [], self.messenger.node_id, os.urandom(32),
            self.node.blockheight() + recipient.CLTV_ROOM_BLOCKS, total_msat,
            final_cltv_delta)
        return {"state": P.EXPECT_PAYMENT, "offer": offer,
                "payment_hash": hashlib.sha256(preimage).hexdigest(),
                "preimage": preimage.hex(),
                "path_data": hashlib.sha256(path.hops[-1].encrypted_data).hexdigest(),
                "path": path.serialize().hex(), "payinfo": payinfo.serialize().hex()}

    def on_invoice_request(self, ctx, got: onionmsg.Received) -> None:
        invreq = got.contents.get(onionmsg.INVOICE_REQUEST)
        order = self.terms(ctx.data.get("order_id", ""))
        if invreq is None or got.reply_path is None:
            self.messenger.drop("order invoice_request without a reply path")
            return
        if order is None:
            self.messenger.drop("invoice_request for an order that takes no payment")
            return
        bolt12 = order["bolt12"]
        try:
            request = recipient.check_invoice_request(
                invreq, encoding.decode(bolt12["offer"])[1])
        except DecodeError as e:
            self.messenger.drop(f"order invoice_request refused: {e}")
            return
        if recipient.expected_amount(request) != order["order_total_sat"] * 1000:
            self.messenger.drop("order invoice_request for another amount than the total")
            return
        now = now_s()
        path = BlindedPath.parse(bytes.fromhex(bolt12["path"]))[0]
        payinfo = PayInfo.parse(bytes.fromhex(bolt12["payinfo"]))[0]
        try:
            invoice = recipient.invoice_for(
                invreq, request, self.issuer_secret, [(path, payinfo)],
                bytes.fromhex(bolt12["payment_hash"]), now,
                max(1, order["expires_ms"] // 1000 - now))
        except (DecodeError, ValueError) as e:
            self.messenger.drop(f"no invoice for an order invoice_request: {e}")
            return
        if self.messenger.send(got.reply_path, {onionmsg.INVOICE: invoice}):
            self.log(f"lsps1: invoice sent for order {order['order_id']}", "debug")

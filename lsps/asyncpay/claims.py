"""Payments on the recipient's own blinded paths: which HTLCs are ours, and whether
to claim them (mixin of AsyncRecipient; its records are the recipient's)."""

from __future__ import annotations

import hashlib
from typing import Optional

from bolt12ext import recipient
from bolt12ext.blinding import PaymentRelay
from lsps.asyncpay.messenger import now_s
from lsps.htlc import incorrect_or_unknown
from lsps.lsps2.bolt12 import blinded_forward_msat
from lsps.node.events import Htlc
from lsps.node.replies import htlc_fail, htlc_resolve
from lsps.node.store import Area

RECEIVED = Area("asyncrecv")


def incorrect_details(amount_msat: int, height: int) -> dict:
    """BOLT4 incorrect_or_unknown_payment_details, what a final node answers."""
    return htlc_fail(incorrect_or_unknown(amount_msat, height))



class PaymentClaims:
    def context_of(self, htlc: Htlc) -> Optional[tuple]:
        """(decoded payload, path context) when the HTLC came through one of our paths:
        its final payload carries our encrypted data, a path key came with it, and it
        arrived from the path's hop before us. Copying our (public) encrypted data
        into a plain onion is not enough."""
        if not htlc.final:
            return None
        payload = recipient.blinded_final_payload(htlc.payload, htlc.extra_tlvs)
        if payload is None:
            return None
        data = payload["encrypted_recipient_data"]
        with self._lock:
            ctx = self.paypaths.get(hashlib.sha256(data).hexdigest())
        if ctx is None:
            return None
        if ctx.get("via") is not None and htlc.peer_id != ctx["via"]:
            return None  # (paths made before "via" was recorded: any peer)
        return payload, ctx

    def on_htlc(self, payload: dict, ctx: dict, htlc: Htlc) -> dict:
        """The hook's answer for an HTLC on one of our payment paths."""
        payment_hash, amount, height = htlc.payment_hash, htlc.amount_msat, htlc.height
        with self._lock:
            record = self.offers.get(ctx["offer_id"])
            issued = self.issued.get(payment_hash) if ctx["kind"] == "invoice" else None
            done = self.received.get(payment_hash)
        if done is not None and done["state"] == "claimed":   # a replay after restart
            return htlc_resolve(done["preimage"])
        if record is None:
            claim = recipient.Claim(None, "offer forgotten")
        elif ctx["expires_at"] <= now_s():
            claim = recipient.Claim(None, "payment path expired")
        elif ctx["kind"] == "invoice" and (issued is None
                                           or issued["offer_id"] != ctx["offer_id"]):
            claim = recipient.Claim(None, "no invoice of ours with this payment hash")
        elif ctx.get("payment_hash") not in (None, payment_hash):
            # (a JIT path's relay gives away a fee: it pays only its own invoice)
            claim = recipient.Claim(None, "payment of another invoice on this path")
        else:
            claim = recipient.check_payment(
                payload, bytes.fromhex(payment_hash), amount, htlc.cltv_expiry, height,
                bytes.fromhex(record["offer"]),
                bytes.fromhex(issued["preimage"]) if issued else None,
                issued["amount_msat"] if issued else 0, jit_fee_allowance(ctx, payload))
        entry = {"offer_id": ctx["offer_id"], "kind": ctx["kind"], "amount_msat": amount,
                 "at": now_s(), "state": "claimed" if claim.preimage else "refused",
                 "why": claim.why}
        if ctx.get("jit_channel_scid"):
            entry.update(jit_channel_scid=ctx["jit_channel_scid"],
                         fee_msat=max(0, payload.get("amt_to_forward", amount) - amount))
        if claim.preimage:
            entry["preimage"] = claim.preimage.hex()
        self.store.put(RECEIVED, payment_hash, entry)
        with self._lock:
            self.received[payment_hash] = entry
        if claim.preimage is None:
            self.log(f"async payment {payment_hash} refused: {claim.why}", "info")
            return incorrect_details(amount, height)
        if ctx.get("jit_channel_scid") and self.jit is not None:
            self.jit.offer_paid(ctx["jit_channel_scid"], htlc.incoming_scid, amount,
                                entry["fee_msat"])
        return htlc_resolve(claim.preimage.hex())


def jit_fee_allowance(ctx: dict, payload: dict) -> int:
    """What the LSP's hop of a JIT path keeps of this payment: exactly what its
    encrypted relay (we made it) deducts from the amount the payer sent it, which is
    the final payload's amount (the payer was told the path is free)."""
    relay = ctx.get("jit_relay")
    amount = payload.get("amt_to_forward")
    if relay is None or amount is None:
        return 0
    return amount - blinded_forward_msat(amount, PaymentRelay(0, relay[1], relay[0]))

"""Paying BOLT12 offers, async ones included (sender role of async payments).

`pay` sends our own invoice_request over the offer's paths with a reply path to
our virtual node. A normal invoice is paid at once along its blinded path. A
static invoice (the recipient is offline; its server answered) is paid with a
preimage we pick and our invoice_request in the final hop; the HTLC is held at
our first hop when that peer offers the LSPS0 extension `clnlsp.asyncpay.hold`,
and `held_htlc_available` goes to the invoice's message paths with the LSP's
release path as reply path. When both arrive (the recipient is online and its
server forwarded our request), the normal invoice wins: it gives proof of payment.

The onion is built here (plain hops from `getroute` to the introduction node,
then the blinded hops) and sent with `createonion` + `sendonion`; lightningd keeps
the payment, so `listsendpays` follows it across restarts. Area "asyncpayment".
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from typing import Callable, Dict, Optional

from bolt12ext import asyncmsg, build, encoding, messages, onionmsg, payer
from bolt12ext.blinding import BlindedPath
from bolt12ext.offer import offer_part, parse_offer
from bolt12ext.tlv import DecodeError
from lsps.asyncpay.messenger import OnionMessenger, now_s
from lsps.lsps0.client import ClientError
from lsps.node.rpc import ClnNode, RpcError
from lsps.node.store import Area, Store

PAYMENTS = Area("asyncpayment")
HOLD = "clnlsp.asyncpay.hold"
NORMAL_FINAL_CLTV = 6          # blocks past the recipient's own minimum
HELD_FINAL_CLTV = 144          # a held payment may wait about a day for its recipient
MAX_CLTV = 2016                # xpay's maxdelay: the longest our first HTLC may be locked


def default_maxfee(amount_msat: int) -> int:
    """xpay's default: 5 sat or 1 %, whichever is more."""
    return max(5000, amount_msat // 100)


class PayError(Exception):
    pass


class AsyncPayer:
    def __init__(self, node: ClnNode, store: Store, messenger: OnionMessenger,
                 ask: Callable[[str, str, dict], dict], log: Callable[[str, str], None],
                 reply_timeout_s: int = 30, invoice_grace_s: float = 3.0):
        self.node = node
        self.store = store
        self.messenger = messenger
        self.ask = ask
        self.log = log
        self.reply_timeout_s = reply_timeout_s
        self.invoice_grace_s = invoice_grace_s
        self._lock = threading.Lock()
        self.payments: Dict[str, dict] = {}

    def start(self) -> None:
        self.payments = self.store.list(PAYMENTS)

    # --- paying ------------------------------------------------------------------------------
    def pay(self, offer_text: str, amount_msat: Optional[int], payer_note: Optional[str],
            maxfee_msat: Optional[int] = None) -> dict:
        try:
            offer = parse_offer(offer_text)
        except DecodeError as e:
            raise PayError(f"not a valid offer: {e}") from e
        fields = offer.to_json()
        offer_data = encoding.decode(offer_text)[1]
        paths = offer.offer_paths
        if not paths:
            raise PayError("the offer has no blinded paths (pay it with xpay)")
        if fields.get("offer_absolute_expiry", 2**64) <= now_s():
            raise PayError("the offer has expired")
        offer_amount = fields.get("offer_amount_msat")
        if "offer_currency" in fields:
            raise PayError("offers in a currency are not supported")
        if amount_msat is None:
            if offer_amount is None:
                raise PayError("the offer names no amount: give amount_msat")
            amount_msat = offer_amount
        elif offer_amount is not None and amount_msat < offer_amount:
            raise PayError(f"amount_msat below the offer's {offer_amount}")
        chains = fields.get("offer_chains")
        invreq = build.invoice_request(
            offer_data, os.urandom(32), invreq_metadata=os.urandom(16),
            invreq_chain=chains[0] if chains else None,
            invreq_amount_msat=amount_msat if offer_amount is None
            or amount_msat != offer_amount else None,
            invreq_payer_note=payer_note)

        reply, reply_id, waiting = self.messenger.reply_path(self.reply_timeout_s + 60)
        try:
            sent = sum(self.messenger.send(p, {onionmsg.INVOICE_REQUEST: invreq}, reply)
                       for p in paths[:2])
            if not sent:
                raise PayError("could not send the invoice_request on any offer path")
            invoice, static = self._wait_invoice(waiting)
        finally:
            self.messenger.forget_reply(reply_id)
        # Who may sign the answer: the offer's issuer, or (offers without issuer_id)
        # the recipient at the end of the path the request went on.
        signers = {fields["offer_issuer_id"]} if fields.get("offer_issuer_id") else {
            p.hops[-1].blinded_node_id.hex() for p in paths[:2] if p.hops}
        limits = payer.Limits(maxfee_msat=default_maxfee(amount_msat) if maxfee_msat is None
                              else maxfee_msat, max_cltv=MAX_CLTV)
        if invoice is not None:
            return self._pay_invoice(offer_text, invoice, invreq, amount_msat, signers, limits)
        if static is not None:
            return self._pay_static(offer_text, offer_data, static, invreq, amount_msat,
                                    signers, limits)
        raise PayError("no invoice came back in time")

    def _wait_invoice(self, waiting: queue.Queue):
        """(invoice, static_invoice): waits for either, and a little longer for a normal
        invoice once a static one came."""
        deadline = now_s() + self.reply_timeout_s
        invoice = static = None
        grace_end = deadline
        while invoice is None:
            timeout = deadline - now_s()
            if static is not None:
                timeout = min(timeout, grace_end - now_s())
            if timeout <= 0:
                break
            try:
                got = waiting.get(timeout=timeout)
            except queue.Empty:
                break
            if onionmsg.INVOICE in got.contents:
                invoice = got.contents[onionmsg.INVOICE]
            elif onionmsg.STATIC_INVOICE in got.contents and static is None:
                static = got.contents[onionmsg.STATIC_INVOICE]
                grace_end = now_s() + self.invoice_grace_s
            elif onionmsg.INVOICE_ERROR in got.contents:
                try:
                    error = asyncmsg.InvoiceError.decode(got.contents[onionmsg.INVOICE_ERROR])
                    why = error.error
                except DecodeError:
                    why = "unreadable invoice_error"
                raise PayError(f"the recipient refused: {why}")
        return invoice, static

    def _pay_invoice(self, offer_text: str, raw: bytes, invreq: bytes, amount: int,
                     signers: set, limits: "payer.Limits") -> dict:
        parsed = messages.parse_invoice(raw)
        decoded = parsed.to_json()
        if not decoded["signature_valid"]:
            raise PayError("the invoice signature does not verify")
        if decoded.get("invoice_node_id") not in signers:
            raise PayError("the invoice is not signed by the offer's issuer")
        if messages.invreq_part(raw) != messages.invreq_part(invreq):
            raise PayError("the invoice does not answer our invoice_request")
        if decoded["invoice_amount_msat"] != amount:
            raise PayError("the invoice asks another amount")
        if messages.expires_at(decoded) <= now_s():
            raise PayError("the invoice has expired")
        payment_hash = bytes.fromhex(decoded["invoice_payment_hash"])
        record = self._new(payment_hash, offer_text, "invoice", amount, raw)
        self._send(record, parsed.payment_routes, amount, payment_hash, NORMAL_FINAL_CLTV,
                   limits=limits)
        try:
            self.node.wait_sendpay(payment_hash.hex(), 60)
        except RpcError:
            pass   # the status below says what happened
        return self.status(payment_hash.hex())

    def _pay_static(self, offer_text: str, offer_data: bytes, raw: bytes, invreq: bytes,
                    amount: int, signers: set, limits: "payer.Limits") -> dict:
        parsed = messages.parse_static_invoice(raw)
        decoded = parsed.to_json()
        if not decoded["signature_valid"]:
            raise PayError("the static invoice signature does not verify")
        if decoded.get("invoice_node_id") not in signers:
            raise PayError("the static invoice is not signed by the offer's issuer")
        if offer_part(raw) != offer_part(offer_data):
            raise PayError("the static invoice is for another offer")
        if messages.expires_at(decoded) <= now_s():
            raise PayError("the static invoice has expired")
        held_paths = parsed.held_htlc_available_paths
        preimage = os.urandom(32)
        payment_hash = hashlib.sha256(preimage).digest()
        record = self._new(payment_hash, offer_text, "static", amount, raw, preimage)
        first = self._send(record, parsed.payment_routes, amount, payment_hash, HELD_FINAL_CLTV,
                           preimage=preimage, invreq=invreq, limits=limits,
                           before_sending=lambda peer: self._ask_hold(record, peer))
        release = record.get("release_paths")
        if release and held_paths:
            message = asyncmsg.HeldHtlcAvailable()
            reply = BlindedPath.parse(bytes.fromhex(release[0]))[0]
            record["held_htlc_available_sent"] = sum(
                self.messenger.send(p, {message.TYPE: message.encode()}, reply)
                for p in held_paths)
            self._save(record)
        self.log(f"async payment {payment_hash.hex()} sent via {first}", "info")
        return self.status(payment_hash.hex())

    def _ask_hold(self, record: dict, peer: str) -> None:
        """Ask our first hop to hold the HTLC; without it the payment just goes on."""
        try:
            answer = self.ask(peer, HOLD, {"payment_hash": record["payment_hash"]})
            paths = [p for p in answer["release_paths"]
                     if BlindedPath.parse(bytes.fromhex(p))[0]]
        except (ClientError, KeyError, TypeError, ValueError) as e:
            self.log(f"{peer} does not hold HTLCs for us ({e}); paying without a hold", "info")
            return
        record.update(held_by=peer, release_paths=paths)
        self._save(record)

    def _send(self, record: dict, routes, amount: int, payment_hash: bytes,
              final_extra: int, preimage: Optional[bytes] = None,
              invreq: Optional[bytes] = None, before_sending=None,
              limits: Optional["payer.Limits"] = None) -> str:
        """Send along the first usable path within the fee and CLTV limits; the first
        hop's id. A payment that never left is recorded as failed, with why."""
        try:
            return self._send_first_usable(record, routes, amount, payment_hash, final_extra,
                                           preimage, invreq, before_sending, limits)
        except PayError as e:
            if not record.get("first_hop"):
                record["failure"] = str(e)
                self._save(record)
            raise

    def _send_first_usable(self, record: dict, routes, amount: int, payment_hash: bytes,
                           final_extra: int, preimage: Optional[bytes], invreq: Optional[bytes],
                           before_sending, limits: Optional["payer.Limits"]) -> str:
        height = self.node.blockheight()
        errors = []
        for path, info in routes:
            if len(path.first_node_id) != 33:
                errors.append("introduction by channel id")
                continue
            final_cltv = height + final_extra
            intro_amount, intro_cltv = payer.at_introduction(amount, final_cltv, info)
            if not info.htlc_minimum_msat <= intro_amount <= info.htlc_maximum_msat:
                errors.append(f"{intro_amount} msat outside the path's htlc range")
                continue
            intro = path.first_node_id.hex()
            try:
                route = self.node.route_to(intro, intro_amount, intro_cltv - height)
            except RpcError as e:
                errors.append(f"no route to {intro}: {e.error.get('message', e)}")
                continue
            why = limits and payer.over_limits(limits, amount, route[0]["amount_msat"],
                                               route[0]["cltv"])
            if why:
                errors.append(why)
                continue
            forwards = [payer.Forward(bytes.fromhex(route[i]["node_id"]),
                                      route[i + 1]["channel"], route[i + 1]["amount_msat"],
                                      height + route[i + 1]["cltv"])
                        for i in range(len(route) - 1)]
            hops = payer.onion_hops(forwards, path, amount, final_cltv,
                                    preimage=preimage, invoice_request=invreq)
            first = route[0]
            if before_sending is not None:
                before_sending(first["node_id"])
            try:
                self.node.send_onion(hops, payment_hash,
                                     {"id": first["node_id"], "amount_msat": first["amount_msat"],
                                      "delay": first["cltv"]},
                                     amount, intro, f"clnlsp async payment ({record['kind']})")
            except RpcError as e:
                raise PayError(f"sendonion failed: {e.error.get('message', e)}") from e
            record["first_hop"] = first["node_id"]
            self._save(record)
            return first["node_id"]
        raise PayError("no usable payment path: " + "; ".join(errors))

    # --- records -----------------------------------------------------------------------------
    def _new(self, payment_hash: bytes, offer: str, kind: str, amount: int, invoice: bytes,
             preimage: Optional[bytes] = None) -> dict:
        record = {"payment_hash": payment_hash.hex(), "offer": offer, "kind": kind,
                  "amount_msat": amount, "invoice": invoice.hex(), "created_at": now_s(),
                  "preimage": preimage.hex() if preimage else None}
        self._save(record)
        return record

    def _save(self, record: dict) -> None:
        self.store.put(PAYMENTS, record["payment_hash"], record)
        with self._lock:
            self.payments[record["payment_hash"]] = record

    def status(self, payment_hash: str) -> dict:
        with self._lock:
            record = self.payments.get(payment_hash)
        if record is None:
            raise PayError(f"no async payment with hash {payment_hash}")
        attempt = self.node.sendpay_status(payment_hash) or {}
        state = {"complete": "complete", "failed": "failed"}.get(attempt.get("status"),
                                                                 "pending")
        if not attempt and record.get("failure"):
            state = "failed"   # it never left this node
        out = {"payment_hash": payment_hash, "kind": record["kind"],
               "amount_msat": record["amount_msat"], "state": state,
               "created_at": record["created_at"], "first_hop": record.get("first_hop"),
               "held_by": record.get("held_by"),
               "held_htlc_available_sent": record.get("held_htlc_available_sent", 0)}
        if state == "complete":
            out["payment_preimage"] = attempt.get("payment_preimage")
        if state == "failed" and attempt.get("erroronion"):
            out["error"] = "failed along the route"
        elif state == "failed" and record.get("failure"):
            out["error"] = record["failure"]
        return out

    def list(self) -> dict:
        with self._lock:
            hashes = sorted(self.payments, key=lambda h: self.payments[h]["created_at"])
        return {"payments": [self.status(h) for h in hashes]}

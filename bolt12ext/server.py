"""Static invoice server (LSP role of async payments), as LDK speaks it. Pure: each
incoming message gives an Outcome (messages to send, contexts and invoices to persist,
or why it is dropped); the runtime does the I/O.

Dance: the server hands a recipient paths out of band (`recipient_paths`); on them the
recipient asks offer_paths_request(slot) → offer_paths (long-lived paths for its offer,
reply path for serve_static_invoice) → serve_static_invoice → persisted, one invoice per
(recipient, slot) → static_invoice_persisted. An invoice_request on an offer path gets the
static invoice back and is forwarded to the recipient, the payer's reply path kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from . import asyncmsg, messages, onionmsg
from .blinding import BlindedPath, parse_paths
from .contexts import PathBook, PathContext
from .offer import offer_part
from .onionmsg import Received
from .tlv import DecodeError, records

OFFER_PATHS_TTL_S = 365 * 24 * 3600
SERVE_PATH_TTL_S = OFFER_PATHS_TTL_S   # the recipient refreshes its invoice on it
REQUEST = "server_request"
SERVE = "server_serve"
OFFER = "server_offer"
PURPOSES = (REQUEST, SERVE, OFFER)


@dataclass(frozen=True)
class Limits:
    max_slots_per_recipient: int = 10
    max_recipients: int = 1000
    max_invoice_bytes: int = messages.STATIC_INVOICE_MAX_BYTES


@dataclass
class Send:
    path: BlindedPath
    contents: Dict[int, bytes]
    reply_path: Optional[BlindedPath] = None


@dataclass
class Outcome:
    sends: List[Send] = field(default_factory=list)
    new_paths: Dict[str, PathContext] = field(default_factory=dict)
    invoice: Optional[Tuple[str, dict]] = None   # (key, record) to persist
    drop: Optional[str] = None


def invoice_key(recipient: str, slot: int) -> str:
    return f"{recipient}-{slot}"


class ServerCore:
    def __init__(self, book: PathBook, limits: Limits = Limits()):
        self.book = book
        self.limits = limits

    def recipient_paths(self, recipient: str, now: int, ttl_s: int = OFFER_PATHS_TTL_S):
        """A path on which `recipient` may ask for offer paths: (path, path_id, context)."""
        return self.book.make(REQUEST, now, ttl_s, peer=recipient)

    def handle(self, ctx: PathContext, got: Received, now: int,
               invoices: Dict[str, dict]) -> Outcome:
        """`invoices`: the persisted records, by invoice_key."""
        try:
            (tlv_type, value), = got.contents.items()
        except ValueError:
            return Outcome(drop="no payload")
        try:
            if ctx.purpose == REQUEST and tlv_type == onionmsg.OFFER_PATHS_REQUEST:
                return self._offer_paths(ctx, asyncmsg.OfferPathsRequest.decode(value), got,
                                         now, invoices)
            if ctx.purpose == SERVE and tlv_type == onionmsg.SERVE_STATIC_INVOICE:
                return self._serve(ctx, asyncmsg.ServeStaticInvoice.decode(value), got, now)
            if ctx.purpose == OFFER and tlv_type == onionmsg.INVOICE_REQUEST:
                return self._invoice_request(ctx, value, got, now, invoices)
        except DecodeError as e:
            return Outcome(drop=f"malformed message: {e}")
        return Outcome(drop=f"type {tlv_type} not expected on a {ctx.purpose} path")

    def _offer_paths(self, ctx, request, got, now, invoices) -> Outcome:
        if got.reply_path is None:
            return Outcome(drop="offer_paths_request without reply path")
        if request.invoice_slot >= self.limits.max_slots_per_recipient:
            return Outcome(drop=f"slot {request.invoice_slot} beyond the limit")
        known = {rec["recipient"] for rec in invoices.values()}
        if ctx.peer not in known and len(known) >= self.limits.max_recipients:
            return Outcome(drop="too many recipients")
        slot = request.invoice_slot
        offer_path, offer_id, offer_ctx = self.book.make(OFFER, now, OFFER_PATHS_TTL_S,
                                                         peer=ctx.peer, slot=slot)
        serve_path, serve_id, serve_ctx = self.book.make(
            SERVE, now, SERVE_PATH_TTL_S, peer=ctx.peer, slot=slot,
            offer_paths=[offer_path.serialize().hex()], offer_path_ids=[offer_id])
        reply = asyncmsg.OfferPaths([offer_path], now + OFFER_PATHS_TTL_S)
        return Outcome(sends=[Send(got.reply_path, {reply.TYPE: reply.encode()}, serve_path)],
                       new_paths={offer_id: offer_ctx, serve_id: serve_ctx})

    def _serve(self, ctx, serve, got, now) -> Outcome:
        inv = serve.invoice
        if len(inv) > self.limits.max_invoice_bytes:
            return Outcome(drop="static invoice larger than allowed")
        decoded = messages.decode_static_invoice(inv)
        if not decoded["signature_valid"]:
            return Outcome(drop="static invoice signature does not verify")
        expires = messages.expires_at(decoded)
        if expires <= now:
            return Outcome(drop="static invoice already expired")
        ours = set(ctx.data.get("offer_paths", []))
        theirs = next((v for t, v, _ in records(inv) if t == 16), None)
        if theirs is None or not {p.serialize().hex() for p in parse_paths(theirs)} <= ours:
            return Outcome(drop="static invoice offer paths are not the ones we gave")
        slot = int(ctx.data["slot"])
        record = {"recipient": ctx.peer, "slot": slot, "invoice": inv.hex(),
                  "forward_path": serve.forward_invoice_request_path.serialize().hex(),
                  "offer_path_ids": list(ctx.data.get("offer_path_ids", [])),
                  "stored_at": now, "expires_at": expires}
        sends = []
        if got.reply_path is not None:
            done = asyncmsg.StaticInvoicePersisted()
            sends.append(Send(got.reply_path, {done.TYPE: done.encode()}))
        return Outcome(sends=sends, invoice=(invoice_key(ctx.peer, slot), record))

    def _invoice_request(self, ctx, invreq, got, now, invoices) -> Outcome:
        if got.reply_path is None:
            return Outcome(drop="invoice_request without reply path")
        stored = invoices.get(invoice_key(ctx.peer, int(ctx.data["slot"])))
        if stored is None:
            return Outcome(drop="no static invoice stored for this offer")
        if stored["expires_at"] <= now:
            return Outcome(drop="the stored static invoice has expired")
        request = messages.decode_invoice_request(invreq)
        if not request["signature_valid"]:
            return Outcome(drop="invoice_request signature does not verify")
        invoice = bytes.fromhex(stored["invoice"])
        if offer_part(invreq) != offer_part(invoice):
            return Outcome(drop="invoice_request for another offer")
        forward, _ = BlindedPath.parse(bytes.fromhex(stored["forward_path"]))
        return Outcome(sends=[
            Send(got.reply_path, {onionmsg.STATIC_INVOICE: invoice}),
            Send(forward, {onionmsg.INVOICE_REQUEST: invreq}, got.reply_path)])

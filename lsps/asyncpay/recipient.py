"""Async recipient at run time (client role of async payments).

`create_offer` gets paths from the static invoice server over the LSPS0 extension
`clnlsp.asyncpay.get_server_paths`, runs the offer-paths dance, builds the offer
(issuer key from `makesecret`) and the static invoice (payment paths through our
channel peers, the server first; held_htlc_available paths introduced by the
server so they wait in its mailbox while we are away) and has it persisted. A
background loop re-serves invoices before they age. Payments on our paths are
recognised by their final hop's encrypted data (we made those bytes) and claimed
from `htlc_accepted`; forwarded invoice_requests get normal invoices.

Datastore areas: "asyncoffer" (offers), "asyncpaypath" (payment path contexts),
"asyncissued" (preimages of invoices we issued), "asyncrecv" (payments seen).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from typing import Callable, Dict, List, Optional

from bolt12ext import asyncmsg, onionmsg, recipient
from bolt12ext.blinding import BlindedPath, PaymentHop, PaymentRelay, payment_path
from bolt12ext.build import STATIC_INVOICE_DEFAULT_EXPIRY, offer_string
from bolt12ext.sphinx import pubkey
from bolt12ext.tlv import DecodeError
from lsps.asyncpay.claims import RECEIVED, PaymentClaims
from lsps.asyncpay.jit_offers import (
    JIT_INVREQ,
    JitOffers,
    JitSeller,
    can_receive_through,
    jit_lsp,
)
from lsps.asyncpay.messenger import OnionMessenger, now_s
from lsps.node.rpc import ClnNode, RpcError
from lsps.node.store import Area, Store

ISSUER_LABEL = "clnlsp/async-issuer/v1"
GET_SERVER_PATHS = "clnlsp.asyncpay.get_server_paths"
OFFERS, PAYPATHS = Area("asyncoffer"), Area("asyncpaypath")
ISSUED = Area("asyncissued")
HELD, INVREQ = "recipient_held", "recipient_invreq"
MAX_SLOTS = 10
MAX_PAYMENT_PATHS = 3
# Invoices one offer may have outstanding: anyone may send invoice_requests, and each
# one stores a preimage and payment paths until its payment can no longer come.
MAX_OPEN_INVOICES_PER_OFFER = 100
KEEP_AFTER_EXPIRY_S = 86400


class RecipientError(Exception):
    pass


class AsyncRecipient(PaymentClaims, JitOffers):
    def __init__(self, node: ClnNode, store: Store, messenger: OnionMessenger,
                 ask: Callable[[str, str, dict], dict], log: Callable[[str, str], None],
                 refresh_interval_s: int = 7200, reply_timeout_s: int = 30,
                 jit: Optional[JitSeller] = None):
        self.node = node
        self.store = store
        self.messenger = messenger
        self.ask = ask
        self.log = log
        self.refresh_interval_s = refresh_interval_s
        self.reply_timeout_s = reply_timeout_s
        self.issuer_secret = node.makesecret(ISSUER_LABEL)
        self.issuer_id = pubkey(self.issuer_secret)
        self._lock = threading.RLock()
        self._taking: Dict[str, set] = {}   # server id -> slots being set up right now
        self.offers: Dict[str, dict] = {}
        self.paypaths: Dict[str, dict] = {}
        self.issued: Dict[str, dict] = {}
        self.received: Dict[str, dict] = {}
        self._stop = threading.Event()
        JitOffers.__init__(self, jit)

    def start(self) -> None:
        self.offers = self.store.list(OFFERS)
        self.paypaths = self.store.list(PAYPATHS)
        self.issued = self.store.list(ISSUED)
        self.received = self.store.list(RECEIVED)
        self.messenger.register([HELD], self.on_held_htlc_available)
        self.messenger.register([INVREQ, JIT_INVREQ], self.on_invoice_request)
        threading.Thread(target=self._refresh_loop, name="clnlsp-async-refresh",
                         daemon=True).start()

    # --- offers ------------------------------------------------------------------------------
    def create_offer(self, server_id: str, description: str,
                     amount_msat: Optional[int]) -> dict:
        answer = self.ask(server_id, GET_SERVER_PATHS, {})   # ClientError goes to the caller
        try:
            server_paths = [BlindedPath.parse(bytes.fromhex(p))[0] for p in answer["paths"]]
        except (KeyError, TypeError, ValueError) as e:
            raise RecipientError(f"{server_id} sent unusable server paths: {e}") from e
        with self._lock:
            # Taken now, not when the record is saved: two offers made at once must
            # not share a slot (the second invoice would replace the first's).
            used = {o["slot"] for o in self.offers.values() if o["server_id"] == server_id}
            used |= self._taking.get(server_id, set())
            slot = next((s for s in range(MAX_SLOTS) if s not in used), None)
            if slot is not None:
                self._taking.setdefault(server_id, set()).add(slot)
        if slot is None:
            raise RecipientError(f"all {MAX_SLOTS} slots at {server_id} hold offers; "
                                 "forget one with asyncpay-forgetoffer")
        try:
            return self._create_offer(server_id, server_paths, slot, description, amount_msat)
        finally:
            with self._lock:
                self._taking[server_id].discard(slot)

    def _create_offer(self, server_id: str, server_paths: list, slot: int, description: str,
                      amount_msat: Optional[int]) -> dict:
        got = self._ask_server(server_paths[0], asyncmsg.OfferPathsRequest(slot),
                               onionmsg.OFFER_PATHS)
        if got is None:
            raise RecipientError(f"{server_id} did not answer offer_paths_request")
        try:
            offer_paths = asyncmsg.OfferPaths.decode(got.contents[onionmsg.OFFER_PATHS])
        except DecodeError as e:
            raise RecipientError(f"{server_id} sent an unreadable offer_paths: {e}") from e
        if got.reply_path is None:
            raise RecipientError(f"{server_id}'s offer_paths has no path to serve the invoice")
        offer = recipient.make_offer(self.issuer_id, offer_paths.paths, description,
                                     amount_msat, offer_paths.paths_absolute_expiry,
                                     self.node.network())
        record = {"offer_id": os.urandom(16).hex(), "server_id": server_id, "slot": slot,
                  "offer": offer.hex(), "description": description,
                  "amount_msat": amount_msat, "serve_path": got.reply_path.serialize().hex(),
                  "created_at": now_s(), "state": "not_persisted", "invoice_expires_at": None,
                  "persisted_at": None, "releases_sent": 0, "invoices_issued": 0,
                  "peer_address": self.node.peer_address(server_id)}
        self._save(record)
        self.serve(record["offer_id"])
        return self.view(self.offers[record["offer_id"]])

    def serve(self, offer_id: str) -> bool:
        """Build a fresh static invoice for the offer and have the server persist it."""
        with self._lock:
            if offer_id not in self.offers:
                return False   # forgotten meanwhile
            record = dict(self.offers[offer_id])
        offer = bytes.fromhex(record["offer"])
        server = bytes.fromhex(record["server_id"])
        now = now_s()
        ttl = STATIC_INVOICE_DEFAULT_EXPIRY + 86400
        life, jit = STATIC_INVOICE_DEFAULT_EXPIRY, None
        if self.inbound_from(record["server_id"]) < (record["amount_msat"] or 1):
            jit = self.static_jit_paths(record, STATIC_INVOICE_DEFAULT_EXPIRY)
        if jit is not None:   # no channel from the server can take it: a JIT channel will
            pay_paths, life = jit
        else:
            pay_paths = self._payment_paths(record, "static", ttl)
        if not pay_paths:
            self.log(f"async offer {offer_id}: no channel with a known inbound policy, "
                     "static invoice not built", "info")
            return False
        held = [self.messenger.new_path(HELD, ttl, via=server, offer_id=offer_id)[0],
                self.messenger.new_path(HELD, ttl, offer_id=offer_id)[0]]
        forward = self.messenger.new_path(INVREQ, ttl, via=server, offer_id=offer_id)[0]
        invoice = recipient.make_static_invoice(offer, self.issuer_secret, pay_paths, held, now,
                                                life)
        serve = BlindedPath.parse(bytes.fromhex(record["serve_path"]))[0]
        got = self._ask_server(serve, asyncmsg.ServeStaticInvoice(invoice, forward),
                               onionmsg.STATIC_INVOICE_PERSISTED)
        with self._lock:
            record = self.offers.get(offer_id)
            if record is None:
                return False
            if got is None:  # an earlier invoice, if any, stays in place
                self.log(f"async offer {offer_id}: server did not persist the invoice", "info")
            else:
                record.update(state="ready", persisted_at=now, static_invoice=invoice.hex(),
                              invoice_expires_at=now + life, static_jit=jit is not None)
            self._save(record)
        return got is not None

    def _ask_server(self, path: BlindedPath, message, answer_type: int
                    ) -> Optional[onionmsg.Received]:
        reply, reply_id, waiting = self.messenger.reply_path(self.reply_timeout_s + 60)
        try:
            if not self.messenger.send(path, {message.TYPE: message.encode()}, reply):
                return None
            deadline = now_s() + self.reply_timeout_s
            while now_s() < deadline:
                try:
                    got = waiting.get(timeout=max(0.1, deadline - now_s()))
                except queue.Empty:
                    return None
                if answer_type in got.contents:
                    return got
            return None
        finally:
            self.messenger.forget_reply(reply_id)

    def _payment_paths(self, record: dict, kind: str, ttl_s: int,
                       payment_hash: Optional[str] = None) -> list:
        """Blinded payment paths through our channel peers (the server's first)."""
        height = self.node.blockheight()
        channels = [c for c in self.node.channels() if can_receive_through(c)]
        first = record["server_id"] or record.get("lsp_id")
        channels.sort(key=lambda c: (c["peer_id"] != first, -c["receivable_msat"]))
        out = []
        for channel in channels[:MAX_PAYMENT_PATHS]:
            policy = channel["remote_policy"]
            hop = PaymentHop(bytes.fromhex(channel["peer_id"]), channel["inbound_scid"],
                             PaymentRelay(policy["cltv_expiry_delta"],
                                          policy["fee_proportional_millionths"],
                                          policy["fee_base_msat"]),
                             policy.get("htlc_minimum_msat", 0))
            path, info = payment_path(
                os.urandom(32), [hop], self.messenger.node_id,
                os.urandom(32), height + recipient.CLTV_ROOM_BLOCKS,
                max(channel["capacity_sat"] * 1000, 1),
                recipient.MIN_FINAL_CLTV_EXPIRY_DELTA)
            self.keep_path(path, {"offer_id": record["offer_id"], "kind": kind,
                                  "payment_hash": payment_hash, "expires_at": now_s() + ttl_s,
                                  "via": channel["peer_id"]})
            out.append((path, info))
        return out

    def keep_path(self, path: BlindedPath, ctx: dict) -> None:
        """Persist a payment path's context (before the path leaves us): an HTLC is
        ours when its final payload carries the path's encrypted data."""
        key = hashlib.sha256(path.hops[-1].encrypted_data).hexdigest()
        self.store.put(PAYPATHS, key, ctx)
        with self._lock:
            self.paypaths[key] = ctx

    def _save(self, record: dict) -> None:
        self.store.put(OFFERS, record["offer_id"], record)
        with self._lock:
            self.offers[record["offer_id"]] = record

    def forget(self, offer_id: str) -> dict:
        with self._lock:
            if offer_id not in self.offers:
                raise RecipientError(f"no async offer {offer_id}")
            del self.offers[offer_id]
        self.store.delete(OFFERS, offer_id)
        return {"forgotten": offer_id}

    def _refresh_loop(self) -> None:
        try:
            self.reconnect()
        except Exception as e:  # refreshing goes on
            self.log(f"async recipient: reconnecting failed: {e!r}", "warn")
        while not self._stop.wait(min(60, self.refresh_interval_s)):
            try:
                self.refresh_due()
            except Exception as e:  # keep refreshing whatever one offer did
                self.log(f"async offer refresh failed: {e!r}", "warn")

    def reconnect(self) -> None:
        """Back online: connect to our offers' servers and LSPs. A recipient without a
        channel has nobody lightningd reconnects to, and its held payments wait there
        (the server's mailbox keeps their messages, the JIT channel opens from there)."""
        peers: Dict[str, Optional[str]] = {}
        with self._lock:
            for o in self.offers.values():
                peer = o["server_id"] or o.get("lsp_id")
                peers[peer] = peers.get(peer) or o.get("peer_address")
        connected = self.node.connected_peers()
        for peer in sorted(p for p in peers if p and p not in connected):
            try:
                self.node.connect(peer, peers[peer])
            except RpcError as e:
                self.log(f"async recipient: cannot reconnect to {peer}: {e}", "info")

    def refresh_due(self) -> List[str]:
        now = now_s()
        with self._lock:
            due = [o["offer_id"] for o in self.offers.values() if o["server_id"]
                   and (o["state"] != "ready"
                        or now - (o["persisted_at"] or 0) >= self.refresh_interval_s
                        or _in_last_quarter(o, now))]
        return [offer_id for offer_id in due if self.serve(offer_id)]

    def view(self, record: dict) -> dict:
        with self._lock:
            payments = [dict(p, payment_hash=h) for h, p in self.received.items()
                        if p["offer_id"] == record["offer_id"]]
        return {"offer_id": record["offer_id"],
                "offer": offer_string(bytes.fromhex(record["offer"])),
                "server_id": record["server_id"], "slot": record["slot"],
                "description": record["description"], "amount_msat": record["amount_msat"],
                "state": record["state"], "created_at": record["created_at"],
                "invoice_persisted_at": record["persisted_at"],
                "invoice_expires_at": record["invoice_expires_at"],
                "releases_sent": record["releases_sent"],
                "invoices_issued": record["invoices_issued"],
                "payments": sorted(payments, key=lambda p: p["at"]), **self.jit_view(record)}

    def list_offers(self) -> dict:
        with self._lock:
            records = sorted(self.offers.values(), key=lambda o: o["created_at"])
        return {"offers": [self.view(r) for r in records]}

    # --- messages on our paths ---------------------------------------------------------------
    def on_held_htlc_available(self, ctx, got: onionmsg.Received) -> None:
        if onionmsg.HELD_HTLC_AVAILABLE not in got.contents or got.reply_path is None:
            self.messenger.drop("held_htlc_available expected, with a reply path")
            return
        release = asyncmsg.ReleaseHeldHtlc()
        if self.messenger.send(got.reply_path, {release.TYPE: release.encode()}):
            self._count(ctx.data.get("offer_id"), "releases_sent")

    def on_invoice_request(self, ctx, got: onionmsg.Received) -> None:
        with self._lock:
            record = self.offers.get(ctx.data.get("offer_id"))
        invreq = got.contents.get(onionmsg.INVOICE_REQUEST)
        if record is None or invreq is None or got.reply_path is None:
            self.messenger.drop("forwarded invoice_request unusable")
            return
        try:   # checked before any payment path is made and kept for it
            request = recipient.check_invoice_request(invreq, bytes.fromhex(record["offer"]))
        except DecodeError as e:
            self.messenger.drop(f"forwarded invoice_request refused: {e}")
            return
        if self._open_invoices(record["offer_id"]) >= MAX_OPEN_INVOICES_PER_OFFER:
            self.messenger.drop("too many open invoices for this offer")
            return
        if jit_lsp(record):   # may buy a JIT channel: never on the messenger's worker
            self.answer_jit_request(record, request, invreq, got.reply_path)
            return
        self.issue_invoice(record, request, invreq, got.reply_path,
                           lambda payment_hash, ttl: self._payment_paths(
                               record, "invoice", ttl, payment_hash.hex()))

    def issue_invoice(self, record: dict, request: dict, invreq: bytes, reply_path,
                      make_paths: Callable, relative_expiry: int =
                      recipient.INVOICE_RELATIVE_EXPIRY_S) -> bool:
        """Answer a checked invoice_request with an invoice over `make_paths(payment_hash,
        ttl)`; the preimage is kept before the invoice leaves."""
        preimage = os.urandom(32)
        payment_hash = hashlib.sha256(preimage).digest()
        pay_paths = make_paths(payment_hash, relative_expiry + KEEP_AFTER_EXPIRY_S)
        try:
            invoice = recipient.invoice_for(invreq, request, self.issuer_secret, pay_paths,
                                            payment_hash, now_s(), relative_expiry)
        except (DecodeError, ValueError) as e:
            self.messenger.drop(f"no invoice for a forwarded invoice_request: {e}")
            return False
        amount = recipient.expected_amount(request)
        issued = {"offer_id": record["offer_id"], "preimage": preimage.hex(),
                  "amount_msat": amount, "expires_at": now_s() + relative_expiry}
        self.store.put(ISSUED, payment_hash.hex(), issued)
        with self._lock:
            self.issued[payment_hash.hex()] = issued
        if self.messenger.send(reply_path, {onionmsg.INVOICE: invoice}):
            self._count(record["offer_id"], "invoices_issued")
            return True
        return False

    def _open_invoices(self, offer_id: str) -> int:
        """Forget issued invoices (and payment paths) whose payment can no longer come,
        then count the offer's outstanding ones."""
        now = now_s()
        with self._lock:
            old = [h for h, i in self.issued.items()
                   if i["expires_at"] + KEEP_AFTER_EXPIRY_S <= now]
            for h in old:
                del self.issued[h]
            gone = [k for k, c in self.paypaths.items() if c["expires_at"] <= now]
            for k in gone:
                del self.paypaths[k]
            count = sum(1 for i in self.issued.values() if i["offer_id"] == offer_id)
        for h in old:
            self.store.delete(ISSUED, h)
        for k in gone:
            self.store.delete(PAYPATHS, k)
        return count

    def _count(self, offer_id: Optional[str], field: str) -> None:
        with self._lock:
            record = self.offers.get(offer_id)
            if record is not None:
                record[field] += 1
                self._save(record)


def _in_last_quarter(offer: dict, now: int) -> bool:
    """The static invoice is in the last quarter of its life (a JIT purchase's
    valid_until may make it short): time to serve a fresh one."""
    expires, made = offer["invoice_expires_at"], offer["persisted_at"]
    return bool(expires and made) and expires - now <= (expires - made) // 4

"""HTLC holding at run time (the sender's LSP, option `lsp-asyncpay-hold`).

Holds come from LDK's `hold_htlc` record (75537) or from our LSPS0 extension
`clnlsp.asyncpay.hold` {payment_hash} → {release_paths, expires_at}. A held HTLC's
`htlc_accepted` answer is kept back; `release_held_htlc` on a release path answers
it with `continue` and the update_add_htlc records minus 75537. Each block, HTLCs
close to expiry are failed. Holds persist in area "asynchold"; lightningd replays
held HTLCs to the hook after a restart, and the persisted state says what to do.
"""

from __future__ import annotations

import threading
from typing import Callable, Dict

import lsps.lsps0.msgs as jsonrpc
from bolt12ext import asyncmsg, onionmsg
from bolt12ext.hold import Hold, HoldBook, HoldError, Limits
from bolt12ext.tlv import DecodeError
from lsps.asyncpay.messenger import OnionMessenger, now_s
from lsps.htlc import TEMPORARY_NODE_FAILURE
from lsps.lsps0.msgs import LspsError
from lsps.lsps0.service import Call, MethodSpec
from lsps.node.events import Htlc
from lsps.node.replies import htlc_continue, htlc_fail
from lsps.node.store import Area

HOLDS = Area("asynchold")
HOLD_METHOD = "clnlsp.asyncpay.hold"
RELEASE = "hold_release"
HOLD_REFUSED = 1700   # LSPS0 error of the hold extension: limits reached


def forward_released(extra_tlvs: str) -> dict:
    """`continue`, forwarding every update_add_htlc record but hold_htlc."""
    if not extra_tlvs:
        return htlc_continue()
    try:
        rest = asyncmsg.without_hold_htlc(bytes.fromhex(extra_tlvs))
    except (DecodeError, ValueError):   # lightningd parsed them, so this cannot happen
        return htlc_continue()
    return dict(htlc_continue(), extra_tlvs=rest.hex())


class HtlcHolder:
    def __init__(self, store, messenger: OnionMessenger, limits: Limits,
                 log: Callable[[str, str], None]):
        self.store = store
        self.messenger = messenger
        self.book = HoldBook(limits)
        self.log = log
        self._lock = threading.Lock()
        self._waiting: Dict[str, tuple] = {}   # htlc key -> (respond, extra_tlvs)

    def start(self, dispatcher=None) -> None:
        for key, record in self.store.list(HOLDS).items():
            try:
                self.book.holds[key] = Hold.from_record(record)
            except (KeyError, TypeError):
                continue
        self.messenger.register([RELEASE], self.on_release)
        if dispatcher is not None:
            dispatcher.register(MethodSpec(HOLD_METHOD, 0, self.on_hold_request,
                                           required=frozenset({"payment_hash"})))

    def _save(self, hold) -> None:
        self.store.put(HOLDS, hold.key, hold.to_record())

    # --- LSPS0 extension ---------------------------------------------------------------------
    def on_hold_request(self, call: Call) -> dict:
        payment_hash = call.params["payment_hash"]
        if not isinstance(payment_hash, str) or len(payment_hash) != 64 or \
                any(c not in "0123456789abcdef" for c in payment_hash):
            raise LspsError(jsonrpc.INVALID_PARAMS,
                            "payment_hash: expected 32 bytes in lowercase hex")
        channel_peers = {c["peer_id"] for c in self.messenger.node.channels()}
        with self._lock:
            try:
                hold = self.book.register(call.peer_id, payment_hash, now_s(), channel_peers)
            except HoldError as e:
                raise LspsError(HOLD_REFUSED, str(e)) from e
            ttl = hold.expires_at - now_s()
            # Asking again for the same hold replaces its release path, so that asking
            # at will cannot grow the store.
            path, path_id, _ = self.messenger.new_path(
                RELEASE, ttl, peer=call.peer_id, keep_per_peer=1,
                alike=lambda c: (c.purpose, c.data.get("payment_hash")),
                payment_hash=payment_hash)
            hold.release_path_ids = [*hold.release_path_ids, path_id][-1:]
            self._save(hold)
        return {"release_paths": [path.serialize().hex()], "expires_at": hold.expires_at}

    # --- HTLCs -------------------------------------------------------------------------------
    @staticmethod
    def flagged(htlc: Htlc) -> bool:
        """Does the HTLC carry hold_htlc (75537)?"""
        extra = htlc.extra_tlvs
        try:
            return bool(extra) and asyncmsg.has_hold_htlc(bytes.fromhex(extra))
        except (DecodeError, ValueError):
            return False

    def on_htlc(self, htlc: Htlc, respond) -> bool:
        """True when the HTLC is ours to hold (it is then answered now or later)."""
        extra, key = htlc.extra_tlvs, htlc.key
        with self._lock:
            action, hold = self.book.on_htlc(
                htlc.peer_id, htlc.payment_hash, key, htlc.amount_msat, htlc.cltv_expiry,
                self.flagged(htlc), now_s(), htlc.height)
            if action is None:
                return False
            if hold is not None:
                self._save(hold)
            if action == "hold":
                self._waiting[key] = (respond, extra)
        if action == "forward":
            respond(forward_released(extra))
        elif action == "fail":
            respond(htlc_fail(TEMPORARY_NODE_FAILURE))
        else:
            self.log(f"holding HTLC {key} ({htlc.payment_hash}) until released", "info")
        return True

    def on_release(self, ctx, got: onionmsg.Received) -> None:
        if onionmsg.RELEASE_HELD_HTLC not in got.contents:
            self.messenger.drop("release_held_htlc expected on a release path")
            return
        with self._lock:
            hold = self.book.release(ctx.peer, ctx.data["payment_hash"], now_s())
            if hold is None:
                return
            ready = [self._waiting.pop(k) for k in list(hold.htlcs) if k in self._waiting]
            hold.htlcs.clear()
            self._save(hold)
        self.log(f"released {len(ready)} held HTLC(s) for {hold.payment_hash}", "info")
        for respond, extra in ready:
            respond(forward_released(extra))

    def on_block(self, height: int) -> None:
        with self._lock:
            due = self.book.due(height)
            failing = []
            for hold, key in due:
                self.book.fail(hold, key, "CLTV expiry close")
                self._save(hold)
                if key in self._waiting:
                    failing.append(self._waiting.pop(key)[0])
            for hold in self.book.stale(now_s()):
                del self.book.holds[hold.key]
                self.store.delete(HOLDS, hold.key)
        for respond in failing:
            respond(htlc_fail(TEMPORARY_NODE_FAILURE))
        if failing:
            self.log(f"failed {len(failing)} held HTLC(s) before their expiry", "info")

    def list(self) -> dict:
        with self._lock:
            holds = sorted(self.book.holds.values(), key=lambda h: h.created_at)
            out = []
            for hold in holds:
                out.append({"peer_id": hold.peer, "payment_hash": hold.payment_hash,
                            "state": hold.state, "created_at": hold.created_at,
                            "expires_at": hold.expires_at, "released_at": hold.released_at,
                            "release_path_ids": list(hold.release_path_ids),
                            "why": hold.why or None,
                            "htlcs": [dict(v, htlc=k) for k, v in sorted(hold.htlcs.items())]})
        return {"held": out}

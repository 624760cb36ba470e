"""LSPS5 service at run time: the lsps5.* methods (webhooks persisted before the
answer), and `notify`: a signed notification POSTed to every webhook of a client that
is not connected, once per method per cooldown.

Datastore area "lsps5-webhooks": one record per client (lsps/lsps5/service.py)."""

from __future__ import annotations

import threading
from typing import Callable, Dict, List, Optional

import lsps.lsps5.msgs as M
import lsps.lsps5.service as S
from lsps import quota
from lsps.lsps0.msgs import LspsError
from lsps.lsps0.service import Dispatcher, MethodSpec
from lsps.lsps5.delivery import Delivery
from lsps.node.rpc import ClnNode
from lsps.node.store import Area, Store
from lsps.runtime.threads import now_ms

WEBHOOKS = Area("lsps5-webhooks")
MAX_CLIENTS = 10_000   # clients with webhooks; those without a channel share half
PRUNE_EVERY_MS = 3600 * 1000
EXPIRY_WARNING_BLOCKS = 24   # bLIP-55's expiry_soon: within 24 blocks of timing out


class Lsps5Service:
    def __init__(self, node: ClnNode, store: Store, dispatcher: Dispatcher,
                 is_connected: Callable[[str], bool], policy: S.Policy, delivery: Delivery,
                 log: Callable[[str, str], None]):
        self.node = node
        self.store = store
        self.is_connected = is_connected
        self.policy = policy
        self.delivery = delivery
        self.log = log
        self.lock = threading.Lock()
        self.records: Dict[str, dict] = {}
        self.cooldowns = S.Cooldowns()
        self.sent: Dict[str, int] = {}
        self._pruned_ms = 0
        dispatcher.register(MethodSpec(M.SET_WEBHOOK, 5, self._set,
                                       required=frozenset({"app_name", "webhook"})))
        dispatcher.register(MethodSpec(M.LIST_WEBHOOKS, 5, self._list))
        dispatcher.register(MethodSpec(M.REMOVE_WEBHOOK, 5, self._remove,
                                       required=frozenset({"app_name"})))

    def start(self) -> None:
        with self.lock:
            self.records = self.store.list(WEBHOOKS)

    # --- lsps5.* ---------------------------------------------------------------------
    def _set(self, call) -> dict:
        peer, now = call.peer_id, now_ms()
        with self.lock:
            known = self.records.get(peer)
            if known is None:
                self._admit(peer)
            record = {**S.new_record(now), **(known or {})}
            record["webhooks"] = dict(record["webhooks"])
            result, changed = S.set_webhook(record, call.params, self.policy, now)
            self.store.put(WEBHOOKS, peer, record)   # before the answer
            self.records[peer] = record
        if changed:   # to this webhook only, and before anything else goes to it
            self._post(peer, call.params["webhook"], M.notification(M.WEBHOOK_REGISTERED),
                       M.WEBHOOK_REGISTERED)
        return result

    def _admit(self, peer: str) -> None:
        """Caller holds the lock. Many fresh node ids must not lock out our clients."""
        counts = {p: 1 for p in self.records}
        channel_peers = {c["peer_id"] for c in self.node.channels()}
        why = quota.refusal(counts, peer, 1, MAX_CLIENTS, channel_peers)
        if why:
            raise LspsError(M.TOO_MANY_WEBHOOKS, f"too many webhooks ({why})",
                            {"max_webhooks": self.policy.max_webhooks})

    def _list(self, call) -> dict:
        with self.lock:
            return S.list_webhooks(self.records.get(call.peer_id), self.policy)

    def _remove(self, call) -> dict:
        peer = call.peer_id
        with self.lock:
            known = self.records.get(peer)
            record = None if known is None else {**known, "webhooks": dict(known["webhooks"])}
            result = S.remove_webhook(record, call.params)
            self.store.put(WEBHOOKS, peer, record)
            self.records[peer] = record
        return result

    # --- waking clients --------------------------------------------------------------
    def notify(self, peer_id: str, method: str, params: Optional[dict] = None) -> bool:
        """Wake `peer_id` about `method` when it is away and has webhooks; once per
        method per cooldown. Never blocks: the POSTs are queued."""
        if self.is_connected(peer_id):
            return False
        with self.lock:
            record = self.records.get(peer_id)
            hooks = list(record["webhooks"].values()) if record else []
            if not hooks or not self.cooldowns.take(peer_id, method, now_ms(),
                                                    self.policy.cooldown_s):
                return False
        body = M.notification(method, params)
        for url in hooks:
            self._post(peer_id, url, body, method)
        self.log(f"lsps5: {method} sent to {len(hooks)} webhook(s) of {peer_id}", "info")
        return True

    def wake(self, peer_id: str, method: str) -> bool:
        """Notify (as `notify`); True while `peer_id` is being woken about `method`:
        away, with webhooks, notified now or within the cooldown."""
        if self.notify(peer_id, method):
            return True
        with self.lock:
            return bool(self.records.get(peer_id, {}).get("webhooks")) and \
                not self.is_connected(peer_id) and self.cooldowns.recent(
                    peer_id, method, now_ms(), self.policy.cooldown_s)

    def _post(self, peer_id: str, url: str, body: bytes, method: str) -> None:
        if self.delivery.post(url, body, peer_id):
            with self.lock:
                self.sent[method] = self.sent.get(method, 0) + 1

    def on_connect(self, peer_id: str) -> None:
        """Back: the cooldown restarts for its next absence."""
        with self.lock:
            self.cooldowns.reset(peer_id)

    def on_block(self, height: int) -> None:
        self._warn_expiring(height)
        self._prune()

    def _warn_expiring(self, height: int) -> None:
        """lsps5.expiry_soon to an absent client with an HTLC on a channel with us
        within 24 blocks of its expiry (then a channel would have to close)."""
        with self.lock:
            watched = {p for p, r in self.records.items() if r["webhooks"]}
        if not watched:
            return
        soonest: Dict[str, int] = {}
        for c in self.node.channels():
            peer = c["peer_id"]
            for expiry in c.get("htlc_expiries", []):
                if peer in watched and expiry - height <= EXPIRY_WARNING_BLOCKS:
                    soonest[peer] = min(expiry, soonest.get(peer, expiry))
        for peer, timeout in sorted(soonest.items()):
            self.notify(peer, M.EXPIRY_SOON, {"timeout": timeout})

    def _prune(self) -> None:
        """Hourly: note who has channels, forget webhooks 7 days after the last closed."""
        now = now_ms()
        if now - self._pruned_ms < PRUNE_EVERY_MS:
            return
        self._pruned_ms = now
        with_channel = {c["peer_id"] for c in self.node.channels()
                        if c["state"] not in ("CLOSED", "ONCHAIN", "FUNDING_SPEND_SEEN",
                                              "CLOSINGD_COMPLETE", "AWAITING_UNILATERAL")}
        with self.lock:
            peers = list(self.records)
        for peer in peers:
            with self.lock:
                record = self.records.get(peer)
                if record is None:
                    continue
                if peer in with_channel:
                    record = {**record, "channel_seen_ms": now}
                    self.records[peer] = record
                    self.store.put(WEBHOOKS, peer, record)
                elif S.forgettable(record, False, now):
                    del self.records[peer]
                    self.store.delete(WEBHOOKS, peer)

    # --- operator view ---------------------------------------------------------------
    def view(self, peer_id: Optional[str]) -> dict:
        with self.lock:
            clients: List[dict] = [
                {"peer_id": p, "webhooks": [{"app_name": a, "webhook": u}
                                            for a, u in sorted(r["webhooks"].items())],
                 "channel_seen_at": r.get("channel_seen_ms", 0) // 1000}
                for p, r in sorted(self.records.items()) if peer_id in (None, p)]
            sent = dict(self.sent)
        return {"clients": clients, "max_webhooks": self.policy.max_webhooks,
                "cooldown_s": self.policy.cooldown_s, "notifications_sent": sent,
                "deliveries": self.delivery.stats()}

"""The mailbox at run time: onion messages kept for a peer that is offline (area
"mailbox"), delivered when it connects (core: bolt12ext/mailbox.py)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Callable, Optional

from bolt12ext.mailbox import Mailbox
from lsps.asyncpay.messenger import MAILBOX, now_s
from lsps.node.rpc import ClnNode, RpcError
from lsps.node.store import Store


class PeerMailbox:
    """Keeps onion messages for our channel peers and the static invoice server's
    recipients while they are offline (area "mailbox")."""

    def __init__(self, node: ClnNode, store: Store, box: Mailbox,
                 log: Callable[[str, str], None]):
        self.node = node
        self.store = store
        self.box = box
        self.log = log
        self.kept: Counter = Counter()
        # Peers kept for without a channel: the server's recipients, whose JIT channel
        # is opened only once they are back to release a payment.
        self.also_for: Callable[[str], bool] = lambda peer_id: False
        self.on_kept: Callable[[str], object] = lambda peer_id: None   # wake it (LSPS5)

    def start(self) -> None:
        for key, record in self.store.list(MAILBOX).items():
            if {"peer", "path_key", "packet", "stored_at"} <= set(record):
                self.box.items[key] = record

    def _next_peer(self, event: dict) -> Optional[str]:
        """The peer the message was for, if it is one of ours (a channel peer or a
        recipient of our server) and offline."""
        nxt = event.get("next_node_id")
        scidd = event.get("next_short_channel_id_dir")
        for channel in self.node.channels():
            if channel["peer_connected"]:
                continue
            if nxt == channel["peer_id"] or (
                    scidd and scidd.split("/")[0] in channel["scids"]):
                return channel["peer_id"]
        if nxt and self.also_for(nxt) and nxt not in self.node.connected_peers():
            return nxt
        return None

    def keep(self, event: dict) -> None:
        peer = self._next_peer(event)
        if peer is None:
            return
        now = now_s()
        expired, refused = self.box.admit(peer, now)
        for key in expired:
            self.store.delete(MAILBOX, key)
        if refused:
            self.kept["refused: " + refused] += 1
            return
        key = os.urandom(16).hex()
        record = self.box.add(key, peer, event["path_key"], event["incoming"], now)
        self.store.put(MAILBOX, key, record)
        self.kept["stored"] += 1
        self.on_kept(peer)

    def deliver(self, peer_id: str) -> None:
        deliver, expired = self.box.take(peer_id, now_s())
        for key in expired:
            self.store.delete(MAILBOX, key)
        for key, record in deliver:
            try:
                self.node.inject_onion_message(bytes.fromhex(record["path_key"]),
                                               bytes.fromhex(record["packet"]))
                self.kept["delivered"] += 1
            except RpcError as e:
                self.log(f"mailbox message for {peer_id} not delivered: {e}", "info")
            self.store.delete(MAILBOX, key)  # delivered at most once more

    def stats(self) -> dict:
        return {"waiting": self.box.count(), "capacity": self.box.limits.total,
                **dict(self.kept)}

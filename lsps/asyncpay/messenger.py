"""Onion messages at run time, for every async-payment role.

OnionMessenger receives at the virtual node (through lightningd's
`onionmessage_forward_fail` notification), checks the path context and hands the
message to whoever registered that purpose; it sends along blinded paths with
`injectonionmessage`, prepending this node. Path contexts live in the datastore
(area "ompath"), written before anything is sent.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional

from bolt12ext import onionmsg
from bolt12ext.blinding import BlindedPath
from bolt12ext.contexts import PathBook, PathContext
from bolt12ext.offer import dict_path
from bolt12ext.tlv import DecodeError
from lsps.node.rpc import ClnNode, RpcError
from lsps.node.store import Area, Store

VIRTUAL_NODE_LABEL = "clnlsp/virtual-node/v1"
REPLY = "reply"   # short-lived paths someone waits on; kept in memory only
# Messages waiting for the worker, and sends waiting for a connection, at most.
MAX_QUEUED = 1000
MAX_CONNECTING = 50
# Peers tried as the start of a route when we have none of our own.
MAX_ROUTE_SOURCES = 3
# Server paths one recipient may hold (it asks for them at will over LSPS0).
SERVER_PATHS_PER_RECIPIENT = 4
PRUNE_EVERY = 64   # new paths between two sweeps of expired ones
PATHS, INVOICES, MAILBOX = Area("ompath"), Area("asyncinv"), Area("mailbox")


def now_s() -> int:
    return int(time.time())


class OnionMessenger:
    def __init__(self, node: ClnNode, store: Store, log: Callable[[str, str], None]):
        self.node = node
        self.store = store
        self.log = log
        self.node_id = bytes.fromhex(node.node_id())
        self.book = PathBook(os.urandom, self.node_id, node.makesecret(VIRTUAL_NODE_LABEL))
        self.dropped: Counter = Counter()
        self.received: Counter = Counter()
        self._handlers: Dict[str, Callable[[PathContext, onionmsg.Received], None]] = {}
        self._lock = threading.Lock()
        self._contexts: Dict[str, PathContext] = {}
        self._remembered = 0
        self._waiting: Dict[str, queue.Queue] = {}
        self._handlers[REPLY] = self._on_reply
        self.mailbox = None  # the PeerMailbox, when this node keeps messages for peers
        # One worker keeps messages in arrival order and lightningd's notifications flowing;
        # its queue is bounded. Sends that need a new connection (to an introduction node
        # a peer chose) go to their own small pool, so they never stall that worker.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clnlsp-om")
        self._connector = ThreadPoolExecutor(max_workers=2, thread_name_prefix="clnlsp-om-conn")
        self._queued = 0
        self._connecting = 0
        self._local = threading.local()

    @property
    def virtual_id(self) -> bytes:
        return self.book.virtual_id

    def start(self) -> None:
        now = now_s()
        for key, record in self.store.list(PATHS).items():
            try:
                ctx = PathContext.from_record(record)
            except (KeyError, TypeError, ValueError):
                continue
            if ctx.expires_at <= now:
                self.store.delete(PATHS, key)
            else:
                self._contexts[key] = ctx

    def register(self, purposes, handler) -> None:
        for purpose in purposes:
            self._handlers[purpose] = handler

    def remember(self, path_id: str, ctx: PathContext,
                 keep_per_peer: Optional[int] = None, alike=None) -> None:
        """Persist a context before its path leaves this node. `keep_per_peer`: paths a
        peer asks for at will are bounded: beyond it, that peer's oldest path alike this
        one (same purpose, or same `alike(ctx)`) is forgotten, never another peer's.
        Expired contexts are pruned as new ones come."""
        kind = alike or (lambda c: c.purpose)
        evict: List[str] = []
        with self._lock:
            self._remembered += 1
            now = now_s()
            if self._remembered % PRUNE_EVERY == 0:
                evict += [k for k, c in self._contexts.items()
                          if c.expires_at <= now and k not in self._waiting]
            if keep_per_peer is not None:
                same = [k for k, c in self._contexts.items()
                        if c.peer == ctx.peer and kind(c) == kind(ctx) and k not in evict]
                evict += same[:max(0, len(same) + 1 - keep_per_peer)]
            for key in evict:
                self._contexts.pop(key, None)
        for key in evict:
            self.store.delete(PATHS, key)
        self.store.put(PATHS, path_id, ctx.to_record())
        with self._lock:
            self._contexts[path_id] = ctx

    def new_path(self, purpose: str, ttl_s: int, peer: Optional[str] = None,
                 via: Optional[bytes] = None, keep_per_peer: Optional[int] = None,
                 alike=None, **data):
        path, path_id, ctx = self.book.make(purpose, now_s(), ttl_s, peer=peer, via=via, **data)
        self.remember(path_id, ctx, keep_per_peer, alike)
        return path, path_id, ctx

    def reply_path(self, ttl_s: int):
        """(path, path_id, queue): what arrives on the path is put on the queue."""
        path, path_id, ctx = self.book.make(REPLY, now_s(), ttl_s)
        waiting: queue.Queue = queue.Queue()
        with self._lock:
            self._contexts[path_id] = ctx
            self._waiting[path_id] = waiting
        return path, path_id, waiting

    def forget_reply(self, path_id: str) -> None:
        with self._lock:
            self._contexts.pop(path_id, None)
            self._waiting.pop(path_id, None)

    def _on_reply(self, ctx: PathContext, got: onionmsg.Received) -> None:
        with self._lock:
            waiting = self._waiting.get(got.path_id.hex())
        if waiting is not None:
            waiting.put(got)

    def stats(self) -> dict:
        with self._lock:
            out = {"virtual_node_id": self.virtual_id.hex(), "paths": len(self._contexts),
                   "received": dict(self.received), "dropped": dict(self.dropped)}
        if self.mailbox is not None:
            out["mailbox"] = self.mailbox.stats()
        return out

    # --- receiving ---------------------------------------------------------------------------
    def on_forward_fail(self, event: dict) -> None:
        """lightningd could not forward an onion message: for our virtual node, or for an
        offline peer whose mailbox we keep?"""
        if event.get("next_node_id") == self.virtual_id.hex() and event.get("outgoing"):
            self._submit(self._receive, event["outgoing"])
        elif self.mailbox is not None and event.get("outgoing") and event.get("incoming"):
            self._submit(self.mailbox.keep, event)

    def on_connect(self, peer_id: str) -> None:
        if self.mailbox is not None:
            self._submit(self.mailbox.deliver, peer_id)

    def _receive(self, outgoing_hex: str) -> None:
        try:
            msg = onionmsg.OnionMessage.parse(bytes.fromhex(outgoing_hex))
            got = onionmsg.peel(self.book.virtual_secret, msg)
        except (DecodeError, ValueError) as e:
            self.drop(f"unreadable: {e}")
            return
        if not isinstance(got, onionmsg.Received):
            self.drop("the virtual node does not forward")
            return
        self._dispatch(got)

    def on_cln_message(self, message: dict) -> bool:
        """lightningd's onion_message_recv_secret hook: a message of a known type on a
        path ending at the real node. Ours when its path secret names one of our
        contexts (then handled like the rest); anything else belongs to others."""
        path_id = message.get("pathsecret")
        with self._lock:
            mine = path_id in self._contexts
        if not mine:
            return False
        contents = {t: bytes.fromhex(message[name]) for t, name in (
            (onionmsg.INVOICE_REQUEST, "invoice_request"), (onionmsg.INVOICE, "invoice"),
            (onionmsg.INVOICE_ERROR, "invoice_error")) if name in message}
        for field in message.get("unknown_fields", []):
            contents[int(field["number"])] = bytes.fromhex(field["value"])
        reply = None
        if "reply_blindedpath" in message:
            d = message["reply_blindedpath"]
            reply = dict_path(dict(d, path=d.get("hops", [])))
        got = onionmsg.Received(bytes.fromhex(path_id), contents, reply, {})
        self._submit(self._dispatch, got)
        return True

    def _take(self, counter: str, limit: int, why: str) -> bool:
        """One more of a bounded count (`_queued`, `_connecting`); False, counted as a
        drop, when `limit` are already taken."""
        with self._lock:
            if getattr(self, counter) < limit:
                setattr(self, counter, getattr(self, counter) + 1)
                return True
        self.drop(why)
        return False

    def _give_back(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) - 1)

    def _submit(self, fn, *args) -> None:
        """Queue work for the worker, or drop it when MAX_QUEUED are waiting."""
        if not self._take("_queued", MAX_QUEUED, "queue full"):
            return

        def run():
            self._give_back("_queued")
            self._local.on_worker = True
            fn(*args)
        self._worker.submit(run)

    def _dispatch(self, got: onionmsg.Received) -> None:
        with self._lock:
            contexts = dict(self._contexts)
        ctx, why = PathBook.check(contexts, got.path_id, now_s(), self._handlers)
        if why:
            self.drop(why)
            return
        with self._lock:
            self.received[ctx.purpose] += 1
        try:
            self._handlers[ctx.purpose](ctx, got)
        except Exception as e:  # one bad message must not stop the layer
            self.log(f"onion message on a {ctx.purpose} path not handled: {e!r}", "warn")

    def drop(self, why: str) -> None:
        with self._lock:
            self.dropped[why] += 1
        self.log(f"onion message dropped: {why}", "debug")

    # --- sending -----------------------------------------------------------------------------
    def send(self, path: BlindedPath, contents: Dict[int, bytes],
             reply_path: Optional[BlindedPath] = None) -> bool:
        """Send along `path` (connecting to its introduction node when needed)."""
        if len(path.first_node_id) != 33:
            self.log("cannot send to a path introduced by a short channel id", "warn")
            return False
        full = path
        if path.first_node_id != self.node_id:
            intro = path.first_node_id.hex()
            if getattr(self._local, "on_worker", False) and \
                    intro not in self.node.connected_peers():
                return self._send_later(path, contents, reply_path)
            hops = self._hops_to(intro)
            if hops is None:
                return False
            full = onionmsg.prepend(os.urandom(32), [self.node_id] + hops, path)
        try:
            msg = onionmsg.build(os.urandom(32), full, contents, reply_path)
            self.node.inject_onion_message(msg.path_key, msg.packet)
        except (RpcError, ValueError) as e:
            self.log(f"onion message not sent: {e}", "info")
            return False
        return True


    def _send_later(self, path: BlindedPath, contents: Dict[int, bytes],
                    reply_path: Optional[BlindedPath]) -> bool:
        """A send from the worker that may have to connect: on the connector pool
        (at most MAX_CONNECTING waiting), so an unreachable node stalls only itself."""
        if not self._take("_connecting", MAX_CONNECTING,
                          "too many sends waiting for a connection"):
            return False

        def run():
            try:
                self.send(path, contents, reply_path)
            finally:
                self._give_back("_connecting")
        self._connector.submit(run)
        return True

    def _hops_to(self, intro: str) -> Optional[list]:
        """Nodes between us and the introduction node: none when it is a peer, else a
        route through the channel graph (so a node behind its LSP needs no new
        connection) from us or, when we have no channel yet, from a peer (onion
        messages need none); a direct connection when there is no route."""
        peers = self.node.connected_peers()
        if intro in peers:
            return []
        for source in [None] + sorted(peers)[:MAX_ROUTE_SOURCES]:
            try:
                route = self.node.route_to(intro, 1, 9, payment=False, source=source)
                return [bytes.fromhex(n) for n in ([source] if source else [])] + \
                    [bytes.fromhex(hop["node_id"]) for hop in route[:-1]]
            except RpcError as e:
                self.log(f"no route to introduction node {intro} from {source or 'us'}: "
                         f"{e}", "debug")
        try:
            self.node.connect(intro)
            return []
        except RpcError as e:
            self.log(f"cannot reach introduction node {intro}: {e}", "info")
            return None

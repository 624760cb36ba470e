"""Stand-ins for the async-payment runtime tests: a node that records the onion messages
it is asked to inject, a messenger on it, and helpers that deliver messages to the
virtual node and open what was sent."""
import hashlib
import os

from fakes import MemoryRpc, Workers
from pyln.client import RpcError

import lsps.asyncpay.holder as holder_mod
import lsps.asyncpay.mailbox as mailbox_mod
import lsps.asyncpay.messenger as messenger_mod
import lsps.asyncpay.server as server_mod
from bolt12ext import blinding, onionmsg
from bolt12ext.sphinx import pubkey
from lsps.node.store import Store

NOW = 1_800_000_000
NODE_SECRET = hashlib.sha256(b"lsp node").digest()
NODE = pubkey(NODE_SECRET)
PEER_SECRET = hashlib.sha256(b"peer").digest()
PEER = pubkey(PEER_SECRET)
FAR_SECRET = hashlib.sha256(b"far node").digest()
FAR = pubkey(FAR_SECRET)


def rpc_error(message="nope"):
    return RpcError("call", {}, {"code": -1, "message": message})


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


class OnionNode:
    """The ClnNode calls of the async-payment runtime."""

    def __init__(self, channels=(), connected=()):
        self.injected = []              # (path_key, packet), in order
        self._channels = list(channels)
        self.connected = list(connected)
        self.routes = {}                # node id hex -> [hop dicts] (else RpcError)
        self.reachable = set()          # node ids hex that connect() reaches
        self.connects = []
        self.inject_error = None
        self.on_inject = None           # called with (path_key, packet) before recording

    def node_id(self):
        return NODE.hex()

    def makesecret(self, string):
        return hashlib.sha256(NODE_SECRET + string.encode()).digest()

    def channels(self, peer_id=None):
        return [c for c in self._channels if peer_id is None or c["peer_id"] == peer_id]

    def connected_peers(self):
        return list(self.connected)

    def inject_onion_message(self, path_key, packet):
        if self.on_inject is not None:
            self.on_inject(path_key, packet)
        if self.inject_error is not None:
            raise self.inject_error
        self.injected.append((path_key, packet))

    def route_to(self, node_id, amount_msat, final_cltv, payment=True, source=None):
        assert payment is False
        if source is not None:   # routes known here start at this node
            raise rpc_error("no route")
        if node_id not in self.routes:
            raise rpc_error("no route")
        return self.routes[node_id]

    def connect(self, peer_id):
        self.connects.append(peer_id)
        if peer_id not in self.reachable:
            raise rpc_error("cannot connect")
        self.connected.append(peer_id)


def channel(peer, connected=False, scids=("5x5x5",)):
    return {"peer_id": peer.hex() if isinstance(peer, bytes) else peer,
            "peer_connected": connected, "scids": list(scids)}


class Pool(Workers):
    """A messenger's thread pool run on this thread: each job starts as on a fresh thread
    of the pool (the worker's jobs mark themselves `on_worker`, the connector's do not)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def run_all(self):
        while self.jobs:
            with self.lock:
                fn, args = self.jobs.pop(0)
            self.m._local.on_worker = False
            try:
                fn(*args)
            finally:
                self.m._local.on_worker = False


class Logs(list):
    def __call__(self, message, level):
        self.append((level, message))

    def text(self):
        return "\n".join(m for _, m in self)


def make_messenger(monkeypatch, node=None, rpc=None, clock=None):
    """An OnionMessenger on a fake node, with an in-memory datastore, a manual clock
    (`now_s` of the messenger and of the roles that import it) and worker pools that
    run when told to (`run(m)`)."""
    node = node or OnionNode(connected=[PEER.hex()])
    rpc = rpc if rpc is not None else MemoryRpc()
    clock = clock or Clock()
    for module in (messenger_mod, holder_mod, mailbox_mod, server_mod):
        monkeypatch.setattr(module, "now_s", clock)
    logs = Logs()
    m = messenger_mod.OnionMessenger(node, Store(lambda: rpc), logs)
    m._worker.shutdown()
    m._connector.shutdown()
    m._worker, m._connector = Pool(m), Pool(m)
    m.rpc, m.clock, m.logs = rpc, clock, logs
    return m


def run(m):
    """Run the messenger's queued work (and the sends it handed to the connector)."""
    while m._worker.jobs or m._connector.jobs:
        m._worker.run_all()
        m._connector.run_all()


def forward_fail(m, path, contents, reply_path=None):
    """lightningd's onionmessage_forward_fail for a message sent along `path` (which goes
    through this node to the virtual node): our node's layer already peeled."""
    msg = onionmsg.build(os.urandom(32), path, contents, reply_path)
    fwd = onionmsg.peel(NODE_SECRET, msg)
    assert isinstance(fwd, onionmsg.Forward)
    return {"next_node_id": m.virtual_id.hex(), "outgoing": fwd.message.serialize().hex()}


def arrive(m, path, contents, reply_path=None):
    """Deliver a message along `path` to the messenger and run the worker."""
    m.on_forward_fail(forward_fail(m, path, contents, reply_path))
    run(m)


def reply_path_to(secret=PEER_SECRET, path_id=None):
    """A blinded path of one hop ending at the node of `secret`."""
    return blinding.message_path(os.urandom(32), [pubkey(secret)], path_id or os.urandom(32))


def open_message(path_key, packet, *secrets):
    """Peel an injected message with our node's secret, then each of `secrets`: the
    final Received."""
    msg = onionmsg.OnionMessage(path_key, packet)
    for secret in (NODE_SECRET,) + secrets:
        got = onionmsg.peel(secret, msg)
        if isinstance(got, onionmsg.Received):
            return got
        msg = got.message
    raise AssertionError("the message did not end at the last secret")


def sent(node, *secrets):
    """Every injected message opened (see open_message)."""
    return [open_message(pk, packet, *secrets) for pk, packet in node.injected]

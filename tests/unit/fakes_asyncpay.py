"""Stand-ins for the async-payment runtime handlers (lsps/asyncpay/recipient.py and
payer.py): a node with the ClnNode calls they make, an onion messenger that records
what is sent and answers from a script, and a manual clock."""
import hashlib
import json
import os
import queue

from pyln.client import RpcError

from bolt12ext.contexts import PathBook
from bolt12ext.onionmsg import Received
from bolt12ext.sphinx import pubkey

NOW = 1_800_000_000


class Replies(queue.Queue):
    """A reply queue on which nothing more arrives once it is empty: get() never
    waits (what a timeout would give, without the wait)."""

    def get(self, block=True, timeout=None):
        return super().get(block=False)
HEIGHT = 800_000


def key(label: str) -> bytes:
    """A deterministic secret key."""
    return hashlib.sha256(label.encode()).digest()


def node_key(label: str) -> bytes:
    return pubkey(key(label))


def rpc_error(message: str) -> RpcError:
    return RpcError("call", {}, {"code": 200, "message": message})


class Clock:
    """now_s for the handlers: moves only when told."""

    def __init__(self, t: int = NOW):
        self.t = t

    def __call__(self) -> int:
        return self.t


def channel(peer_id: str, scid: str = "800x1x0", receivable_msat: int = 10**8,
            state: str = "CHANNELD_NORMAL", capacity_sat: int = 10**6, **policy) -> dict:
    """A channel as ClnNode.channels() gives it, with the peer's (remote) policy."""
    remote = {"cltv_expiry_delta": 40, "fee_proportional_millionths": 100,
              "fee_base_msat": 1000, "htlc_minimum_msat": 1}
    remote.update(policy)
    return {"channel_id": "ab" * 32, "peer_id": peer_id, "state": state, "opener": "remote",
            "scids": [scid], "htlc_minimum_msat": 0, "receivable_msat": receivable_msat,
            "peer_connected": True, "funding_outpoint": None, "short_channel_id": scid,
            "inbound_scid": scid, "capacity_sat": capacity_sat, "remote_policy": remote}


class FakeNode:
    """The ClnNode calls the async handlers make (lsps/node/rpc.py shapes)."""

    def __init__(self, channels=(), height: int = HEIGHT):
        self.height = height
        self._channels = list(channels)
        self.routes = {}          # node id hex -> route list, or an RpcError to raise
        self.route_calls = []     # (node_id, amount_msat, final_cltv)
        self.onions = []          # what send_onion was given
        self.send_error = None    # an RpcError send_onion raises
        self.on_send = None       # called (before recording) when an onion is sent
        self.statuses = {}        # payment hash -> listsendpays' latest attempt
        self.waited = []
        self.wait_error = None

    def makesecret(self, label: str) -> bytes:
        return key("makesecret " + label)

    def blockheight(self) -> int:
        return self.height

    def network(self) -> str:
        return "bitcoin"

    def peer_address(self, peer_id: str):
        return "127.0.0.1:9735"

    def connected_peers(self) -> list:
        return [c["peer_id"] for c in self._channels]

    def connect(self, peer_id: str, address=None) -> None:
        self.connects = getattr(self, "connects", []) + [(peer_id, address)]

    def channels(self, peer_id=None) -> list:
        return [dict(c) for c in self._channels if peer_id in (None, c["peer_id"])]

    def route_to(self, node_id: str, amount_msat: int, final_cltv: int,
                 payment: bool = True, source=None) -> list:
        self.route_calls.append((node_id, amount_msat, final_cltv))
        route = self.routes.get(node_id)
        if isinstance(route, Exception):
            raise route
        if route is None:   # the introduction node is our peer
            return [{"node_id": node_id, "channel": "700x1x0", "amount_msat": amount_msat,
                     "cltv": final_cltv}]
        return route

    def send_onion(self, hops, payment_hash, first_hop, amount_msat, destination,
                   description) -> None:
        if self.on_send is not None:
            self.on_send()
        if self.send_error is not None:
            raise self.send_error
        self.onions.append({"hops": hops, "payment_hash": payment_hash, "first_hop": first_hop,
                            "amount_msat": amount_msat, "destination": destination,
                            "description": description})

    def wait_sendpay(self, payment_hash: str, timeout: int) -> dict:
        self.waited.append(payment_hash)
        if self.wait_error is not None:
            raise self.wait_error
        return self.statuses.get(payment_hash) or {}

    def sendpay_status(self, payment_hash: str):
        return self.statuses.get(payment_hash)


class FakeMessenger:
    """OnionMessenger's surface: paths from a real PathBook, sends recorded, answers
    to messages sent with a reply path from `respond(path, contents)`, which returns
    [(contents, reply_path)] to put on the reply queue."""

    def __init__(self, name: str = "me"):
        self.node_id = node_key(name)
        self.book = PathBook(os.urandom, self.node_id, key(name + " virtual"))
        self.sent = []            # (path, contents, reply_path)
        self.dropped = []
        self.handlers = {}
        self.new_paths = []       # (purpose, ttl_s, via, data)
        self.forgotten = []
        self.respond = None
        self.send_ok = True       # or a callable(path, contents) -> bool
        self.on_send = None       # called before a send is recorded
        self._replies = {}

    def register(self, purposes, handler) -> None:
        for purpose in purposes:
            self.handlers[purpose] = handler

    def new_path(self, purpose, ttl_s, peer=None, via=None, **data):
        self.new_paths.append((purpose, ttl_s, via, data))
        return self.book.make(purpose, NOW, ttl_s, peer=peer, via=via, **data)

    def reply_path(self, ttl_s):
        path, path_id, _ = self.book.make("reply", NOW, ttl_s)
        waiting = Replies()
        self._replies[path.serialize()] = (path_id, waiting)
        return path, path_id, waiting

    def forget_reply(self, path_id) -> None:
        self.forgotten.append(path_id)

    def send(self, path, contents, reply_path=None) -> bool:
        if self.on_send is not None:
            self.on_send()
        self.sent.append((path, contents, reply_path))
        ok = self.send_ok(path, contents) if callable(self.send_ok) else self.send_ok
        ours = reply_path is not None and reply_path.serialize() in self._replies
        if ok and ours and self.respond is not None:
            path_id, waiting = self._replies[reply_path.serialize()]
            for answer, reply in self.respond(path, contents) or []:
                waiting.put(Received(bytes.fromhex(path_id), answer, reply, {}))
        return ok

    def drop(self, why: str) -> None:
        self.dropped.append(why)


def stored(rpc, area: str) -> dict:
    """{key: record} that MemoryRpc holds for a datastore area (version field dropped)."""
    out = {}
    for k, v in rpc.data.items():
        if k[1] == area:
            record = json.loads(v)
            record.pop("v", None)
            out[k[2]] = record
    return out

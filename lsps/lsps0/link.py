"""LSPS0 on a node: custom messages in, the transport, the client and the
optional service, their timer and their fair sender."""

from __future__ import annotations

import secrets
import threading
from typing import Any, Callable, Optional

from lsps.lsps0.client import Client, ClientError
from lsps.lsps0.msgs import LSPS0_MESSAGE_TYPE
from lsps.lsps0.service import Dispatcher, Limits
from lsps.lsps0.transport import Transport
from lsps.node.rpc import ClnNode
from lsps.runtime.threads import FairSender, TimerService

TYPE_PREFIX = LSPS0_MESSAGE_TYPE.to_bytes(2, "big")


def new_request_id() -> str:
    # 128 random bits, hex: bLIP-50 asks for at least 80.
    return secrets.token_hex(16)


class Lsps0:
    """LSPS0 wiring over a ClnNode: transport, client, optional service."""

    def __init__(self, node: ClnNode, service: bool, timeout: float, limits: Limits):
        self.node = node
        self.timer = TimerService(log=node.log)
        self.sender = FairSender(lambda peer, payload: node.send_custommsg(
            peer, TYPE_PREFIX + payload), log=node.log)
        self.client = Client(send=self.sender.send, schedule=self.timer.schedule,
                             new_id=new_request_id, is_connected=self._is_connected,
                             timeout=timeout, log=node.log, lock=threading.Lock())
        self.dispatcher: Optional[Dispatcher] = None
        if service:
            self.dispatcher = Dispatcher(
                send=lambda peer, payload: self.sender.send(peer, payload),
                limits=limits, log=node.log, lock=threading.Lock())
        self.transport = Transport(self.client, self.dispatcher, log=node.log,
                                   lock=threading.Lock())

    def _is_connected(self, peer_id: str) -> bool:
        return self.transport.is_connected(peer_id)

    def start(self) -> None:
        self.transport.set_connected(self.node.connected_peers())

    # lightningd events ---------------------------------------------------
    def on_custommsg(self, peer_id: str, payload_hex: str) -> None:
        try:
            raw = bytes.fromhex(payload_hex)
        except (TypeError, ValueError):
            return
        if raw[:2] != TYPE_PREFIX:
            return
        # A peer that talks to us is connected, whatever we heard before.
        self.transport.on_connect(peer_id)
        self.transport.on_payload(peer_id, raw[2:])

    def on_connect(self, peer_id: str) -> None:
        self.transport.on_connect(peer_id)

    def on_disconnect(self, peer_id: str) -> None:
        self.transport.on_disconnect(peer_id)

    def call(self, peer_id: str, method: str, params: dict,
             on_done: Callable[[Any], None]) -> None:
        self.client.call(peer_id, method, params, on_done)


def blocking_call(call: Callable, peer_id: str, method: str, params: dict) -> Any:
    """`call(peer, method, params, on_done)`, waited for on this (worker) thread.

    Never waits forever: the client's own timeout always completes the call.
    Returns the result dict or raises the ClientError."""
    box: dict = {}
    done = threading.Event()

    def on_done(outcome):
        box["outcome"] = outcome
        done.set()
    call(peer_id, method, params, on_done)
    done.wait()
    if isinstance(box["outcome"], ClientError):
        raise box["outcome"]
    return box["outcome"]

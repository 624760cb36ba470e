#!/usr/bin/env python3
"""Benchmark floor: a bare custom-message ping-pong, built like clnlsp's LSPS0.

Same shape as the real path (pyln hook, send on a worker thread, async RPC
answered when the reply arrives), minus everything LSPS0 adds: JSON-RPC
framing, validation, dispatch, timers. Message type 37921 (odd)."""
import os
import queue
import threading

from pyln.client import LightningRpc, Plugin

MSG_TYPE = "9421"
PING, PONG = "00", "01"

plugin = Plugin()
waiting = {}
lock = threading.Lock()
local = threading.local()


def rpc():
    if not hasattr(local, "rpc"):
        local.rpc = LightningRpc(os.path.join(plugin.lightning_dir, plugin.rpc_filename))
    return local.rpc


outbox = queue.Queue()


def sender():
    while True:
        peer_id, body_hex = outbox.get()
        rpc().sendcustommsg(peer_id, MSG_TYPE + body_hex)


for _ in range(2):
    threading.Thread(target=sender, daemon=True).start()


def send(peer_id, body_hex):
    outbox.put((peer_id, body_hex))


@plugin.hook("custommsg", filters=[0x9421])
def on_custommsg(peer_id, payload, **kwargs):
    kind, nonce = payload[4:6], payload[6:]
    if kind == PING:
        send(peer_id, PONG + nonce)
    elif kind == PONG:
        with lock:
            request = waiting.pop(nonce, None)
        if request is not None:
            request.set_result({"pong": nonce})
    return {"result": "continue"}


@plugin.async_method("benchping")
def benchping(request, peer_id, **kwargs):
    nonce = os.urandom(16).hex()
    with lock:
        waiting[nonce] = request
    send(peer_id, PING + nonce)


plugin.run()

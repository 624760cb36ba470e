#!/usr/bin/env python3
"""Test helper: records 37913 messages and answers them as told.

Lets tests send raw LSPS0 bytes (with sendcustommsg) and read the raw
answers, or play a misbehaving LSP."""
import json
import threading

from pyln.client import Plugin

plugin = Plugin()
received = []
mode = {"reply": "silent"}
lock = threading.Lock()


@plugin.hook("custommsg", filters=[37913])
def on_custommsg(peer_id, payload, plugin, **kwargs):
    body = bytes.fromhex(payload)[2:]
    with lock:
        received.append({"peer_id": peer_id, "payload": body.hex()})
    reply = mode["reply"]
    if reply != "silent":
        try:
            req_id = json.loads(body).get("id")
        except Exception:
            req_id = None
        if reply == "error":
            out = json.dumps({"jsonrpc": "2.0", "id": req_id, "error": {
                "code": 12345, "message": "nope", "data": {"why": "testing"}}}).encode()
        elif reply == "garbage":
            out = b"\xff not json"
        else:
            out = json.dumps({"jsonrpc": "2.0", "id": req_id,
                              "result": json.loads(reply)}).encode()
        threading.Thread(target=lambda: plugin.rpc.sendcustommsg(
            peer_id, "9419" + out.hex())).start()
    return {"result": "continue"}


@plugin.method("fakelsp-received")
def fakelsp_received(plugin, clear=False):
    with lock:
        out = [{"peer_id": m["peer_id"], "text": bytes.fromhex(m["payload"]).decode(
            "utf-8", "replace")} for m in received]
        if clear:
            received.clear()
    return {"messages": out}


@plugin.method("fakelsp-mode")
def fakelsp_mode(plugin, reply):
    """reply: silent | error | garbage | <JSON result object>"""
    mode["reply"] = reply
    return {"reply": reply}


plugin.run()

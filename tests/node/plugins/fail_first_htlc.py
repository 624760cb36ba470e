#!/usr/bin/env python3
"""Test helper: fails the first HTLC that reaches this node as its final hop
(a client refusing a forwarded JIT payment), then lets everything through."""
from pyln.client import Plugin

plugin = Plugin()
seen = {"failed": 0}


@plugin.hook("htlc_accepted", before=["plugin.py"])
def on_htlc_accepted(onion, htlc, plugin, **kwargs):
    if seen["failed"] == 0 and not onion.get("short_channel_id"):
        seen["failed"] += 1
        return {"result": "fail", "failure_message": "2002"}  # temporary_node_failure
    return {"result": "continue"}


plugin.run()

#!/usr/bin/env python3
"""Test helper: keeps every `onionmessage_forward_fail` notification.

Onion messages sent to a key behind this node (a node that does not exist)
end up here, already peeled down to the layer for that key."""
import threading

from pyln.client import Plugin

plugin = Plugin()
failed = []
lock = threading.Lock()


@plugin.subscribe("onionmessage_forward_fail")
def on_forward_fail(plugin, **kwargs):
    payload = kwargs.get("onionmessage_forward_fail", kwargs)
    with lock:
        failed.append(payload)


@plugin.method("om-sink-list")
def om_sink_list(plugin):
    with lock:
        return {"failed": list(failed)}


plugin.run()

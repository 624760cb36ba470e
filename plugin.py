#!/usr/bin/env python3
"""clnlsp: a Core Lightning plugin for Lightning Service Providers and their clients.

Wiring only: options, RPC commands, hooks and notifications are handed to the
services in `lsps/` (and later `bolt12ext/`).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pyln.client import Plugin  # noqa: E402

from lsps import lsps0, startup  # noqa: E402
from lsps.client import ClientError  # noqa: E402
from lsps.cln import ClnNode, Lsps0  # noqa: E402
from lsps.rpcutil import fail_request, require_node_id  # noqa: E402
from lsps.service import Limits  # noqa: E402

LSPS_FEATURE_BIT = 729

plugin = Plugin(dynamic=False)
plugin.add_flag_option(
    "lsp-service", "Act as an LSP: answer LSPS requests and advertise feature bit 729.")
plugin.add_option(
    "lsp-request-timeout", 60,
    "Seconds an LSPS client request waits for the LSP's answer.", opt_type="int")
plugin.add_option(
    "lsp-max-pending-per-peer", 10,
    "LSP: requests one peer may have in progress before getting error 1.", opt_type="int")
plugin.add_option(
    "lsp-max-pending-total", 1000,
    "LSP: requests all peers together may have in progress.", opt_type="int")

state = {}


def _getmanifest(**kwargs):
    # Bit 729 must be in the manifest, which comes before our options: see
    # lsps/startup.py. A node that sets feature bits cannot be dynamic.
    service = startup.parent_flag_set("lsp-service")
    state["advertised"] = service
    if service:
        bits = (1 << LSPS_FEATURE_BIT).to_bytes(LSPS_FEATURE_BIT // 8 + 1, "big").hex()
        plugin.featurebits["init"] = bits
        plugin.featurebits["node"] = bits
    plugin.dynamic = not service
    return plugin._getmanifest(**kwargs)


# Replace pyln's own handler (add_method refuses to rebind the name).
plugin.methods["getmanifest"].func = _getmanifest


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    service = bool(plugin.get_option("lsp-service"))
    timeout = plugin.get_option("lsp-request-timeout")
    per_peer = plugin.get_option("lsp-max-pending-per-peer")
    total = plugin.get_option("lsp-max-pending-total")
    for name, value in (("lsp-request-timeout", timeout),
                        ("lsp-max-pending-per-peer", per_peer),
                        ("lsp-max-pending-total", total)):
        if value < 1:
            return {"disable": f"{name} must be at least 1, got {value}"}
    if state.get("advertised") and not service:
        return {"disable": "feature bit 729 was advertised but lsp-service is off; "
                           "a client must not set it (this is a bug, please report)"}
    if service and not state.get("advertised"):
        plugin.log("lsp-service is on but was not found on lightningd's command line or "
                   "config files, so feature bit 729 is not advertised; LSPS still works",
                   "warn")

    node = ClnNode(os.path.join(configuration["lightning-dir"], configuration["rpc-file"]),
                   log=plugin.log)
    lsp = Lsps0(node, service=service, timeout=float(timeout),
                limits=Limits(per_peer=per_peer, total=total))
    if lsp.dispatcher is not None:
        lsps0.register_service(lsp.dispatcher)
    lsp.start()
    state["lsps0"] = lsp
    plugin.log(f"clnlsp ready (lsp-service={'on' if service else 'off'})")


@plugin.hook("custommsg", filters=[37913])
def on_custommsg(peer_id, payload, plugin, **kwargs):
    try:
        state["lsps0"].on_custommsg(peer_id, payload)
    except Exception as e:  # a hook that errors would take lightningd down
        plugin.log(f"custommsg from {peer_id} not handled: {e!r}", "warn")
    return {"result": "continue"}


@plugin.subscribe("connect")
def on_connect(plugin, connect=None, **kwargs):
    peer_id = (connect or kwargs).get("id")
    if peer_id and "lsps0" in state:
        state["lsps0"].on_connect(peer_id)


@plugin.subscribe("disconnect")
def on_disconnect(plugin, disconnect=None, **kwargs):
    peer_id = (disconnect or kwargs).get("id")
    if peer_id and "lsps0" in state:
        state["lsps0"].on_disconnect(peer_id)


@plugin.async_method("lsps0-listprotocols")
def lsps0_listprotocols(request, lsp_id, plugin, **kwargs):
    """Ask LSP {lsp_id} which LSPS protocols it supports."""
    lsp_id = require_node_id(lsp_id, "lsp_id")

    def done(outcome):
        if isinstance(outcome, ClientError):
            fail_request(request, outcome.code, outcome.message, outcome.data)
            return
        try:
            request.set_result(lsps0.parse_list_protocols(lsp_id, outcome))
        except ClientError as e:
            fail_request(request, e.code, e.message, e.data)

    state["lsps0"].call(lsp_id, lsps0.LIST_PROTOCOLS, {}, done)


if __name__ == "__main__":
    plugin.run()

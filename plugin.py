#!/usr/bin/env python3
"""clnlsp: a Core Lightning plugin for Lightning Service Providers and their clients.

Declarations only: the options (from the protocols' option tables), hooks and
commands. Building the services and routing node events is lsps/app.py; what the
commands do is lsps/commands.py; lightningd's JSON is read in lsps/node/.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pyln.client import Plugin  # noqa: E402

import lsps.node.startup as startup  # noqa: E402
from lsps.app import OPTIONS, App  # noqa: E402
from lsps.commands import Commands  # noqa: E402
from lsps.node.replies import answer_once  # noqa: E402

LSPS_FEATURE_BIT = 729

plugin = Plugin(dynamic=False)
for option in OPTIONS:
    if option.type == "flag" and option.default is None:
        plugin.add_flag_option(option.name, option.description)
    else:
        plugin.add_option(option.name, option.default, option.description,
                          opt_type=option.type, multi=option.multi)

state = {}   # the running services by name
app = App(state, plugin.log)
commands = Commands(state)


def _getmanifest(**kwargs):
    # Bit 729 must be in the manifest, which comes before our options: see
    # lsps/node/startup.py. A node that sets feature bits cannot be dynamic.
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
    started = time.monotonic()
    why = app.build(plugin.get_option, configuration["lightning-dir"],
                    configuration["rpc-file"], bool(state.pop("advertised", False)))
    if why:
        return {"disable": why}
    service = "on" if plugin.get_option("lsp-service") else "off"
    plugin.log(f"clnlsp ready (lsp-service={service}) in "
               f"{round((time.monotonic() - started) * 1000)} ms")


# --- hooks and notifications -------------------------------------------------------
@plugin.hook("custommsg", filters=[37913])
def on_custommsg(peer_id, payload, plugin, **kwargs):
    app.on_custommsg(peer_id, payload)   # a hook that errors would take lightningd down
    return {"result": "continue"}


def on_htlc_accepted(onion, htlc, request, plugin, **kwargs):
    """JIT payment parts are held and answered later: a background hook."""
    app.on_htlc_accepted(onion, htlc, kwargs.get("peer_id"), answer_once(request, plugin.log))


# Before keysend: a static-invoice payment carries keysend's preimage type too.
plugin.add_hook("htlc_accepted", on_htlc_accepted, background=True, before=["keysend"])


@plugin.hook("openchannel")
def on_openchannel(openchannel, plugin, **kwargs):
    return app.on_openchannel(openchannel)


def on_onion_message_recv_secret(onion_message, plugin, **kwargs):
    """Known-type messages on paths ending at the real node: ours only when the path
    secret is one of our path ids. Must never error (lightningd would die)."""
    return app.on_onion_message_recv_secret(onion_message)


plugin.add_hook("onion_message_recv_secret", on_onion_message_recv_secret, before=["offers"])


@plugin.subscribe("connect")
def on_connect(plugin, connect=None, **kwargs):
    app.on_connect((connect or kwargs).get("id"))


@plugin.subscribe("disconnect")
def on_disconnect(plugin, disconnect=None, **kwargs):
    app.on_disconnect((disconnect or kwargs).get("id"))


@plugin.subscribe("block_added")
def on_block_added(plugin, block_added=None, **kwargs):
    app.on_block((block_added or {}).get("height"))


@plugin.subscribe("channel_state_changed")
def on_channel_state_changed(plugin, channel_state_changed=None, **kwargs):
    app.on_channel_state_changed(channel_state_changed or {})


@plugin.subscribe("forward_event")
def on_forward_event(plugin, forward_event=None, **kwargs):
    app.on_forward_event(forward_event or {})


@plugin.subscribe("invoice_payment")
def on_invoice_payment(plugin, invoice_payment=None, **kwargs):
    app.on_invoice_payment(invoice_payment or {})


@plugin.subscribe("onionmessage_forward_fail")
def on_onionmessage_forward_fail(plugin, onionmessage_forward_fail=None, **kwargs):
    app.on_onionmessage_forward_fail(onionmessage_forward_fail or kwargs)


# --- the operator's overview -------------------------------------------------------
@plugin.async_method("lsp-summary")
def lsp_summary(request, plugin, expiring_within_blocks=None, **kwargs):
    """How this node is doing in each role: sessions, channels opened and fees earned,
    orders, leases expiring within {expiring_within_blocks} (default 1008), refunds,
    held HTLCs, static invoices, LSPS0 answers, and its purchases as a client."""
    commands.summary(request, expiring_within_blocks)


# --- LSPS0 -------------------------------------------------------------------------
@plugin.async_method("lsps0-listprotocols")
def lsps0_listprotocols(request, plugin, lsp_id, **kwargs):
    """Ask LSP {lsp_id} which LSPS protocols it supports."""
    commands.list_protocols(request, lsp_id)


# --- LSPS1 -------------------------------------------------------------------------
@plugin.async_method("lsps1-getinfo")
def lsps1_getinfo(request, plugin, lsp_id, **kwargs):
    """Ask LSP {lsp_id} for the channels it sells (lsps1.get_info)."""
    commands.ask_lsp(request, lsp_id, state["lsps1_client"].get_info)


@plugin.async_method("lsps1-createorder")
def lsps1_createorder(request, plugin, lsp_id, lsp_balance_sat, client_balance_sat=0,
                      channel_expiry_blocks=None, required_channel_confirmations=None,
                      funding_confirms_within_blocks=None, announce_channel=False, token=None,
                      refund_onchain_address=None, pay=None, **kwargs):
    """Order a channel with {lsp_balance_sat} inbound from LSP {lsp_id}; with {pay}
    (bolt11 or bolt12), pay it too."""
    commands.lsps1_order(request, lsp_id, lsp_balance_sat, client_balance_sat,
                         channel_expiry_blocks, required_channel_confirmations,
                         funding_confirms_within_blocks, announce_channel, token,
                         refund_onchain_address, pay)


@plugin.async_method("lsps1-getorder")
def lsps1_getorder(request, plugin, lsp_id, order_id, **kwargs):
    """Ask LSP {lsp_id} for the state of order {order_id}."""
    commands.ask_lsp(request, lsp_id,
                     lambda lsp: state["lsps1_client"].get_order(lsp, str(order_id)))


@plugin.method("lsps1-listorders")
def lsps1_listorders(plugin, lsp_id=None, **kwargs):
    """Channel orders this node placed, with their last known state."""
    return commands.client_orders(lsp_id)


@plugin.method("lsps1-service-orders")
def lsps1_service_orders(plugin, order_id=None, peer_id=None, **kwargs):
    """LSP view of channel orders: states, payment, channel, lease expiry."""
    return commands.service_orders(order_id, peer_id, "lsps1")


# --- LSPS7 -------------------------------------------------------------------------
@plugin.async_method("lsps7-getextendablechannels")
def lsps7_getextendablechannels(request, plugin, lsp_id, **kwargs):
    """Channels LSP {lsp_id} lets this node extend the lease of."""
    commands.ask_lsp(request, lsp_id, state["lsps7_client"].get_extendable_channels)


@plugin.async_method("lsps7-createorder")
def lsps7_createorder(request, plugin, lsp_id, short_channel_id, channel_extension_expiry_blocks,
                      token=None, refund_onchain_address=None, pay=None, **kwargs):
    """Order an extension of {short_channel_id}'s lease by {channel_extension_expiry_blocks};
    with {pay} (bolt11 or bolt12), pay it too."""
    commands.lsps7_order(request, lsp_id, short_channel_id, channel_extension_expiry_blocks,
                         token, refund_onchain_address, pay)


@plugin.async_method("lsps7-getorder")
def lsps7_getorder(request, plugin, lsp_id, order_id, **kwargs):
    """The state of lease extension order {order_id} at LSP {lsp_id}."""
    commands.ask_lsp(request, lsp_id,
                     lambda lsp: state["lsps7_client"].get_extension(lsp, str(order_id)))


@plugin.method("lsps7-service-orders")
def lsps7_service_orders(plugin, order_id=None, peer_id=None, **kwargs):
    """LSP view of lease extension orders."""
    return commands.service_orders(order_id, peer_id, "lsps7")


# --- LSPS2 -------------------------------------------------------------------------
@plugin.async_method("lsps2-getinfo")
def lsps2_getinfo(request, plugin, lsp_id, token=None, **kwargs):
    """Ask LSP {lsp_id} for its LSPS2 JIT channel fee menu (optionally with a {token})."""
    commands.ask_lsp(request, lsp_id, lambda lsp: state["lsps2_client"].get_info(lsp, token))


@plugin.async_method("lsps2-buy")
def lsps2_buy(request, plugin, lsp_id, amount_msat=None, description="JIT channel payment",
              label=None, token=None, opening_fee_params=None, max_fee_msat=None,
              expiry=None, **kwargs):
    """Buy a JIT channel from {lsp_id} and get the invoice to be paid through it.

    With {amount_msat}: a fixed, multi-part invoice; without: a variable one."""
    commands.lsps2_buy(request, lsp_id, amount_msat, description, label, token,
                       opening_fee_params, max_fee_msat, expiry)


@plugin.async_method("lsps5-setwebhook")
def lsps5_setwebhook(request, plugin, lsp_id, app_name, webhook, **kwargs):
    """Ask {lsp_id} to wake this node through {webhook} (an https URL) while it is away,
    under {app_name} (a new name, or the one it replaces)."""
    commands.lsps5_set(request, lsp_id, app_name, webhook)


@plugin.async_method("lsps5-listwebhooks")
def lsps5_listwebhooks(request, plugin, lsp_id, **kwargs):
    """The app names under which {lsp_id} keeps webhooks for this node."""
    commands.ask_lsp(request, lsp_id, state["lsps5_client"].list_webhooks)


@plugin.async_method("lsps5-removewebhook")
def lsps5_removewebhook(request, plugin, lsp_id, app_name, **kwargs):
    """Ask {lsp_id} to forget the webhook registered under {app_name}."""
    commands.lsps5_remove(request, lsp_id, app_name)


@plugin.method("lsps5-service-webhooks")
def lsps5_service_webhooks(plugin, peer_id=None, **kwargs):
    """LSP view of the clients' webhooks (optionally one {peer_id}) and notifications sent."""
    return commands.lsps5_webhooks(peer_id)


@plugin.async_method("lsps2-buyoffer")
def lsps2_buyoffer(request, plugin, lsp_id, amount_msat=None, description="JIT channel payment",
                   token=None, max_fee_msat=None, **kwargs):
    """An offer payable while this node has no channel: each invoice goes through a
    channel with {lsp_id} or, when none can take it, a JIT channel bought for it.

    With {amount_msat} the offer has that amount; {max_fee_msat} caps each opening fee."""
    commands.lsps2_buyoffer(request, lsp_id, amount_msat, description, token, max_fee_msat)


@plugin.method("lsps2-listbuys")
def lsps2_listbuys(plugin, **kwargs):
    """JIT channels this node bought, with their invoices and states."""
    return {"buys": state["lsps2_client"].list_buys()}


@plugin.method("lsps2-service-sessions")
def lsps2_service_sessions(plugin, peer_id=None, jit_channel_scid=None, **kwargs):
    """LSP view of JIT channel sessions, optionally for one {peer_id} or {jit_channel_scid}."""
    return commands.lsps2_sessions(peer_id, jit_channel_scid)


# --- async payments ----------------------------------------------------------------
@plugin.method("asyncpay-serverpaths")
def asyncpay_serverpaths(plugin, recipient_id=None, **kwargs):
    """Blinded message paths on which async recipient {recipient_id} (any id; a fresh one
    when omitted) asks this static invoice server for offer paths (hex blinded_path)."""
    return commands.server_paths(recipient_id)


@plugin.method("asyncpay-invoices")
def asyncpay_invoices(plugin, recipient_id=None, **kwargs):
    """Static invoices this server keeps (for {recipient_id}, or all), with their offers."""
    return commands.asyncpay_server().invoices(recipient_id)


@plugin.method("asyncpay-forget")
def asyncpay_forget(plugin, recipient_id, slot=None, **kwargs):
    """Drop the static invoices of {recipient_id} (only {slot} when given)."""
    return commands.forget_invoices(recipient_id, slot)


@plugin.method("asyncpay-messages")
def asyncpay_messages(plugin, **kwargs):
    """The onion-message layer: virtual node id, live paths, messages received and dropped."""
    return state["messenger"].stats()


@plugin.async_method("asyncpay-offer")
def asyncpay_offer(request, plugin, server_id, description="async payment", amount_msat=None,
                   **kwargs):
    """Create an async offer whose static invoice server {server_id} answers payers
    while this node is offline; returns the lno… offer."""
    commands.asyncpay_offer(request, server_id, description, amount_msat)


@plugin.method("asyncpay-listoffers")
def asyncpay_listoffers(plugin, **kwargs):
    """Our async offers: server, slot, static invoice state, payments received on them."""
    return state["async_recipient"].list_offers()


@plugin.method("asyncpay-forgetoffer")
def asyncpay_forgetoffer(plugin, offer_id, **kwargs):
    """Stop refreshing async offer {offer_id} (its slot at the server becomes free)."""
    return commands.forget_offer(offer_id)


@plugin.async_method("asyncpay-pay")
def asyncpay_pay(request, plugin, offer, amount_msat=None, payer_note=None, maxfee_msat=None,
                 **kwargs):
    """Pay BOLT12 {offer}: a normal invoice at once, a static invoice asynchronously
    (held at our LSP until the recipient releases it); fees up to {maxfee_msat}
    (default: 5 sat or 1 %, as xpay)."""
    commands.asyncpay_pay(request, offer, amount_msat, payer_note, maxfee_msat)


@plugin.method("asyncpay-status")
def asyncpay_status(plugin, payment_hash=None, **kwargs):
    """The state of async payment {payment_hash} (all of ours when omitted)."""
    return commands.asyncpay_status(payment_hash)


@plugin.method("asyncpay-held")
def asyncpay_held(plugin, **kwargs):
    """HTLCs this node holds for async payments: hash, peer, amount, expiry, since, state."""
    return commands.held()


@plugin.method("bolt12ext-decode")
def bolt12ext_decode(plugin, string, **kwargs):
    """Decode a BOLT12 offer, invoice_request or invoice, or a static invoice given as
    raw TLV hex: every field, the type, `valid`, and whether the signature verifies."""
    return commands.bolt12_decode(string)


if __name__ == "__main__":
    plugin.run()

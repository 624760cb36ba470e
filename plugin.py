#!/usr/bin/env python3
"""clnlsp: a Core Lightning plugin for Lightning Service Providers and their clients.

Wiring only: options, RPC commands, hooks and notifications are handed to the
services in `lsps/`, which use the pure BOLT12 library in `bolt12ext/`.
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pyln.client import Plugin, RpcException  # noqa: E402

import lsps.lsps0.protocols as lsps0  # noqa: E402
import lsps.lsps1.service as lsps1_service  # noqa: E402
import lsps.lsps2.service as lsps2_service  # noqa: E402
import lsps.lsps7.service as lsps7_service  # noqa: E402
import lsps.node.startup as startup  # noqa: E402
from bolt12ext import (
    hold,  # noqa: E402
    mailbox,  # noqa: E402
)
from bolt12ext import messages as bolt12_messages  # noqa: E402
from bolt12ext import server as asyncpay_server  # noqa: E402
from bolt12ext.tlv import DecodeError  # noqa: E402
from lsps.app import OrderService  # noqa: E402
from lsps.asyncpay.holder import HtlcHolder  # noqa: E402
from lsps.asyncpay.mailbox import PeerMailbox  # noqa: E402
from lsps.asyncpay.messenger import OnionMessenger  # noqa: E402
from lsps.asyncpay.payer import AsyncPayer, PayError  # noqa: E402
from lsps.asyncpay.recipient import AsyncRecipient, RecipientError  # noqa: E402
from lsps.asyncpay.server import StaticInvoiceServer  # noqa: E402
from lsps.lsps0.client import ClientError, blocking_call  # noqa: E402
from lsps.lsps0.link import Lsps0  # noqa: E402
from lsps.lsps0.service import Limits  # noqa: E402
from lsps.lsps1.client_handler import Lsps1Client  # noqa: E402
from lsps.lsps2.client_handler import Lsps2Client  # noqa: E402
from lsps.lsps2.service_handler import Lsps2Service  # noqa: E402
from lsps.lsps7.client_handler import Lsps7Client  # noqa: E402
from lsps.node.commands import (  # noqa: E402  # noqa: E402
    fail_request,
    optional_amount,
    optional_int,
    require_node_id,
    run_in_worker,
)
from lsps.node.replies import htlc_continue, htlc_failure_for  # noqa: E402
from lsps.node.rpc import ClnNode  # noqa: E402
from lsps.node.store import Store  # noqa: E402

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

# LSPS2 service policy (bLIP-52 opening_fee_params and channel sizing).
plugin.add_option("lsp-lsps2-min-fee-msat", 10000,
                  "LSPS2: min_fee_msat of the first menu entry.", opt_type="int")
plugin.add_option("lsp-lsps2-proportional", 10000,
                  "LSPS2: proportional fee (ppm) of the first menu entry.", opt_type="int")
plugin.add_option("lsp-lsps2-menu-entry", None,
                  "LSPS2: another menu entry, as MIN_FEE_MSAT/PROPORTIONAL; each must cost "
                  "more than the one before.", multi=True)
plugin.add_option("lsp-lsps2-valid-for", 3600,
                  "LSPS2: seconds an offered opening_fee_params stays valid.", opt_type="int")
plugin.add_option("lsp-lsps2-min-lifetime", 1008,
                  "LSPS2: blocks the LSP promises to keep a JIT channel open.", opt_type="int")
plugin.add_option("lsp-lsps2-max-client-to-self-delay", 2016,
                  "LSPS2: largest to_self_delay a client may impose on us.", opt_type="int")
plugin.add_option("lsp-lsps2-min-payment-msat", 10000,
                  "LSPS2: smallest payment that may open a JIT channel.", opt_type="int")
plugin.add_option("lsp-lsps2-max-payment-msat", 4_000_000_000,
                  "LSPS2: largest payment that may open a JIT channel.", opt_type="int")
plugin.add_option("lsp-lsps2-cltv-expiry-delta", 144,
                  "LSPS2: cltv_expiry_delta of the invoice's route hint hop (at least "
                  "lightningd's cltv-delta).", opt_type="int")
plugin.add_option("lsp-lsps2-min-channel-sat", 100000,
                  "LSPS2: smallest JIT channel opened (sat).", opt_type="int")
plugin.add_option("lsp-lsps2-token", None,
                  "LSPS2: a token clients must present; without any, no token is needed.",
                  multi=True)
plugin.add_option("lsp-lsps2-promise-secret", None,
                  "LSPS2: 64 hex characters keying the promise HMAC; derived from the node "
                  "secret (makesecret) when absent.")
plugin.add_option("lsp-lsps2-htlc-expiry-margin", 6,
                  "LSPS2: fail held JIT payment parts this many blocks before their CLTV "
                  "expiry.", opt_type="int")
plugin.add_option("lsp-lsps2-open-timeout", 60,
                  "LSPS2: seconds to wait for a JIT channel to become usable.", opt_type="int")

# LSPS1 service policy: option -> (Policy field, default, description).
LSPS1_OPTIONS = {
    "lsp-lsps1-min-required-channel-confirmations": (
        "min_required_channel_confirmations", 0,
        "LSPS1: fewest confirmations a client may ask for (0 allows zero-conf channels)."),
    "lsp-lsps1-min-funding-confirms-within-blocks": (
        "min_funding_confirms_within_blocks", 6,
        "LSPS1: fastest funding confirmation target a client may ask for (blocks)."),
    "lsp-lsps1-max-channel-expiry-blocks": (
        "max_channel_expiry_blocks", 13140, "LSPS1: longest lease (blocks)."),
    "lsp-lsps1-min-client-balance-sat": (
        "min_initial_client_balance_sat", 0, "LSPS1: smallest client_balance_sat."),
    "lsp-lsps1-max-client-balance-sat": (
        "max_initial_client_balance_sat", 1_000_000, "LSPS1: largest client_balance_sat."),
    "lsp-lsps1-min-lsp-balance-sat": (
        "min_initial_lsp_balance_sat", 100_000, "LSPS1: smallest lsp_balance_sat."),
    "lsp-lsps1-max-lsp-balance-sat": (
        "max_initial_lsp_balance_sat", 10_000_000, "LSPS1: largest lsp_balance_sat."),
    "lsp-lsps1-min-channel-sat": (
        "min_channel_balance_sat", 100_000, "LSPS1: smallest channel (both balances)."),
    "lsp-lsps1-max-channel-sat": (
        "max_channel_balance_sat", 11_000_000, "LSPS1: largest channel (both balances)."),
    "lsp-lsps1-fee-base-sat": ("fee_base_sat", 1000, "LSPS1: fixed part of the fee (sat)."),
    "lsp-lsps1-fee-ppm": ("fee_ppm", 2000, "LSPS1: fee per million of lsp_balance_sat."),
    "lsp-lsps1-lease-ppm-per-block": (
        "lease_ppm_per_block", 0,
        "LSPS1: fee per million of lsp_balance_sat for each block of channel_expiry_blocks."),
    "lsp-lsps1-order-valid-for": (
        "order_valid_for_s", 3600, "LSPS1: seconds an order (and its invoice) waits for payment."),
}
for _name, (_field, _default, _doc) in LSPS1_OPTIONS.items():
    plugin.add_option(_name, _default, _doc, opt_type="int")
plugin.add_flag_option("lsp-lsps1-onchain",
                       "LSPS1: accept on-chain payment (only from clients that give a "
                       "refund_onchain_address).")
plugin.add_option("lsp-lsps1-min-onchain-confirmations", 1,
                  "LSPS1: confirmations an on-chain payment needs (at least 1).", opt_type="int")
plugin.add_option("lsp-lsps1-min-fee-for-0conf", 253,
                  "LSPS1: min_fee_for_0conf advertised (sat per 1000 weight units); "
                  "unconfirmed payments are not accepted.", opt_type="int")
plugin.add_option("lsp-lsps1-prune-after", 86400,
                  "LSPS1: seconds after which a failed order with nothing left to refund is "
                  "forgotten (lsps1.get_order then answers 101).", opt_type="int")
plugin.add_flag_option("lsp-lsps1-close-expired",
                       "LSPS1: close a sold channel once its lease (with LSPS7 extensions) "
                       "has expired.")
plugin.add_option("lsp-lsps1-token", None,
                  "LSPS1: a token clients must present; without any, no token is needed.",
                  multi=True)
plugin.add_option("lsp-lsps7-max-extension-blocks", 13140,
                  "LSPS7: most blocks one order may extend a lease by.", opt_type="int")
plugin.add_option("lsp-lsps7-fee-base-sat", 0, "LSPS7: fixed part of the fee (sat).",
                  opt_type="int")
plugin.add_option("lsp-lsps7-fee-ppm-per-block", 1,
                  "LSPS7: fee per million of the channel capacity, per block extended.",
                  opt_type="int")
plugin.add_flag_option("lsp-lsps7-extend-any-channel",
                       "LSPS7: also extend channels not bought through LSPS1 (their lease "
                       "starts at the current block).")
# BOLT12 async payments.
plugin.add_flag_option(
    "lsp-asyncpay-server",
    "Static invoice server: keep async recipients' static invoices and answer invoice_requests "
    "for them while they are offline.")
plugin.add_option("lsp-asyncpay-max-slots", 10,
                  "Static invoice server: invoice slots per recipient.", opt_type="int")
plugin.add_option("lsp-asyncpay-max-recipients", 1000,
                  "Static invoice server: recipients with stored invoices.", opt_type="int")
plugin.add_option("lsp-asyncpay-mailbox-per-peer", 50,
                  "Mailbox: onion messages kept for one offline peer.", opt_type="int")
plugin.add_option("lsp-asyncpay-mailbox-total", 1000,
                  "Mailbox: onion messages kept for all offline peers.", opt_type="int")
plugin.add_option("lsp-asyncpay-mailbox-ttl", 86400,
                  "Mailbox: seconds an onion message waits for its peer.", opt_type="int")
plugin.add_option(
    "lsp-asyncpay-hold",
    False,
    "Hold HTLCs of async payments for our peers until the recipient releases them "
    "(hold_htlc, and the LSPS0 extension clnlsp.asyncpay.hold when lsp-service is on).",
    opt_type="flag",
)
plugin.add_option("lsp-asyncpay-hold-margin", 12,
                  "Fail a held HTLC this many blocks before its CLTV expiry.", opt_type="int")
plugin.add_option("lsp-asyncpay-hold-per-peer", 20,
                  "Payments held at once for one peer.", opt_type="int")
plugin.add_option("lsp-asyncpay-refresh-interval", 7200,
                  "Async recipient: seconds between re-serving a static invoice.",
                  opt_type="int")
plugin.add_option("lsp-lsps1-htlc-expiry-margin", 6,
                  "LSPS1: fail a held order payment this many blocks before its CLTV expiry.",
                  opt_type="int")

state = {}


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
    store = Store(node.rpc, plugin.log)
    lsp = Lsps0(node, service=service, timeout=float(timeout),
                limits=Limits(per_peer=per_peer, total=total))
    if lsp.dispatcher is not None:
        lsps0.register_service(lsp.dispatcher)
        policy, secret, why = _lsps2_policy(plugin, node)
        if why:
            return {"disable": why}
        state["lsps2_service"] = Lsps2Service(
            node, store, lsps2_service.Service(policy, secret), lsp.dispatcher,
            lsp.timer.schedule, lsp.transport.is_connected, plugin.log)
        lsps1_policy = lsps1_service.Policy(
            **{field: plugin.get_option(name) for name, (field, _, _) in LSPS1_OPTIONS.items()},
            tokens=frozenset(plugin.get_option("lsp-lsps1-token") or []),
            onchain=bool(plugin.get_option("lsp-lsps1-onchain")),
            min_onchain_payment_confirmations=plugin.get_option(
                "lsp-lsps1-min-onchain-confirmations"),
            min_fee_for_0conf=plugin.get_option("lsp-lsps1-min-fee-for-0conf"))
        why = lsps1_policy.check()
        if why or any(plugin.get_option(name) < 0 for name in LSPS1_OPTIONS):
            return {"disable": f"LSPS1 policy: {why or 'values must not be negative'}"}
        lsps7_policy = lsps7_service.Policy(
            max_extension_blocks=plugin.get_option("lsp-lsps7-max-extension-blocks"),
            fee_base_sat=plugin.get_option("lsp-lsps7-fee-base-sat"),
            fee_ppm_per_block=plugin.get_option("lsp-lsps7-fee-ppm-per-block"),
            order_valid_for_s=lsps1_policy.order_valid_for_s,
            extend_any_channel=bool(plugin.get_option("lsp-lsps7-extend-any-channel")),
            tokens=lsps1_policy.tokens)
        if min(lsps7_policy.max_extension_blocks, lsps7_policy.fee_base_sat,
               lsps7_policy.fee_ppm_per_block) < 0:
            return {"disable": "LSPS7 options must not be negative"}
        state["lsps1_service"] = OrderService(
            node, store, lsps1_policy, lsp.dispatcher, lsp.timer.schedule,
            lsp.transport.is_connected, plugin.get_option("lsp-lsps1-htlc-expiry-margin"),
            plugin.log, lsps7_policy, prune_after_s=plugin.get_option("lsp-lsps1-prune-after"),
            close_expired=bool(plugin.get_option("lsp-lsps1-close-expired")))
        state["lsps1_service"].claimed_elsewhere = state["lsps2_service"].claims
        state["lsps2_service"].claimed_elsewhere = state["lsps1_service"].claims
    state["client_workers"] = ThreadPoolExecutor(max_workers=4,
                                                 thread_name_prefix="clnlsp-client")
    # Client commands run on workers and wait there for the LSP's answer.
    def ask(peer, method, params):
        return blocking_call(lsp.call, peer, method, params)
    state["lsps2_client"] = Lsps2Client(node, store, ask, plugin.log)
    state["lsps1_client"] = Lsps1Client(node, store, ask, plugin.log)
    state["lsps7_client"] = Lsps7Client(ask)
    why = _start_asyncpay(plugin, node, store, ask, lsp.dispatcher)
    if why:
        return {"disable": why}
    lsp.start()
    state["lsps0"] = lsp
    state["lsps1_client"].start()
    state["lsps2_client"].start()
    for name in ("lsps1_service", "lsps2_service"):
        if name in state:
            state[name].start()
    plugin.log(f"clnlsp ready (lsp-service={'on' if service else 'off'})")


def _start_asyncpay(plugin, node, store, ask, dispatcher):
    """The onion-message layer, recipient and payer, and the static invoice server and
    HTLC holder when asked for; or why not."""
    limits = asyncpay_server.Limits(
        max_slots_per_recipient=plugin.get_option("lsp-asyncpay-max-slots"),
        max_recipients=plugin.get_option("lsp-asyncpay-max-recipients"))
    if min(limits.max_slots_per_recipient, limits.max_recipients) < 1:
        return "lsp-asyncpay-max-slots and lsp-asyncpay-max-recipients must be at least 1"
    messenger = OnionMessenger(node, store, plugin.log)
    messenger.start()
    state["messenger"] = messenger
    if plugin.get_option("lsp-asyncpay-server"):
        box = mailbox.Limits(per_peer=plugin.get_option("lsp-asyncpay-mailbox-per-peer"),
                             total=plugin.get_option("lsp-asyncpay-mailbox-total"),
                             ttl_s=plugin.get_option("lsp-asyncpay-mailbox-ttl"))
        if min(box.per_peer, box.total, box.ttl_s) < 1:
            return "lsp-asyncpay-mailbox-* must be at least 1"
        messenger.mailbox = PeerMailbox(node, store, mailbox.Mailbox(box), plugin.log)
        messenger.mailbox.start()
        server = StaticInvoiceServer(messenger, store,
                                     asyncpay_server.ServerCore(messenger.book, limits),
                                     plugin.log)
        server.start()
        if dispatcher is not None:
            server.serve_lsps0(dispatcher)
        state["asyncpay_server"] = server
    refresh = plugin.get_option("lsp-asyncpay-refresh-interval")
    if refresh < 60:
        return "lsp-asyncpay-refresh-interval must be at least 60"
    state["async_recipient"] = AsyncRecipient(node, store, messenger, ask, plugin.log,
                                              refresh_interval_s=refresh)
    state["async_recipient"].start()
    state["async_payer"] = AsyncPayer(node, store, messenger, ask, plugin.log)
    state["async_payer"].start()
    if plugin.get_option("lsp-asyncpay-hold"):
        limits = hold.Limits(per_peer=plugin.get_option("lsp-asyncpay-hold-per-peer"),
                             expiry_margin_blocks=plugin.get_option("lsp-asyncpay-hold-margin"))
        if limits.per_peer < 1 or limits.expiry_margin_blocks < 1:
            return "lsp-asyncpay-hold-per-peer and -margin must be at least 1"
        if dispatcher is None:
            plugin.log("lsp-asyncpay-hold without lsp-service: only hold_htlc (75537) holds, "
                       "the LSPS0 hold extension is off", "warn")
        state["holder"] = HtlcHolder(store, messenger, limits, plugin.log)
        state["holder"].start(dispatcher)
    return None


def _lsps2_policy(plugin, node):
    """(Policy, promise secret, None) or (None, None, why it cannot run)."""
    fees = [(plugin.get_option("lsp-lsps2-min-fee-msat"),
             plugin.get_option("lsp-lsps2-proportional"))]
    for entry in plugin.get_option("lsp-lsps2-menu-entry") or []:
        try:
            fee, prop = (int(x) for x in entry.split("/"))
        except ValueError:
            return None, None, f"lsp-lsps2-menu-entry {entry!r}: expected MIN_FEE_MSAT/PPM"
        fees.append((fee, prop))
    ints = {name: plugin.get_option(name) for name in (
        "lsp-lsps2-valid-for", "lsp-lsps2-min-lifetime", "lsp-lsps2-max-client-to-self-delay",
        "lsp-lsps2-min-payment-msat", "lsp-lsps2-max-payment-msat",
        "lsp-lsps2-cltv-expiry-delta", "lsp-lsps2-min-channel-sat",
        "lsp-lsps2-htlc-expiry-margin", "lsp-lsps2-open-timeout")}
    for name, value in ints.items():
        if value < 0:
            return None, None, f"{name} must not be negative"
    if any(f < 0 or p < 0 or p > 2**32 - 1 for f, p in fees):
        return None, None, "LSPS2 fees must be non-negative (proportional a u32)"
    node_delta = node.config("cltv-delta") or 0
    if ints["lsp-lsps2-cltv-expiry-delta"] < node_delta:
        return None, None, (f"lsp-lsps2-cltv-expiry-delta must be at least lightningd's "
                            f"cltv-delta ({node_delta})")
    policy = lsps2_service.Policy(
        fees=tuple(fees), valid_for_s=ints["lsp-lsps2-valid-for"],
        min_lifetime=ints["lsp-lsps2-min-lifetime"],
        max_client_to_self_delay=ints["lsp-lsps2-max-client-to-self-delay"],
        min_payment_size_msat=ints["lsp-lsps2-min-payment-msat"],
        max_payment_size_msat=ints["lsp-lsps2-max-payment-msat"],
        cltv_expiry_delta=ints["lsp-lsps2-cltv-expiry-delta"],
        min_channel_sat=ints["lsp-lsps2-min-channel-sat"],
        tokens=frozenset(plugin.get_option("lsp-lsps2-token") or []),
        htlc_expiry_margin=ints["lsp-lsps2-htlc-expiry-margin"],
        open_timeout_s=ints["lsp-lsps2-open-timeout"])
    why = policy.check()
    if why:
        return None, None, f"LSPS2 policy: {why}"
    secret_hex = plugin.get_option("lsp-lsps2-promise-secret")
    if secret_hex:
        try:
            secret = bytes.fromhex(secret_hex)
        except ValueError:
            secret = b""
        if len(secret) != 32:
            return None, None, "lsp-lsps2-promise-secret must be 64 hex characters"
    else:
        secret = node.makesecret("clnlsp/lsps2/promise")
    return policy, secret, None


@plugin.hook("custommsg", filters=[37913])
def on_custommsg(peer_id, payload, plugin, **kwargs):
    try:
        state["lsps0"].on_custommsg(peer_id, payload)
    except Exception as e:  # a hook that errors would take lightningd down
        plugin.log(f"custommsg from {peer_id} not handled: {e!r}", "warn")
    return {"result": "continue"}


def _fan_out(event, names, *args):
    """Hand an event to each running service, each on its own: one that fails is
    logged and never keeps the others from it (held HTLCs must still be failed in time)."""
    for name in names:
        if name in state:
            try:
                getattr(state[name], event)(*args)
            except Exception as e:
                plugin.log(f"{name}.{event} failed: {e!r}", "warn")


@plugin.subscribe("connect")
def on_connect(plugin, connect=None, **kwargs):
    peer_id = (connect or kwargs).get("id")
    if peer_id:
        _fan_out("on_connect", ("lsps0", "lsps1_service", "lsps2_service", "messenger"),
                 peer_id)


@plugin.subscribe("disconnect")
def on_disconnect(plugin, disconnect=None, **kwargs):
    peer_id = (disconnect or kwargs).get("id")
    if peer_id and "lsps0" in state:
        state["lsps0"].on_disconnect(peer_id)


@plugin.async_method("lsps0-listprotocols")
def lsps0_listprotocols(request, plugin, lsp_id, **kwargs):
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


def _ask_lsp(request, lsp_id, work):
    """Client commands wait for an LSP: check lsp_id, then run work(lsp_id) on the
    client worker pool and answer the command from there."""
    lsp_id = require_node_id(lsp_id, "lsp_id")
    run_in_worker(state["client_workers"], request, lambda: work(lsp_id))


def _answer_once(request):
    def respond(result):
        try:
            request.set_result(result)
        except ValueError:  # already answered; lightningd must hear one answer only
            plugin.log(f"second answer for {request.method} dropped", "warn")
    return respond


def on_htlc_accepted(onion, htlc, request, plugin, **kwargs):
    """JIT payment parts are held and answered later: a background hook."""
    respond = _answer_once(request)
    owner = None
    try:
        holder = state.get("holder")
        if holder is not None:
            owner = "holder" if holder.flagged(htlc) else None  # never forward 75537
            if holder.on_htlc(kwargs.get("peer_id"), htlc, respond):
                return
            owner = None
        receiving = state.get("async_recipient")
        mine = (receiving.context_of(onion, htlc, kwargs.get("peer_id"))
                if receiving is not None else None)
        if mine is not None:
            owner = "async_recipient"
            respond(receiving.on_htlc(*mine, htlc))
            return
        service = state.get("lsps2_service")
        if service is not None and service.owns(onion.get("short_channel_id")):
            owner = "lsps2_service"
            service.on_htlc(onion, htlc, respond)
            return
        orders = state.get("lsps1_service")
        if orders is not None and orders.owns_payment(onion, htlc):
            owner = "lsps1_service"
            orders.on_htlc(onion, htlc, respond)
            return
        client = state.get("lsps2_client")
        result = client.on_htlc(onion, htlc, kwargs.get("peer_id")) if client else None
        respond(result or htlc_continue())
    except Exception as e:  # never leave an HTLC without an answer
        plugin.log(f"htlc_accepted not handled ({owner or 'no owner'}): {e!r}", "warn")
        if request.state.name == "PENDING":
            # An HTLC one of our services owns is never let through on an error:
            # `continue` would settle an order's invoice with no channel.
            respond(htlc_failure_for(owner, htlc) if owner else htlc_continue())


# Before keysend: a static-invoice payment carries keysend's preimage type too.
plugin.add_hook("htlc_accepted", on_htlc_accepted, background=True, before=["keysend"])


@plugin.hook("openchannel")
def on_openchannel(openchannel, plugin, **kwargs):
    try:
        peer = openchannel["id"]
        if any(state[name].accepts_zeroconf_from(peer)
               for name in ("lsps1_client", "lsps2_client") if name in state):
            return {"result": "continue", "mindepth": 0}
    except Exception as e:
        plugin.log(f"openchannel not handled: {e!r}", "warn")
    return {"result": "continue"}


@plugin.subscribe("block_added")
def on_block_added(plugin, block_added=None, **kwargs):
    if block_added:
        _fan_out("on_block", ("holder", "lsps1_service", "lsps2_service"),
                 block_added["height"])


@plugin.subscribe("channel_state_changed")
def on_channel_state_changed(plugin, channel_state_changed=None, **kwargs):
    service = state.get("lsps2_service")
    if service is not None and channel_state_changed:
        service.on_channel_state(channel_state_changed.get("channel_id"),
                                 channel_state_changed.get("new_state"))


@plugin.subscribe("forward_event")
def on_forward_event(plugin, forward_event=None, **kwargs):
    service = state.get("lsps2_service")
    if service is not None and forward_event:
        service.on_forward_event(forward_event.get("out_channel"),
                                 forward_event.get("in_channel"),
                                 forward_event.get("in_htlc_id"), forward_event.get("status"))


@plugin.subscribe("invoice_payment")
def on_invoice_payment(plugin, invoice_payment=None, **kwargs):
    client = state.get("lsps2_client")
    if client is not None and invoice_payment:
        client.on_invoice_paid(invoice_payment.get("label"))


@plugin.async_method("lsps1-getinfo")
def lsps1_getinfo(request, plugin, lsp_id, **kwargs):
    """Ask LSP {lsp_id} for the channels it sells (lsps1.get_info)."""
    _ask_lsp(request, lsp_id, state["lsps1_client"].get_info)


@plugin.async_method("lsps1-createorder")
def lsps1_createorder(request, plugin, lsp_id, lsp_balance_sat, client_balance_sat=0,
                      channel_expiry_blocks=None, required_channel_confirmations=None,
                      funding_confirms_within_blocks=None, announce_channel=False, token=None,
                      refund_onchain_address=None, **kwargs):
    """Order a channel with {lsp_balance_sat} inbound from LSP {lsp_id}; pay its invoice."""
    if not isinstance(announce_channel, bool):
        announce_channel = str(announce_channel).lower() in ("true", "1", "yes")
    wanted = {
        "lsp_balance_sat": optional_int(lsp_balance_sat, "lsp_balance_sat", minimum=1),
        "client_balance_sat": optional_int(client_balance_sat, "client_balance_sat"),
        "channel_expiry_blocks": optional_int(channel_expiry_blocks, "channel_expiry_blocks",
                                              minimum=1),
        "required_channel_confirmations": optional_int(required_channel_confirmations,
                                                       "required_channel_confirmations"),
        "funding_confirms_within_blocks": optional_int(funding_confirms_within_blocks,
                                                       "funding_confirms_within_blocks"),
        "announce_channel": announce_channel,
        "token": None if token is None else str(token),
        "refund_onchain_address": (None if refund_onchain_address is None
                                   else str(refund_onchain_address)),
    }
    _ask_lsp(request, lsp_id, lambda lsp: state["lsps1_client"].order(lsp, wanted))


@plugin.async_method("lsps1-getorder")
def lsps1_getorder(request, plugin, lsp_id, order_id, **kwargs):
    """Ask LSP {lsp_id} for the state of order {order_id}."""
    _ask_lsp(request, lsp_id, lambda lsp: state["lsps1_client"].get_order(lsp, str(order_id)))


@plugin.method("lsps1-listorders")
def lsps1_listorders(plugin, lsp_id=None, **kwargs):
    """Channel orders this node placed, with their last known state."""
    if lsp_id is not None:
        lsp_id = require_node_id(lsp_id, "lsp_id")
    return {"orders": state["lsps1_client"].list_orders(lsp_id)}


SERVICE_OFF, ASYNCPAY_SERVER_OFF, ASYNCPAY_FAILED, ASYNCPAY_HOLD_OFF = 1200, 1600, 1601, 1602


def _running(name, why_not, code):
    """The running service `name`, or the RPC error saying why it is not running."""
    service = state.get(name)
    if service is None:
        raise RpcException(why_not, code)
    return service


@plugin.method("lsps1-service-orders")
def lsps1_service_orders(plugin, order_id=None, peer_id=None, **kwargs):
    """LSP view of channel orders: states, payment, channel, lease expiry."""
    service = _running("lsps1_service", "lsp-service is off: this node sells no channels",
                       SERVICE_OFF)
    if peer_id is not None:
        peer_id = require_node_id(peer_id, "peer_id")
    return {"orders": service.list_orders(order_id, peer_id)}


@plugin.async_method("lsps7-getextendablechannels")
def lsps7_getextendablechannels(request, plugin, lsp_id, **kwargs):
    """Channels LSP {lsp_id} lets this node extend the lease of."""
    _ask_lsp(request, lsp_id, state["lsps7_client"].get_extendable_channels)


@plugin.async_method("lsps7-createorder")
def lsps7_createorder(request, plugin, lsp_id, short_channel_id, channel_extension_expiry_blocks,
                      token=None, refund_onchain_address=None, **kwargs):
    """Order an extension of {short_channel_id}'s lease by {channel_extension_expiry_blocks}."""
    params = {"short_channel_id": str(short_channel_id),
              "channel_extension_expiry_blocks": optional_int(
                  channel_extension_expiry_blocks, "channel_extension_expiry_blocks", 1)}
    if token is not None:
        params["token"] = str(token)
    if refund_onchain_address is not None:
        params["refund_onchain_address"] = str(refund_onchain_address)
    _ask_lsp(request, lsp_id, lambda lsp: state["lsps7_client"].create_extension(lsp, params))


@plugin.async_method("lsps7-getorder")
def lsps7_getorder(request, plugin, lsp_id, order_id, **kwargs):
    """The state of lease extension order {order_id} at LSP {lsp_id}."""
    _ask_lsp(request, lsp_id,
             lambda lsp: state["lsps7_client"].get_extension(lsp, str(order_id)))


@plugin.method("lsps7-service-orders")
def lsps7_service_orders(plugin, order_id=None, peer_id=None, **kwargs):
    """LSP view of lease extension orders."""
    service = _running("lsps1_service", "lsp-service is off: this node extends no leases",
                       SERVICE_OFF)
    if peer_id is not None:
        peer_id = require_node_id(peer_id, "peer_id")
    return {"orders": service.list_orders(order_id, peer_id, kind="lsps7")}


@plugin.subscribe("onionmessage_forward_fail")
def on_onionmessage_forward_fail(plugin, onionmessage_forward_fail=None, **kwargs):
    if "messenger" in state:
        state["messenger"].on_forward_fail(onionmessage_forward_fail or kwargs)


def on_onion_message_recv_secret(onion_message, plugin, **kwargs):
    """Known-type messages on paths ending at the real node: ours only when the path
    secret is one of our path ids. Must never error (lightningd would die)."""
    try:
        messenger = state.get("messenger")
        if messenger is not None and messenger.on_cln_message(onion_message or {}):
            return {"result": "resolve"}
    except Exception as e:
        plugin.log(f"onion_message_recv_secret not handled: {e!r}", "warn")
    return {"result": "continue"}


plugin.add_hook("onion_message_recv_secret", on_onion_message_recv_secret, before=["offers"])


def _asyncpay_server():
    return _running("asyncpay_server", "the static invoice server is off (start lightningd "
                    "with --lsp-asyncpay-server)", ASYNCPAY_SERVER_OFF)


@plugin.method("asyncpay-serverpaths")
def asyncpay_serverpaths(plugin, recipient_id=None, **kwargs):
    """Blinded message paths on which async recipient {recipient_id} (any id; a fresh one
    when omitted) asks this static invoice server for offer paths (hex blinded_path)."""
    if recipient_id is not None and (not isinstance(recipient_id, str) or not recipient_id
                                     or len(recipient_id) > 66):
        raise RpcException("recipient_id must be a non-empty string of at most 66 characters",
                           -32602)
    return _asyncpay_server().server_paths(recipient_id)


@plugin.method("asyncpay-invoices")
def asyncpay_invoices(plugin, recipient_id=None, **kwargs):
    """Static invoices this server keeps (for {recipient_id}, or all), with their offers."""
    return _asyncpay_server().invoices(recipient_id)


@plugin.method("asyncpay-forget")
def asyncpay_forget(plugin, recipient_id, slot=None, **kwargs):
    """Drop the static invoices of {recipient_id} (only {slot} when given)."""
    slot = optional_int(slot, "slot")
    return _asyncpay_server().forget(recipient_id, slot)


@plugin.method("asyncpay-messages")
def asyncpay_messages(plugin, **kwargs):
    """The onion-message layer: virtual node id, live paths, messages received and dropped."""
    return state["messenger"].stats()


def _asyncpay(request, work):
    """Run an async-payment command on a worker; its errors become RPC error 1601."""
    def run():
        try:
            return work()
        except (RecipientError, PayError) as e:
            raise RpcException(str(e), ASYNCPAY_FAILED) from None
    run_in_worker(state["client_workers"], request, run)


@plugin.async_method("asyncpay-offer")
def asyncpay_offer(request, plugin, server_id, description="async payment", amount_msat=None,
                   **kwargs):
    """Create an async offer whose static invoice server {server_id} answers payers
    while this node is offline; returns the lno… offer."""
    server_id = require_node_id(server_id, "server_id")
    amount = optional_amount(amount_msat, "amount_msat")
    if amount is not None and amount < 1:
        raise RpcException("amount_msat must be positive", -32602)
    _asyncpay(request, lambda: state["async_recipient"].create_offer(
        server_id, str(description), amount))


@plugin.method("asyncpay-listoffers")
def asyncpay_listoffers(plugin, **kwargs):
    """Our async offers: server, slot, static invoice state, payments received on them."""
    return state["async_recipient"].list_offers()


@plugin.method("asyncpay-forgetoffer")
def asyncpay_forgetoffer(plugin, offer_id, **kwargs):
    """Stop refreshing async offer {offer_id} (its slot at the server becomes free)."""
    try:
        return state["async_recipient"].forget(str(offer_id))
    except RecipientError as e:
        raise RpcException(str(e), -32602) from None


@plugin.async_method("asyncpay-pay")
def asyncpay_pay(request, plugin, offer, amount_msat=None, payer_note=None, maxfee_msat=None,
                 **kwargs):
    """Pay BOLT12 {offer}: a normal invoice at once, a static invoice asynchronously
    (held at our LSP until the recipient releases it); fees up to {maxfee_msat}
    (default: 5 sat or 1 %, as xpay)."""
    amount = optional_amount(amount_msat, "amount_msat")
    maxfee = optional_amount(maxfee_msat, "maxfee_msat")
    if not isinstance(offer, str) or not offer.lower().startswith("lno1"):
        raise RpcException("offer: expected a BOLT12 offer (lno1…)", -32602)
    note = None if payer_note is None else str(payer_note)
    _asyncpay(request, lambda: state["async_payer"].pay(offer, amount, note, maxfee))


@plugin.method("asyncpay-status")
def asyncpay_status(plugin, payment_hash=None, **kwargs):
    """The state of async payment {payment_hash} (all of ours when omitted)."""
    payer = state["async_payer"]
    if payment_hash is None:
        return payer.list()
    try:
        return payer.status(str(payment_hash).lower())
    except PayError as e:
        raise RpcException(str(e), -32602) from None


@plugin.method("asyncpay-held")
def asyncpay_held(plugin, **kwargs):
    """HTLCs this node holds for async payments: hash, peer, amount, expiry, since, state."""
    return _running("holder", "HTLC holding is off (start lightningd with "
                    "--lsp-asyncpay-hold)", ASYNCPAY_HOLD_OFF).list()


@plugin.method("bolt12ext-decode")
def bolt12ext_decode(plugin, string, **kwargs):
    """Decode a BOLT12 offer, invoice_request or invoice, or a static invoice given as
    raw TLV hex: every field, the type, `valid`, and whether the signature verifies."""
    try:
        return bolt12_messages.decode(string)
    except DecodeError as e:
        raise RpcException(f"invalid BOLT12 object: {e}", -32602) from None


@plugin.async_method("lsps2-getinfo")
def lsps2_getinfo(request, plugin, lsp_id, token=None, **kwargs):
    """Ask LSP {lsp_id} for its LSPS2 JIT channel fee menu (optionally with a {token})."""
    _ask_lsp(request, lsp_id, lambda lsp: state["lsps2_client"].get_info(lsp, token))


@plugin.async_method("lsps2-buy")
def lsps2_buy(request, plugin, lsp_id, amount_msat=None, description="JIT channel payment",
              label=None, token=None, opening_fee_params=None, max_fee_msat=None,
              expiry=None, **kwargs):
    """Buy a JIT channel from {lsp_id} and get the invoice to be paid through it.

    With {amount_msat}: a fixed, multi-part invoice; without: a variable one."""
    amount = optional_amount(amount_msat, "amount_msat")
    max_fee = optional_amount(max_fee_msat, "max_fee_msat")
    expiry_s = optional_int(expiry, "expiry", minimum=60)
    _ask_lsp(request, lsp_id, lambda lsp: state["lsps2_client"].buy(
        lsp, amount, str(description), label, token, opening_fee_params, max_fee, expiry_s))


@plugin.method("lsps2-listbuys")
def lsps2_listbuys(plugin, **kwargs):
    """JIT channels this node bought, with their invoices and states."""
    return {"buys": state["lsps2_client"].list_buys()}


@plugin.method("lsps2-service-sessions")
def lsps2_service_sessions(plugin, peer_id=None, jit_channel_scid=None, **kwargs):
    """LSP view of JIT channel sessions, optionally for one {peer_id} or {jit_channel_scid}."""
    service = _running("lsps2_service", "lsp-service is off: this node sells no JIT channels",
                       SERVICE_OFF)
    if peer_id is not None:
        peer_id = require_node_id(peer_id, "peer_id")
    return {"sessions": service.list_sessions(peer_id, jit_channel_scid)}


if __name__ == "__main__":
    plugin.run()

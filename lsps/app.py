"""Composition: the services built from the options, and how node events reach them.

`App.build` makes every service the options ask for (or says why it cannot run);
`App.on_htlc` is the HTLC claim order; the other `on_*` hand node events to the
services that take them, each on its own. OrderService: LSPS1 channel orders and
LSPS7 lease extensions are both paid by a held invoice (or on chain), so one book
serves both; each protocol adds its methods."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional

import lsps.asyncpay.options as asyncpay_options
import lsps.lsps0.options as lsps0_options
import lsps.lsps0.protocols as lsps0
import lsps.lsps1.msgs as M1
import lsps.lsps1.options as lsps1_options
import lsps.lsps1.service as S
import lsps.lsps2.options as lsps2_options
import lsps.lsps5.msgs as M5
import lsps.lsps5.options as lsps5_options
import lsps.lsps7.msgs as M7
import lsps.lsps7.options as lsps7_options
import lsps.lsps7.service as X
import lsps.metrics as metrics
import lsps.orders.payment as P
from bolt12ext import mailbox
from bolt12ext import server as asyncpay_server
from lsps.asyncpay.holder import HtlcHolder
from lsps.asyncpay.mailbox import PeerMailbox
from lsps.asyncpay.messenger import OnionMessenger
from lsps.asyncpay.order_offers import OrderOffers
from lsps.asyncpay.payer import AsyncPayer
from lsps.asyncpay.recipient import AsyncRecipient
from lsps.asyncpay.server import StaticInvoiceServer
from lsps.htlc import TEMPORARY_NODE_FAILURE
from lsps.lsps0.link import Lsps0, blocking_call
from lsps.lsps0.service import Dispatcher, MethodSpec
from lsps.lsps1.client_handler import Lsps1Client
from lsps.lsps1.service_handler import Lsps1Orders
from lsps.lsps2 import service as lsps2_service
from lsps.lsps2.client_handler import Lsps2Client
from lsps.lsps2.service_handler import Lsps2Service
from lsps.lsps5.client_handler import Lsps5Client
from lsps.lsps5.delivery import Delivery
from lsps.lsps5.service_handler import Lsps5Service
from lsps.lsps7.client_handler import Lsps7Client
from lsps.lsps7.service_handler import Lsps7Leases
from lsps.node.events import Htlc
from lsps.node.replies import htlc_continue, htlc_fail, htlc_failure_for
from lsps.node.rpc import ClnNode
from lsps.node.store import Store
from lsps.options import Get, OptionError
from lsps.orders.book import OrderBook
from lsps.overview import Overview


class OrderService(Lsps1Orders, Lsps7Leases, OrderBook):
    def __init__(self, node: ClnNode, store: Store, policy: S.Policy, dispatcher: Dispatcher,
                 schedule, is_connected: Callable[[str], bool], htlc_expiry_margin: int,
                 log: Callable[[str, str], None], lsps7: X.Policy,
                 prune_after_s: int = 86400, close_expired: bool = False):
        super().__init__(node, store, policy, schedule, is_connected, htlc_expiry_margin, log,
                         prune_after_s)
        self.lsps7 = lsps7
        self.close_expired = close_expired
        self.archive.digest = P.summary_row
        dispatcher.register(MethodSpec(M1.GET_INFO, 1, lambda call: self.policy.info()))
        dispatcher.register(MethodSpec(M1.CREATE_ORDER, 1, self._create_order,
                                       required=M1.CREATE_ORDER_REQUIRED,
                                       optional=M1.CREATE_ORDER_OPTIONAL))
        dispatcher.register(MethodSpec(M1.GET_ORDER, 1, self._get_order,
                                       required=frozenset({"order_id"})))
        dispatcher.register(MethodSpec(M7.GET_EXTENDABLE_CHANNELS, 7, self._get_extendable))
        dispatcher.register(MethodSpec(M7.CREATE_ORDER, 7, self._create_extension,
                                       required=M7.CREATE_ORDER_REQUIRED,
                                       optional=M7.CREATE_ORDER_OPTIONAL))
        dispatcher.register(MethodSpec(M7.GET_ORDER, 7, self._get_extension,
                                       required=frozenset({"order_id"})))

    def summary_rows(self) -> List[dict]:
        """What lsp-summary adds up, of the LSPS1 and LSPS7 orders the service listings
        show (archived ones from rows kept up to date); each row says its `kind`."""
        archived = self.archive.digests()
        with self.lock:
            live = {k: P.summary_row(o, self._lease_expiry_block(o))
                    for k, o in self.orders.items()}
        return list(live.values()) + [r for k, r in archived.items() if k not in live]

    def _lease_expiry_block(self, order: dict) -> Optional[int]:
        """An order's lease expiry, with the extensions paid since (LSPS7 orders keep
        none of their own)."""
        lease = self.leases.get(order["channel_id"] or "")
        return (lease or {}).get("expiration_block", order.get("lease_expiry_block"))

    def list_orders(self, order_id: Optional[str], peer_id: Optional[str],
                    kind: str = "lsps1") -> List[dict]:
        archived = self.archive.find(order_id)
        with self.lock:
            out = []
            for o in list(self.orders.values()) + [
                    a for k, a in archived.items() if k not in self.orders]:
                if order_id and o["order_id"] != order_id or peer_id and o["client_id"] != peer_id:
                    continue
                if o.get("kind", "lsps1") != kind:
                    continue
                if kind == "lsps7":
                    out.append({**X.order_json(o, self._stored_lease(o), self.lsps7,
                                               self.policy),
                                "peer_id": o["client_id"], "channel_id": o["channel_id"],
                                "failure": o["failure"],
                                "onchain_refund": P.onchain_refund_json(o)})
                    continue
                out.append({**S.order_json(o, self.policy), "peer_id": o["client_id"],
                            "payment_hash": o["bolt11"]["payment_hash"],
                            "parts": [{"htlc": p["key"], "amount_msat": p["amount_msat"],
                                       "cltv_expiry": p["cltv_expiry"]} for p in o["parts"]],
                            "channel_id": o["channel_id"],
                            "lease_expiry_block": self._lease_expiry_block(o),
                            "closed_at_block": o.get("closed_at_block"),
                            "failure": o["failure"],
                            "onchain_refund": P.onchain_refund_json(o)})
            return sorted(out, key=lambda o: o["created_at"])


# Every option, in the order lightningd lists them.
OPTIONS = (lsps0_options.OPTIONS + lsps2_options.OPTIONS + lsps1_options.OPTIONS
           + lsps7_options.OPTIONS + lsps5_options.OPTIONS + asyncpay_options.OPTIONS
           + metrics.OPTIONS)

Log = Callable[..., None]


class App:
    """The running services by name (`services`, which the commands read) and the
    routing of node events to them."""

    def __init__(self, services: Dict[str, Any], log: Log):
        self.services = services
        self.log = log

    def build(self, get: Get, lightning_dir: str, rpc_file: str, advertised: bool) -> Optional[str]:
        """Make and start every service the options ask for; None, or why the plugin
        cannot run (lightningd then disables it)."""
        try:
            self._build(get, lightning_dir, rpc_file, advertised)
        except OptionError as e:
            return str(e)
        return None

    def _build(self, get: Get, lightning_dir: str, rpc_file: str, advertised: bool) -> None:
        service = bool(get("lsp-service"))
        timeout, limits = lsps0_options.transport(get)
        metrics_port = metrics.port(get)
        if advertised and not service:
            raise OptionError("feature bit 729 was advertised but lsp-service is off; "
                              "a client must not set it (this is a bug, please report)")
        if service and not advertised:
            self.log("lsp-service is on but was not found on lightningd's command line or "
                     "config files, so feature bit 729 is not advertised; LSPS still works",
                     "warn")
        node = ClnNode(os.path.join(lightning_dir, rpc_file), log=self.log)
        store = Store(node.rpc, self.log)
        lsp = Lsps0(node, service=service, timeout=timeout, limits=limits)
        s = self.services
        s["node"] = node
        if lsp.dispatcher is not None:
            self._build_service(get, node, store, lsp)
        s["client_workers"] = ThreadPoolExecutor(max_workers=4,
                                                 thread_name_prefix="clnlsp-client")

        def ask(peer, method, params):   # client calls wait on a worker for the LSP
            return blocking_call(lsp.call, peer, method, params)
        s["lsps2_client"] = Lsps2Client(node, store, ask, self.log)
        s["lsps1_client"] = Lsps1Client(node, store, ask, self.log)
        s["lsps7_client"] = Lsps7Client(ask, s["lsps1_client"].pay)
        s["lsps5_client"] = Lsps5Client(ask)
        self._build_asyncpay(get, node, store, ask, lsp.dispatcher)
        lsp.start()
        s["lsps0"] = lsp
        for name in ("lsps1_client", "lsps2_client", "lsps1_service", "lsps2_service",
                     "lsps5_service"):
            if name in s:
                s[name].start()
        if metrics_port:
            s["metrics"] = metrics.serve(metrics_port, Overview(s))

    def _build_service(self, get: Get, node: ClnNode, store: Store, lsp: Lsps0) -> None:
        lsps0.register_service(lsp.dispatcher)
        policy = lsps2_options.policy(get, node.config("cltv-delta") or 0)
        secret = lsps2_options.promise_secret(get) or node.makesecret("clnlsp/lsps2/promise")
        jit = Lsps2Service(node, store, lsps2_service.Service(policy, secret), lsp.dispatcher,
                           lsp.timer.schedule, lsp.transport.is_connected, self.log)
        orders_policy = lsps1_options.policy(get)
        orders = OrderService(
            node, store, orders_policy, lsp.dispatcher, lsp.timer.schedule,
            lsp.transport.is_connected, get("lsp-lsps1-htlc-expiry-margin"), self.log,
            lsps7_options.policy(get, orders_policy), prune_after_s=get("lsp-lsps1-prune-after"),
            close_expired=bool(get("lsp-lsps1-close-expired")))
        # A channel one of them opened is never adopted by the other.
        orders.claimed_elsewhere, jit.claimed_elsewhere = jit.claims, orders.claims
        delivery = Delivery(lambda message: node.sign_message(message), self.log,
                            get("lsp-lsps5-timeout"),
                            get("lsp-lsps5-ca-file"))
        wake = Lsps5Service(node, store, lsp.dispatcher, lsp.transport.is_connected,
                            lsps5_options.policy(get), delivery, self.log)
        jit.wake = lambda peer_id: wake.wake(peer_id, M5.PAYMENT_INCOMING)
        jit.wake_timeout_s = get("lsp-lsps5-wake-timeout")
        orders.before_lease_close = lambda peer_id: wake.notify(
            peer_id, M5.LIQUIDITY_MANAGEMENT_REQUEST)
        self.services.update(lsps2_service=jit, lsps1_service=orders, lsps5_service=wake)

    def _build_asyncpay(self, get: Get, node: ClnNode, store: Store, ask,
                        dispatcher: Optional[Dispatcher]) -> None:
        """The onion-message layer, recipient and payer, and the static invoice server
        and HTLC holder when asked for."""
        s = self.services
        limits = asyncpay_options.server_limits(get)
        messenger = OnionMessenger(node, store, self.log)
        messenger.start()
        s["messenger"] = messenger
        if get("lsp-asyncpay-server"):
            box = asyncpay_options.mailbox_limits(get)
            messenger.mailbox = PeerMailbox(node, store, mailbox.Mailbox(box), self.log)
            messenger.mailbox.start()
            server = StaticInvoiceServer(messenger, store,
                                         asyncpay_server.ServerCore(messenger.book, limits),
                                         self.log)
            server.start()
            messenger.mailbox.also_for = lambda peer_id: server.serves(peer_id)
            wake = s.get("lsps5_service")
            if wake is not None:
                messenger.mailbox.on_kept = lambda peer_id: wake.notify(
                    peer_id, M5.ONION_MESSAGE_INCOMING)
            if dispatcher is not None:
                server.serve_lsps0(dispatcher)
            s["asyncpay_server"] = server
        orders = s.get("lsps1_service")
        if orders is not None and not get("lsp-lsps1-no-bolt12"):
            orders.bolt12 = OrderOffers(node, messenger, orders.bolt12_terms, self.log)
        refresh = asyncpay_options.refresh_interval(get)
        s["async_recipient"] = AsyncRecipient(node, store, messenger, ask, self.log,
                                              refresh_interval_s=refresh,
                                              jit=s["lsps2_client"])
        s["async_recipient"].start()
        s["async_payer"] = AsyncPayer(node, store, messenger, ask, self.log)
        s["async_payer"].start()
        if get("lsp-asyncpay-hold"):
            hold_limits = asyncpay_options.hold_limits(get)
            if dispatcher is None:
                self.log("lsp-asyncpay-hold without lsp-service: only hold_htlc (75537) "
                         "holds, the LSPS0 hold extension is off", "warn")
            s["holder"] = HtlcHolder(store, messenger, hold_limits, self.log)
            s["holder"].start(dispatcher)

    # --- node events ---------------------------------------------------------------
    def on_htlc_accepted(self, onion: dict, htlc: dict, peer_id: Optional[str],
                         respond: Callable[[dict], None]) -> None:
        """The htlc_accepted hook: the payload read once, then the claim order."""
        try:
            event = Htlc.parse(onion, htlc, peer_id)
        except (KeyError, TypeError, ValueError) as e:  # lightningd always sends these
            self.log(f"htlc_accepted payload not understood: {e!r}", "warn")
            respond(htlc_fail(TEMPORARY_NODE_FAILURE) if self._may_own(onion, htlc)
                    else htlc_continue())
            return
        self.on_htlc(event, respond)

    def _may_own(self, onion, htlc) -> bool:
        """For a payload we could not read: might it be one of ours (an order's hash, a
        JIT scid, a hold_htlc record)? Then it is failed, never let through."""
        s = self.services
        orders, jit = s.get("lsps1_service"), s.get("lsps2_service")
        onion, htlc = onion if isinstance(onion, dict) else {}, htlc if isinstance(
            htlc, dict) else {}
        return bool((orders is not None and htlc.get("payment_hash") in orders.by_hash)
                    or (jit is not None and jit.owns(onion.get("short_channel_id")))
                    or (s.get("holder") is not None and htlc.get("extra_tlvs")))

    def on_htlc(self, htlc: Htlc, respond: Callable[[dict], None]) -> None:
        """The claim order: a held async payment, our own async payment paths, a JIT
        channel's scid, an order's invoice, a JIT payment to us; else lightningd's way.
        An HTLC one of them owns is failed on an error, never let through: `continue`
        would settle an order's invoice with no channel."""
        s, owner, answered = self.services, None, []

        def once(result: dict) -> None:
            answered.append(result)
            respond(result)
        try:
            holder = s.get("holder")
            if holder is not None:
                owner = "holder" if holder.flagged(htlc) else None  # never forward 75537
                if holder.on_htlc(htlc, once):
                    return
                owner = None
            receiving = s.get("async_recipient")
            mine = receiving.context_of(htlc) if receiving is not None else None
            if mine is not None:
                owner = "async_recipient"
                once(receiving.on_htlc(*mine, htlc))
                return
            jit = s.get("lsps2_service")
            if jit is not None and jit.owns(htlc.next_scid):
                owner = "lsps2_service"
                jit.on_htlc(htlc, once)
                return
            orders = s.get("lsps1_service")
            if orders is not None and orders.owns_payment(htlc):
                owner = "lsps1_service"
                orders.on_htlc(htlc, once)
                return
            client = s.get("lsps2_client")
            once((client.on_htlc(htlc) if client else None) or htlc_continue())
        except Exception as e:  # never leave an HTLC without an answer
            self.log(f"htlc_accepted not handled ({owner or 'no owner'}): {e!r}", "warn")
            if not answered:
                once(htlc_failure_for(owner, htlc) if owner else htlc_continue())

    def fan_out(self, event: str, names, *args) -> None:
        """Hand an event to each running service, each on its own: one that fails is
        logged and never keeps the others from it (held HTLCs must still be failed in
        time)."""
        for name in names:
            if name in self.services:
                try:
                    getattr(self.services[name], event)(*args)
                except Exception as e:
                    self.log(f"{name}.{event} failed: {e!r}", "warn")

    def on_connect(self, peer_id: Optional[str]) -> None:
        if peer_id:
            self.fan_out("on_connect", ("lsps0", "lsps1_service", "lsps2_service",
                                        "lsps5_service", "messenger"), peer_id)

    def on_disconnect(self, peer_id: Optional[str]) -> None:
        if peer_id:
            self.fan_out("on_disconnect", ("lsps0",), peer_id)

    def on_block(self, height: Optional[int]) -> None:
        if height is not None:
            self.fan_out("on_block", ("holder", "lsps1_service", "lsps2_service",
                                      "lsps5_service"), height)

    def on_channel_state_changed(self, change: dict) -> None:
        if change:
            self.fan_out("on_channel_state", ("lsps2_service",), change.get("channel_id"),
                         change.get("new_state"))

    def on_forward_event(self, forward: dict) -> None:
        if forward:
            self.fan_out("on_forward_event", ("lsps2_service",), forward.get("out_channel"),
                         forward.get("in_channel"), forward.get("in_htlc_id"),
                         forward.get("status"))

    def on_invoice_payment(self, payment: dict) -> None:
        if payment:
            self.fan_out("on_invoice_paid", ("lsps2_client",), payment.get("label"))

    def on_onionmessage_forward_fail(self, failure: dict) -> None:
        self.fan_out("on_forward_fail", ("messenger",), failure)

    def on_onion_message_recv_secret(self, message: Optional[dict]) -> dict:
        """Ours ("resolve") only when the path secret is one of our path ids."""
        try:
            messenger = self.services.get("messenger")
            if messenger is not None and messenger.on_cln_message(message or {}):
                return {"result": "resolve"}
        except Exception as e:
            self.log(f"onion_message_recv_secret not handled: {e!r}", "warn")
        return {"result": "continue"}

    def on_openchannel(self, openchannel: dict) -> dict:
        """Zero-conf for a channel we ordered that way (LSPS1) or a JIT channel."""
        try:
            if self.accepts_zeroconf_from(openchannel["id"]):
                return {"result": "continue", "mindepth": 0}
        except Exception as e:
            self.log(f"openchannel not handled: {e!r}", "warn")
        return {"result": "continue"}

    def on_custommsg(self, peer_id: str, payload_hex: str) -> None:
        self.fan_out("on_custommsg", ("lsps0",), peer_id, payload_hex)

    def accepts_zeroconf_from(self, peer_id: str) -> bool:
        return any(self.services[name].accepts_zeroconf_from(peer_id)
                   for name in ("lsps1_client", "lsps2_client") if name in self.services)

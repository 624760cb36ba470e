"""App.build: which services run for which options, what each is built with, and the
reason string (lightningd disables the plugin with it) for options it cannot run with.
The node and the service classes are stand-ins patched into lsps.app; LSPS0 itself is
the real one over them, its sender and timer on this thread."""
import os

import pytest

import lsps.app as app
import lsps.lsps0.link as link
from lsps.app import OPTIONS, App
from lsps.lsps0.client import PEER_NOT_CONNECTED, ClientError

DEFAULTS = {o.name: o.default for o in OPTIONS}
PEER = "02" + "11" * 32
DERIVED_SECRET = b"\x5e" * 32


class Node:
    def __init__(self, path, log):
        self.path, self.log, self.secrets_asked = path, log, []

    def rpc(self):
        raise AssertionError("no RPC in these tests")

    def config(self, name):
        return {"cltv-delta": 34}.get(name)

    def makesecret(self, string):
        self.secrets_asked.append(string)
        return DERIVED_SECRET

    def connected_peers(self):
        return []

    def send_custommsg(self, peer_id, payload):
        pass


class Fake:
    """A service: its constructor arguments and the start() calls it got."""
    made: dict = {}

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.started, self.served = args, kwargs, [], []
        self.claims, self.book, self.mailbox = object(), object(), None
        self.bolt12_terms, self.pay = object(), object()
        Fake.made.setdefault(type(self).__name__, []).append(self)

    def start(self, *args):
        self.started.append(args)

    def serve_lsps0(self, dispatcher):
        self.served.append(dispatcher)


class Sender:
    def __init__(self, transmit, log=None):
        self.transmit = transmit

    def send(self, peer_id, payload, on_error=None):
        self.transmit(peer_id, payload)


class Timer:
    def __init__(self, log=None):
        pass

    def schedule(self, delay, fn):
        return lambda: None


PATCHED = ("Store", "Lsps2Service", "OrderService", "Lsps2Client", "Lsps1Client",
           "Lsps7Client", "Lsps5Client", "Lsps5Service", "Delivery", "OnionMessenger",
           "PeerMailbox", "StaticInvoiceServer", "AsyncRecipient", "AsyncPayer", "HtlcHolder",
           "ThreadPoolExecutor", "OrderOffers")


@pytest.fixture(autouse=True)
def stand_ins(monkeypatch):
    Fake.made = {}
    monkeypatch.setattr(app, "ClnNode", Node)
    for name in PATCHED:
        monkeypatch.setattr(app, name, type(name, (Fake,), {}))
    monkeypatch.setattr(link, "FairSender", Sender)
    monkeypatch.setattr(link, "TimerService", Timer)


def build(advertised=False, **changes):
    values = {**DEFAULTS, **{k.replace("_", "-"): v for k, v in changes.items()}}
    logs = []
    a = App({}, lambda message, level="info": logs.append((message, level)))
    why = a.build(values.__getitem__, "/ln/regtest", "lightning-rpc", advertised)
    return a.services, why, logs


def one(name):
    [made] = Fake.made[name]
    return made


CLIENT_SIDE = {"node", "client_workers", "lsps0", "lsps1_client", "lsps2_client", "lsps7_client",
               "lsps5_client", "messenger", "async_recipient", "async_payer"}


# --- which services run -----------------------------------------------------------


def test_defaults_run_the_client_side_only():
    services, why, logs = build()
    assert why is None and logs == []
    assert set(services) == CLIENT_SIDE
    assert services["lsps0"].dispatcher is None
    assert services["lsps0"].node.path == os.path.join("/ln/regtest", "lightning-rpc")


def test_the_clients_and_async_roles_are_started():
    services, _, _ = build()
    for name in ("lsps1_client", "lsps2_client", "messenger", "async_recipient",
                 "async_payer"):
        assert services[name].started == [()], name
    assert services["client_workers"].kwargs == {"max_workers": 4,
                                                 "thread_name_prefix": "clnlsp-client"}


def test_lsp_service_adds_the_lsps1_lsps2_and_lsps5_services():
    services, why, logs = build(advertised=True, lsp_service=True)
    assert why is None and logs == []
    assert set(services) == CLIENT_SIDE | {"lsps1_service", "lsps2_service", "lsps5_service"}
    assert services["lsps1_service"].started == [()]
    assert services["lsps2_service"].started == [()]
    assert services["lsps5_service"].started == [()]
    assert "lsps0.list_protocols" in services["lsps0"].dispatcher._methods


def test_the_two_services_never_adopt_each_others_channels():
    services, _, _ = build(advertised=True, lsp_service=True)
    orders, jit = services["lsps1_service"], services["lsps2_service"]
    assert orders.claimed_elsewhere is jit.claims
    assert jit.claimed_elsewhere is orders.claims


def test_lsp_service_without_the_feature_bit_warns_and_runs():
    services, why, logs = build(advertised=False, lsp_service=True)
    assert why is None and "lsps1_service" in services
    [(message, level)] = logs
    assert level == "warn" and "feature bit 729 is not advertised" in message


def test_the_feature_bit_without_lsp_service_is_refused():
    services, why, _ = build(advertised=True)
    assert why == ("feature bit 729 was advertised but lsp-service is off; a client must "
                   "not set it (this is a bug, please report)")
    assert services == {}


def test_asyncpay_server_runs_with_a_mailbox():
    services, _, _ = build(lsp_asyncpay_server=True, lsp_asyncpay_max_slots=3,
                           lsp_asyncpay_mailbox_ttl=60)
    server, messenger = services["asyncpay_server"], services["messenger"]
    assert server.started == [()] and server.served == []   # no LSPS0 service to serve
    core = server.args[2]
    assert core.book is messenger.book and core.limits.max_slots_per_recipient == 3
    assert messenger.mailbox is one("PeerMailbox") and messenger.mailbox.started == [()]
    assert messenger.mailbox.args[2].limits.ttl_s == 60


def test_asyncpay_server_with_lsp_service_serves_lsps0():
    services, _, _ = build(advertised=True, lsp_service=True, lsp_asyncpay_server=True)
    assert services["asyncpay_server"].served == [services["lsps0"].dispatcher]


def test_asyncpay_hold_without_lsp_service_holds_only_hold_htlc():
    services, why, logs = build(lsp_asyncpay_hold=True, lsp_asyncpay_hold_per_peer=3)
    assert why is None
    holder = services["holder"]
    assert holder.started == [(None,)] and holder.args[2].per_peer == 3
    assert logs == [("lsp-asyncpay-hold without lsp-service: only hold_htlc (75537) holds, "
                     "the LSPS0 hold extension is off", "warn")]


def test_asyncpay_hold_with_lsp_service_gets_the_dispatcher():
    services, _, logs = build(advertised=True, lsp_service=True, lsp_asyncpay_hold=True)
    assert services["holder"].started == [(services["lsps0"].dispatcher,)]
    assert logs == []


def test_no_server_no_mailbox_no_holder_by_default():
    build()
    assert "StaticInvoiceServer" not in Fake.made and "PeerMailbox" not in Fake.made
    assert "HtlcHolder" not in Fake.made


# --- what the services are built with -----------------------------------------------


def test_the_lsps2_promise_secret_is_derived_from_the_node_secret():
    services, _, _ = build(advertised=True, lsp_service=True)
    core = services["lsps2_service"].args[2]
    assert core.secret == DERIVED_SECRET
    assert services["lsps0"].node.secrets_asked == ["clnlsp/lsps2/promise"]


def test_the_operators_promise_secret_is_used_as_is():
    services, _, _ = build(advertised=True, lsp_service=True,
                           lsp_lsps2_promise_secret="ab" * 32)
    assert services["lsps2_service"].args[2].secret == b"\xab" * 32
    assert services["lsps0"].node.secrets_asked == []


def test_order_service_options():
    services, _, _ = build(advertised=True, lsp_service=True, lsp_lsps1_htlc_expiry_margin=9,
                           lsp_lsps1_prune_after=60, lsp_lsps1_close_expired=True,
                           lsp_lsps1_order_valid_for=600, lsp_lsps7_fee_base_sat=5)
    orders = services["lsps1_service"]
    policy, margin, lsps7 = orders.args[2], orders.args[6], orders.args[8]
    assert (policy.order_valid_for_s, margin) == (600, 9)
    assert (lsps7.fee_base_sat, lsps7.order_valid_for_s) == (5, 600)
    assert orders.kwargs == {"prune_after_s": 60, "close_expired": True}


def test_orders_take_bolt12_unless_told_not_to():
    services, _, _ = build(advertised=True, lsp_service=True)
    orders = services["lsps1_service"]
    assert orders.bolt12 is one("OrderOffers")
    assert one("OrderOffers").args[1:3] == (services["messenger"], orders.bolt12_terms)
    Fake.made = {}
    services, _, _ = build(advertised=True, lsp_service=True, lsp_lsps1_no_bolt12=True)
    assert "OrderOffers" not in Fake.made and not hasattr(services["lsps1_service"], "bolt12")
    services, _, _ = build()
    assert "OrderOffers" not in Fake.made   # no service: nothing sold


def test_the_refresh_interval_and_the_jit_client_reach_the_recipient():
    services, _, _ = build(lsp_asyncpay_refresh_interval=600)
    assert services["async_recipient"].kwargs == {"refresh_interval_s": 600,
                                                  "jit": services["lsps2_client"]}


def test_client_calls_wait_on_lsps0_and_fail_for_an_unconnected_lsp():
    services, _, _ = build()
    ask = services["lsps2_client"].args[2]
    assert services["lsps1_client"].args[2] is ask
    assert services["lsps7_client"].args == (ask, services["lsps1_client"].pay)
    with pytest.raises(ClientError) as e:
        ask(PEER, "lsps0.list_protocols", {})
    assert e.value.code == PEER_NOT_CONNECTED


# --- options it cannot run with -------------------------------------------------------


@pytest.mark.parametrize("changes,why", [
    ({"lsp_request_timeout": 0}, "lsp-request-timeout must be at least 1, got 0"),
    ({"lsp_asyncpay_refresh_interval": 59}, "lsp-asyncpay-refresh-interval must be at least 60"),
    ({"lsp_asyncpay_max_recipients": 0},
     "lsp-asyncpay-max-slots and lsp-asyncpay-max-recipients must be at least 1"),
    ({"lsp_asyncpay_server": True, "lsp_asyncpay_mailbox_total": 0},
     "lsp-asyncpay-mailbox-* must be at least 1"),
    ({"lsp_asyncpay_hold": True, "lsp_asyncpay_hold_margin": 0},
     "lsp-asyncpay-hold-per-peer and -margin must be at least 1"),
])
def test_bad_options_give_the_reason(changes, why):
    assert build(**changes)[1] == why


@pytest.mark.parametrize("changes,why", [
    ({"lsp_lsps2_cltv_expiry_delta": 33},
     "lsp-lsps2-cltv-expiry-delta must be at least lightningd's cltv-delta (34)"),
    ({"lsp_lsps2_promise_secret": "ab"}, "lsp-lsps2-promise-secret must be 64 hex characters"),
    ({"lsp_lsps1_order_valid_for": 1},
     "LSPS1 policy: orders must stay valid for at least 60 seconds"),
    ({"lsp_lsps7_fee_base_sat": -1}, "LSPS7 options must not be negative"),
])
def test_bad_service_options_give_the_reason(changes, why):
    assert build(advertised=True, lsp_service=True, **changes)[1] == why


def test_service_options_do_not_matter_without_lsp_service():
    assert build(lsp_lsps2_cltv_expiry_delta=0, lsp_lsps1_order_valid_for=1)[1] is None


def test_hold_and_mailbox_limits_do_not_matter_when_those_roles_are_off():
    assert build(lsp_asyncpay_hold_margin=0, lsp_asyncpay_mailbox_total=0)[1] is None

"""Stand-ins for the handler tests: a peer's request (Call), a lightningd that knows
orders, channels and invoices, a manual clock, and an LSP answering client calls."""
import hashlib
import json

from fakes import Dispatcher, MemoryRpc, Workers, htlc_event

import lsps.lsps1.service as S
import lsps.lsps7.service as X
from lsps.app import OrderService
from lsps.node.store import Store

CLIENT = "02" + "ab" * 32
OTHER = "02" + "cd" * 32
LSP = "03" + "11" * 32
REFUND_TO = "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw"
NOW = 1_800_000_000_000
# BOLT11's vector "lnbc2500u…": 250,000 sat, signed by the spec key.
INVOICE_250K_SAT = (
    "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfq"
    "qqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpu9qrsgqhtjpauu9ur7"
    "fw2thcl4y9vfvh4m9wlfyz2gem29g5ghe2aak2pm3ps8fdhtceqsaagty2vph7utlgj48u0ged6a337aewvraedendscp"
    "573dxr")


class Clock:
    """now_ms for every module given: set `t` or `advance`."""

    def __init__(self, monkeypatch, *modules, start=NOW):
        self.t = start
        for module in modules:
            monkeypatch.setattr(module, "now_ms", lambda: self.t)

    def advance(self, ms):
        self.t += ms


class Call:
    """One request from a peer; what the handler answered is kept."""

    def __init__(self, peer_id, params, method="test.method"):
        self.peer_id, self.params, self.method = peer_id, params, method
        self.results, self.errors = [], []

    def respond(self, result):
        self.results.append(result)

    def fail(self, error):
        self.errors.append(error)

    @property
    def error_code(self):
        assert len(self.errors) == 1 and not self.results, (self.results, self.errors)
        return self.errors[0].code

    @property
    def result(self):
        assert len(self.results) == 1 and not self.errors, (self.results, self.errors)
        return self.results[0]


def channel(channel_id, peer_id=CLIENT, scid="100x1x0", state="CHANNELD_NORMAL",
            capacity_sat=500_000, opener="local", **extra):
    """An entry of ClnNode.channels()."""
    c = {"channel_id": channel_id, "peer_id": peer_id, "state": state, "opener": opener,
         "scids": [scid] if scid else [], "htlc_minimum_msat": 1, "receivable_msat": 0,
         "peer_connected": True, "funding_outpoint": f"{channel_id}:0",
         "short_channel_id": scid, "inbound_scid": scid, "capacity_sat": capacity_sat,
         "remote_policy": {}}
    c.update(extra)
    return c


class OrderNode:
    """What OrderService asks of lightningd (lsps/node/rpc.py ClnNode)."""

    def __init__(self):
        self.channel_list = []
        self.fundings = []
        self.closed = []
        self.invoices = []
        self.outputs = []
        self.prepared, self.sent = [], []
        self.fund_error = None
        self.close_error = None
        self.invoice_error = None
        self.channels_error = None
        self.on_fund = None   # called before fund_channel answers

    def blockheight(self):
        return 100

    def network(self):
        return "regtest"

    def config(self, name):
        return {"cltv-final": 18}.get(name)

    def create_invoice(self, amount_msat, label, description, expiry, preimage=None,
                       cltv=None):
        if self.invoice_error:
            raise self.invoice_error
        self.invoices.append({"amount_msat": amount_msat, "label": label, "cltv": cltv})
        return {"bolt11": f"lnbcrt-{label}",
                "payment_hash": hashlib.sha256(bytes.fromhex(preimage)).hexdigest()}

    def new_address(self):
        return "bcrt1p-order-address"

    def wallet_outputs(self):
        return self.outputs

    def refund_fee_sat(self):
        return 200

    def prepare_onchain(self, destination, amount_sat):
        txid = f"{len(self.prepared) + 1:064x}"
        self.prepared.append((destination, amount_sat, txid))
        return {"txid": txid, "psbt": "psbt"}

    def send_prepared(self, txid):
        self.sent.append(txid)

    def discard_prepared(self, txid, psbt):
        pass

    def wallet_has_tx(self, txid):
        return txid in self.sent

    def sent_to(self, script, amount_sat):
        return None

    def channels(self, peer_id=None):
        if self.channels_error:
            raise self.channels_error
        return [c for c in self.channel_list if peer_id in (None, c["peer_id"])]

    def fund_channel(self, peer_id, amount_sat, announce, mindepth, push_msat=0):
        if self.on_fund:
            self.on_fund()
        if self.fund_error:
            raise self.fund_error
        self.fundings.append((peer_id, amount_sat, announce, mindepth, push_msat))
        return {"channel_id": f"new{len(self.fundings)}", "funding_outpoint": "f:0"}

    def close_channel(self, channel_id):
        if self.close_error:
            raise self.close_error
        self.closed.append(channel_id)


LSPS7 = X.Policy(max_extension_blocks=100, fee_base_sat=0, fee_ppm_per_block=1,
                 order_valid_for_s=3600, extend_any_channel=False, tokens=frozenset())


def make_orders(node=None, rpc=None, connected=True, lsps7=LSPS7, policy=None,
                close_expired=False, logs=None):
    """A started OrderService on a fake node; its workers run when told (run_all).
    `connected`: a bool, or a set of the peers connected (changed by the test)."""
    node = node or OrderNode()
    rpc = rpc or MemoryRpc()
    timers = []
    service = OrderService(node, Store(lambda: rpc), policy or S.Policy(onchain=True),
                           Dispatcher(), lambda delay, fn: timers.append((delay, fn)),
                           lambda peer: peer in connected if isinstance(connected, set)
                           else connected, 6,
                           lambda msg, level: logs.append((level, msg)) if logs is not None
                           else None,
                           lsps7, close_expired=close_expired)
    service.workers = Workers()
    service.timers = timers
    service.start()
    return service, node, rpc


def call(service, handler, peer, params):
    """Serve one request the way the dispatcher does; the Call with its answer."""
    c = Call(peer, params)
    handler(c)
    service.workers.run_all()
    return c


def stored(rpc, area, key):
    """The record stored under ["clnlsp", area, key] (its version dropped), or None."""
    text = rpc.data.get(("clnlsp", area.name, key))
    return None if text is None else {k: v for k, v in json.loads(text).items() if k != "v"}


def pay(service, order, htlc_id=1, amount_msat=None, cltv=200, height=100, respond=None):
    """An HTLC paying (all of, by default) the order's invoice; the answers it got."""
    amount = order["order_total_sat"] * 1000 if amount_msat is None else amount_msat
    answers = []
    service.on_htlc(htlc_event(
        {"forward_msat": amount, "outgoing_cltv_value": cltv,
         "total_msat": order["order_total_sat"] * 1000,
         "payment_secret": order["bolt11"]["payment_secret"]},
        short_channel_id="9x9x9", id=htlc_id, amount_msat=amount, cltv_expiry=cltv,
        cltv_expiry_relative=cltv - height, payment_hash=order["bolt11"]["payment_hash"]),
        respond or answers.append)
    return answers

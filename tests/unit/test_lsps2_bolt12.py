"""LSPS2 over BOLT12: the fee inside the LSP hop's encrypted relay (checked against the
official blinded-payment vector), the wallet's per-invoice JIT purchases, and the
recipient's JIT offers: which path each invoice gets and what it claims."""
import dataclasses
import hashlib
import os

import pytest
from fakes import Workers
from fakes_asyncpay import HEIGHT, channel
from fakes_asyncpay import Clock as RClock
from fakes_orders import LSP, NOW, stored
from hypothesis import given
from hypothesis import strategies as st
from test_lsps2_handlers import BOUGHT, Lsp, clock, lsp_entry, wallet  # noqa: F401
from test_recipient_handler import SERVER, forward, htlc_on, invreq, make_env
from vectorfiles import load

import lsps.asyncpay.claims as claims
import lsps.asyncpay.jit_offers as jit_offers
import lsps.asyncpay.recipient as R
import lsps.lsps2.client as C
from bolt12ext import messages, onionmsg
from bolt12ext.blinding import PayInfo, PaymentRelay
from bolt12ext.offer import decode_offer
from lsps.lsps0.client import ClientError
from lsps.lsps2.bolt12 import (
    TU32_MAX,
    blinded_forward_msat,
    fee_relay,
    free_payinfo,
    opening_fee,
)
from lsps.lsps2.client_handler import PURCHASES

# ---- the fee in the relay -------------------------------------------------------------------

def test_blinded_forward_follows_the_official_blinded_payment_vector():
    """Bob receives 110125 msat from Alice; Bob, Carol and Dave relay by their encrypted
    payment_relay; Eve's payload says 100000. Our forward rule gives the same."""
    hops = load("bolt04/blinded-payment-onion-test.json")["generate"]["full_route"]["hops"]
    amount = hops[0]["tlvs"]["amt_to_forward"]
    for hop in hops[1:-1]:
        relay = hop["tlvs"]["encrypted_recipient_data"]["payment_relay"]
        amount = blinded_forward_msat(amount, PaymentRelay(
            relay["cltv_expiry_delta"], relay.get("fee_proportional_millionths", 0),
            relay.get("fee_base_msat", 0)))
    assert amount == hops[-1]["tlvs"]["amt_to_forward"] == 100_000


def test_a_fee_that_fits_the_base_leaves_exactly_the_fee():
    relay = fee_relay(5_000_000, 50_000, 40)
    assert relay == PaymentRelay(40, 0, 50_000)
    assert 5_000_000 - blinded_forward_msat(5_000_000, relay) == 50_000


@given(st.integers(1, 10**13), st.integers(0, 10**12))
def test_the_lsp_always_keeps_at_least_the_fee_and_hardly_more(amount, fee):
    if fee >= amount:
        with pytest.raises(ValueError):
            fee_relay(amount, fee, 144)
        return
    try:
        relay = fee_relay(amount, fee, 144)
    except ValueError:   # only when the fee is beyond any u32 proportional rate
        assert fee > TU32_MAX
        return
    skim = amount - blinded_forward_msat(amount, relay)
    assert fee <= skim <= fee + amount // 1_000_000 + 1
    assert relay.fee_base_msat <= TU32_MAX and relay.fee_proportional_millionths <= TU32_MAX


def test_a_fee_beyond_a_tu32_goes_into_the_proportional_part():
    amount, fee = 10**12, 5 * 10**9
    relay = fee_relay(amount, fee, 144)
    assert relay.fee_base_msat == 0 and relay.fee_proportional_millionths == 5026
    assert amount - blinded_forward_msat(amount, relay) >= fee


def test_the_payer_is_told_the_path_is_free():
    info = PayInfo(5000, 100, 162, 1, 10**9)
    assert free_payinfo(info) == PayInfo(0, 0, 162, 1, 10**9)


def test_the_opening_fee_of_a_single_part_follows_the_params():
    params = lsp_entry()   # 2000 msat minimum, 10000 ppm, sizes 10_000..10**9
    assert opening_fee(params, 5_000_000) == 50_000
    assert opening_fee(params, 100_000) == 2000
    assert opening_fee(params, 9_999) is None and opening_fee(params, 10**9 + 1) is None


# ---- the wallet's purchases for an offer's invoices ---------------------------------------

def test_an_offer_purchase_is_a_no_mpp_buy_taken_until_its_invoice_expires(clock, monkeypatch):
    lsp = Lsp(get_info={"opening_fee_params_menu": [lsp_entry()]}, buy=BOUGHT)
    c, _, rpc = wallet(lsp, monkeypatch)
    got = c.offer_purchase(LSP, "offer1", 5_000_000, "tok", 60_000)
    assert lsp.asked == [("lsps2.get_info", {"token": "tok"}),
                         ("lsps2.buy", {"opening_fee_params": lsp_entry()})]   # no size
    assert got["fee_msat"] == 50_000 and got["jit_channel_scid"] == "900000x1x0"
    assert got["invoice_expiry_s"] == 600 - C.EXPIRY_MARGIN_S   # before valid_until
    record = stored(rpc, PURCHASES, "bolt12-900000x1x0")
    assert (record["kind"], record["offer_id"], record["state"]) == ("bolt12", "offer1", C.WAITING)
    assert c.accepts_zeroconf_from(LSP)   # the LSP's zero-conf open will be taken
    # A second invoice while the first is outstanding: a second purchase.
    lsp.answers["buy"] = dict(BOUGHT, jit_channel_scid="900000x2x0")
    assert c.offer_purchase(LSP, "offer1", 1_000_000, None, None)["jit_channel_scid"] == \
        "900000x2x0"
    assert [b["kind"] for b in c.offer_purchases("offer1")] == ["bolt12", "bolt12"]


def test_an_unused_purchase_is_reused_once_its_invoice_expired(clock, monkeypatch):
    lsp = Lsp(get_info={"opening_fee_params_menu": [lsp_entry(valid_for_ms=7_200_000)]},
              buy=BOUGHT)
    c, _, _ = wallet(lsp, monkeypatch)
    first = c.offer_purchase(LSP, "offer1", 5_000_000, None, None)
    clock.t = first["in_use_until"] * 1000
    again = c.offer_purchase(LSP, "offer1", 2_000_000, None, None)
    assert again["jit_channel_scid"] == first["jit_channel_scid"] and len(lsp.asked) == 2
    assert again["fee_msat"] == 20_000 and again["invoices"] == 2


def test_offer_purchases_are_bounded_and_capped_by_max_fee(clock, monkeypatch):
    lsp = Lsp(get_info={"opening_fee_params_menu": [lsp_entry()]}, buy=BOUGHT)
    c, _, _ = wallet(lsp, monkeypatch)
    with pytest.raises(ClientError) as e:
        c.offer_purchase(LSP, "offer1", 5_000_000, None, 49_999)
    assert e.value.code == C.FEE_TOO_HIGH and [m for m, _ in lsp.asked] == ["lsps2.get_info"]
    for n in range(5):
        lsp.answers["buy"] = dict(BOUGHT, jit_channel_scid=f"900000x{n}x0")
        c.offer_purchase(LSP, "offer1", 5_000_000, None, None)
    with pytest.raises(ClientError, match="5 JIT purchases waiting"):
        c.offer_purchase(LSP, "offer1", 5_000_000, None, None)
    c.offer_purchase(LSP, "offer2", 5_000_000, None, None)   # another offer's own room


def test_a_paid_offer_purchase_is_never_taken_again(clock, monkeypatch):
    lsp = Lsp(get_info={"opening_fee_params_menu": [lsp_entry(valid_for_ms=7_200_000)]},
              buy=BOUGHT)
    c, node, _ = wallet(lsp, monkeypatch)
    first = c.offer_purchase(LSP, "offer1", 5_000_000, None, None)
    node.channel_list.append({"channel_id": "jit", "peer_id": LSP, "opener": "remote",
                              "scids": ["1x1x1"]})   # opened after the buy
    c.offer_paid(first["jit_channel_scid"], "1x1x1", 4_950_000, 50_000)
    (bought,) = c.offer_purchases("offer1")
    assert (bought["state"], bought["jit_channel_id"], bought["opening_fee_msat"]) == \
        (C.PAID, "jit", 50_000)
    clock.t = first["in_use_until"] * 1000
    lsp.answers["buy"] = dict(BOUGHT, jit_channel_scid="900000x9x0")
    assert c.offer_purchase(LSP, "offer1", 5_000_000, None, None)["jit_channel_scid"] == \
        "900000x9x0"


def test_an_lsp_error_on_buy_reaches_the_caller(clock, monkeypatch):
    def refusing(lsp, method, params):
        if method == "lsps2.buy":
            raise ClientError(201, "invalid_opening_fee_params")
        return {"opening_fee_params_menu": [lsp_entry()]}
    c, _, _ = wallet(refusing, monkeypatch)
    with pytest.raises(ClientError):
        c.offer_purchase(LSP, "offer1", 5_000_000, None, None)
    assert c.offer_purchases("offer1") == []



# ---- the recipient's JIT offers -------------------------------------------------------------

class Seller:
    """The LSPS2 client as the recipient sees it (lsps/asyncpay/jit_offers.py JitSeller)."""

    def __init__(self, fee=50_000, error=None):
        self.fee, self.error = fee, error
        self.asked, self.bought, self.paid = [], [], []

    def get_info(self, lsp_id, token):
        self.asked.append((lsp_id, token))
        if self.error:
            raise self.error
        return {"opening_fee_params_menu": [lsp_entry()]}

    def offer_purchase(self, lsp_id, offer_id, amount_msat, token, max_fee_msat,
                       invoice_life_s=None):
        if self.error:
            raise self.error
        self.bought.append((lsp_id, offer_id, amount_msat, token, max_fee_msat))
        return {"lsp_id": lsp_id, "jit_channel_scid": "900000x1x0",
                "lsp_cltv_expiry_delta": 144, "fee_msat": self.fee, "invoice_expiry_s": 540,
                "opening_fee_params": lsp_entry()}

    def offer_paid(self, scid, incoming_scid, amount_msat, fee_msat):
        self.paid.append((scid, incoming_scid, amount_msat, fee_msat))

    def offer_purchases(self, offer_id):
        return [{"jit_channel_scid": "900000x1x0", "state": "waiting"}] if self.bought else []


@pytest.fixture
def jit_env(monkeypatch):
    clock = RClock()
    for role in (R, claims, jit_offers):
        monkeypatch.setattr(role, "now_s", clock)
    env = make_env(clock, channels=[])
    env.seller = Seller()
    env.r.jit, env.r._jit_pool = env.seller, Workers()
    return env


def jit_offer(env, amount=None, **kw):
    view = env.r.create_jit_offer(SERVER, "tips", amount, kw.get("token"), kw.get("max_fee"))
    return view, bytes.fromhex(env.r.offers[view["offer_id"]]["offer"])


def ask(env, offer_id, req):
    got = forward(env, offer_id, req)
    env.r._jit_pool.run_all()
    return got


def sent_invoice(env):
    return messages.decode_invoice(env.messenger.sent[-1][1][onionmsg.INVOICE])


def test_a_jit_offer_is_introduced_by_the_lsp_and_asks_nothing_until_paid(jit_env):
    view, offer = jit_offer(jit_env, token="tok", max_fee=60_000)
    assert view["jit"] is True and view["lsp_id"] == SERVER and view["purchases"] == []
    assert view["server_id"] is None and view["state"] == "ready"
    assert jit_env.seller.asked == [(SERVER, "tok")]   # the LSP sells JIT channels
    (purpose, ttl, via, data), = jit_env.messenger.new_paths
    assert (purpose, via, data) == (jit_offers.JIT_INVREQ, bytes.fromhex(SERVER),
                                    {"offer_id": view["offer_id"]})
    (path,) = decode_offer(view["offer"])["offer_paths"]
    assert path["first_node_id"] == SERVER
    assert jit_env.r.refresh_due() == []   # no static invoice server to keep fresh


def test_an_lsp_that_sells_no_jit_channel_gets_no_offer(jit_env):
    jit_env.seller.error = ClientError(-32601, "method not found")
    with pytest.raises(ClientError):
        jit_offer(jit_env)
    assert jit_env.r.offers == {}


def test_without_inbound_the_invoice_goes_through_a_jit_purchase_with_a_free_payinfo(jit_env):
    view, offer = jit_offer(jit_env, max_fee=60_000)
    ask(jit_env, view["offer_id"], invreq(offer, 5_000_000))
    assert jit_env.seller.bought == [(SERVER, view["offer_id"], 5_000_000, None, 60_000)]
    invoice = sent_invoice(jit_env)
    (path,) = invoice["invoice_paths"]
    assert path["first_node_id"] == SERVER
    (info,) = invoice["invoice_blindedpay"]
    assert (info["fee_base_msat"], info["fee_proportional_millionths"]) == (0, 0)
    assert info["cltv_expiry_delta"] == 144 + 18 and info["htlc_maximum_msat"] == 5_000_000
    assert invoice["invoice_relative_expiry"] == 540   # the purchase's, before valid_until
    (ctx,) = [c for c in jit_env.r.paypaths.values() if c.get("jit_channel_scid")]
    assert (ctx["jit_relay"], ctx["via"]) == ([50_000, 0], SERVER)


def test_a_channel_that_can_take_the_amount_is_used_without_a_fee(jit_env):
    view, offer = jit_offer(jit_env)
    jit_env.node._channels = [channel(SERVER, receivable_msat=5_000_000)]
    ask(jit_env, view["offer_id"], invreq(offer, 5_000_000))
    assert jit_env.seller.bought == []
    (info,) = sent_invoice(jit_env)["invoice_blindedpay"]
    assert info["fee_base_msat"] == 1000   # the LSP's own channel policy
    # more than the channel can take: a JIT purchase again
    ask(jit_env, view["offer_id"], invreq(offer, 5_000_001))
    assert len(jit_env.seller.bought) == 1


def test_no_purchase_no_invoice(jit_env):
    view, offer = jit_offer(jit_env)
    jit_env.seller.error = ClientError(1202, "opening fee exceeds max_fee_msat")
    ask(jit_env, view["offer_id"], invreq(offer, 5_000_000))
    assert jit_env.messenger.dropped == ["no JIT channel for an invoice_request"]
    assert jit_env.r.issued == {} and jit_env.messenger.sent == []


def test_invoice_requests_waiting_for_the_lsp_are_bounded(jit_env, monkeypatch):
    monkeypatch.setattr(jit_offers, "MAX_JIT_PENDING", 2)
    view, offer = jit_offer(jit_env)
    for _ in range(3):
        forward(jit_env, view["offer_id"], invreq(offer, 5_000_000))
    assert jit_env.messenger.dropped == ["too many invoice_requests waiting for the LSP"]
    jit_env.r._jit_pool.run_all()
    assert len(jit_env.seller.bought) == 2 and jit_env.r._jit_pending == 0


def jit_htlc(env, offer, amount, received):
    view_id = next(iter(env.r.offers))
    ask(env, view_id, invreq(offer, amount))
    raw = env.messenger.sent[-1][1][onionmsg.INVOICE]
    invoice = messages.parse_invoice(raw)
    htlc = htlc_on(invoice.invoice_paths[0], invoice.payment_hash.hex(), amount,
                   peer=SERVER)
    return dataclasses.replace(htlc, amount_msat=received)


def test_a_payment_short_by_the_agreed_fee_is_claimed_and_the_purchase_is_used(jit_env):
    view, offer = jit_offer(jit_env)
    htlc = jit_htlc(jit_env, offer, 5_000_000, 4_950_000)
    payload, ctx = jit_env.r.context_of(htlc)
    assert jit_env.r.on_htlc(payload, ctx, htlc)["result"] == "resolve"
    assert jit_env.seller.paid == [("900000x1x0", htlc.incoming_scid, 4_950_000, 50_000)]
    (payment,) = jit_env.r.view(jit_env.r.offers[view["offer_id"]])["payments"]
    assert (payment["amount_msat"], payment["fee_msat"], payment["state"]) == \
        (4_950_000, 50_000, "claimed")


def test_a_payment_short_by_more_than_the_agreed_fee_is_refused(jit_env):
    _, offer = jit_offer(jit_env)
    htlc = jit_htlc(jit_env, offer, 5_000_000, 4_949_999)
    payload, ctx = jit_env.r.context_of(htlc)
    assert jit_env.r.on_htlc(payload, ctx, htlc) == claims.incorrect_details(4_949_999, HEIGHT)
    assert jit_env.seller.paid == []


def test_sessions_say_how_their_payment_came():
    from lsps.lsps2.listing import kind
    assert kind({"parts": []}) is None
    assert kind({"parts": [{"blinded": True}]}) == "bolt12"
    assert kind({"parts": [{"blinded": False}]}) == "bolt11"


def test_a_node_without_channels_routes_its_replies_from_a_peer():
    """A JIT client has no channel when the first invoice_request comes: its reply goes
    through the LSP (onion messages need no channel), never a new connection."""
    from types import SimpleNamespace

    from lsps.asyncpay.messenger import OnionMessenger
    from lsps.node.rpc import RpcError
    hop, payer = "02" + "11" * 32, "03" + "22" * 32

    class Graph:
        connected = []

        def connected_peers(self):
            return [LSP]

        def route_to(self, node_id, amount_msat, final_cltv, payment=True, source=None):
            if source is None:
                raise RpcError("getroutes", {}, {"message": "Unknown source node"})
            return [{"node_id": hop}, {"node_id": node_id}]

        def connect(self, node_id):
            self.connected.append(node_id)

    me = SimpleNamespace(node=Graph(), log=lambda *a: None)
    assert OnionMessenger._hops_to(me, payer) == [bytes.fromhex(LSP), bytes.fromhex(hop)]
    assert me.node.connected == []


# ---- static invoices: the fee over a range of amounts ---------------------------------------

@given(st.integers(0, 10**7), st.integers(0, 999_999), st.integers(1, 10**9),
       st.integers(1, 10**12))
def test_fee_segments_leave_the_lsp_its_fee_for_every_amount(min_fee, ppm, lowest, amount):
    from lsps.lsps2.bolt12 import fee_segments
    from lsps.lsps2.msgs import OpeningFeeParams
    params = OpeningFeeParams(min_fee, ppm, NOW + 600_000, 1008, 2016, 1, 10**12,
                              "pp").to_json()
    segments = fee_segments(params, lowest)
    covering = [r for lo, hi, r in segments if lo <= amount <= hi]
    if amount < max(lowest, min_fee + 1):
        assert covering == []
        return
    fee = opening_fee(params, amount)
    if fee is None:
        return
    (relay,) = covering   # the segments never overlap
    skim = amount - blinded_forward_msat(amount, relay)
    assert fee <= skim <= fee + amount // 1_000_000 + 3


def test_fee_segments_of_the_test_lsp():
    from lsps.lsps2.bolt12 import fee_segments
    assert fee_segments(lsp_entry(), 1) == [
        (10_000, 200_000, PaymentRelay(0, 0, 2000)),
        (200_001, 10**9, PaymentRelay(0, 10102, 3))]


# ---- async recipients: static invoices through a JIT channel from the server ---------------

def test_a_static_invoice_without_inbound_from_the_server_goes_through_a_jit_purchase(jit_env):
    view = jit_env.r.create_offer(SERVER, "tips", None)
    assert view["state"] == "ready" and view["jit"] is True and view["lsp_id"] == SERVER
    assert jit_env.seller.bought == [(SERVER, view["offer_id"], None, None, None)]
    record = jit_env.r.offers[view["offer_id"]]
    invoice = messages.parse_static_invoice(bytes.fromhex(record["static_invoice"]))
    assert [(i.htlc_minimum_msat, i.htlc_maximum_msat, i.fee_base_msat,
             i.fee_proportional_millionths, i.cltv_expiry_delta) for i in invoice.payinfos] == [
        (10_000, 200_000, 0, 0, 144 + 18), (200_001, 10**9, 0, 0, 144 + 18)]
    assert record["invoice_expires_at"] == NOW // 1000 + 540   # the purchase's life
    relays = sorted(c["jit_relay"] for c in jit_env.r.paypaths.values())
    assert relays == [[3, 10102], [2000, 0]]


def test_a_static_payment_short_by_what_the_relay_keeps_is_claimed(jit_env):
    oid = jit_env.r.create_offer(SERVER, "tips", None)["offer_id"]
    record = jit_env.r.offers[oid]
    invoice = messages.parse_static_invoice(bytes.fromhex(record["static_invoice"]))
    (path, _), = [(p, i) for p, i in invoice.payment_routes if i.htlc_minimum_msat > 10_000]
    preimage = os.urandom(32)
    amount = 5_000_000
    kept = amount - blinded_forward_msat(amount, PaymentRelay(144, 10102, 3))
    assert opening_fee(lsp_entry(), amount) <= kept == 50_007
    req = invreq(bytes.fromhex(record["offer"]), amount)
    htlc = htlc_on(path, hashlib.sha256(preimage).hexdigest(), amount, preimage=preimage,
                   invoice_request=req)
    for received, result in ((amount - kept - 1, "fail"), (amount - kept, "resolve")):
        short = dataclasses.replace(htlc, amount_msat=received)
        payload, ctx = jit_env.r.context_of(short)
        assert jit_env.r.on_htlc(payload, ctx, short)["result"] == result
    assert jit_env.seller.paid == [("900000x1x0", htlc.incoming_scid, amount - kept, kept)]


def test_inbound_from_the_server_needs_no_jit_channel(jit_env):
    jit_env.node._channels = [channel(SERVER)]
    view = jit_env.r.create_offer(SERVER, "tips", 5000)
    assert jit_env.seller.bought == [] and view["jit"] is False


def test_a_short_static_invoice_is_served_again_in_its_last_quarter(jit_env):
    oid = jit_env.r.create_offer(SERVER, "tips", None)["offer_id"]
    jit_env.clock.t += 540 * 3 // 4 - 1
    assert jit_env.r.refresh_due() == []
    jit_env.clock.t += 2
    assert jit_env.r.refresh_due() == [oid] and len(jit_env.seller.bought) == 2


def test_a_returning_recipient_reconnects_to_its_servers_at_their_addresses(jit_env):
    """Without a channel lightningd reconnects to nobody: the held payment's message
    waits at the server, the JIT channel opens from there."""
    jit_env.r.create_offer(SERVER, "tips", None)
    jit_offer(jit_env)
    jit_env.r.reconnect()
    assert jit_env.node.connects == [(SERVER, "127.0.0.1:9735")]   # once for both offers
    jit_env.node._channels = [channel(SERVER)]   # connected now
    jit_env.r.reconnect()
    assert len(jit_env.node.connects) == 1


def test_a_jit_path_pays_only_its_own_invoice(jit_env):
    """Another invoice of the offer (through a channel, no fee) paid over a JIT path would
    hand the LSP a fee we never agreed to for it."""
    view, offer = jit_offer(jit_env)
    htlc = jit_htlc(jit_env, offer, 5_000_000, 4_950_000)
    jit_env.node._channels = [channel(SERVER, receivable_msat=10**9)]
    ask(jit_env, view["offer_id"], invreq(offer, 5_000_000))
    other = messages.parse_invoice(jit_env.messenger.sent[-1][1][onionmsg.INVOICE])
    stolen = dataclasses.replace(htlc, payment_hash=other.payment_hash.hex())
    payload, ctx = jit_env.r.context_of(stolen)
    assert jit_env.r.on_htlc(payload, ctx, stolen)["result"] == "fail"
    assert jit_env.seller.paid == []

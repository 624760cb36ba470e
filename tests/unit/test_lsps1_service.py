import dataclasses

import pytest
from fakes import MIN_CLTV
from fakes import order_part as part

import lsps.lsps1.service as S
import lsps.orders.payment as P
from lsps.htlc import incorrect_or_unknown
from lsps.lsps0.msgs import LspsError

CLIENT = "02" + "ab" * 32

NOW = 1_800_000_000_000
POLICY = S.Policy(min_initial_lsp_balance_sat=100_000, max_initial_lsp_balance_sat=1_000_000,
                  min_initial_client_balance_sat=0, max_initial_client_balance_sat=500_000,
                  min_channel_balance_sat=100_000, max_channel_balance_sat=1_200_000,
                  fee_base_sat=1000, fee_ppm=2000, lease_ppm_per_block=1,
                  max_channel_expiry_blocks=4320, min_funding_confirms_within_blocks=6)


def request(**kw):
    base = {"lsp_balance_sat": "500000", "client_balance_sat": "100000",
            "required_channel_confirmations": 0, "funding_confirms_within_blocks": 6,
            "channel_expiry_blocks": 1000, "announce_channel": False}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


def test_info_is_flat_with_string_amounts():
    info = POLICY.info()
    assert info["max_channel_expiry_blocks"] == 4320
    assert info["min_initial_lsp_balance_sat"] == "100000"
    assert "options" not in info and len(info) == 10


def test_fee_formula():
    # 1000 + ceil(500000*2000/1e6) + ceil(500000*1*1000/1e6)
    assert S.fee_sat(POLICY, 500_000, 1000) == 1000 + 1000 + 500
    assert S.fee_sat(POLICY, 1, 1) == 1000 + 1 + 1  # rounds up


def test_valid_order_and_json():
    req = S.check_order(POLICY, request(token=None))
    order = S.new_order(CLIENT, req, POLICY, NOW, order_id="o1")
    assert order["fee_total_sat"] == 2500 and order["order_total_sat"] == 102_500
    order["bolt11"]["invoice"] = "lnbcrt..."
    j = S.order_json(order)
    assert j["token"] == "" and j["order_state"] == "CREATED" and j["channel"] is None
    assert j["lsp_balance_sat"] == "500000" and j["created_at"].endswith("Z")
    pay = j["payment"]["bolt11"]
    assert pay["state"] == "EXPECT_PAYMENT" and pay["order_total_sat"] == "102500"
    assert int(pay["fee_total_sat"]) + int(j["client_balance_sat"]) == int(pay["order_total_sat"])
    assert "onchain" not in j["payment"]


@pytest.mark.parametrize("field,value", [
    ("lsp_balance_sat", "x"), ("lsp_balance_sat", -1), ("client_balance_sat", None),
    ("required_channel_confirmations", -1), ("required_channel_confirmations", 70000),
    ("funding_confirms_within_blocks", "6"), ("channel_expiry_blocks", 1.5),
    ("announce_channel", "yes"), ("token", 5), ("lsp_balance_sat", "0"),
])
def test_invalid_params(field, value):
    with pytest.raises(LspsError) as e:
        S.check_order(POLICY, request(**{field: value}))
    assert e.value.code == -32602 and e.value.data["property"] == field


@pytest.mark.parametrize("fields,prop", [
    ({"lsp_balance_sat": "99999", "client_balance_sat": "1000"}, "min_initial_lsp_balance_sat"),
    ({"lsp_balance_sat": "1000001"}, "max_initial_lsp_balance_sat"),
    ({"client_balance_sat": "500001"}, "max_initial_client_balance_sat"),
    ({"lsp_balance_sat": "900000", "client_balance_sat": "400000"}, "max_channel_balance_sat"),
    ({"funding_confirms_within_blocks": 5}, "min_funding_confirms_within_blocks"),
    ({"channel_expiry_blocks": 4321}, "max_channel_expiry_blocks"),
    ({"channel_expiry_blocks": 0}, "max_channel_expiry_blocks"),
])
def test_option_mismatch(fields, prop):
    with pytest.raises(LspsError) as e:
        S.check_order(POLICY, request(**fields))
    assert e.value.code == 100 and e.value.data["property"] == prop


def test_min_confirmations_and_channel_size():
    strict = dataclasses.replace(POLICY, min_required_channel_confirmations=1,
                                 min_channel_balance_sat=700_000)
    with pytest.raises(LspsError) as e:
        S.check_order(strict, request())
    assert e.value.data["property"] == "min_channel_balance_sat"
    with pytest.raises(LspsError) as e:
        S.check_order(strict, request(lsp_balance_sat="650000"))
    assert e.value.data["property"] == "min_required_channel_confirmations"


def test_token():
    gated = dataclasses.replace(POLICY, tokens=frozenset({"vip"}))
    assert S.check_order(gated, request(token="vip")).token == "vip"
    for token in (None, "nope"):
        with pytest.raises(LspsError) as e:
            S.check_order(gated, request(token=token))
        assert e.value.code == 102


def test_policy_check():
    assert POLICY.check() is None
    assert "above" in dataclasses.replace(POLICY, min_channel_balance_sat=2_000_000).check()


def make_order():
    order = S.new_order(CLIENT, S.check_order(POLICY, request()), POLICY, NOW, "o1")
    order["bolt11"]["invoice"] = "lnbcrt..."
    return order


class TestHoldInvoice:
    def test_parts_held_then_paid_on_open(self):
        o = make_order()
        d = P.on_htlc(o, part(o, "a/1", 50_000_000, 300), 100, NOW, MIN_CLTV)
        assert d.hold == ["a/1"] and not d.open and o["bolt11"]["state"] == "EXPECT_PAYMENT"
        d = P.on_htlc(o, part(o, "a/2", 52_500_000, 300), 100, NOW, MIN_CLTV)
        assert d.open and o["bolt11"]["state"] == "HOLD"
        d = S.on_channel_opened(o, "cid", "ab" * 32 + ":0", 110, NOW)
        assert sorted(d.settle) == ["a/1", "a/2"]
        assert o["order_state"] == "COMPLETED" and o["bolt11"]["state"] == "PAID"
        assert o["lease_expiry_block"] == 1110
        assert S.order_json(o)["channel"]["funding_outpoint"].endswith(":0")

    def test_replays(self):
        o = make_order()
        P.on_htlc(o, part(o, "a/1", 102_500_000, 300), 100, NOW, MIN_CLTV)
        assert P.on_htlc(o, part(o, "a/1", 102_500_000, 300), 100, NOW, MIN_CLTV).hold == ["a/1"]
        S.on_channel_opened(o, "cid", "x:0", 110, NOW)
        assert P.on_htlc(o, part(o, "a/1", 102_500_000, 300), 100, NOW, MIN_CLTV).settle == ["a/1"]

    def test_open_failure_refunds(self):
        o = make_order()
        P.on_htlc(o, part(o, "a/1", 102_500_000, 300), 100, NOW, MIN_CLTV)
        d = P.on_open_failed(o, "no funds", 100, NOW)
        assert list(d.fail) == ["a/1"] and d.fail["a/1"].startswith("400f")
        assert o["bolt11"]["state"] == "REFUNDED" and o["order_state"] == "FAILED"
        assert P.on_htlc(o, part(o, "a/9", 1000, 300), 100, NOW, MIN_CLTV).fail

    def test_incomplete_parts_time_out(self):
        o = make_order()
        P.on_htlc(o, part(o, "a/1", 1_000_000, 300), 100, NOW, MIN_CLTV)
        assert P.on_tick(o, 100, NOW + 89_999).fail == {}
        assert list(P.on_tick(o, 100, NOW + 90_000).fail) == ["a/1"]
        assert o["order_state"] == "CREATED" and o["parts"] == []

    def test_unpaid_order_expires(self):
        o = make_order()
        P.on_tick(o, 100, o["expires_ms"])
        assert o["order_state"] == "FAILED" and o["bolt11"]["state"] == "EXPECT_PAYMENT"
        assert P.on_htlc(o, part(o, "a/1", 102_500_000, 300), 100, o["expires_ms"], MIN_CLTV).fail

    def test_cltv_margin(self):
        o = make_order()
        P.on_htlc(o, part(o, "a/1", 102_500_000, 120), 100, NOW, MIN_CLTV)
        assert P.on_block(o, 113, 6, NOW).fail == {}
        assert P.on_block(o, 114, 6, NOW).fail and o["bolt11"]["state"] == "REFUNDED"

    def test_failure_message_format(self):
        msg = bytes.fromhex(incorrect_or_unknown(1234, 567))
        assert msg[:2] == b"\x40\x0f" and int.from_bytes(msg[2:10], "big") == 1234
        assert int.from_bytes(msg[10:], "big") == 567


class TestMoneySafety:
    """Issue 11: hold only what lightningd would let settle; never open for a refunded
    or already paid order."""

    @pytest.mark.parametrize("changes,why", [
        ({"payment_secret": "00" * 32}, "payment_secret"),
        ({"payment_secret": None}, "payment_secret"),
        ({"total_msat": 1_000}, "total_msat"),
        ({"total_msat": None}, "total_msat"),
        ({"forward_msat": 102_500_001}, "onion claims"),
        ({"outgoing_cltv": 301}, "outgoing_cltv_value"),
        ({"cltv_expiry": 109, "outgoing_cltv": 109}, "fewer than 10 blocks"),
    ])
    def test_parts_lightningd_would_refuse_are_failed_not_held(self, changes, why):
        o = make_order()
        bad = part(o, "a/1", 102_500_000, 300, **changes)
        assert why in P.refusal(o, bad, 100, MIN_CLTV, NOW)
        d = P.on_htlc(o, bad, 100, NOW, MIN_CLTV)
        assert list(d.fail) == ["a/1"] and d.fail["a/1"].startswith("400f")
        assert not d.open and not d.hold and o["parts"] == []
        assert o["bolt11"]["state"] == "EXPECT_PAYMENT"
        # the honest payment still completes
        good = part(o, "a/2", 102_500_000, 300)
        assert P.refusal(o, good, 100, MIN_CLTV, NOW) is None
        assert P.on_htlc(o, good, 100, NOW, MIN_CLTV).open

    def test_cltv_room_is_exactly_the_minimum(self):
        o = make_order()
        assert P.refusal(o, part(o, "a/1", 102_500_000, 110), 100, MIN_CLTV, NOW) is None
        assert P.refusal(o, part(o, "a/1", 102_500_000, 109), 100, MIN_CLTV, NOW)

    def test_refunded_order_never_opens(self):
        o = make_order()
        P.on_htlc(o, part(o, "a/1", 102_500_000, 120), 100, NOW, MIN_CLTV)
        assert P.may_open(o)
        P.on_block(o, 114, 6, NOW)
        assert o["bolt11"]["state"] == "REFUNDED" and not P.may_open(o)
        assert S.on_channel_opened(o, "cid", "x:0", 114, NOW).settle == []
        assert o["order_state"] == "FAILED" and o["channel"] is None
        # the replayed part is failed again, never held
        assert P.on_htlc(o, part(o, "a/1", 102_500_000, 120), 114, NOW, MIN_CLTV).fail

    def test_no_refund_while_the_open_is_in_flight(self):
        o = make_order()
        P.on_htlc(o, part(o, "a/1", 102_500_000, 120), 100, NOW, MIN_CLTV)
        assert P.on_block(o, 119, 6, NOW, opening=True).fail == {}
        assert o["bolt11"]["state"] == "HOLD"
        assert S.on_channel_opened(o, "cid", "x:0", 119, NOW).settle == ["a/1"]

    def test_paid_on_chain_then_by_invoice_refuses_the_htlc(self):
        o = onchain_order()
        d = P.on_onchain_outputs(o, [{"outpoint": "t:0", "amount_sat": 102_500,
                                      "confirmations": 1}], 1, NOW)
        assert d.open
        d = P.on_htlc(o, part(o, "a/1", 102_500_000, 300), 100, NOW, MIN_CLTV)
        assert list(d.fail) == ["a/1"] and not d.open and o["bolt11"]["state"] == "EXPECT_PAYMENT"

    def test_two_onchain_payments_open_once_and_refund_the_second(self):
        o = onchain_order()
        first = {"outpoint": "t:0", "amount_sat": 102_500, "confirmations": 1}
        assert P.on_onchain_outputs(o, [first], 1, NOW).open
        second = {"outpoint": "u:0", "amount_sat": 102_500, "confirmations": 1}
        d = P.on_onchain_outputs(o, [first, second], 1, NOW)
        assert not d.open and d.refund == ["u:0"]

    def test_paid_by_invoice_then_on_chain_refunds_the_chain(self):
        o = onchain_order()
        assert P.on_htlc(o, part(o, "a/1", 102_500_000, 300), 100, NOW, MIN_CLTV).open
        d = P.on_onchain_outputs(o, [{"outpoint": "t:0", "amount_sat": 102_500,
                                      "confirmations": 1}], 1, NOW)
        assert not d.open and d.refund == ["t:0"]


ONCHAIN = dataclasses.replace(POLICY, onchain=True, min_onchain_payment_confirmations=1)


def onchain_order():
    req = S.check_order(ONCHAIN, request(refund_onchain_address="bcrt1qrefund"))
    order = S.new_order(CLIENT, req, ONCHAIN, NOW, "o2")
    order["bolt11"]["invoice"] = "lnbcrt..."
    order["onchain"]["address"] = "bcrt1pabc"
    return order


class TestOnchain:
    def test_refund_address_must_be_of_the_network(self):
        from lsps.addresses import segwit_address_ok
        with pytest.raises(LspsError) as e:
            S.check_order(ONCHAIN, request(refund_onchain_address="bc1qnotregtest"),
                          lambda a: segwit_address_ok(a, "regtest"))
        assert e.value.code == -32602
        assert e.value.data["property"] == "refund_onchain_address"

    def test_only_with_refund_address_and_enabled(self):
        assert S.new_order(CLIENT, S.check_order(ONCHAIN, request()), ONCHAIN, NOW)[
            "onchain"] is None
        with_refund = S.check_order(POLICY, request(refund_onchain_address="bcrt1q"))
        assert S.new_order(CLIENT, with_refund, POLICY, NOW)["onchain"] is None
        j = S.order_json(onchain_order(), ONCHAIN)["payment"]["onchain"]
        assert j["address"] == "bcrt1pabc" and j["refund_onchain_address"] == "bcrt1qrefund"
        assert j["order_total_sat"] == "102500" and j["min_onchain_payment_confirmations"] == 1
        assert "min_fee_for_0conf" in j

    def test_confirmed_payment_opens(self):
        o = onchain_order()
        out = {"outpoint": "t:0", "amount_sat": 102_500, "confirmations": 0}
        d = P.on_onchain_outputs(o, [out], 1, NOW)
        assert d.changed and not d.open and o["onchain"]["state"] == "EXPECT_PAYMENT"
        d = P.on_onchain_outputs(o, [dict(out, confirmations=1)], 1, NOW)
        assert d.open and o["onchain"]["state"] == "PAID"
        S.on_channel_opened(o, "cid", "x:0", 100, NOW)
        assert o["order_state"] == "COMPLETED"
        # more money afterwards goes back
        d = P.on_onchain_outputs(o, [dict(out, confirmations=2),
                                     {"outpoint": "u:1", "amount_sat": 5, "confirmations": 1}],
                                 1, NOW)
        assert d.refund == ["u:1"]

    def test_underpaid_then_expired_is_refunded(self):
        o = onchain_order()
        P.on_onchain_outputs(o, [{"outpoint": "t:0", "amount_sat": 50_000,
                                  "confirmations": 3}], 1, NOW)
        d = P.on_tick(o, 100, o["expires_ms"])
        assert d.refund == ["t:0"] and o["order_state"] == "FAILED"
        P.on_refund_sent(o, ["t:0"], "txid", NOW)
        assert o["onchain"]["state"] == "REFUNDED" and o["onchain"]["refund_txid"] == "txid"
        assert P.on_onchain_outputs(o, [{"outpoint": "t:0", "amount_sat": 50_000,
                                         "confirmations": 4}], 1, NOW).refund == []

    def test_late_payment_refunded(self):
        o = onchain_order()
        P.on_tick(o, 100, o["expires_ms"])
        d = P.on_onchain_outputs(o, [{"outpoint": "t:0", "amount_sat": 102_500,
                                      "confirmations": 1}], 1, o["expires_ms"] + 1)
        assert d.refund == ["t:0"] and not d.open

    def test_open_failure_after_onchain_payment_refunds(self):
        o = onchain_order()
        P.on_onchain_outputs(o, [{"outpoint": "t:0", "amount_sat": 102_500,
                                  "confirmations": 1}], 1, NOW)
        assert P.on_open_failed(o, "no funds", 100, NOW).refund == ["t:0"]

    def test_lightning_paid_then_onchain_arrives(self):
        o = onchain_order()
        P.on_htlc(o, part(o, "a/1", 102_500_000, 300), 100, NOW, MIN_CLTV)
        d = P.on_onchain_outputs(o, [{"outpoint": "t:0", "amount_sat": 102_500,
                                      "confirmations": 1}], 1, NOW)
        assert d.refund == ["t:0"] and not d.open

    def test_no_zero_conf_payments(self):
        assert "at least 1" in dataclasses.replace(
            POLICY, min_onchain_payment_confirmations=0).check()


PATH_DATA = "dd" * 32


def bolt12_order():
    """An order with both lightning options, as OrderOffers makes its bolt12 one."""
    order = make_order()
    order["bolt12"] = {"state": "EXPECT_PAYMENT", "offer": "lno1...", "payment_hash": "12" * 32,
                       "preimage": "34" * 32, "path_data": PATH_DATA, "path": "", "payinfo": ""}
    return order


def part12(order, key, amount, cltv, **changes):
    """An honest part on the order's blinded payment path, as its payload reads."""
    fields = {"method": "bolt12", "path_data": PATH_DATA, "payment_secret": None, **changes}
    return part(order, key, amount, cltv, **fields)


class TestBolt12Payment:
    def test_the_offer_is_shown_with_the_same_totals_and_expiry(self):
        o = bolt12_order()
        payment = S.order_json(o)["payment"]
        assert payment["bolt12"] == {**{k: v for k, v in payment["bolt11"].items()
                                        if k != "invoice"}, "offer": "lno1..."}

    def test_parts_held_then_paid_on_open_with_the_offers_preimage(self):
        o = bolt12_order()
        assert P.on_htlc(o, part12(o, "a/1", 50_000_000, 300), 100, NOW, MIN_CLTV).hold
        d = P.on_htlc(o, part12(o, "a/2", 52_500_000, 300), 100, NOW, MIN_CLTV)
        assert d.open and o["bolt12"]["state"] == "HOLD"
        assert o["bolt11"]["state"] == "EXPECT_PAYMENT" and P.may_open(o)
        assert P.preimage_of(o, "a/1") == "34" * 32
        d = S.on_channel_opened(o, "cid", "ab" * 32 + ":0", 110, NOW)
        assert sorted(d.settle) == ["a/1", "a/2"] and o["bolt12"]["state"] == "PAID"
        assert S.order_json(o)["payment"]["bolt12"]["state"] == "PAID"
        # replayed after a restart: settled again with the same preimage
        assert P.on_htlc(o, part12(o, "a/1", 50_000_000, 300), 100, NOW, MIN_CLTV).settle == [
            "a/1"]

    @pytest.mark.parametrize("changes,why", [
        (dict(path_data=None), "blinded payment path"),        # no path key came with it
        (dict(path_data="ee" * 32), "blinded payment path"),   # another path's data
        (dict(total_msat=1000), "total_msat"),
        (dict(forward_msat=102_500_001), "HTLC carries"),
        (dict(outgoing_cltv=301), "outgoing_cltv_value"),
    ])
    def test_a_part_off_our_path_or_lying_is_refused(self, changes, why):
        o = bolt12_order()
        d = P.on_htlc(o, part12(o, "a/1", 102_500_000, 300, **changes), 100, NOW, MIN_CLTV)
        assert why in d.why and list(d.fail) == ["a/1"] and o["parts"] == []

    def test_one_payment_of_one_kind(self):
        o = bolt12_order()
        P.on_htlc(o, part(o, "a/1", 50_000_000, 300), 100, NOW, MIN_CLTV)   # a bolt11 part
        d = P.on_htlc(o, part12(o, "a/2", 102_500_000, 300), 100, NOW, MIN_CLTV)
        assert "bolt11 payment" in d.why and d.fail
        o = bolt12_order()
        P.on_htlc(o, part12(o, "a/1", 102_500_000, 300), 100, NOW, MIN_CLTV)
        d = P.on_htlc(o, part(o, "a/2", 102_500_000, 300), 100, NOW, MIN_CLTV)
        assert "paid already" in d.why and not P.takes_payment(o, NOW)

    def test_open_failure_refunds_the_offers_payment(self):
        o = bolt12_order()
        P.on_htlc(o, part12(o, "a/1", 102_500_000, 300), 100, NOW, MIN_CLTV)
        d = P.on_open_failed(o, "no funds", 100, NOW)
        assert list(d.fail) == ["a/1"] and o["bolt12"]["state"] == "REFUNDED"
        assert o["bolt11"]["state"] == "EXPECT_PAYMENT" and not P.may_open(o)

    def test_incomplete_parts_time_out_and_the_cltv_margin_applies(self):
        o = bolt12_order()
        P.on_htlc(o, part12(o, "a/1", 1_000_000, 300), 100, NOW, MIN_CLTV)
        assert list(P.on_tick(o, 100, NOW + 90_000).fail) == ["a/1"]
        P.on_htlc(o, part12(o, "a/2", 102_500_000, 120), 100, NOW, MIN_CLTV)
        assert P.on_block(o, 114, 6, NOW).fail and o["bolt12"]["state"] == "REFUNDED"

    def test_the_offer_takes_payment_until_expiry(self):
        o = bolt12_order()
        assert P.takes_payment(o, NOW) and not P.takes_payment(o, o["expires_ms"])
        P.on_tick(o, 100, o["expires_ms"])
        assert o["order_state"] == "FAILED" and not P.takes_payment(o, NOW)

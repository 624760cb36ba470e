import pytest
from fakes import MIN_CLTV
from fakes import order_part as part

import lsps.lsps1.service as S
import lsps.lsps7.service as X
import lsps.orders.payment as P
from lsps.lsps0.msgs import LspsError

NOW = 1_800_000_000_000

POLICY = X.Policy(max_extension_blocks=1000, fee_base_sat=10, fee_ppm_per_block=2)


def lease(expiration=5000, ids=None):
    return {"channel_id": "cid", "client_id": "02" + "ab" * 32, "short_channel_id": "100x1x0",
            "capacity_sat": 520_000, "expiration_block": expiration,
            "extension_order_ids": list(ids or []), "original_order_id": "o1"}


def test_fee():
    assert X.fee_sat(POLICY, 520_000, 100) == 10 + 104
    assert X.fee_sat(POLICY, 1, 1) == 11  # rounds up


def test_extendable_json():
    j = X.extendable_json(lease(), POLICY)
    assert j == {"short_channel_id": "100x1x0", "max_channel_extension_expiry_blocks": 1000,
                 "expiration_block": 5000, "extension_order_ids": [],
                 "original_order": {"id": "o1", "service": "LSPS1"}}
    assert "original_order" not in X.extendable_json({**lease(), "original_order_id": None},
                                                     POLICY)


@pytest.mark.parametrize("params,code,prop", [
    ({"short_channel_id": "nope", "channel_extension_expiry_blocks": 10}, -32602,
     "short_channel_id"),
    ({"short_channel_id": "100x1x0", "channel_extension_expiry_blocks": "10"}, -32602,
     "channel_extension_expiry_blocks"),
    ({"short_channel_id": "200x1x0", "channel_extension_expiry_blocks": 10}, 100,
     "short_channel_id"),
    ({"short_channel_id": "100x1x0", "channel_extension_expiry_blocks": 1001}, 100,
     "max_channel_extension_expiry_blocks"),
    ({"short_channel_id": "100x1x0", "channel_extension_expiry_blocks": 0}, 100,
     "max_channel_extension_expiry_blocks"),
])
def test_check_order_errors(params, code, prop):
    with pytest.raises(LspsError) as e:
        X.check_order(POLICY, params, {"100x1x0": lease()})
    assert e.value.code == code and e.value.data["property"] == prop


def test_token_uses_102():
    gated = X.Policy(tokens=frozenset({"t"}))
    with pytest.raises(LspsError) as e:
        X.check_order(gated, {"short_channel_id": "100x1x0",
                              "channel_extension_expiry_blocks": 10}, {"100x1x0": lease()})
    assert e.value.code == 102


def test_extensions_add_up_and_are_idempotent():
    the_lease = lease()
    orders = []
    for blocks in (100, 50):
        _, b, token = X.check_order(POLICY, {"short_channel_id": "100x1x0",
                                             "channel_extension_expiry_blocks": blocks},
                                    {"100x1x0": the_lease})
        orders.append(X.new_order(the_lease["client_id"], the_lease, b, token, POLICY, NOW))
    # Both created against expiry 5000; paid one after the other they add up.
    for o in orders:
        o["bolt11"]["invoice"] = "lnbcrt"
        paying = part(o, f"k/{o['order_id']}", o["order_total_sat"] * 1000, 900)
        P.on_htlc(o, paying, 100, NOW, MIN_CLTV)
        assert o["bolt11"]["state"] == "HOLD"
        d = X.on_held(o, the_lease, NOW)
        assert d.settle and o["order_state"] == "COMPLETED" and o["bolt11"]["state"] == "PAID"
    assert the_lease["expiration_block"] == 5150
    assert [o["new_channel_expiry_block"] for o in orders] == [5100, 5150]
    # A replay after a restart extends nothing twice.
    orders[0]["bolt11"]["state"] = "HOLD"
    X.on_held(orders[0], the_lease, NOW)
    assert the_lease["expiration_block"] == 5150


def test_order_json_counts_from_the_current_lease_while_unpaid():
    the_lease = lease()
    o = X.new_order(the_lease["client_id"], the_lease, 100, "", POLICY, NOW, "x")
    the_lease["expiration_block"] = 6000
    j = X.order_json(o, the_lease, POLICY)
    assert j["new_channel_expiry_block"] == 6100
    assert j["channel"]["expiration_block"] + j["channel_extension_expiry_blocks"] == \
        j["new_channel_expiry_block"]
    assert j["payment"] == {} and j["token"] == ""


def test_onchain_paid_extension():
    the_lease = lease()
    o = X.new_order(the_lease["client_id"], the_lease, 100, "", POLICY, NOW,
                    refund_onchain_address="bcrt1qx", onchain=True)
    o["onchain"]["address"] = "bcrt1pa"
    assert X.on_held(o, the_lease, NOW).settle == []  # nothing paid yet: no change
    assert the_lease["expiration_block"] == 5000
    P.on_onchain_outputs(o, [{"outpoint": "t:0", "amount_sat": o["order_total_sat"],
                              "confirmations": 1}], 1, NOW)
    assert o["onchain"]["state"] == "PAID"
    X.on_held(o, the_lease, NOW)
    assert the_lease["expiration_block"] == 5100 and o["order_state"] == "COMPLETED"
    assert o["bolt11"]["state"] == "EXPECT_PAYMENT"
    payment = X.order_json(o, the_lease, POLICY, S.Policy())["payment"]
    assert payment["onchain"]["state"] == "PAID"
    assert X.new_order(the_lease["client_id"], the_lease, 1, "", POLICY, NOW,
                       onchain=True)["onchain"] is None  # no refund address: no on-chain


def test_an_extension_paid_by_its_offer_is_settled_after_the_lease_is_extended():
    the_lease = lease()
    o = X.new_order(the_lease["client_id"], the_lease, 100, "", POLICY, NOW)
    o["bolt12"] = {"state": "EXPECT_PAYMENT", "offer": "lno1", "payment_hash": "12" * 32,
                   "preimage": "34" * 32, "path_data": "dd" * 32}
    paying = part(o, "k/1", o["order_total_sat"] * 1000, 900, method="bolt12",
                  path_data="dd" * 32, payment_secret=None)
    assert P.on_htlc(o, paying, 100, NOW, MIN_CLTV).open and o["bolt12"]["state"] == "HOLD"
    d = X.on_held(o, the_lease, NOW)
    assert d.settle == ["k/1"] and the_lease["expiration_block"] == 5100
    assert o["bolt12"]["state"] == "PAID" and o["bolt11"]["state"] == "EXPECT_PAYMENT"
    assert X.order_json(o, the_lease, POLICY)["payment"]["bolt12"]["state"] == "PAID"

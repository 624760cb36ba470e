import pytest

import lsps.lsps1.client as lsps1
from lsps.lsps0.client import BAD_RESPONSE, ClientError
from lsps.lsps1.service import Policy

LSP = "02" + "11" * 32


def test_flat_and_nested_info_parse_alike():
    flat = Policy().info()
    nested = {"options": dict(flat)}
    assert lsps1.parse_info(LSP, flat) == lsps1.parse_info(LSP, nested)
    parsed = lsps1.parse_info(LSP, {**flat, "min_channel_balance_sat": 5, "website": "x"})
    assert parsed["min_channel_balance_sat"] == 5


@pytest.mark.parametrize("mutate", [
    lambda i: i.pop("max_channel_expiry_blocks"),
    lambda i: i.update(min_initial_lsp_balance_sat="-1"),
    lambda i: i.update(supports_zero_channel_reserve="yes"),
])
def test_bad_info(mutate):
    info = Policy().info()
    mutate(info)
    with pytest.raises(ClientError) as e:
        lsps1.parse_info(LSP, info)
    assert e.value.code == BAD_RESPONSE


def order(fee="2500", total="22500", client="20000", state="EXPECT_PAYMENT"):
    return {"order_id": "o", "client_balance_sat": client, "payment": {"bolt11": {
        "state": state, "fee_total_sat": fee, "order_total_sat": total, "invoice": "lnbc"}}}


def test_totals_checked():
    assert lsps1.check_order_result(LSP, order())["order_id"] == "o"
    with pytest.raises(ClientError) as e:
        lsps1.check_order_result(LSP, order(total="22501"))
    assert e.value.code == lsps1.ORDER_TOTAL_MISMATCH


def test_cancelled_read_as_refunded():
    assert lsps1.check_order_result(LSP, order(state="CANCELLED"))["payment"]["bolt11"][
        "state"] == "REFUNDED"


@pytest.mark.parametrize("result", [None, {}, {"order_id": 5},
                                    {**order(), "payment": {"bolt11": {"fee_total_sat": "x"}}}])
def test_malformed_orders(result):
    with pytest.raises(ClientError):
        lsps1.check_order_result(LSP, result)


# BOLT11's vector "lnbc2500u…": 2500 µBTC = 250,000,000 msat = 250,000 sat.
INVOICE_250K_SAT = (
    "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfq"
    "qqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpu9qrsgqhtjpauu9ur7"
    "fw2thcl4y9vfvh4m9wlfyz2gem29g5ghe2aak2pm3ps8fdhtceqsaagty2vph7utlgj48u0ged6a337aewvraedendscp"
    "573dxr")
ASKED = {"lsp_balance_sat": "500000", "client_balance_sat": "20000",
         "required_channel_confirmations": 0, "funding_confirms_within_blocks": 6,
         "channel_expiry_blocks": 1000, "announce_channel": False}


def sold(**changes):
    o = {**ASKED, "order_id": "o", "payment": {"bolt11": {
        "state": "EXPECT_PAYMENT", "fee_total_sat": "230000", "order_total_sat": "250000",
        "invoice": INVOICE_250K_SAT}}}
    o.update(changes)
    return o


def test_bolt11_amount_from_the_hrp():
    import lsps.bolt11 as bolt11
    assert bolt11.amount_msat(bolt11.decode(INVOICE_250K_SAT)) == 250_000_000
    assert bolt11.amount_msat(bolt11.RawInvoice("lnbcrt", [], [])) is None
    assert bolt11.amount_msat(bolt11.RawInvoice("lnbcrt10p", [], [])) == 1
    assert bolt11.amount_msat(bolt11.RawInvoice("lntbs3m", [], [])) == 300_000_000
    with pytest.raises(bolt11.Bolt11Error):
        bolt11.amount_msat(bolt11.RawInvoice("lnbcrt15p", [], []))


def test_the_order_sold_is_the_order_asked_for():
    lsps1.check_order_matches(LSP, sold(), ASKED)


@pytest.mark.parametrize("changes", [
    {"lsp_balance_sat": "400000"}, {"client_balance_sat": "0"},
    {"required_channel_confirmations": 3}, {"funding_confirms_within_blocks": 144},
    {"channel_expiry_blocks": 10}, {"announce_channel": True},
    {"announce_channel": 0},
])
def test_lsp_changing_the_order_is_refused_with_1301(changes):
    with pytest.raises(ClientError) as e:
        lsps1.check_order_matches(LSP, sold(**changes), ASKED)
    assert e.value.code == lsps1.ORDER_TOTAL_MISMATCH


def test_invoice_asking_more_than_the_total_is_refused():
    o = sold()
    o["payment"]["bolt11"]["order_total_sat"] = "240000"
    o["payment"]["bolt11"]["fee_total_sat"] = "220000"
    with pytest.raises(ClientError) as e:
        lsps1.check_order_matches(LSP, o, ASKED)
    assert e.value.code == lsps1.ORDER_TOTAL_MISMATCH and "invoice asks" in e.value.message
    with pytest.raises(ClientError) as e:
        lsps1.check_invoice_amount(LSP, o, lsps1.EXTENSION_MISMATCH)
    assert e.value.code == lsps1.EXTENSION_MISMATCH


def offer_for(amount_msat, description="order"):
    from bolt12ext import build
    from bolt12ext.sphinx import pubkey
    return build.offer_string(build.offer(offer_amount_msat=amount_msat,
                                          offer_description=description,
                                          offer_issuer_id=pubkey(b"\x01" * 32)))


def with_offer(offer, total="22500"):
    o = order(total=total, fee=str(int(total) - 20000))
    o["payment"]["bolt11"]["invoice"] = None
    del o["payment"]["bolt11"]
    o["payment"]["bolt12"] = {"state": "EXPECT_PAYMENT", "fee_total_sat": str(int(total) - 20000),
                              "order_total_sat": total, "offer": offer}
    return o


def test_a_bolt12_offer_must_ask_exactly_the_order_total():
    lsps1.check_invoice_amount(LSP, with_offer(offer_for(22_500_000)), 1301)
    with pytest.raises(ClientError) as e:
        lsps1.check_invoice_amount(LSP, with_offer(offer_for(22_500_001)), 1301)
    assert e.value.code == 1301 and "offer asks 22500001 msat" in e.value.message
    for bad in (offer_for(None), "lno1notanoffer", offer_for(22_500_000, "x" * 1500)):
        with pytest.raises(ClientError) as e:
            lsps1.check_invoice_amount(LSP, with_offer(bad), 1301)
        assert e.value.code == BAD_RESPONSE


def test_what_to_pay_is_the_option_still_expecting_payment():
    o = with_offer(offer_for(22_500_000))
    assert lsps1.to_pay(LSP, o, "bolt12") == o["payment"]["bolt12"]["offer"]
    for method in ("bolt11",):
        with pytest.raises(ClientError) as e:
            lsps1.to_pay(LSP, o, method)
        assert e.value.code == lsps1.PAYMENT_FAILED
    o["payment"]["bolt12"]["state"] = "HOLD"
    with pytest.raises(ClientError):
        lsps1.to_pay(LSP, o, "bolt12")


def test_the_invoice_fetched_for_the_offer_asks_the_total():
    import os

    from bolt12ext import build, encoding, recipient
    from bolt12ext.blinding import payment_path
    from bolt12ext.sphinx import pubkey
    offer = offer_for(22_500_000)
    data = encoding.decode(offer)[1]
    req = build.invoice_request(data, os.urandom(32), invreq_metadata=os.urandom(8))
    path = payment_path(os.urandom(32), [], pubkey(b"\x01" * 32), os.urandom(32), 1000,
                        22_500_000, 18)
    for amount, ok in ((None, True), (22_500_001, False)):
        req = build.invoice_request(data, os.urandom(32), invreq_metadata=os.urandom(8),
                                    invreq_amount_msat=amount)
        invoice = build.invoice_string(recipient.invoice_for(
            req, recipient.check_invoice_request(req, data), b"\x01" * 32, [path],
            os.urandom(32), 1000))
        if ok:
            lsps1.check_offer_invoice(LSP, with_offer(offer), invoice)
        else:
            with pytest.raises(ClientError) as e:
                lsps1.check_offer_invoice(LSP, with_offer(offer), invoice)
            assert e.value.code == lsps1.ORDER_TOTAL_MISMATCH
    with pytest.raises(ClientError) as e:
        lsps1.check_offer_invoice(LSP, with_offer(offer), "lnbc1garbage")
    assert e.value.code == BAD_RESPONSE

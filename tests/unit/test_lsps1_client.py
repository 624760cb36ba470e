import pytest

from lsps import lsps1
from lsps.client import BAD_RESPONSE, ClientError
from lsps.lsps1_service import Policy

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

"""LSPS7 at run time: the service's lsps7.* methods and the extension act (lease
recorded before the payment settles, exactly once), and the client's checks of
what an LSP answers."""
import dataclasses

import pytest
from fakes_orders import (
    CLIENT,
    INVOICE_250K_SAT,
    LSP,
    LSPS7,
    OTHER,
    REFUND_TO,
    channel,
    make_orders,
    pay,
    stored,
)
from fakes_orders import call as serve

import lsps.orders.payment as P
from lsps.htlc import incorrect_or_unknown
from lsps.lsps0.client import BAD_RESPONSE, ClientError
from lsps.lsps1.client import EXTENSION_MISMATCH
from lsps.lsps7.client_handler import Lsps7Client
from lsps.orders.book import LEASES, ORDERS

SCID = "100x1x0"


def sold(service, node, lease_blocks=1000):
    """An LSPS1 order paid and its channel opened: the lease LSPS7 extends."""
    order = service.orders[service._do_create(CLIENT, {
        "lsp_balance_sat": "500000", "client_balance_sat": "0",
        "required_channel_confirmations": 0, "funding_confirms_within_blocks": 6,
        "channel_expiry_blocks": lease_blocks, "announce_channel": False})["order_id"]]
    pay(service, order)
    service.workers.run_all()
    assert order["order_state"] == P.COMPLETED
    node.channel_list.append(channel(order["channel_id"], scid=SCID))
    return order


def extend(service, blocks=50, peer=CLIENT, **params):
    c = serve(service, service._create_extension, peer,
              {"short_channel_id": SCID, "channel_extension_expiry_blocks": blocks, **params})
    return c


def extendable(service, peer=CLIENT):
    return serve(service, service._get_extendable, peer, {}).result["extendable_channels"]


# --- lsps7.get_extendable_channels ----------------------------------------------------

def test_a_channel_sold_through_lsps1_is_extendable_from_its_lease_expiry():
    service, node, _ = make_orders()
    order = sold(service, node)
    assert extendable(service) == [{
        "short_channel_id": SCID, "max_channel_extension_expiry_blocks": 100,
        "expiration_block": 1100, "extension_order_ids": [],
        "original_order": {"id": order["order_id"], "service": "LSPS1"}}]
    assert extendable(service, OTHER) == []


def test_channels_not_sold_closing_or_without_scid_are_not_extendable():
    service, node, _ = make_orders()
    order = sold(service, node)
    node.channel_list[0]["state"] = "ONCHAIN"
    node.channel_list += [channel("manual", scid="200x1x0"),
                          channel(order["channel_id"] + "-again", scid=None)]
    assert extendable(service) == []


def test_extend_any_channel_offers_unsold_channels_from_the_current_block():
    service, node, _ = make_orders(lsps7=dataclasses.replace(LSPS7, extend_any_channel=True))
    node.channel_list.append(channel("manual", scid="200x1x0",
                                     state="CHANNELD_AWAITING_LOCKIN"))
    assert extendable(service) == [{
        "short_channel_id": "200x1x0", "max_channel_extension_expiry_blocks": 100,
        "expiration_block": 100, "extension_order_ids": []}]


def test_an_lsps1_order_not_completed_gives_no_lease():
    service, node, _ = make_orders()
    order = sold(service, node)
    order["order_state"] = P.FAILED
    assert extendable(service) == []


# --- lsps7.create_order / lsps7.get_order ------------------------------------------------

def test_create_order_answers_the_fee_and_new_expiry_and_persists_first():
    service, node, rpc = make_orders()
    sold(service, node)
    result = extend(service, 50).result
    assert result["short_channel_id"] == SCID and result["order_state"] == "CREATED"
    assert result["channel_extension_expiry_blocks"] == 50
    assert result["new_channel_expiry_block"] == 1150
    assert result["payment"]["bolt11"]["fee_total_sat"] == "25"  # 500000 * 1ppm * 50
    assert result["payment"]["bolt11"]["order_total_sat"] == "25"
    assert "onchain" not in result["payment"]
    record = stored(rpc, ORDERS, result["order_id"])
    assert record["kind"] == "lsps7" and record["bolt11"]["invoice"] == \
        result["payment"]["bolt11"]["invoice"]
    assert node.invoices[-1]["amount_msat"] == 25_000


def test_create_order_with_a_refund_address_offers_onchain_payment():
    service, node, _ = make_orders()
    sold(service, node)
    result = extend(service, 50, refund_onchain_address=REFUND_TO).result
    assert result["payment"]["onchain"]["address"] == "bcrt1p-order-address"
    assert result["payment"]["onchain"]["refund_onchain_address"] == REFUND_TO


@pytest.mark.parametrize("params,code", [
    ({"short_channel_id": "200x1x0"}, 100),                      # not an extendable channel
    ({"channel_extension_expiry_blocks": 101}, 100),             # above the max
    ({"channel_extension_expiry_blocks": "5"}, -32602),
    ({"short_channel_id": "bogus"}, -32602),
    ({"refund_onchain_address": "bc1-not-regtest"}, -32602),
])
def test_create_order_refusals_carry_the_lsps_code_and_store_nothing(params, code):
    service, node, rpc = make_orders()
    sold(service, node)
    before = dict(rpc.data)
    c = serve(service, service._create_extension, CLIENT,
              {"short_channel_id": SCID, "channel_extension_expiry_blocks": 10, **params})
    assert c.error_code == code
    assert rpc.data == before


def test_another_peer_cannot_extend_my_channel():
    service, node, _ = make_orders()
    sold(service, node)
    assert extend(service, 10, peer=OTHER).error_code == 100


def test_an_unexpected_failure_is_an_internal_error():
    service, node, _ = make_orders()
    sold(service, node)
    node.invoice_error = RuntimeError("lightningd gone")
    assert extend(service, 10).error_code == -32603


def test_get_order_is_the_peers_own_lsps7_order_only():
    service, node, _ = make_orders()
    lsps1_order = sold(service, node)
    created = extend(service, 10).result
    got = serve(service, service._get_extension, CLIENT, {"order_id": created["order_id"]})
    assert got.result == created
    for peer, order_id in ((OTHER, created["order_id"]), (CLIENT, lsps1_order["order_id"]),
                           (CLIENT, "nope"), (CLIENT, 5)):
        assert serve(service, service._get_extension, peer,
                     {"order_id": order_id}).error_code == 101


# --- the extension act --------------------------------------------------------------------

def test_paid_extension_records_the_lease_before_settling_with_our_preimage():
    service, node, rpc = make_orders()
    sold(service, node)
    order = service.orders[extend(service, 50).result["order_id"]]
    seen = []
    pay(service, order, respond=lambda r: seen.append((r, stored(rpc, LEASES, "new1"))))
    assert seen == []  # held while the extension is done on a worker
    service.workers.run_all()
    answer, lease_at_answer = seen[0]
    assert answer == {"result": "resolve", "payment_key": order["bolt11"]["preimage"]}
    assert lease_at_answer["expiration_block"] == 1150
    assert lease_at_answer["extension_order_ids"] == [order["order_id"]]
    assert order["order_state"] == P.COMPLETED and order["bolt11"]["state"] == P.PAID
    assert stored(rpc, ORDERS, order["order_id"])["order_state"] == P.COMPLETED
    got = serve(service, service._get_extension, CLIENT, {"order_id": order["order_id"]})
    assert got.result["new_channel_expiry_block"] == 1150
    assert extendable(service)[0]["extension_order_ids"] == [order["order_id"]]


def test_an_order_placed_by_the_alias_extends_once_the_channel_has_confirmed():
    """A zero-conf channel is listed by its alias until it confirms; the order placed
    then is paid after, when lightningd lists the channel by its real scid."""
    service, node, _ = make_orders()
    order = sold(service, node)
    node.channel_list[-1] = channel(order["channel_id"], scid="7x7x7")   # the alias only
    assert [c["short_channel_id"] for c in extendable(service)] == ["7x7x7"]
    placed = service.orders[serve(service, service._create_extension, CLIENT, {
        "short_channel_id": "7x7x7", "channel_extension_expiry_blocks": 50}).result["order_id"]]
    node.channel_list[-1] = channel(order["channel_id"], scid=SCID, scids=[SCID, "7x7x7"])
    assert [c["short_channel_id"] for c in extendable(service)] == [SCID]   # listed once
    pay(service, placed)
    service.workers.run_all()
    assert placed["order_state"] == P.COMPLETED
    assert extendable(service)[0]["extension_order_ids"] == [placed["order_id"]]
    assert sorted((r["kind"], r["order_state"]) for r in service.summary_rows()) == [
        ("lsps1", P.COMPLETED), ("lsps7", P.COMPLETED)]


def test_two_extensions_created_together_add_up_when_paid():
    service, node, _ = make_orders()
    sold(service, node)
    first = service.orders[extend(service, 50).result["order_id"]]
    second = service.orders[extend(service, 30).result["order_id"]]
    pay(service, first, htlc_id=1)
    service.workers.run_all()
    pay(service, second, htlc_id=2)
    service.workers.run_all()
    assert service.leases["new1"]["expiration_block"] == 1180
    assert second["new_channel_expiry_block"] == 1180


def test_a_replayed_htlc_after_the_extension_settles_without_extending_again():
    service, node, _ = make_orders()
    sold(service, node)
    order = service.orders[extend(service, 50).result["order_id"]]
    pay(service, order)
    service.workers.run_all()
    again = pay(service, order)
    service.workers.run_all()
    assert again == [{"result": "resolve", "payment_key": order["bolt11"]["preimage"]}]
    assert service.leases["new1"]["expiration_block"] == 1150


def test_a_restart_after_the_lease_was_written_does_not_extend_twice():
    """Crash between writing the lease and writing the order: the order is still
    HOLD in the datastore, the lease already names it."""
    service, node, rpc = make_orders()
    sold(service, node)
    order = service.orders[extend(service, 50).result["order_id"]]
    service._extend = lambda order_id: None  # the crash: the act never ran ...
    pay(service, order)
    service.workers.run_all()
    lease = {"channel_id": "new1", "client_id": CLIENT, "short_channel_id": SCID,
             "capacity_sat": 500_000, "expiration_block": 1150,
             "original_order_id": order["order_id"], "extension_order_ids": [order["order_id"]]}
    service.store.put(LEASES, "new1", lease)  # ... but its lease write did
    assert stored(rpc, ORDERS, order["order_id"])["bolt11"]["state"] == P.HOLD
    restarted, _, _ = make_orders(node=node, rpc=rpc)
    grace = [fn for delay, fn in restarted.timers if delay == 15]
    grace[0]()  # the replay grace period ends: held orders are acted on
    restarted.workers.run_all()
    assert restarted.leases["new1"]["expiration_block"] == 1150
    assert restarted.orders[order["order_id"]]["order_state"] == P.COMPLETED


def test_a_channel_closed_before_the_payment_fails_the_order_back():
    service, node, rpc = make_orders()
    sold(service, node)
    order = service.orders[extend(service, 50).result["order_id"]]
    node.channel_list.clear()
    answers = pay(service, order, height=100)
    service.workers.run_all()
    assert answers == [{"result": "fail",
                        "failure_message": incorrect_or_unknown(25_000, 100)}]
    assert order["order_state"] == P.FAILED and "no longer extendable" in order["failure"]
    assert stored(rpc, LEASES, "new1") is None
    assert stored(rpc, ORDERS, order["order_id"])["order_state"] == P.FAILED
    # its history still answers, from the order alone
    got = serve(service, service._get_extension, CLIENT, {"order_id": order["order_id"]})
    assert got.result["order_state"] == P.FAILED
    assert got.result["channel"]["expiration_block"] == 1100


def test_lightningd_failing_the_lookup_fails_the_order_back():
    service, node, _ = make_orders()
    sold(service, node)
    order = service.orders[extend(service, 50).result["order_id"]]
    node.channels_error = RuntimeError("rpc down")
    answers = pay(service, order)
    service.workers.run_all()
    assert answers[0]["result"] == "fail" and order["order_state"] == P.FAILED
    assert service.leases == {}


def test_an_order_failed_while_the_act_waited_is_not_extended():
    service, node, _ = make_orders()
    sold(service, node)
    order = service.orders[extend(service, 50).result["order_id"]]
    pay(service, order)
    order["order_state"] = P.FAILED  # e.g. failed on a block before the worker ran
    service.workers.run_all()
    assert service.leases == {} and order["_opening"] is False


def test_operator_list_shows_extensions_with_their_lease():
    service, node, _ = make_orders()
    sold(service, node)
    order = service.orders[extend(service, 50).result["order_id"]]
    pay(service, order)
    service.workers.run_all()
    listed = service.list_orders(None, CLIENT, kind="lsps7")
    assert [(o["order_id"], o["new_channel_expiry_block"], o["channel"]["expiration_block"])
            for o in listed] == [(order["order_id"], 1150, 1150)]


# --- the client ---------------------------------------------------------------------------

def lsp_order(state="CREATED", blocks=50, expiration=1100, new=1150, **changes):
    """An lsps7.create_order answer whose invoice asks its total (250,000 sat)."""
    o = {"order_id": "x1", "short_channel_id": SCID, "channel_extension_expiry_blocks": blocks,
         "new_channel_expiry_block": new, "order_state": state, "token": "",
         "payment": {"bolt11": {"state": "EXPECT_PAYMENT", "fee_total_sat": "250000",
                                "order_total_sat": "250000", "invoice": INVOICE_250K_SAT}},
         "channel": {"short_channel_id": SCID, "expiration_block": expiration,
                     "extension_order_ids": []}}
    o.update(changes)
    return o


class Lsp:
    """The LSP's side of client calls: canned answers, the requests kept."""

    def __init__(self, answer):
        self.answer, self.asked = answer, []

    def __call__(self, lsp, method, params):
        self.asked.append((lsp, method, params))
        return self.answer


def test_client_lists_extendable_channels():
    lsp = Lsp({"extendable_channels": [{"short_channel_id": SCID}], "more": 1})
    assert Lsps7Client(lsp).get_extendable_channels(LSP) == {
        "extendable_channels": [{"short_channel_id": SCID}]}
    assert lsp.asked == [(LSP, "lsps7.get_extendable_channels", {})]


@pytest.mark.parametrize("answer", [None, [], {}, {"extendable_channels": {}},
                                    {"extendable_channels": [SCID]}])
def test_client_refuses_a_malformed_channel_list(answer):
    with pytest.raises(ClientError) as e:
        Lsps7Client(Lsp(answer)).get_extendable_channels(LSP)
    assert e.value.code == BAD_RESPONSE


def test_client_accepts_an_honest_extension_order():
    lsp = Lsp(lsp_order())
    params = {"short_channel_id": SCID, "channel_extension_expiry_blocks": 50}
    assert Lsps7Client(lsp).create_extension(LSP, params)["order_id"] == "x1"
    assert lsp.asked == [(LSP, "lsps7.create_order", params)]


def test_client_reads_the_older_new_channel_expiry_blocks_spelling():
    o = lsp_order()
    o["new_channel_expiry_blocks"] = o.pop("new_channel_expiry_block")
    assert Lsps7Client(Lsp(o)).get_extension(LSP, "x1")["order_id"] == "x1"


def test_client_get_extension_after_payment_allows_the_extended_channel_expiry():
    lsp = Lsp(lsp_order(state="COMPLETED", expiration=1150))
    assert Lsps7Client(lsp).get_extension(LSP, "x1")["order_state"] == "COMPLETED"
    assert lsp.asked == [(LSP, "lsps7.get_order", {"order_id": "x1"})]


@pytest.mark.parametrize("answer,code", [
    (None, BAD_RESPONSE),
    ({"order_id": 7}, BAD_RESPONSE),
    (lsp_order(blocks="50"), BAD_RESPONSE),
    (lsp_order(new=None), BAD_RESPONSE),
    (lsp_order(channel=None), BAD_RESPONSE),
    (lsp_order(blocks=60, new=1160), EXTENSION_MISMATCH),       # not what we asked
    (lsp_order(new=1200), EXTENSION_MISMATCH),                  # 1100 + 50 != 1200
])
def test_client_refuses_a_wrong_extension_order(answer, code):
    with pytest.raises(ClientError) as e:
        Lsps7Client(Lsp(answer)).create_extension(
            LSP, {"short_channel_id": SCID, "channel_extension_expiry_blocks": 50})
    assert e.value.code == code


def test_client_refuses_an_invoice_asking_more_than_the_total():
    o = lsp_order()
    o["payment"]["bolt11"].update(fee_total_sat="240000", order_total_sat="240000")
    with pytest.raises(ClientError) as e:
        Lsps7Client(Lsp(o)).get_extension(LSP, "x1")
    assert e.value.code == EXTENSION_MISMATCH

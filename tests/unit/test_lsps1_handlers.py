"""LSPS1 at run time: the service's lsps1.* methods, opening once paid (marked
before funding), failing back, expiring, closing expired leases; and the client's
orders, checked and remembered."""
import pytest
from fakes import MemoryRpc
from fakes_orders import (
    CLIENT,
    INVOICE_250K_SAT,
    LSP,
    OTHER,
    REFUND_TO,
    Call,
    Clock,
    channel,
    make_orders,
    pay,
    stored,
)
from fakes_orders import call as serve

import lsps.lsps1.service_handler as lsps1_handler
import lsps.lsps7.service_handler as lsps7_handler
import lsps.orders.book as book
import lsps.orders.payment as P
import lsps.orders.retention as retention
from lsps.htlc import incorrect_or_unknown
from lsps.lsps0.client import BAD_RESPONSE, ClientError
from lsps.lsps0.msgs import LspsError
from lsps.lsps1.client import ORDER_TOTAL_MISMATCH
from lsps.lsps1.client_handler import BOUGHT, Lsps1Client
from lsps.lsps1.service import Policy
from lsps.node.rpc import FundingError
from lsps.node.store import Store
from lsps.orders.book import LEASES, ORDERS

PARAMS = {"lsp_balance_sat": "500000", "client_balance_sat": "0",
          "required_channel_confirmations": 0, "funding_confirms_within_blocks": 6,
          "channel_expiry_blocks": 1000, "announce_channel": False}


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch, book, retention, lsps1_handler, lsps7_handler)


def create(service, peer=CLIENT, **changes):
    return serve(service, service._create_order, peer, {**PARAMS, **changes})


def placed(service, **changes):
    return service.orders[create(service, **changes).result["order_id"]]


# --- lsps1.create_order / lsps1.get_order ---------------------------------------------

def test_create_order_answers_the_order_and_stores_it_with_its_invoice():
    service, node, rpc = make_orders()
    result = create(service).result
    assert (result["lsp_balance_sat"], result["client_balance_sat"]) == ("500000", "0")
    assert result["order_state"] == "CREATED" and result["channel"] is None
    bolt11 = result["payment"]["bolt11"]
    assert bolt11["state"] == "EXPECT_PAYMENT" and bolt11["fee_total_sat"] == "2000"
    assert "onchain" not in result["payment"]  # no refund address: lightning only
    record = stored(rpc, ORDERS, result["order_id"])
    assert record["bolt11"]["invoice"] == bolt11["invoice"]
    assert node.invoices == [{"amount_msat": 2_000_000, "label": record["bolt11"]["label"],
                              "cltv": 18 + 6 + 2}]


def test_create_order_with_a_refund_address_offers_an_onchain_address():
    service, _, _ = make_orders()
    onchain = create(service, refund_onchain_address=REFUND_TO).result["payment"]["onchain"]
    assert onchain["address"] == "bcrt1p-order-address" and onchain["state"] == "EXPECT_PAYMENT"


@pytest.mark.parametrize("changes,code", [
    ({"lsp_balance_sat": "x"}, -32602),
    ({"announce_channel": "no"}, -32602),
    ({"refund_onchain_address": "bc1qnotregtest"}, -32602),
    ({"lsp_balance_sat": "50"}, 100),
    ({"channel_expiry_blocks": 20_000}, 100),
])
def test_create_order_refusals_carry_their_code_and_store_nothing(changes, code):
    service, _, rpc = make_orders()
    assert create(service, **changes).error_code == code
    assert rpc.data == {} and service.orders == {}


def test_a_peer_with_ten_unpaid_orders_is_refused_an_eleventh():
    service, _, _ = make_orders()
    for _ in range(book.MAX_UNPAID_ORDERS_PER_PEER):
        assert create(service).result["order_state"] == "CREATED"
    c = create(service)
    assert c.error_code == 1 and "too many for this peer" in c.errors[0].message
    assert create(service, peer=OTHER).result  # other peers are not held up


def test_an_unexpected_failure_answers_internal_error():
    service, node, rpc = make_orders()
    node.invoice_error = RuntimeError("lightningd gone")
    assert create(service).error_code == -32603
    assert rpc.data == {}


def test_get_order_answers_only_the_peers_own_lsps1_order():
    service, _, _ = make_orders()
    created = create(service).result
    assert service._get_order(serve_call(CLIENT, created["order_id"])) == created
    for peer, order_id in ((OTHER, created["order_id"]), (CLIENT, "nope"), (CLIENT, None)):
        with pytest.raises(LspsError) as e:
            service._get_order(serve_call(peer, order_id))
        assert e.value.code == 101


def serve_call(peer, order_id):
    return Call(peer, {"order_id": order_id})


# --- paying and opening ----------------------------------------------------------------------

def test_paid_order_marks_the_open_before_funding_then_settles():
    service, node, rpc = make_orders()
    order = placed(service)
    node.channel_list.append(channel("older", scid="1x1x1"))
    marks = []
    node.on_fund = lambda: marks.append(stored(rpc, ORDERS, order["order_id"])["pre_channels"])
    answers = pay(service, order)
    assert answers == [] and order["bolt11"]["state"] == P.HOLD
    service.workers.run_all()
    assert marks == [["older"]]
    assert node.fundings == [(CLIENT, 500_000, False, 0, 0)]
    assert answers == [{"result": "resolve", "payment_key": order["bolt11"]["preimage"]}]
    record = stored(rpc, ORDERS, order["order_id"])
    assert record["order_state"] == P.COMPLETED and record["channel_id"] == "new1"
    assert record["lease_expiry_block"] == 1100


def test_a_client_balance_is_pushed_with_the_channel():
    service, node, _ = make_orders()
    order = placed(service, client_balance_sat="20000")
    pay(service, order)
    service.workers.run_all()
    assert node.fundings == [(CLIENT, 520_000, False, 0, 20_000_000)]


def test_a_failed_open_fails_the_payment_back_and_the_order():
    service, node, rpc = make_orders()
    order = placed(service)
    node.fund_error = FundingError("peer refused", refused_by_peer=True)
    answers = pay(service, order)
    service.workers.run_all()
    assert answers == [{"result": "fail", "failure_message": incorrect_or_unknown(2_000_000, 100)}]
    record = stored(rpc, ORDERS, order["order_id"])
    assert record["order_state"] == P.FAILED and "peer refused" in record["failure"]
    assert record["bolt11"]["state"] == P.REFUNDED
    assert node.fundings == []


def test_a_wrong_part_is_failed_at_once_and_nothing_held():
    service, node, _ = make_orders()
    order = placed(service)
    answers = pay(service, order, amount_msat=1_000_000, cltv=110)  # too close to expiry
    assert answers[0]["result"] == "fail" and order["parts"] == []
    service.workers.run_all()
    assert node.fundings == []


def test_htlcs_owned_are_our_invoices_only():
    from fakes import htlc_event
    service, _, _ = make_orders()
    order = placed(service)
    ours = {"payment_hash": order["bolt11"]["payment_hash"]}
    assert service.owns_payment(htlc_event({}, **ours))
    assert not service.owns_payment(htlc_event({}, payment_hash="ff" * 32))
    assert not service.owns_payment(htlc_event({"short_channel_id": "5x5x5"}, **ours))


def test_an_incomplete_payment_is_failed_back_after_the_collection_window(clock):
    service, node, _ = make_orders()
    order = placed(service)
    answers = pay(service, order, amount_msat=1_000_000)
    assert order["bolt11"]["state"] == P.EXPECT_PAYMENT and answers == []
    delay, tick = service.timers[-1]
    assert delay == pytest.approx(P.HOLD_COLLECTION_MS / 1000 + 0.05)
    clock.advance(P.HOLD_COLLECTION_MS)
    tick()
    assert answers == [{"result": "fail", "failure_message": incorrect_or_unknown(1_000_000, 100)}]
    assert order["order_state"] == P.CREATED and order["parts"] == []
    service.workers.run_all()
    assert node.fundings == []


def test_an_unpaid_order_expires_then_is_pruned(clock):
    service, _, rpc = make_orders()
    order = placed(service)
    clock.advance(3600 * 1000)
    service.timers[-1][1]()
    assert stored(rpc, ORDERS, order["order_id"])["order_state"] == P.FAILED
    prune_delay, prune = service.timers[-1]
    assert prune_delay == pytest.approx(86400.05)
    clock.advance(86400 * 1000)
    prune()
    assert stored(rpc, ORDERS, order["order_id"]) is None
    assert order["bolt11"]["payment_hash"] not in service.by_hash
    with pytest.raises(LspsError) as e:
        service._get_order(serve_call(CLIENT, order["order_id"]))
    assert e.value.code == 101


def test_a_paid_order_waits_for_its_client_to_connect():
    connected = set()
    service, node, _ = make_orders(connected=connected)
    order = placed(service)
    answers = pay(service, order)
    service.workers.run_all()
    assert node.fundings == [] and order["_waiting_peer"] and answers == []
    connected.add(OTHER)
    service.on_connect(OTHER)
    service.workers.run_all()
    assert node.fundings == []
    connected.add(CLIENT)
    service.on_connect(CLIENT)
    service.workers.run_all()
    assert len(node.fundings) == 1 and answers[0]["result"] == "resolve"


def test_an_onchain_payment_confirmed_opens_the_channel():
    service, node, _ = make_orders()
    order = placed(service, refund_onchain_address=REFUND_TO)
    node.outputs = [{"outpoint": "t:0", "address": "bcrt1p-order-address",
                     "amount_sat": 2000, "blockheight": None}]
    service.on_block(101)
    service.workers.run_all()
    assert node.fundings == [] and order["onchain"]["state"] == P.EXPECT_PAYMENT
    node.outputs[0]["blockheight"] = 101
    service.on_block(101)
    service.workers.run_all()
    assert order["onchain"]["state"] == P.PAID and len(node.fundings) == 1
    assert order["order_state"] == P.COMPLETED and node.sent == []


def test_a_late_onchain_payment_smaller_than_a_refund_fee_is_kept_not_sent():
    service, node, rpc = make_orders()
    order = placed(service, refund_onchain_address=REFUND_TO)
    order["order_state"] = P.FAILED
    service._persist(order)
    node.outputs = [{"outpoint": "d:0", "address": "bcrt1p-order-address",
                     "amount_sat": 150, "blockheight": 101}]  # the fee is 200
    service.on_block(101)
    service.workers.run_all()
    assert node.prepared == [] and node.sent == []
    assert stored(rpc, ORDERS, order["order_id"])["onchain"]["refunding"] == ["d:0"]


def test_a_refund_recorded_before_txids_is_found_by_script_not_sent_again():
    service, node, rpc = make_orders()
    order = placed(service, refund_onchain_address=REFUND_TO)
    order["order_state"] = P.FAILED
    order["onchain"]["outputs"] = [{"outpoint": "t:0", "amount_sat": 50_000}]
    order["onchain"]["refund_pending"] = {"outpoints": ["t:0"], "amount_sat": 49_800}
    service._persist(order)
    node.sent_to = lambda script, amount: "old-tx" if amount == 49_800 else None
    service.on_block(101)  # the pending refund is retried each block
    service.workers.run_all()
    assert node.prepared == [] and node.sent == []
    record = stored(rpc, ORDERS, order["order_id"])
    assert record["onchain"]["refund_txid"] == "old-tx"
    assert record["onchain"]["refund_pending"] is None


# --- closing expired leases -------------------------------------------------------------

def sold(service):
    order = placed(service)
    pay(service, order)
    service.workers.run_all()
    assert order["order_state"] == P.COMPLETED
    return order


def test_an_expired_lease_is_closed_once_and_the_intent_recorded_first():
    service, node, rpc = make_orders(close_expired=True)
    order = sold(service)
    service.on_block(1099)
    service.workers.run_all()
    assert node.closed == []
    intents = []
    real_close = node.close_channel
    node.close_channel = lambda cid: (intents.append(
        stored(rpc, ORDERS, order["order_id"])["closed_at_block"]), real_close(cid))
    service.on_block(1100)
    service.workers.run_all()
    service.on_block(1101)
    service.workers.run_all()
    assert node.closed == ["new1"] and intents == [1100]


def test_the_client_is_woken_before_its_lease_is_closed():
    """LSPS5 liquidity_management_request (lsps/app.py gives the callback)."""
    service, node, _ = make_orders(close_expired=True)
    order = sold(service)
    woken = []
    service.before_lease_close = lambda peer: woken.append((peer, list(node.closed)))
    service.on_block(1100)
    service.workers.run_all()
    service.on_block(1101)
    assert woken == [(order["client_id"], [])] and node.closed == ["new1"]


def test_an_extended_lease_closes_at_its_new_expiry():
    service, node, _ = make_orders(close_expired=True)
    sold(service)
    service.leases["new1"] = {"expiration_block": 1150, "extension_order_ids": ["x"]}
    service.on_block(1100)
    service.workers.run_all()
    assert node.closed == []
    service.on_block(1150)
    service.workers.run_all()
    assert node.closed == ["new1"]


def test_leases_are_not_closed_unless_the_operator_asks():
    service, node, _ = make_orders()
    sold(service)
    service.on_block(5000)
    service.workers.run_all()
    assert node.closed == []


def test_a_failed_close_is_logged_not_raised():
    logs = []
    service, node, _ = make_orders(close_expired=True, logs=logs)
    sold(service)
    node.close_error = RuntimeError("peer gone")
    service.on_block(1100)
    service.workers.run_all()
    assert node.closed == [] and any("peer gone" in m for level, m in logs if level == "warn")


def test_operator_list_shows_the_lease_with_its_extensions():
    service, _, rpc = make_orders()
    order = sold(service)
    assert service.list_orders(None, CLIENT)[0]["lease_expiry_block"] == 1100
    service.leases["new1"] = {"expiration_block": 1150}
    listed = service.list_orders(order["order_id"], None)
    assert [(o["order_id"], o["lease_expiry_block"], o["channel_id"]) for o in listed] == [
        (order["order_id"], 1150, "new1")]
    assert stored(rpc, LEASES, "new1") is None  # the operator view writes nothing


# --- the client ------------------------------------------------------------------------------

ASKED = {"lsp_balance_sat": "500000", "client_balance_sat": "20000",
         "required_channel_confirmations": 0, "funding_confirms_within_blocks": 6,
         "channel_expiry_blocks": 1000, "announce_channel": False}


def lsp_order(order_id="o1", state="CREATED", created="2027-01-01T00:00:00.000Z", **changes):
    """What an honest LSP answers for ASKED (the invoice asks its 250,000 sat total)."""
    o = {**ASKED, "order_id": order_id, "order_state": state, "created_at": created,
         "payment": {"bolt11": {"state": "EXPECT_PAYMENT", "fee_total_sat": "230000",
                                "order_total_sat": "250000", "invoice": INVOICE_250K_SAT}}}
    o.update(changes)
    return o


class Lsp:
    """Canned answers per method; the requests kept."""

    def __init__(self, **answers):
        self.answers, self.asked = answers, []

    def __call__(self, lsp, method, params):
        self.asked.append((lsp, method, params))
        answer = self.answers[method.split(".")[1]]
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(lsp, rpc=None):
    rpc = rpc or MemoryRpc()
    c = Lsps1Client(None, Store(lambda: rpc), lsp, lambda m, lvl: None)
    c.start()
    return c, rpc


def test_client_order_fills_unset_values_from_the_lsps_info_and_remembers_it():
    info = dict(Policy().info(), min_funding_confirms_within_blocks=6,
                max_channel_expiry_blocks=1000)
    lsp = Lsp(get_info=info, create_order=lsp_order())
    c, rpc = client(lsp)
    order = c.order(LSP, {"lsp_balance_sat": 500_000, "client_balance_sat": 20_000,
                          "required_channel_confirmations": None,
                          "funding_confirms_within_blocks": None,
                          "channel_expiry_blocks": None, "announce_channel": False,
                          "token": None})
    assert order["order_id"] == "o1"
    assert lsp.asked[1] == (LSP, "lsps1.create_order", ASKED)
    assert stored(rpc, BOUGHT, "o1")["order"] == order
    assert c.list_orders(LSP)[0]["order_id"] == "o1" and c.list_orders(OTHER) == []


def test_client_refuses_and_forgets_an_order_unlike_the_one_asked():
    lsp = Lsp(create_order=lsp_order(lsp_balance_sat="400000"))
    c, rpc = client(lsp)
    with pytest.raises(ClientError) as e:
        c.create_order(LSP, ASKED)
    assert e.value.code == ORDER_TOTAL_MISMATCH
    assert rpc.data == {} and c.list_orders(None) == []


def test_client_refuses_a_malformed_order():
    c, rpc = client(Lsp(create_order={"order": "none"}))
    with pytest.raises(ClientError) as e:
        c.create_order(LSP, ASKED)
    assert e.value.code == BAD_RESPONSE and rpc.data == {}


def test_client_get_order_checks_a_known_order_against_what_was_bought():
    lsp = Lsp(create_order=lsp_order(), get_order=lsp_order(state="COMPLETED"))
    c, rpc = client(lsp)
    c.create_order(LSP, ASKED)
    assert c.get_order(LSP, "o1")["order_state"] == "COMPLETED"
    assert stored(rpc, BOUGHT, "o1")["order"]["order_state"] == "COMPLETED"
    lsp.answers["get_order"] = lsp_order(channel_expiry_blocks=10)  # the lease shrank
    with pytest.raises(ClientError) as e:
        c.get_order(LSP, "o1")
    assert e.value.code == ORDER_TOTAL_MISMATCH
    assert stored(rpc, BOUGHT, "o1")["order"]["order_state"] == "COMPLETED"


def test_client_get_order_of_an_unknown_order_checks_its_invoice_only():
    lsp = Lsp(get_order=lsp_order(order_id="o2", lsp_balance_sat="123"))
    c, _ = client(lsp)
    assert c.get_order(LSP, "o2")["lsp_balance_sat"] == "123"
    bad = lsp_order(order_id="o3")
    bad["payment"]["bolt11"].update(fee_total_sat="220000", order_total_sat="240000",)
    bad["client_balance_sat"] = "20000"
    lsp.answers["get_order"] = bad
    with pytest.raises(ClientError) as e:
        c.get_order(LSP, "o3")
    assert e.value.code == ORDER_TOTAL_MISMATCH


def test_client_zeroconf_only_from_an_lsp_owing_a_zero_conf_channel():
    lsp = Lsp(create_order=lsp_order())
    c, rpc = client(lsp)
    assert not c.accepts_zeroconf_from(LSP)
    c.create_order(LSP, ASKED)
    assert c.accepts_zeroconf_from(LSP) and not c.accepts_zeroconf_from(OTHER)
    restarted, _ = client(lsp, rpc)  # remembered across a restart
    assert restarted.accepts_zeroconf_from(LSP)
    lsp.answers["get_order"] = lsp_order(state="COMPLETED")
    restarted.get_order(LSP, "o1")
    assert not restarted.accepts_zeroconf_from(LSP)


def test_client_lists_orders_oldest_first():
    lsp = Lsp(get_order=lsp_order(order_id="new", created="2027-02-01T00:00:00.000Z"))
    c, _ = client(lsp)
    c.get_order(LSP, "new")
    lsp.answers["get_order"] = lsp_order(order_id="old", created="2027-01-01T00:00:00.000Z")
    c.get_order(OTHER, "old")
    assert [(o["order_id"], o["lsp_id"]) for o in c.list_orders(None)] == [
        ("old", OTHER), ("new", LSP)]


WANTED = {"lsp_balance_sat": 500_000, "client_balance_sat": 20_000,
          "required_channel_confirmations": None, "funding_confirms_within_blocks": None,
          "channel_expiry_blocks": None, "announce_channel": False, "token": None}
INFO = dict(Policy().info(), min_funding_confirms_within_blocks=6, max_channel_expiry_blocks=1000)


class PayingNode:
    """fetchinvoice and xpay, as ClnNode gives them."""

    def __init__(self, invoice="lni1x", error=None):
        self.invoice, self.error, self.paid = invoice, error, []

    def fetch_invoice(self, offer):
        return self.invoice

    def pay(self, invoice):
        if self.error is not None:
            raise self.error
        self.paid.append(invoice)
        return {"amount_msat": 250_000_000, "payment_preimage": "ab" * 32}


def test_client_pays_an_order_by_bolt11_and_answers_its_new_state():
    done = dict(lsp_order(), order_state="COMPLETED")
    lsp = Lsp(get_info=INFO, create_order=lsp_order(), get_order=done)
    c, _ = client(lsp)
    c.node = PayingNode()
    got = c.order(LSP, WANTED, "bolt11")
    assert c.node.paid == [lsp_order()["payment"]["bolt11"]["invoice"]]
    assert got["order_state"] == "COMPLETED"
    assert got["paid"] == {"method": "bolt11", "amount_msat": 250_000_000,
                           "payment_preimage": "ab" * 32}


def test_a_failed_payment_is_error_1302_with_the_order():
    from pyln.client import RpcError

    from lsps.lsps1.client import PAYMENT_FAILED
    c, _ = client(Lsp(get_info=INFO, create_order=lsp_order()))
    c.node = PayingNode(error=RpcError("xpay", {}, {"code": 203, "message": "destination "
                                                                        "failed"}))
    with pytest.raises(ClientError) as e:
        c.order(LSP, WANTED, "bolt11")
    assert e.value.code == PAYMENT_FAILED and "destination failed" in e.value.message
    assert e.value.data["order"]["order_id"] == "o1"
    assert c.list_orders(LSP)[0]["order_id"] == "o1"   # placed, and remembered
    with pytest.raises(ClientError) as e:   # this LSP sent no offer
        c.order(LSP, WANTED, "bolt12")
    assert e.value.code == PAYMENT_FAILED and "no bolt12 payment" in e.value.message

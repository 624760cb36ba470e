"""payment.bolt12 at run time (lsps/asyncpay/order_offers.py with the order book): an
order's offer, the invoices answered for it, and its HTLCs held, settled with the
offer's preimage after the open, or failed back; lying payloads refused."""
import hashlib
import os
from types import SimpleNamespace

import pytest
from fakes import htlc_event
from fakes_asyncpay import FakeMessenger
from fakes_orders import CLIENT, Clock, make_orders
from fakes_orders import call as serve

import lsps.asyncpay.order_offers as order_offers
import lsps.lsps1.service_handler as lsps1_handler
import lsps.lsps7.service_handler as lsps7_handler
import lsps.orders.book as book
import lsps.orders.retention as retention
from bolt12ext import asyncmsg, build, encoding, messages, onionmsg
from bolt12ext.offer import decode_offer, dict_path
from bolt12ext.recipient import CHAIN_HASHES
from bolt12ext.tlv import bigsize
from lsps.asyncpay.order_offers import ORDER_INVREQ, OrderOffers
from lsps.orders.payment import MAX_OFFER_CHARS

PARAMS = {"lsp_balance_sat": "500000", "client_balance_sat": "0",
          "required_channel_confirmations": 0, "funding_confirms_within_blocks": 6,
          "channel_expiry_blocks": 1000, "announce_channel": False}
PATH_KEY = bytes.fromhex("02" + "ee" * 32)


@pytest.fixture
def clock(monkeypatch):
    c = Clock(monkeypatch, book, retention, lsps1_handler, lsps7_handler)
    monkeypatch.setattr(order_offers, "now_s", lambda: c.t // 1000)
    return c


@pytest.fixture
def env(clock):
    service, node, rpc = make_orders()
    node.makesecret = lambda label: hashlib.sha256(label.encode()).digest()
    messenger = FakeMessenger("lsp")
    service.bolt12 = OrderOffers(node, messenger, service.bolt12_terms, lambda m, lvl: None)
    return SimpleNamespace(service=service, node=node, rpc=rpc, messenger=messenger,
                           clock=clock)


def placed(env):
    result = serve(env.service, env.service._create_order, CLIENT, PARAMS).result
    return result, env.service.orders[result["order_id"]]


def ask_invoice(env, order, amount=None, reply=True):
    """Send an invoice_request for the order's offer on its path; the invoice we sent."""
    offer = encoding.decode(order["bolt12"]["offer"])[1]
    req = build.invoice_request(offer, os.urandom(32), invreq_metadata=os.urandom(8),
                                invreq_amount_msat=amount)
    reply_path = env.messenger.book.make("reply", 0, 60)[0] if reply else None
    sent = len(env.messenger.sent)
    env.messenger.handlers[ORDER_INVREQ](
        SimpleNamespace(data={"order_id": order["order_id"]}),
        onionmsg.Received(os.urandom(32), {onionmsg.INVOICE_REQUEST: req}, reply_path, {}))
    if len(env.messenger.sent) == sent:
        return None
    _, contents, _ = env.messenger.sent[-1]
    return messages.decode_invoice(contents[onionmsg.INVOICE])


def htlc_paying(invoice, amount, key_id=1, path_key=True, total=None, data=None, cltv=300):
    """An HTLC on the invoice's path as lightningd hands it: we are the introduction
    node, so the path key comes in the payload."""
    path = dict_path(invoice["invoice_paths"][0])
    payload = asyncmsg.final_payload(amount, cltv, total or amount,
                                     data or path.hops[-1].encrypted_data,
                                     current_path_key=PATH_KEY if path_key else None)
    return htlc_event({"payload": (bigsize(len(payload)) + payload).hex()}, "02" + "aa" * 32,
                      payment_hash=invoice["invoice_payment_hash"], amount_msat=amount,
                      cltv_expiry=cltv, cltv_expiry_relative=200, id=key_id)


def test_an_order_gets_an_offer_for_exactly_its_total_on_a_path_to_us(env):
    result, order = placed(env)
    offer = result["payment"]["bolt12"]
    assert offer["state"] == "EXPECT_PAYMENT" and offer["order_total_sat"] == \
        result["payment"]["bolt11"]["order_total_sat"]
    assert offer["expires_at"] == result["payment"]["bolt11"]["expires_at"]
    assert len(offer["offer"]) <= MAX_OFFER_CHARS
    fields = decode_offer(offer["offer"])
    assert fields["offer_amount_msat"] == order["order_total_sat"] * 1000
    assert fields["offer_chains"] == [CHAIN_HASHES["regtest"]]
    assert fields["offer_issuer_id"] == env.service.bolt12.issuer_id.hex()
    assert fields["offer_absolute_expiry"] == order["expires_ms"] // 1000
    [path] = fields["offer_paths"]
    assert path["first_node_id"] == env.messenger.node_id.hex()
    # stored with the order before the answer, its payment hash indexed
    assert env.service.by_hash[order["bolt12"]["payment_hash"]] == order["order_id"]
    assert order["bolt12"]["payment_hash"] != order["bolt11"]["payment_hash"]


def test_an_invoice_request_gets_an_invoice_with_the_orders_hash_and_our_path(env):
    _, order = placed(env)
    invoice = ask_invoice(env, order)
    assert invoice["signature_valid"]
    assert invoice["invoice_amount_msat"] == order["order_total_sat"] * 1000
    assert invoice["invoice_payment_hash"] == order["bolt12"]["payment_hash"]
    assert invoice["invoice_node_id"] == env.service.bolt12.issuer_id.hex()
    [pay] = invoice["invoice_blindedpay"]
    assert (pay["fee_base_msat"], pay["fee_proportional_millionths"]) == (0, 0)
    assert pay["cltv_expiry_delta"] == 18 + 6 + book.INVOICE_CLTV_SLACK
    assert invoice["invoice_relative_expiry"] == (order["expires_ms"] - env.clock.t) // 1000
    # a second request: another invoice, same payment hash and path, nothing more stored
    again = ask_invoice(env, order)
    assert again["invoice_payment_hash"] == invoice["invoice_payment_hash"]
    assert again["invoice_paths"] == invoice["invoice_paths"]


@pytest.mark.parametrize("how,why", [
    (dict(amount=1), "another amount"),
    (dict(reply=False), "without a reply path"),
])
def test_bad_invoice_requests_get_nothing(env, how, why):
    _, order = placed(env)
    amount = how.get("amount")
    if amount is not None:
        how = dict(how, amount=order["order_total_sat"] * 1000 + amount)
    assert ask_invoice(env, order, **how) is None
    assert why in env.messenger.dropped[-1]


def test_no_invoice_once_the_order_is_paid_or_expired(env):
    _, order = placed(env)
    invoice = ask_invoice(env, order)
    answers = []
    env.service.on_htlc(htlc_paying(invoice, invoice["invoice_amount_msat"]), answers.append)
    assert answers == [] and order["bolt12"]["state"] == "HOLD"
    assert ask_invoice(env, order) is None
    _, later = placed(env)
    env.clock.advance(later["expires_ms"] - env.clock.t)
    assert ask_invoice(env, later) is None
    assert "takes no payment" in env.messenger.dropped[-1]


def test_the_payment_is_held_and_settled_with_the_offers_preimage_after_the_open(env):
    _, order = placed(env)
    invoice = ask_invoice(env, order)
    total = invoice["invoice_amount_msat"]
    answers = []
    assert env.service.owns_payment(htlc_paying(invoice, total // 2))
    env.service.on_htlc(htlc_paying(invoice, total // 2, 1, total=total), answers.append)
    env.service.on_htlc(htlc_paying(invoice, total - total // 2, 2, total=total),
                        answers.append)
    assert answers == []
    env.service.workers.run_all()   # the open
    assert len(env.node.fundings) == 1
    assert answers == [{"result": "resolve", "payment_key": order["bolt12"]["preimage"]}] * 2
    assert order["bolt12"]["state"] == "PAID" and order["order_state"] == "COMPLETED"
    assert hashlib.sha256(bytes.fromhex(order["bolt12"]["preimage"])).hexdigest() == \
        order["bolt12"]["payment_hash"]


@pytest.mark.parametrize("lie", [
    dict(path_key=False),              # our encrypted data copied into a plain onion
    dict(data=b"\x00" * 50),           # another path
    dict(total=1),                     # a total that is not the order's
])
def test_a_lying_payment_is_failed_at_once_and_opens_nothing(env, lie):
    _, order = placed(env)
    invoice = ask_invoice(env, order)
    answers = []
    env.service.on_htlc(htlc_paying(invoice, invoice["invoice_amount_msat"], **lie),
                        answers.append)
    assert answers and answers[0]["result"] == "fail"
    env.service.workers.run_all()
    assert env.node.fundings == [] and order["parts"] == []


def test_a_failed_open_refunds_the_offers_payment(env):
    _, order = placed(env)
    invoice = ask_invoice(env, order)
    env.node.fund_error = RuntimeError("no funds")
    answers = []
    env.service.on_htlc(htlc_paying(invoice, invoice["invoice_amount_msat"]), answers.append)
    env.service.workers.run_all()
    assert [a["result"] for a in answers] == ["fail"]
    assert order["bolt12"]["state"] == "REFUNDED" and order["order_state"] == "FAILED"


def test_after_a_restart_the_replayed_payment_is_held_and_settled_once(env):
    _, order = placed(env)
    invoice = ask_invoice(env, order)
    htlc = htlc_paying(invoice, invoice["invoice_amount_msat"])
    env.service.on_htlc(htlc, lambda answer: None)
    again, node, _ = make_orders(rpc=env.rpc)   # restarted: same store, new book
    assert again.by_hash[order["bolt12"]["payment_hash"]] == order["order_id"]
    assert again.orders[order["order_id"]]["bolt12"]["state"] == "HOLD"
    answers = []
    again.on_htlc(htlc, answers.append)   # lightningd replays the held HTLC
    again._after_replay()
    again.workers.run_all()
    assert len(node.fundings) == 1
    assert answers == [{"result": "resolve", "payment_key": order["bolt12"]["preimage"]}]


def test_an_order_whose_offer_cannot_be_made_is_still_sold_by_its_other_options(env):
    def broken(*args):
        raise RuntimeError("makesecret down")
    env.service.bolt12.offer_for = broken
    result, order = placed(env)
    assert "bolt12" not in result["payment"] and result["payment"]["bolt11"]["invoice"]

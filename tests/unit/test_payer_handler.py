"""The payer at run time (lsps/asyncpay/payer.py) with a fake node, a fake messenger
playing the recipient (or its static invoice server), the in-memory datastore and a
manual clock."""
import dataclasses
import hashlib
import os
from types import SimpleNamespace

import pytest
from fakes import MemoryRpc
from fakes_asyncpay import HEIGHT, NOW, Clock, FakeMessenger, FakeNode, key, node_key, rpc_error
from fakes_asyncpay import stored as stored_in

import lsps.asyncpay.payer as P
from bolt12ext import asyncmsg, build, messages, onionmsg, recipient
from bolt12ext.blinding import PaymentHop, PaymentRelay, payment_path
from bolt12ext.contexts import PathBook
from bolt12ext.sphinx import pubkey
from lsps.lsps0.client import ClientError
from lsps.node.store import Store

ISSUER = key("issuer")
LSP = node_key("lsp")             # introduction node of the recipient's payment paths
ME = node_key("recipient")
MID = node_key("mid").hex()       # a node between the payer and the LSP
OFFER_BOOK = PathBook(os.urandom, LSP, key("lsp virtual"))
HOLDER = node_key("holder").hex()  # the payer's LSP, holding HTLCs


def pay_paths(intro=LSP, fee_base=1000):
    hop = PaymentHop(intro, "1x2x3", PaymentRelay(40, 100, fee_base), 1)
    return [payment_path(os.urandom(32), [hop], ME, os.urandom(32), HEIGHT + 5000, 10**9,
                         recipient.MIN_FINAL_CLTV_EXPIRY_DELTA)]


def make_offer(amount=5000, paths=1, **fields):
    offer_paths = [OFFER_BOOK.make("server_offer", NOW, 3600)[0] for _ in range(paths)]
    if fields:
        return build.offer(offer_paths=offer_paths, **fields)
    return recipient.make_offer(pubkey(ISSUER), offer_paths, "tips", amount)


def invoice_for(invreq, offer, amount=None, paths=None, created_at=NOW, secret=ISSUER):
    request = messages.decode_invoice_request(invreq)
    preimage = os.urandom(32)
    raw = build.invoice(invreq, secret, invoice_paths=[p for p, _ in paths or pay_paths()],
                        invoice_blindedpay=[i for _, i in paths or pay_paths()],
                        invoice_created_at=created_at,
                        invoice_payment_hash=hashlib.sha256(preimage).digest(),
                        invoice_amount_msat=amount or recipient.expected_amount(request))
    return raw


def static_for(offer, created_at=NOW, paths=None, held=2):
    held_paths = [PathBook(os.urandom, ME, key("me virtual")).make("recipient_held", NOW, 60)[0]
                  for _ in range(held)]
    return recipient.make_static_invoice(offer, ISSUER, paths or pay_paths(), held_paths,
                                         created_at)


def flip_last(raw):
    """The same message with its signature's last byte changed."""
    return raw[:-1] + bytes([raw[-1] ^ 1])


class Recipient:
    """Answers our invoice_request: `answers(invreq) -> [(type, bytes)]`."""

    def __init__(self, offer, answers):
        self.offer, self.answers, self.requests = offer, answers, []

    def respond(self, path, contents):
        if onionmsg.INVOICE_REQUEST not in contents:
            return []
        self.requests.append((path, contents[onionmsg.INVOICE_REQUEST]))
        return [({t: v}, None) for t, v in self.answers(contents[onionmsg.INVOICE_REQUEST])]


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(P, "now_s", c)
    return c


def make_env(clock, offer, answers, ask=None, grace=3.0):
    rpc = MemoryRpc()
    node = FakeNode()
    messenger = FakeMessenger("payer")
    them = Recipient(offer, answers)
    messenger.respond = them.respond
    logs, asked = [], []

    def default_ask(peer, method, params):
        asked.append((peer, method, params))
        book = PathBook(os.urandom, bytes.fromhex(HOLDER), key("holder virtual"))
        return {"release_paths": [book.make("release", NOW, 60)[0].serialize().hex()]}
    payer = P.AsyncPayer(node, Store(lambda: rpc), messenger, ask or default_ask,
                         lambda msg, level: logs.append((level, msg)), invoice_grace_s=grace)
    return SimpleNamespace(p=payer, rpc=rpc, node=node, messenger=messenger, them=them,
                           logs=logs, asked=asked, offer=offer,
                           text=build.offer_string(offer))


def normal(env_offer):
    return lambda req: [(onionmsg.INVOICE, invoice_for(req, env_offer))]


@pytest.fixture
def env(clock):
    offer = make_offer()
    return make_env(clock, offer, normal(offer))


def stored(env):
    return stored_in(env.rpc, "asyncpayment")


# ---- normal invoices -------------------------------------------------------------------------

def test_invoice_is_paid_along_its_blinded_path(env):
    out = env.p.pay(env.text, None, "thanks")
    (onion,) = env.node.onions
    h = onion["payment_hash"].hex()
    assert out == {"payment_hash": h, "kind": "invoice", "amount_msat": 5000,
                   "state": "pending", "created_at": NOW, "first_hop": LSP.hex(),
                   "held_by": None, "held_htlc_available_sent": 0}
    assert onion["destination"] == LSP.hex() and onion["amount_msat"] == 5000
    assert onion["description"] == "clnlsp async payment (invoice)"
    # the introduction node gets amount + its fees, at the path's CLTV delta above ours
    fee = 1000 + 5000 * 100 // 10**6
    assert onion["first_hop"] == {"id": LSP.hex(), "amount_msat": 5000 + fee,
                                  "delay": P.NORMAL_FINAL_CLTV + 40
                                  + recipient.MIN_FINAL_CLTV_EXPIRY_DELTA}
    assert [k for k, _ in onion["hops"]][0] == LSP and len(onion["hops"]) == 2
    assert env.node.waited == [h]
    (_, sent_req), = env.them.requests
    assert messages.decode_invoice_request(sent_req)["invreq_payer_note"] == "thanks"


def test_payment_record_is_stored_before_the_onion_is_sent(env):
    seen = []
    env.node.on_send = lambda: seen.append(stored(env))
    env.p.pay(env.text, None, None)
    ((h, record),) = seen[0].items()
    assert record["kind"] == "invoice" and record["amount_msat"] == 5000
    assert record["preimage"] is None and "first_hop" not in record
    assert stored(env)[h]["first_hop"] == LSP.hex()


def test_invoice_request_goes_on_two_offer_paths_with_one_reply_path(clock):
    offer = make_offer(paths=3)
    e = make_env(clock, offer, lambda req: [])
    e.messenger.send_ok = lambda path, contents: False   # nothing goes: no answer
    with pytest.raises(P.PayError, match="could not send the invoice_request on any offer path"):
        e.p.pay(e.text, None, None)
    assert len(e.messenger.sent) == 2
    assert e.messenger.sent[0][2] == e.messenger.sent[1][2] is not None
    assert len(e.messenger.forgotten) == 1 and stored(e) == {}


def test_no_answer_in_time_is_an_error(clock):
    offer = make_offer()
    e = make_env(clock, offer, lambda req: [])
    with pytest.raises(P.PayError, match="no invoice came back in time"):
        e.p.pay(e.text, None, None)
    assert e.messenger.forgotten and e.node.onions == []


@pytest.mark.parametrize("error,why", [
    (asyncmsg.InvoiceError("out of stock").encode(), "the recipient refused: out of stock"),
    (asyncmsg.InvoiceError("spec style").encode(framed=False), "the recipient refused: spec style"),
    (b"\x00\x01\x02", "the recipient refused: unreadable invoice_error"),
])
def test_invoice_error_is_the_recipients_refusal(clock, error, why):
    e = make_env(clock, make_offer(), lambda req: [(onionmsg.INVOICE_ERROR, error)])
    with pytest.raises(P.PayError, match=why):
        e.p.pay(e.text, None, None)
    assert e.node.onions == [] and stored(e) == {}


def test_amount_above_the_offers_goes_in_the_request_and_the_offers_does_not(clock):
    offer = make_offer(5000)
    e = make_env(clock, offer, normal(offer))
    e.p.pay(e.text, 6000, None)
    e.p.pay(e.text, 5000, None)
    above, same = (messages.decode_invoice_request(r) for _, r in e.them.requests)
    assert above["invreq_amount_msat"] == 6000 and "invreq_amount_msat" not in same


def test_offer_without_amount_is_paid_what_the_caller_names(clock):
    offer = make_offer(None)
    e = make_env(clock, offer, normal(offer))
    assert e.p.pay(e.text, 1234, None)["amount_msat"] == 1234
    (_, req), = e.them.requests
    assert messages.decode_invoice_request(req)["invreq_amount_msat"] == 1234


def test_offers_without_paths_or_in_a_currency_are_refused(clock):
    plain = build.offer(offer_issuer_id=pubkey(ISSUER), offer_description="x")
    e = make_env(clock, plain, lambda req: [])
    with pytest.raises(P.PayError, match=r"the offer has no blinded paths \(pay it with xpay\)"):
        e.p.pay(e.text, 1000, None)
    dollars = make_offer(offer_issuer_id=pubkey(ISSUER), offer_description="x",
                         offer_currency="USD", offer_amount=5)
    with pytest.raises(P.PayError, match="offers in a currency are not supported"):
        e.p.pay(build.offer_string(dollars), 1000, None)
    assert e.messenger.sent == []


@pytest.mark.parametrize("answer,why", [
    (lambda req, offer: flip_last(invoice_for(req, offer)),
     "the invoice signature does not verify"),
    (lambda req, offer: invoice_for(req, offer, secret=key("impostor")),
     "the invoice is not signed by the offer's issuer"),
    (lambda req, offer: invoice_for(req, offer, amount=5001), "the invoice asks another amount"),
    (lambda req, offer: invoice_for(req, offer, created_at=NOW - 7200),
     "the invoice has expired"),
])
def test_bad_invoices_are_refused_before_paying(clock, answer, why):
    offer = make_offer()
    e = make_env(clock, offer, lambda req: [(onionmsg.INVOICE, answer(req, offer))])
    with pytest.raises(P.PayError, match=why):
        e.p.pay(e.text, None, None)
    assert e.node.onions == [] and stored(e) == {}


def test_offer_without_issuer_takes_answers_signed_by_its_path_recipient_only(clock):
    offer = make_offer(offer_description="x", offer_amount_msat=5000)
    e = make_env(clock, offer, normal(offer))   # signed by ISSUER, not the path's end
    with pytest.raises(P.PayError, match="the invoice is not signed by the offer's issuer"):
        e.p.pay(e.text, None, None)


def test_completed_payment_shows_its_preimage_and_failed_one_its_error(env):
    h = env.p.pay(env.text, None, None)["payment_hash"]
    env.node.statuses[h] = {"status": "complete", "payment_preimage": "ab" * 32}
    assert env.p.status(h)["state"] == "complete"
    assert env.p.status(h)["payment_preimage"] == "ab" * 32
    env.node.statuses[h] = {"status": "failed", "erroronion": "00"}
    out = env.p.status(h)
    assert out["state"] == "failed" and out["error"] == "failed along the route"
    env.node.statuses[h] = {"status": "failed"}
    assert "error" not in env.p.status(h)


def test_a_failed_wait_still_reports_the_payments_state(env):
    env.node.wait_error = rpc_error("timed out")
    assert env.p.pay(env.text, None, None)["state"] == "pending"


def test_unknown_payment_hash_is_an_error(env):
    with pytest.raises(P.PayError, match=f"no async payment with hash {'00' * 32}"):
        env.p.status("00" * 32)


def test_list_shows_payments_oldest_first_and_start_reloads_them(env, clock):
    first = env.p.pay(env.text, None, None)["payment_hash"]
    clock.t += 5
    second = env.p.pay(env.text, None, None)["payment_hash"]
    assert [p["payment_hash"] for p in env.p.list()["payments"]] == [first, second]
    again = P.AsyncPayer(env.node, env.p.store, env.messenger, None, lambda m, lv: None)
    again.start()
    assert [p["payment_hash"] for p in again.list()["payments"]] == [first, second]


# ---- routes and limits -----------------------------------------------------------------------

def test_hops_before_the_introduction_node_are_plain_forwards(env):
    env.node.routes[LSP.hex()] = [
        {"node_id": MID, "channel": "600x1x0", "amount_msat": 6200, "cltv": 80},
        {"node_id": LSP.hex(), "channel": "601x1x0", "amount_msat": 6000, "cltv": 70}]
    env.p.pay(env.text, None, None)
    (onion,) = env.node.onions
    assert [k.hex() for k, _ in onion["hops"]][:2] == [MID, LSP.hex()]
    assert onion["first_hop"] == {"id": MID, "amount_msat": 6200, "delay": 80}
    assert stored(env)[onion["payment_hash"].hex()]["first_hop"] == MID


def test_paths_without_a_route_or_over_the_limits_are_skipped(clock):
    far, dear = node_key("far"), node_key("dear")
    offer = make_offer()
    paths = pay_paths(far) + pay_paths(dear, fee_base=6000) + pay_paths()
    e = make_env(clock, offer, lambda req: [(onionmsg.INVOICE, invoice_for(req, offer,
                                                                           paths=paths))])
    e.node.routes[far.hex()] = rpc_error("no path")
    e.p.pay(e.text, None, None)
    assert [c[0] for c in e.node.route_calls] == [far.hex(), dear.hex(), LSP.hex()]
    assert e.node.onions[0]["destination"] == LSP.hex()


def test_no_usable_path_says_why_for_each(clock):
    offer = make_offer()
    scid_intro = dataclasses.replace(pay_paths()[0][0], first_node_id=b"\x00" + bytes(8))
    paths = [(scid_intro, pay_paths()[0][1]), pay_paths(fee_base=6000)[0]]
    far = pay_paths(node_key("far"))
    e = make_env(clock, offer, lambda req: [(onionmsg.INVOICE, invoice_for(
        req, offer, paths=paths + far))])
    e.node.routes[node_key("far").hex()] = rpc_error("no path")
    e.node.routes[LSP.hex()] = [{"node_id": LSP.hex(), "channel": "1x1x1",
                                 "amount_msat": 5000 + 6000 + 5 + 1, "cltv": 100}]
    with pytest.raises(P.PayError) as raised:
        e.p.pay(e.text, None, None)
    assert str(raised.value) == (
        "no usable payment path: introduction by channel id; "
        f"fees 6006 msat above maxfee_msat 5000; no route to {node_key('far').hex()}: no path")
    assert e.node.onions == []


def test_maxfee_given_replaces_the_default(env):
    with pytest.raises(P.PayError, match="fees 1000 msat above maxfee_msat 999"):
        env.p.pay(env.text, None, None, maxfee_msat=999)


def test_cltv_above_the_cap_is_refused(env):
    env.node.routes[LSP.hex()] = [{"node_id": LSP.hex(), "channel": "1x1x1",
                                   "amount_msat": 6000, "cltv": P.MAX_CLTV + 1}]
    with pytest.raises(P.PayError, match=f"CLTV of {P.MAX_CLTV + 1} blocks above"):
        env.p.pay(env.text, None, None)


def test_sendonion_failure_is_an_error_and_the_record_stays(env):
    env.node.send_error = rpc_error("peer gone")
    with pytest.raises(P.PayError, match="sendonion failed: peer gone"):
        env.p.pay(env.text, None, None)
    ((h, record),) = stored(env).items()
    assert "first_hop" not in record


# ---- static invoices -------------------------------------------------------------------------

@pytest.fixture
def static_env(clock):
    offer = make_offer()
    return make_env(clock, offer, lambda req: [(onionmsg.STATIC_INVOICE, static_for(offer))])


def test_static_invoice_is_paid_held_by_our_lsp_and_announced(static_env):
    e = static_env
    e.node.routes[LSP.hex()] = [
        {"node_id": HOLDER, "channel": "600x1x0", "amount_msat": 6100, "cltv": 300},
        {"node_id": LSP.hex(), "channel": "601x1x0", "amount_msat": 6000, "cltv": 250}]
    out = e.p.pay(e.text, None, None)
    h = out["payment_hash"]
    assert out["kind"] == "static" and out["held_by"] == HOLDER
    assert out["held_htlc_available_sent"] == 2 and out["first_hop"] == HOLDER
    assert e.asked == [(HOLDER, P.HOLD, {"payment_hash": h})]
    record = stored(e)[h]
    assert hashlib.sha256(bytes.fromhex(record["preimage"])).hexdigest() == h
    release = record["release_paths"][0]
    announced = [(p, c, r) for p, c, r in e.messenger.sent if onionmsg.HELD_HTLC_AVAILABLE in c]
    assert len(announced) == 2
    assert all(r.serialize().hex() == release for _, _, r in announced)
    assert [p.first_node_id for p, _, _ in announced] == [ME, ME]
    (onion,) = e.node.onions
    assert onion["description"] == "clnlsp async payment (static)"
    assert ("info", f"async payment {h} sent via {HOLDER}") in e.logs


def test_static_payment_carries_the_preimage_and_our_request_to_the_recipient(static_env):
    e = static_env
    e.p.pay(e.text, None, None)
    (onion,) = e.node.onions
    final = asyncmsg.decode_payment_payload(onion["hops"][-1][1])
    (_, sent_req), = e.them.requests
    assert final["invoice_request"] == sent_req
    assert hashlib.sha256(final["payment_preimage"]).digest() == onion["payment_hash"]
    assert final["outgoing_cltv_value"] == HEIGHT + P.HELD_FINAL_CLTV


def test_hold_is_recorded_before_the_onion_is_sent(static_env):
    e = static_env
    seen = []
    e.node.on_send = lambda: seen.append(stored(e))
    e.p.pay(e.text, None, None)
    (record,) = seen[0].values()
    assert record["held_by"] == LSP.hex() and record["release_paths"]
    assert e.node.waited == []    # a held payment is not waited for


@pytest.mark.parametrize("answer", [ClientError(-32601, "no such method"), {},
                                    {"release_paths": ["zz"]}, {"release_paths": None}])
def test_without_a_hold_the_static_payment_just_goes(clock, answer):
    offer = make_offer()

    def ask(peer, method, params):
        if isinstance(answer, Exception):
            raise answer
        return answer
    e = make_env(clock, offer, lambda req: [(onionmsg.STATIC_INVOICE, static_for(offer))], ask)
    out = e.p.pay(e.text, None, None)
    assert out["held_by"] is None and out["held_htlc_available_sent"] == 0
    assert len(e.node.onions) == 1
    assert not any(onionmsg.HELD_HTLC_AVAILABLE in c for _, c, _ in e.messenger.sent)
    assert any(level == "info" and f"{LSP.hex()} does not hold HTLCs for us" in msg
               for level, msg in e.logs)


def test_normal_invoice_after_a_static_one_wins(clock):
    offer = make_offer()
    e = make_env(clock, offer, lambda req: [(onionmsg.STATIC_INVOICE, static_for(offer)),
                                            (onionmsg.STATIC_INVOICE, b"second, ignored"),
                                            (onionmsg.INVOICE, invoice_for(req, offer))])
    assert e.p.pay(e.text, None, None)["kind"] == "invoice"
    assert e.asked == []


def test_static_invoice_alone_is_paid_once_the_grace_is_over(clock):
    offer = make_offer()
    e = make_env(clock, offer, lambda req: [(onionmsg.STATIC_INVOICE, static_for(offer)),
                                            (onionmsg.INVOICE, invoice_for(req, offer))],
                 grace=0)
    assert e.p.pay(e.text, None, None)["kind"] == "static"


@pytest.mark.parametrize("answer,why", [
    (lambda offer: flip_last(static_for(offer)),
     "the static invoice signature does not verify"),
    (lambda offer: static_for(make_offer()), "the static invoice is for another offer"),
    (lambda offer: static_for(offer, created_at=NOW - 20 * 86400),
     "the static invoice has expired"),
])
def test_bad_static_invoices_are_refused_before_paying(clock, answer, why):
    offer = make_offer()
    e = make_env(clock, offer, lambda req: [(onionmsg.STATIC_INVOICE, answer(offer))])
    with pytest.raises(P.PayError, match=why):
        e.p.pay(e.text, None, None)
    assert e.node.onions == [] and e.asked == [] and stored(e) == {}


@pytest.mark.parametrize("text,amount,why", [
    ("lno1qqqq", None, "not a valid offer"),
    (build.offer_string(recipient.make_offer(pubkey(ISSUER), [OFFER_BOOK.make("o", 0, 60)[0]],
                                             "old", 5000, absolute_expiry=NOW)),
     None, "the offer has expired"),
    (build.offer_string(make_offer(5000)), 4999, "amount_msat below the offer's 5000"),
    (build.offer_string(make_offer(None)), None, "the offer names no amount: give amount_msat"),
])
def test_offers_that_cannot_be_paid_are_refused_before_any_message(clock, text, amount, why):
    e = make_env(clock, make_offer(), lambda req: [])
    with pytest.raises(P.PayError, match=why):
        e.p.pay(text, amount, None)
    assert e.messenger.sent == []


def test_invoice_for_another_request_is_refused(clock):
    offer = make_offer()
    theirs = build.invoice_request(offer, os.urandom(32), invreq_metadata=os.urandom(8))
    e = make_env(clock, offer, lambda req: [(onionmsg.INVOICE, invoice_for(theirs, offer))])
    with pytest.raises(P.PayError, match="the invoice does not answer our invoice_request"):
        e.p.pay(e.text, None, None)
    assert e.node.onions == []


def test_static_invoice_signed_by_someone_else_is_refused(clock):
    offer = make_offer(offer_description="x", offer_amount_msat=5000)   # no issuer id
    e = make_env(clock, offer, lambda req: [(onionmsg.STATIC_INVOICE, static_for(offer))])
    with pytest.raises(P.PayError, match="the static invoice is not signed by the offer's"):
        e.p.pay(e.text, None, None)


# ---- bugs found --------------------------------------------------------------------------------

def test_a_payment_that_never_left_is_not_listed_as_pending(env):
    env.node.routes[LSP.hex()] = rpc_error("no path")
    with pytest.raises(P.PayError, match="no usable payment path"):
        env.p.pay(env.text, None, None)
    assert [p["state"] for p in env.p.list()["payments"]] in ([], ["failed"])


def test_a_path_whose_htlc_range_excludes_the_amount_is_not_used(clock):
    """A JIT recipient's static invoice splits the amounts over paths by htlc range:
    each path's relay covers only its range's opening fee."""
    offer = make_offer()
    small, info = pay_paths()[0]
    narrow = (small, dataclasses.replace(info, htlc_minimum_msat=1, htlc_maximum_msat=4000))
    e = make_env(clock, offer, lambda req: [(onionmsg.INVOICE, invoice_for(
        req, offer, paths=[narrow]))])
    # (the range applies to what enters the path: 5000 msat and the path's fee)
    with pytest.raises(P.PayError, match="6000 msat outside the path.s htlc range"):
        e.p.pay(e.text, None, None)
    assert e.node.onions == []

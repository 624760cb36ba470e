"""StaticInvoiceServer at run time: a recipient fetches server paths, asks for offer
paths, serves its static invoice (stored before it is confirmed), and payers get that
invoice while the recipient's invoice_request is forwarded to it."""
import hashlib
import json
import os

import pytest
from fakes import Dispatcher, MemoryRpc
from fakes_onion import (
    FAR,
    FAR_SECRET,
    NOW,
    PEER,
    PEER_SECRET,
    Logs,
    OnionNode,
    arrive,
    make_messenger,
    open_message,
    reply_path_to,
    sent,
)

from bolt12ext import asyncmsg, blinding, build, encoding, onionmsg, server
from bolt12ext.blinding import BlindedPath, PaymentHop, PaymentRelay
from bolt12ext.offer import offer_part
from bolt12ext.server import ServerCore
from bolt12ext.sphinx import pubkey
from lsps.asyncpay.messenger import INVOICES, PATHS, SERVER_PATHS_PER_RECIPIENT
from lsps.asyncpay.server import StaticInvoiceServer
from lsps.lsps0.service import Call

ISSUER = hashlib.sha256(b"issuer").digest()
RECIPIENT = PEER.hex()
GET_PATHS = "clnlsp.asyncpay.get_server_paths"


def make_server(monkeypatch, rpc=None, limits=None):
    node = OnionNode(connected=[PEER.hex(), FAR.hex()])
    m = make_messenger(monkeypatch, node=node, rpc=rpc)
    m.start()
    srv = StaticInvoiceServer(m, m.store, ServerCore(m.book, limits or server.Limits()), Logs())
    srv.start()
    srv.dispatcher = Dispatcher()
    srv.serve_lsps0(srv.dispatcher)
    return m, srv


def get_paths(srv, peer=RECIPIENT):
    spec = srv.dispatcher.methods[GET_PATHS]
    return spec.handler(Call(None, peer, 1, GET_PATHS, {}))


def first_path(hex_path):
    return BlindedPath.parse(bytes.fromhex(hex_path))[0]


def ask_offer_paths(m, srv, slot=0):
    """The recipient asks on its server path: what it got back (offer_paths, serve path)."""
    request = asyncmsg.OfferPathsRequest(slot)
    before = len(m.node.injected)
    arrive(m, first_path(get_paths(srv)["paths"][0]), {request.TYPE: request.encode()},
           reply_path_to(PEER_SECRET))
    got = sent(m.node, PEER_SECRET)[before:]
    return got


def static_invoice(offer_paths, created_at=NOW, relative_expiry=3600):
    offer = build.offer(offer_issuer_id=pubkey(ISSUER), offer_paths=offer_paths)
    hop = PaymentHop(PEER, "1x1x1", PaymentRelay(40, 100, 1000))
    path, payinfo = blinding.payment_path(os.urandom(32), [hop], pubkey(ISSUER), b"p" * 32,
                                          max_cltv_expiry=10**6, htlc_maximum_msat=10**9)
    return offer, build.static_invoice(offer, ISSUER, invoice_paths=[path],
                                       invoice_blindedpay=[payinfo],
                                       invoice_created_at=created_at,
                                       invoice_relative_expiry=relative_expiry)


def serve_invoice(m, srv, slot=0):
    """The whole recipient side: (offer, invoice, forward path id, offer path)."""
    (answer,) = ask_offer_paths(m, srv, slot)
    offer_paths = asyncmsg.OfferPaths.decode(answer.contents[onionmsg.OFFER_PATHS]).paths
    offer, inv = static_invoice(offer_paths)
    forward_id = os.urandom(32)
    serve = asyncmsg.ServeStaticInvoice(inv, reply_path_to(PEER_SECRET, forward_id))
    arrive(m, answer.reply_path, {serve.TYPE: serve.encode()}, reply_path_to(PEER_SECRET))
    return offer, inv, forward_id, offer_paths[0]


def stored_invoices(m):
    return {k[2]: json.loads(v) for k, v in m.rpc.data.items() if k[1] == INVOICES.name}


# ---- server paths --------------------------------------------------------------------------

def test_server_paths_are_for_the_asking_peer_and_persisted(monkeypatch):
    m, srv = make_server(monkeypatch)
    answer = get_paths(srv)
    assert answer["recipient_id"] == RECIPIENT
    assert answer["expires_at"] == NOW + server.OFFER_PATHS_TTL_S
    (ctx,) = m.store.list(PATHS).values()
    assert ctx["purpose"] == server.REQUEST and ctx["peer"] == RECIPIENT
    assert first_path(answer["paths"][0]).first_node_id == bytes.fromhex(m.node.node_id())


def test_operator_server_paths_name_a_fresh_recipient(monkeypatch):
    m, srv = make_server(monkeypatch)
    one, two = srv.server_paths(None), srv.server_paths(None)
    assert len(one["recipient_id"]) == 32 and one["recipient_id"] != two["recipient_id"]
    assert {c["peer"] for c in m.store.list(PATHS).values()} == {one["recipient_id"],
                                                                 two["recipient_id"]}


def test_server_paths_a_recipient_holds_are_bounded(monkeypatch):
    m, srv = make_server(monkeypatch)
    answers = [get_paths(srv) for _ in range(SERVER_PATHS_PER_RECIPIENT + 3)]
    assert len(m.store.list(PATHS)) == SERVER_PATHS_PER_RECIPIENT
    request = asyncmsg.OfferPathsRequest(0)
    arrive(m, first_path(answers[0]["paths"][0]), {request.TYPE: request.encode()},
           reply_path_to(PEER_SECRET))
    assert m.node.injected == [] and m.dropped["unknown path"] == 1


# ---- offer paths and serving ---------------------------------------------------------------

def test_offer_paths_request_answered_after_its_paths_are_persisted(monkeypatch):
    m, srv = make_server(monkeypatch)
    seen = []
    m.node.on_inject = lambda pk, packet: seen.append(
        sorted(c["purpose"] for c in m.store.list(PATHS).values()))
    (answer,) = ask_offer_paths(m, srv)
    assert seen == [sorted([server.REQUEST, server.OFFER, server.SERVE])]
    paths = asyncmsg.OfferPaths.decode(answer.contents[onionmsg.OFFER_PATHS])
    assert paths.paths_absolute_expiry == NOW + server.OFFER_PATHS_TTL_S
    assert answer.reply_path.first_node_id == bytes.fromhex(m.node.node_id())
    assert m.received[server.REQUEST] == 1


def test_served_invoice_is_stored_before_it_is_confirmed(monkeypatch):
    m, srv = make_server(monkeypatch)
    (answer,) = ask_offer_paths(m, srv)
    offer_paths = asyncmsg.OfferPaths.decode(answer.contents[onionmsg.OFFER_PATHS]).paths
    _, inv = static_invoice(offer_paths)
    seen = []
    m.node.on_inject = lambda pk, packet: seen.append(dict(stored_invoices(m)))
    serve = asyncmsg.ServeStaticInvoice(inv, reply_path_to(PEER_SECRET))
    arrive(m, answer.reply_path, {serve.TYPE: serve.encode()}, reply_path_to(PEER_SECRET))
    assert [list(s) for s in seen] == [[f"{RECIPIENT}-0"]]
    assert seen[0][f"{RECIPIENT}-0"]["invoice"] == inv.hex()
    confirm = sent(m.node, PEER_SECRET)[-1]
    assert list(confirm.contents) == [onionmsg.STATIC_INVOICE_PERSISTED]


def test_invoices_lists_what_was_served(monkeypatch):
    m, srv = make_server(monkeypatch)
    offer, inv, _, _ = serve_invoice(m, srv, slot=1)
    (listed,) = srv.invoices()["invoices"]
    assert listed == {"recipient_id": RECIPIENT, "slot": 1,
                      "offer": encoding.encode("lno", offer_part(inv)), "invoice": inv.hex(),
                      "invoice_bytes": len(inv), "stored_at": NOW, "expires_at": NOW + 3600}
    assert srv.invoices("someone else") == {"invoices": []}


def test_a_message_the_core_refuses_is_dropped_and_nothing_sent(monkeypatch):
    m, srv = make_server(monkeypatch, limits=server.Limits(max_slots_per_recipient=1))
    assert ask_offer_paths(m, srv, slot=1) == []
    assert m.dropped == {"slot 1 beyond the limit": 1}
    assert [c["purpose"] for c in m.store.list(PATHS).values()] == [server.REQUEST]


# ---- payers --------------------------------------------------------------------------------

def test_invoice_request_gets_the_static_invoice_and_goes_on_to_the_recipient(monkeypatch):
    m, srv = make_server(monkeypatch)
    offer, inv, forward_id, offer_path = serve_invoice(m, srv)
    before = len(m.node.injected)
    invreq = invoice_request(offer)
    payer_reply = reply_path_to(FAR_SECRET)
    arrive(m, offer_path, {onionmsg.INVOICE_REQUEST: invreq}, payer_reply)
    to_payer, to_recipient = m.node.injected[before:]
    answer = open_message(*to_payer, FAR_SECRET)
    assert answer.contents == {onionmsg.STATIC_INVOICE: inv}
    forwarded = open_message(*to_recipient, PEER_SECRET)
    assert forwarded.path_id == forward_id and forwarded.contents == {64: invreq}
    assert forwarded.reply_path.serialize() == payer_reply.serialize()


def invoice_request(offer):
    return build.invoice_request(offer, os.urandom(32), invreq_metadata=os.urandom(8),
                                 invreq_amount_msat=10)


def test_invoices_survive_a_restart(monkeypatch):
    rpc = MemoryRpc()
    m, srv = make_server(monkeypatch, rpc=rpc)
    offer, inv, _, offer_path = serve_invoice(m, srv)
    m2, srv2 = make_server(monkeypatch, rpc=rpc)
    assert [i["invoice"] for i in srv2.invoices()["invoices"]] == [inv.hex()]
    arrive(m2, offer_path, {onionmsg.INVOICE_REQUEST: invoice_request(offer)},
           reply_path_to(FAR_SECRET))
    assert open_message(*m2.node.injected[0], FAR_SECRET).contents == \
        {onionmsg.STATIC_INVOICE: inv}


# ---- forgetting ----------------------------------------------------------------------------

@pytest.mark.parametrize("slot, left", [(0, [1]), (None, [])])
def test_forget_deletes_stored_invoices(monkeypatch, slot, left):
    m, srv = make_server(monkeypatch)
    serve_invoice(m, srv, slot=0)
    serve_invoice(m, srv, slot=1)
    assert srv.forget(RECIPIENT, slot) == {"forgotten": 2 - len(left)}
    assert sorted(r["slot"] for r in stored_invoices(m).values()) == left
    assert [i["slot"] for i in srv.invoices()["invoices"]] == left
    assert srv.forget("nobody") == {"forgotten": 0}


def test_repeated_offer_paths_requests_do_not_grow_the_store(monkeypatch):
    m, srv = make_server(monkeypatch, limits=server.Limits(max_slots_per_recipient=1))
    request = asyncmsg.OfferPathsRequest(0)
    path = first_path(get_paths(srv)["paths"][0])
    for _ in range(30):
        arrive(m, path, {request.TYPE: request.encode()}, reply_path_to(PEER_SECRET))
    assert len(m.node.injected) == 30                  # every request was answered
    assert len(m.store.list(PATHS)) <= 1 + 2 * SERVER_PATHS_PER_RECIPIENT

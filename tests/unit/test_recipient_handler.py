"""The async recipient at run time (lsps/asyncpay/recipient.py) with a fake node, a
fake messenger playing the static invoice server, the in-memory datastore and a
manual clock."""
import hashlib
import os
from types import SimpleNamespace

import pytest
from fakes import MemoryRpc, htlc_event
from fakes_asyncpay import (
    HEIGHT,
    NOW,
    Clock,
    FakeMessenger,
    FakeNode,
    channel,
    key,
    node_key,
    stored,
)

import lsps.asyncpay.claims as claims
import lsps.asyncpay.jit_offers as jit_offers
import lsps.asyncpay.payer as P
import lsps.asyncpay.recipient as R
from bolt12ext import asyncmsg, build, messages, onionmsg, recipient
from bolt12ext.blinding import BlindedPath
from bolt12ext.contexts import PathBook
from bolt12ext.offer import decode_offer
from bolt12ext.tlv import bigsize
from lsps.lsps0.client import ClientError
from lsps.node.store import Store

SERVER = node_key("server").hex()
OTHER = node_key("other server").hex()
SERVER_BOOK = PathBook(os.urandom, bytes.fromhex(SERVER), key("server virtual"))
PATH_KEY_TLV = "0021" + "02" + "ee" * 32   # update_add_htlc TLV 0: a path key came


def server_path():
    return SERVER_BOOK.make("server_paths", NOW, 3600)[0]


class Server:
    """The static invoice server, as the recipient's messages see it."""

    def __init__(self, persist=True, offer_paths=True, serve_path=True):
        self.persist, self.offer_paths, self.serve_path = persist, offer_paths, serve_path
        self.slots, self.served = [], []
        self.given = []   # offer paths handed out

    def ask(self, peer, method, params):
        assert method == R.GET_SERVER_PATHS and params == {}
        return {"paths": [server_path().serialize().hex()]}

    def respond(self, path, contents):
        if onionmsg.OFFER_PATHS_REQUEST in contents:
            req = asyncmsg.OfferPathsRequest.decode(contents[onionmsg.OFFER_PATHS_REQUEST])
            self.slots.append(req.invoice_slot)
            if not self.offer_paths:
                return []
            offer_path = SERVER_BOOK.make("server_offer", NOW, 3600)[0]
            self.given.append(offer_path)
            answer = asyncmsg.OfferPaths([offer_path], NOW + 86400)
            serve = SERVER_BOOK.make("server_serve", NOW, 3600)[0] if self.serve_path else None
            return [({answer.TYPE: answer.encode()}, serve)]
        if onionmsg.SERVE_STATIC_INVOICE in contents:
            self.served.append(asyncmsg.ServeStaticInvoice.decode(
                contents[onionmsg.SERVE_STATIC_INVOICE]))
            done = asyncmsg.StaticInvoicePersisted()
            return [({done.TYPE: done.encode()}, None)] if self.persist else []
        return []


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    for role in (R, claims, jit_offers):
        monkeypatch.setattr(role, "now_s", c)
    return c


@pytest.fixture
def env(clock):
    return make_env(clock)


def make_env(clock, channels=None, server=None, refresh_interval_s=7200):
    rpc = MemoryRpc()
    node = FakeNode([channel(SERVER)] if channels is None else channels)
    server = server or Server()
    messenger = FakeMessenger()
    messenger.respond = server.respond
    logs = []
    recipient = R.AsyncRecipient(node, Store(lambda: rpc), messenger, server.ask,
                                 lambda msg, level: logs.append((level, msg)),
                                 refresh_interval_s=refresh_interval_s)
    return SimpleNamespace(r=recipient, rpc=rpc, node=node, server=server,
                           messenger=messenger, logs=logs, clock=clock)


def invreq(offer_data, amount=None):
    return build.invoice_request(offer_data, os.urandom(32), invreq_metadata=os.urandom(8),
                                 invreq_amount_msat=amount)


def htlc_on(path, payment_hash, amount, peer=SERVER, extra=PATH_KEY_TLV, **records):
    """An HTLC whose final payload carries `path`'s encrypted data, as lightningd hands it."""
    payload = asyncmsg.final_payload(amount, HEIGHT + 100, amount, path.hops[-1].encrypted_data,
                                     **records)
    onion = {"payload": (bigsize(len(payload)) + payload).hex()}
    return htlc_event(onion, peer, payment_hash=payment_hash, amount_msat=amount,
                      cltv_expiry=HEIGHT + 100, cltv_expiry_relative=100, extra_tlvs=extra)


def static_payment(env, offer_id, amount=5000, **changes):
    """(htlc, preimage, invreq) of a payer paying the offer's static invoice."""
    record = env.r.offers[offer_id]
    path = messages.parse_static_invoice(bytes.fromhex(record["static_invoice"])).invoice_paths[0]
    preimage = os.urandom(32)
    req = invreq(bytes.fromhex(record["offer"]), amount)
    fields = dict(preimage=preimage, invoice_request=req)
    fields.update(changes)
    return htlc_on(path, hashlib.sha256(preimage).hexdigest(), amount, **fields), preimage


# ---- creating and serving offers -----------------------------------------------------------

def test_create_offer_builds_an_offer_on_the_server_paths_and_has_its_invoice_persisted(env):
    view = env.r.create_offer(SERVER, "tips", 5000)
    assert view["state"] == "ready" and view["slot"] == 0 and view["server_id"] == SERVER
    assert view["invoice_persisted_at"] == NOW
    assert view["invoice_expires_at"] == NOW + build.STATIC_INVOICE_DEFAULT_EXPIRY
    offer = decode_offer(view["offer"])
    assert offer["offer_issuer_id"] == env.r.issuer_id.hex()
    assert offer["offer_amount_msat"] == 5000 and offer["offer_description"] == "tips"
    assert env.server.slots == [0]
    (served,) = env.server.served
    record = stored(env.rpc, "asyncoffer")[view["offer_id"]]
    assert record["state"] == "ready" and record["static_invoice"] == served.invoice.hex()
    # issuer key from makesecret
    assert env.r.issuer_secret == env.node.makesecret(R.ISSUER_LABEL)


def test_static_invoice_pays_through_the_server_and_announces_holds_via_it(env):
    view = env.r.create_offer(SERVER, "tips", None)
    (served,) = env.server.served
    invoice = messages.parse_static_invoice(served.invoice)
    assert invoice.to_json()["signature_valid"]
    assert [p.first_node_id.hex() for p in invoice.invoice_paths] == [SERVER]
    held = invoice.held_htlc_available_paths
    assert [p.first_node_id for p in held] == [bytes.fromhex(SERVER), env.messenger.node_id]
    purposes = [(p, via, data) for p, _, via, data in env.messenger.new_paths]
    oid = {"offer_id": view["offer_id"]}
    assert purposes == [(R.HELD, bytes.fromhex(SERVER), oid), (R.HELD, None, oid),
                        (R.INVREQ, bytes.fromhex(SERVER), oid)]
    assert served.forward_invoice_request_path.first_node_id == bytes.fromhex(SERVER)


def test_reply_paths_are_forgotten_after_each_exchange(env):
    env.r.create_offer(SERVER, "tips", None)
    assert len(env.messenger.forgotten) == 2    # offer_paths and static_invoice_persisted


def test_payment_path_contexts_are_stored_before_the_invoice_is_sent(env):
    seen = []
    env.messenger.on_send = lambda: seen.append(len(stored(env.rpc, "asyncpaypath")))
    view = env.r.create_offer(SERVER, "tips", None)
    assert seen == [0, 1]         # nothing before offer_paths_request, the path before serving
    (ctx,) = stored(env.rpc, "asyncpaypath").values()
    assert ctx == {"offer_id": view["offer_id"], "kind": "static", "payment_hash": None,
                   "expires_at": NOW + build.STATIC_INVOICE_DEFAULT_EXPIRY + 86400,
                   "via": SERVER}


def test_payment_paths_put_the_server_first_then_the_most_receivable_three(clock):
    peers = [node_key(f"peer{i}").hex() for i in range(4)]
    channels = [channel(SERVER, receivable_msat=1)] + [
        channel(p, scid=f"80{i}x1x0", receivable_msat=(i + 1) * 10**6)
        for i, p in enumerate(peers)]
    channels += [channel(node_key("closing").hex(), state="CLOSINGD_SIGEXCHANGE"),
                 dict(channel(node_key("no policy").hex()), remote_policy={}),
                 dict(channel(node_key("no scid").hex()), inbound_scid=None)]
    e = make_env(clock, channels=channels)
    e.r.create_offer(SERVER, "tips", None)
    invoice = messages.parse_static_invoice(e.server.served[0].invoice)
    assert [p.first_node_id.hex() for p in invoice.invoice_paths] == [SERVER, peers[3],
                                                                      peers[2]]


def test_next_offer_at_a_server_takes_the_next_free_slot(env):
    first = env.r.create_offer(SERVER, "a", None)
    second = env.r.create_offer(SERVER, "b", None)
    env.r.forget(first["offer_id"])
    third = env.r.create_offer(SERVER, "c", None)
    other = env.r.create_offer(OTHER, "d", None)
    assert (second["slot"], third["slot"], other["slot"]) == (1, 0, 0)
    assert env.server.slots == [0, 1, 0, 0]


def test_create_offer_refused_when_every_slot_holds_an_offer(env, monkeypatch):
    monkeypatch.setattr(R, "MAX_SLOTS", 2)
    env.r.create_offer(SERVER, "a", None)
    env.r.create_offer(SERVER, "b", None)
    with pytest.raises(R.RecipientError, match=f"all 2 slots at {SERVER} hold offers; "
                                               "forget one with asyncpay-forgetoffer"):
        env.r.create_offer(SERVER, "c", None)
    assert env.server.slots == [0, 1]


@pytest.mark.parametrize("answer", [{}, {"paths": None}, {"paths": ["zz"]}])
def test_create_offer_refuses_unusable_server_paths(env, answer):
    env.r.ask = lambda peer, method, params: answer
    with pytest.raises(R.RecipientError, match=f"{SERVER} sent unusable server paths"):
        env.r.create_offer(SERVER, "tips", None)
    assert env.messenger.sent == [] and env.rpc.data == {}


def test_server_refusing_the_lsps0_request_reaches_the_caller(env):
    def refuse(peer, method, params):
        raise ClientError(-32601, "unknown method")
    env.r.ask = refuse
    with pytest.raises(ClientError, match="unknown method"):
        env.r.create_offer(SERVER, "tips", None)


def test_create_offer_fails_when_offer_paths_request_is_not_answered(clock):
    e = make_env(clock, server=Server(offer_paths=False))
    with pytest.raises(R.RecipientError, match=f"{SERVER} did not answer offer_paths_request"):
        e.r.create_offer(SERVER, "tips", None)
    assert e.rpc.data == {} and e.messenger.forgotten


def test_create_offer_fails_when_offer_paths_request_cannot_be_sent(env):
    env.messenger.send_ok = False
    with pytest.raises(R.RecipientError, match="did not answer offer_paths_request"):
        env.r.create_offer(SERVER, "tips", None)
    assert len(env.messenger.sent) == 1 and env.server.slots == [] and env.rpc.data == {}


def test_offer_paths_without_a_serve_path_are_refused(clock):
    e = make_env(clock, server=Server(serve_path=False))
    with pytest.raises(R.RecipientError, match="offer_paths has no path to serve the invoice"):
        e.r.create_offer(SERVER, "tips", None)
    assert e.rpc.data == {}


def test_other_messages_on_the_reply_path_are_skipped_while_waiting(env):
    answer = env.server.respond
    other = asyncmsg.ReleaseHeldHtlc()
    env.messenger.respond = lambda path, contents: (
        [({other.TYPE: other.encode()}, None)] + answer(path, contents))
    assert env.r.create_offer(SERVER, "tips", None)["state"] == "ready"


def test_other_messages_until_the_deadline_count_as_no_answer(env, monkeypatch):
    other = asyncmsg.ReleaseHeldHtlc()

    def ticking():           # half the reply timeout passes at every look at the clock
        env.clock.t += env.r.reply_timeout_s // 2
        return env.clock.t
    monkeypatch.setattr(R, "now_s", ticking)
    env.messenger.respond = lambda path, contents: [({other.TYPE: other.encode()}, None)] * 5
    with pytest.raises(R.RecipientError, match="did not answer offer_paths_request"):
        env.r.create_offer(SERVER, "tips", None)


def test_offer_is_kept_unserved_without_a_channel_with_a_known_policy(clock):
    e = make_env(clock, channels=[dict(channel(SERVER), remote_policy={})])
    view = e.r.create_offer(SERVER, "tips", None)
    assert view["state"] == "not_persisted" and view["invoice_persisted_at"] is None
    assert e.server.served == []
    assert stored(e.rpc, "asyncoffer")[view["offer_id"]]["state"] == "not_persisted"
    assert ("info", f"async offer {view['offer_id']}: no channel with a known inbound "
            "policy, static invoice not built") in e.logs


def test_unpersisted_invoice_leaves_the_offer_not_persisted(clock):
    e = make_env(clock, server=Server(persist=False))
    view = e.r.create_offer(SERVER, "tips", None)
    assert view["state"] == "not_persisted" and len(e.server.served) == 1
    assert ("info", f"async offer {view['offer_id']}: server did not persist the invoice") \
        in e.logs


def test_earlier_invoice_stays_when_the_server_does_not_persist_a_new_one(env):
    view = env.r.create_offer(SERVER, "tips", None)
    before = dict(env.r.offers[view["offer_id"]])
    env.server.persist = False
    env.clock.t += 100
    assert env.r.serve(view["offer_id"]) is False
    after = stored(env.rpc, "asyncoffer")[view["offer_id"]]
    assert after["state"] == "ready" and after["persisted_at"] == NOW
    assert after["static_invoice"] == before["static_invoice"]


def test_offer_forgotten_while_serving_is_not_stored_again(env):
    view = env.r.create_offer(SERVER, "tips", None)
    oid = view["offer_id"]
    env.messenger.on_send = lambda: oid in env.r.offers and env.r.forget(oid)
    assert env.r.serve(oid) is False
    assert oid not in env.r.offers and oid not in stored(env.rpc, "asyncoffer")


def test_forget_deletes_the_offer_and_refuses_unknown_ones(env):
    view = env.r.create_offer(SERVER, "tips", None)
    assert env.r.forget(view["offer_id"]) == {"forgotten": view["offer_id"]}
    assert stored(env.rpc, "asyncoffer") == {} and env.r.list_offers() == {"offers": []}
    with pytest.raises(R.RecipientError, match=f"no async offer {view['offer_id']}"):
        env.r.forget(view["offer_id"])


# ---- refreshing ------------------------------------------------------------------------------

def test_refresh_serves_offers_that_aged_or_were_never_persisted(clock):
    e = make_env(clock, refresh_interval_s=1000)
    fresh = e.r.create_offer(SERVER, "fresh", None)["offer_id"]
    e.server.persist = False
    unserved = e.r.create_offer(SERVER, "unserved", None)["offer_id"]
    e.server.persist = True
    assert e.r.refresh_due() == [unserved]
    clock.t += 1000
    assert sorted(e.r.refresh_due()) == sorted([fresh, unserved])
    assert stored(e.rpc, "asyncoffer")[fresh]["persisted_at"] == NOW + 1000


def test_refresh_loop_logs_a_failure_and_goes_on(env):
    waits = iter([False, False, True])
    calls = []
    env.r._stop = SimpleNamespace(wait=lambda timeout: next(waits))

    def refresh():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return []
    env.r.refresh_due = refresh
    env.r._refresh_loop()
    assert len(calls) == 2
    assert env.logs == [("warn", "async offer refresh failed: RuntimeError('boom')")]


def test_start_loads_stored_records_and_registers_for_its_paths(env):
    view = env.r.create_offer(SERVER, "tips", None)
    again = R.AsyncRecipient(env.node, env.r.store, env.messenger, env.server.ask,
                             lambda msg, level: None)
    again._stop.set()   # the refresh thread ends at once
    again.start()
    assert list(again.offers) == [view["offer_id"]] and len(again.paypaths) == 1
    assert env.messenger.handlers[R.HELD] == again.on_held_htlc_available
    assert env.messenger.handlers[R.INVREQ] == again.on_invoice_request
    assert again.list_offers()["offers"][0]["offer_id"] == view["offer_id"]


def test_list_offers_shows_offers_oldest_first_with_their_payments(env):
    first = env.r.create_offer(SERVER, "a", None)["offer_id"]
    env.clock.t += 1
    second = env.r.create_offer(SERVER, "b", None)["offer_id"]
    env.r.received = {"h2": {"offer_id": first, "at": 20}, "h1": {"offer_id": first, "at": 10},
                      "h3": {"offer_id": second, "at": 5}}
    offers = env.r.list_offers()["offers"]
    assert [o["offer_id"] for o in offers] == [first, second]
    assert [p["payment_hash"] for p in offers[0]["payments"]] == ["h1", "h2"]


# ---- held_htlc_available and forwarded invoice_requests -------------------------------------

def ctx_for(offer_id):
    return SimpleNamespace(data={"offer_id": offer_id})


def test_held_htlc_available_is_answered_with_a_release_and_counted(env):
    oid = env.r.create_offer(SERVER, "tips", None)["offer_id"]
    reply = server_path()
    held = asyncmsg.HeldHtlcAvailable()
    env.r.on_held_htlc_available(ctx_for(oid), onionmsg.Received(
        os.urandom(32), {held.TYPE: held.encode()}, reply, {}))
    path, contents, _ = env.messenger.sent[-1]
    assert path == reply and list(contents) == [onionmsg.RELEASE_HELD_HTLC]
    assert stored(env.rpc, "asyncoffer")[oid]["releases_sent"] == 1


def test_release_not_sent_is_not_counted(env):
    oid = env.r.create_offer(SERVER, "tips", None)["offer_id"]
    env.messenger.send_ok = False
    held = asyncmsg.HeldHtlcAvailable()
    env.r.on_held_htlc_available(ctx_for(oid), onionmsg.Received(
        os.urandom(32), {held.TYPE: held.encode()}, server_path(), {}))
    assert env.r.offers[oid]["releases_sent"] == 0


@pytest.mark.parametrize("contents,reply", [({72: b""}, None), ({74: b""}, "path")])
def test_held_htlc_available_without_reply_path_or_of_another_type_is_dropped(env, contents,
                                                                              reply):
    reply = server_path() if reply else None
    env.r.on_held_htlc_available(ctx_for("x"), onionmsg.Received(os.urandom(32), contents,
                                                                 reply, {}))
    assert env.messenger.dropped == ["held_htlc_available expected, with a reply path"]
    assert env.messenger.sent == []


def forward(env, oid, req, reply="path"):
    got = onionmsg.Received(os.urandom(32), {onionmsg.INVOICE_REQUEST: req},
                            server_path() if reply else None, {})
    env.r.on_invoice_request(ctx_for(oid), got)
    return got


def test_forwarded_invoice_request_gets_an_invoice_whose_preimage_was_stored_first(env):
    view = env.r.create_offer(SERVER, "tips", 5000)
    oid = view["offer_id"]
    req = invreq(bytes.fromhex(env.r.offers[oid]["offer"]))
    issued_when_sent = []
    env.messenger.on_send = lambda: issued_when_sent.append(stored(env.rpc, "asyncissued"))
    got = forward(env, oid, req)
    path, contents, _ = env.messenger.sent[-1]
    assert path == got.reply_path and list(contents) == [onionmsg.INVOICE]
    invoice = messages.decode_invoice(contents[onionmsg.INVOICE])
    assert invoice["signature_valid"] and invoice["invoice_amount_msat"] == 5000
    assert invoice["invoice_node_id"] == env.r.issuer_id.hex()
    (issued,) = issued_when_sent
    h = invoice["invoice_payment_hash"]
    assert hashlib.sha256(bytes.fromhex(issued[h]["preimage"])).hexdigest() == h
    assert issued[h]["amount_msat"] == 5000 and issued[h]["offer_id"] == oid
    assert issued[h]["expires_at"] == NOW + R.recipient.INVOICE_RELATIVE_EXPIRY_S
    assert stored(env.rpc, "asyncoffer")[oid]["invoices_issued"] == 1
    kinds = [c["kind"] for c in stored(env.rpc, "asyncpaypath").values()]
    assert sorted(kinds) == ["invoice", "static"]


def test_invoice_not_delivered_is_not_counted_as_issued(env):
    oid = env.r.create_offer(SERVER, "tips", 5000)["offer_id"]
    env.messenger.send_ok = False
    forward(env, oid, invreq(bytes.fromhex(env.r.offers[oid]["offer"])))
    assert env.r.offers[oid]["invoices_issued"] == 0 and len(env.r.issued) == 1


def test_unusable_forwarded_invoice_requests_are_dropped(env):
    oid = env.r.create_offer(SERVER, "tips", 5000)["offer_id"]
    req = invreq(bytes.fromhex(env.r.offers[oid]["offer"]))
    forward(env, "unknown offer", req)
    forward(env, oid, req, reply=None)
    env.r.on_invoice_request(ctx_for(oid), onionmsg.Received(os.urandom(32), {}, server_path()))
    assert env.messenger.dropped == ["forwarded invoice_request unusable"] * 3
    assert stored(env.rpc, "asyncissued") == {}


def test_invoice_request_for_another_offer_is_refused_before_any_path_is_made(env):
    oid = env.r.create_offer(SERVER, "tips", 5000)["offer_id"]
    paths_before = dict(stored(env.rpc, "asyncpaypath"))
    other = R.recipient.make_offer(env.r.issuer_id, [server_path()], "other", 5000)
    forward(env, oid, invreq(other))
    assert env.messenger.dropped == [
        "forwarded invoice_request refused: invoice_request for another offer"]
    assert stored(env.rpc, "asyncpaypath") == paths_before
    assert stored(env.rpc, "asyncissued") == {}


def test_no_invoice_without_payment_paths(env):
    oid = env.r.create_offer(SERVER, "tips", 5000)["offer_id"]
    env.node._channels = []
    forward(env, oid, invreq(bytes.fromhex(env.r.offers[oid]["offer"])))
    assert env.messenger.dropped == [
        "no invoice for a forwarded invoice_request: at least one blinded path is needed"]
    assert stored(env.rpc, "asyncissued") == {}


def test_open_invoices_per_offer_are_bounded(env, monkeypatch):
    monkeypatch.setattr(R, "MAX_OPEN_INVOICES_PER_OFFER", 2)
    oid = env.r.create_offer(SERVER, "tips", 5000)["offer_id"]
    offer = bytes.fromhex(env.r.offers[oid]["offer"])
    for _ in range(3):
        forward(env, oid, invreq(offer))
    assert env.messenger.dropped == ["too many open invoices for this offer"]
    assert len(stored(env.rpc, "asyncissued")) == 2
    # once their payments can no longer come they are forgotten, and room is made
    env.clock.t += R.recipient.INVOICE_RELATIVE_EXPIRY_S + R.KEEP_AFTER_EXPIRY_S
    forward(env, oid, invreq(offer))
    assert len(stored(env.rpc, "asyncissued")) == 1


# ---- payments --------------------------------------------------------------------------------

def test_static_invoice_payment_is_claimed_and_recorded(env):
    oid = env.r.create_offer(SERVER, "tips", 5000)["offer_id"]
    htlc, preimage = static_payment(env, oid)
    payload, ctx = env.r.context_of(htlc)
    assert ctx["offer_id"] == oid and ctx["kind"] == "static"
    assert env.r.on_htlc(payload, ctx, htlc) == {"result": "resolve",
                                                 "payment_key": preimage.hex()}
    entry = stored(env.rpc, "asyncrecv")[htlc.payment_hash]
    assert entry == {"offer_id": oid, "kind": "static", "amount_msat": 5000, "at": NOW,
                     "state": "claimed", "why": "", "preimage": preimage.hex()}
    (payment,) = env.r.list_offers()["offers"][0]["payments"]
    assert payment["payment_hash"] == htlc.payment_hash and payment["state"] == "claimed"


def test_claimed_payment_replayed_after_its_offer_is_forgotten_is_claimed_again(env):
    oid = env.r.create_offer(SERVER, "tips", 5000)["offer_id"]
    htlc, preimage = static_payment(env, oid)
    payload, ctx = env.r.context_of(htlc)
    env.r.on_htlc(payload, ctx, htlc)
    env.r.forget(oid)
    assert env.r.on_htlc(payload, ctx, htlc)["payment_key"] == preimage.hex()


def test_payment_below_the_request_is_refused_with_incorrect_details(env):
    oid = env.r.create_offer(SERVER, "tips", None)["offer_id"]
    record = env.r.offers[oid]
    path = messages.parse_static_invoice(bytes.fromhex(record["static_invoice"])).invoice_paths[0]
    preimage = os.urandom(32)
    req = invreq(bytes.fromhex(record["offer"]), 6000)
    htlc = htlc_on(path, hashlib.sha256(preimage).hexdigest(), 5000, preimage=preimage,
                   invoice_request=req)
    payload, ctx = env.r.context_of(htlc)
    assert env.r.on_htlc(payload, ctx, htlc) == claims.incorrect_details(5000, HEIGHT)
    entry = stored(env.rpc, "asyncrecv")[htlc.payment_hash]
    assert entry["state"] == "refused" and "preimage" not in entry
    assert entry["why"] == "amount below what the invoice_request asks"
    assert ("info", f"async payment {htlc.payment_hash} refused: amount below what the "
            "invoice_request asks") in env.logs


def test_payment_for_a_forgotten_offer_is_refused(env):
    oid = env.r.create_offer(SERVER, "tips", 5000)["offer_id"]
    htlc, _ = static_payment(env, oid)
    payload, ctx = env.r.context_of(htlc)
    env.r.forget(oid)
    assert env.r.on_htlc(payload, ctx, htlc)["result"] == "fail"
    assert stored(env.rpc, "asyncrecv")[htlc.payment_hash]["why"] == "offer forgotten"


def test_payment_on_an_expired_path_is_refused(env):
    oid = env.r.create_offer(SERVER, "tips", 5000)["offer_id"]
    htlc, _ = static_payment(env, oid)
    payload, ctx = env.r.context_of(htlc)
    env.clock.t = ctx["expires_at"]
    assert env.r.on_htlc(payload, ctx, htlc)["result"] == "fail"
    assert stored(env.rpc, "asyncrecv")[htlc.payment_hash]["why"] == "payment path expired"


def invoice_payment(env, oid, amount, paid=None):
    """(htlc, preimage kept, payload, ctx) for a normal invoice the recipient issued."""
    forward(env, oid, invreq(bytes.fromhex(env.r.offers[oid]["offer"]), amount))
    raw = env.messenger.sent[-1][1][onionmsg.INVOICE]
    invoice = messages.parse_invoice(raw)
    h = invoice.to_json()["invoice_payment_hash"]
    htlc = htlc_on(invoice.invoice_paths[0], h, amount if paid is None else paid)
    payload, ctx = env.r.context_of(htlc)
    return htlc, env.r.issued[h]["preimage"], payload, ctx


def test_invoice_payment_is_claimed_with_the_preimage_kept(env):
    oid = env.r.create_offer(SERVER, "tips", None)["offer_id"]
    htlc, preimage, payload, ctx = invoice_payment(env, oid, 7000)
    assert ctx["kind"] == "invoice" and ctx["payment_hash"] == htlc.payment_hash
    assert env.r.on_htlc(payload, ctx, htlc) == {"result": "resolve", "payment_key": preimage}
    assert stored(env.rpc, "asyncrecv")[htlc.payment_hash]["kind"] == "invoice"


def test_invoice_payment_below_the_invoice_amount_is_refused(env):
    oid = env.r.create_offer(SERVER, "tips", None)["offer_id"]
    htlc, _, payload, ctx = invoice_payment(env, oid, 7000, paid=6999)
    assert env.r.on_htlc(payload, ctx, htlc)["result"] == "fail"
    assert stored(env.rpc, "asyncrecv")[htlc.payment_hash]["why"] == "amount below the invoice's"


def test_invoice_path_with_a_hash_we_did_not_issue_is_refused(env):
    oid = env.r.create_offer(SERVER, "tips", None)["offer_id"]
    htlc, _, payload, ctx = invoice_payment(env, oid, 7000)
    env.r.issued.clear()
    assert env.r.on_htlc(payload, ctx, htlc)["result"] == "fail"
    assert stored(env.rpc, "asyncrecv")[htlc.payment_hash]["why"] == \
        "no invoice of ours with this payment hash"


def test_htlcs_not_on_our_paths_are_not_ours(env):
    oid = env.r.create_offer(SERVER, "tips", 5000)["offer_id"]
    htlc, _ = static_payment(env, oid)
    payload = bytes.fromhex(htlc.payload)

    def with_payload(raw):
        return htlc_event({"payload": raw.hex()}, SERVER, extra_tlvs=PATH_KEY_TLV)
    assert env.r.context_of(with_payload(payload + b"\x00")) is None     # framing wrong
    assert env.r.context_of(with_payload(b"\x03\x20\x01\x00")) is None   # unknown even type
    plain = bytes.fromhex("02021388")                                       # amount only
    assert env.r.context_of(with_payload(bigsize(len(plain)) + plain)) is None  # no data
    stranger = asyncmsg.final_payload(5000, 1, 5000, b"not our data")
    assert env.r.context_of(with_payload(bigsize(len(stranger)) + stranger)) is None
    assert env.r.context_of(with_payload(payload)) is not None


def test_paths_recorded_without_via_accept_any_peer(env):
    oid = env.r.create_offer(SERVER, "tips", 5000)["offer_id"]
    htlc, _ = static_payment(env, oid)
    for ctx in env.r.paypaths.values():
        ctx.pop("via")
    assert env.r.context_of(htlc_event({"payload": htlc.payload}, OTHER,
                                       extra_tlvs=PATH_KEY_TLV)) is not None


def test_path_key_comes_in_the_payload_or_update_add_htlc_else_not_ours():
    assert recipient.came_blinded({"current_path_key": b"\x02" * 33}, "")
    assert recipient.came_blinded({}, PATH_KEY_TLV)
    assert not recipient.came_blinded({}, "0001aa")         # TLV 0 but not a point
    assert recipient.came_blinded({}, "zz") is False        # unreadable
    assert recipient.came_blinded({}, "ff") is False


def test_htlcs_from_another_peer_or_to_forward_are_not_ours(env):
    oid = env.r.create_offer(SERVER, "tips", 5000)["offer_id"]
    htlc, _ = static_payment(env, oid)
    assert env.r.context_of(htlc_event({"payload": htlc.payload}, OTHER,
                                       extra_tlvs=PATH_KEY_TLV)) is None
    assert env.r.context_of(htlc_event({"payload": htlc.payload, "short_channel_id": "1x2x3"},
                                       SERVER, extra_tlvs=PATH_KEY_TLV)) is None
    assert env.r.context_of(htlc_event({"payload": htlc.payload}, SERVER)) is None  # no key


def test_a_payment_our_payer_built_from_our_static_invoice_is_claimed(env, monkeypatch):
    """Round trip through both handlers: AsyncPayer's onion for this static invoice,
    as the recipient's node receives it, is claimed with the payer's preimage."""
    monkeypatch.setattr(P, "now_s", env.clock)
    view = env.r.create_offer(SERVER, "tips", 5000)
    record = env.r.offers[view["offer_id"]]
    rpc = MemoryRpc()
    node = FakeNode(height=HEIGHT)
    payer = P.AsyncPayer(node, Store(lambda: rpc), FakeMessenger("payer"),
                         ask=lambda *a: {}, log=lambda msg, level: None)
    offer = bytes.fromhex(record["offer"])
    req = invreq(offer)
    payer._pay_static(view["offer"], offer, bytes.fromhex(record["static_invoice"]), req, 5000,
                      {env.r.issuer_id.hex()}, None)
    (onion,) = node.onions
    final = onion["hops"][-1][1]
    htlc = htlc_event({"payload": (bigsize(len(final)) + final).hex()}, SERVER,
                      payment_hash=onion["payment_hash"].hex(), amount_msat=5000,
                      cltv_expiry=HEIGHT + P.HELD_FINAL_CLTV,
                      cltv_expiry_relative=P.HELD_FINAL_CLTV, extra_tlvs=PATH_KEY_TLV)
    payload, ctx = env.r.context_of(htlc)
    answer = env.r.on_htlc(payload, ctx, htlc)
    preimage = stored(rpc, "asyncpayment")[onion["payment_hash"].hex()]["preimage"]
    assert answer == {"result": "resolve", "payment_key": preimage}


# ---- bugs found --------------------------------------------------------------------------------

def test_offers_created_at_once_at_one_server_get_different_slots(env):
    inner = []

    def second_call():
        if not inner:
            inner.append(None)
            inner[0] = env.r.create_offer(SERVER, "second", None)
    env.messenger.on_send = second_call
    first = env.r.create_offer(SERVER, "first", None)
    assert sorted([first["slot"], inner[0]["slot"]]) == [0, 1]


def test_malformed_offer_paths_answer_is_a_recipient_error(env):
    env.messenger.respond = lambda path, contents: [({onionmsg.OFFER_PATHS: b"\x01"},
                                                      server_path())]
    with pytest.raises(R.RecipientError, match=SERVER):
        env.r.create_offer(SERVER, "tips", None)


def test_refresh_skips_an_offer_forgotten_meanwhile_and_serves_the_rest(env):
    env.server.persist = False
    a, b, c = (env.r.create_offer(SERVER, name, None)["offer_id"] for name in "abc")
    env.server.persist = True
    env.messenger.on_send = lambda: b in env.r.offers and env.r.forget(b)
    assert env.r.refresh_due() == [a, c]

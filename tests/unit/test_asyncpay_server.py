"""The static invoice server's core and the path contexts, without a node."""
import hashlib
import os

import pytest

from bolt12ext import asyncmsg, blinding, build, onionmsg, server
from bolt12ext.blinding import PaymentHop, PaymentRelay
from bolt12ext.contexts import PathBook, PathContext
from bolt12ext.onionmsg import Received
from bolt12ext.sphinx import pubkey

NOW = 1_800_000_000
NODE = hashlib.sha256(b"server").digest()
VIRTUAL = hashlib.sha256(b"virtual").digest()
ISSUER = hashlib.sha256(b"issuer").digest()


def reply():
    return blinding.message_path(os.urandom(32), [pubkey(NODE)], os.urandom(32))


@pytest.fixture
def core():
    return server.ServerCore(PathBook(os.urandom, pubkey(NODE), VIRTUAL), server.Limits(
        max_slots_per_recipient=2, max_recipients=1))


def ask_paths(core, recipient="r1", slot=0, now=NOW):
    _, _, ctx = core.recipient_paths(recipient, now)
    msg = asyncmsg.OfferPathsRequest(slot)
    return core.handle(ctx, Received(None, {msg.TYPE: msg.encode()}, reply()), now, {})


def static_invoice(offer_paths, created_at=NOW, relative_expiry=3600):
    offer = build.offer(offer_issuer_id=pubkey(ISSUER), offer_paths=offer_paths)
    hop = PaymentHop(pubkey(NODE), "1x1x1", PaymentRelay(40, 100, 1000))
    path, payinfo = blinding.payment_path(os.urandom(32), [hop], pubkey(ISSUER), b"p" * 32,
                                          max_cltv_expiry=10**6, htlc_maximum_msat=10**9)
    return offer, build.static_invoice(offer, ISSUER, invoice_paths=[path],
                                       invoice_blindedpay=[payinfo], invoice_created_at=created_at,
                                       invoice_relative_expiry=relative_expiry)


def stored_after_serve(core):
    out = ask_paths(core)
    (send,) = out.sends
    offer_paths = asyncmsg.OfferPaths.decode(send.contents[75542])
    serve_ctx = next(c for c in out.new_paths.values() if c.purpose == server.SERVE)
    offer_ctx = next(c for c in out.new_paths.values() if c.purpose == server.OFFER)
    offer, inv = static_invoice(offer_paths.paths)
    serve = asyncmsg.ServeStaticInvoice(inv, reply())
    result = core.handle(serve_ctx, Received(None, {serve.TYPE: serve.encode()}, reply()),
                         NOW, {})
    return offer, inv, offer_ctx, serve_ctx, result


def test_offer_paths_answer(core):
    out = ask_paths(core)
    assert out.drop is None and len(out.new_paths) == 2
    (send,) = out.sends
    paths = asyncmsg.OfferPaths.decode(send.contents[onionmsg.OFFER_PATHS])
    assert paths.paths_absolute_expiry == NOW + server.OFFER_PATHS_TTL_S
    assert send.reply_path is not None  # where serve_static_invoice goes
    purposes = sorted(c.purpose for c in out.new_paths.values())
    assert purposes == [server.OFFER, server.SERVE]
    assert all(c.peer == "r1" and c.data["slot"] == 0 for c in out.new_paths.values())


def test_offer_paths_request_rules(core):
    assert ask_paths(core, slot=2).drop == "slot 2 beyond the limit"
    _, _, ctx = core.recipient_paths("r1", NOW)
    msg = asyncmsg.OfferPathsRequest(0)
    assert "reply path" in core.handle(ctx, Received(None, {msg.TYPE: msg.encode()}), NOW,
                                       {}).drop
    assert "malformed" in core.handle(ctx, Received(None, {msg.TYPE: b"\x01"}, reply()), NOW,
                                      {}).drop
    assert "not expected" in core.handle(ctx, Received(None, {64: b"x"}, reply()), NOW, {}).drop
    # the recipient limit counts recipients with stored invoices
    full = {"r9-0": {"recipient": "r9"}}
    _, _, ctx = core.recipient_paths("r1", NOW)
    assert core.handle(ctx, Received(None, {msg.TYPE: msg.encode()}, reply()), NOW,
                       full).drop == "too many recipients"
    _, _, ctx = core.recipient_paths("r9", NOW)
    assert core.handle(ctx, Received(None, {msg.TYPE: msg.encode()}, reply()), NOW,
                       full).drop is None


def test_serve_stores_and_confirms(core):
    offer, inv, _, _, out = stored_after_serve(core)
    assert out.drop is None
    key, record = out.invoice
    assert key == "r1-0" and record["invoice"] == inv.hex()
    assert record["expires_at"] == NOW + 3600
    (send,) = out.sends
    assert asyncmsg.decode(*next(iter(send.contents.items()))) == \
        asyncmsg.StaticInvoicePersisted()


def test_serve_rules(core):
    out = ask_paths(core)
    serve_ctx = next(c for c in out.new_paths.values() if c.purpose == server.SERVE)
    offer_paths = asyncmsg.OfferPaths.decode(out.sends[0].contents[75542]).paths

    def serve(inv):
        msg = asyncmsg.ServeStaticInvoice(inv, reply())
        return core.handle(serve_ctx, Received(None, {msg.TYPE: msg.encode()}, reply()), NOW,
                           {}).drop

    _, expired = static_invoice(offer_paths, created_at=NOW - 7200, relative_expiry=3600)
    assert serve(expired) == "static invoice already expired"
    _, foreign = static_invoice([reply()])
    assert serve(foreign) == "static invoice offer paths are not the ones we gave"
    _, good = static_invoice(offer_paths)
    bad_sig = good[:-1] + bytes([good[-1] ^ 1])
    assert serve(bad_sig) == "static invoice signature does not verify"
    assert serve(good[:-10]).startswith("malformed")
    assert serve(b"\x00" * 6000) == "static invoice larger than allowed"


def test_invoice_request_answered_and_forwarded(core):
    offer, inv, offer_ctx, _, out = stored_after_serve(core)
    invoices = dict([out.invoice])
    invreq = build.invoice_request(offer, os.urandom(32), invreq_metadata=b"m",
                                   invreq_amount_msat=10)
    payer_reply = reply()
    res = core.handle(offer_ctx, Received(None, {64: invreq}, payer_reply), NOW, invoices)
    assert res.drop is None
    answer, forward = res.sends
    assert answer.path == payer_reply and answer.contents == {70: inv}
    assert forward.contents == {64: invreq} and forward.reply_path == payer_reply
    assert forward.path.serialize().hex() == invoices["r1-0"]["forward_path"]

    assert core.handle(offer_ctx, Received(None, {64: invreq}), NOW, invoices).drop == \
        "invoice_request without reply path"
    assert core.handle(offer_ctx, Received(None, {64: invreq}, reply()), NOW, {}).drop == \
        "no static invoice stored for this offer"
    assert core.handle(offer_ctx, Received(None, {64: invreq}, reply()), NOW + 3600,
                       invoices).drop == "the stored static invoice has expired"
    other = build.offer(offer_issuer_id=pubkey(ISSUER), offer_description="other")
    wrong = build.invoice_request(other, os.urandom(32), invreq_metadata=b"m",
                                  invreq_amount_msat=10)
    assert core.handle(offer_ctx, Received(None, {64: wrong}, reply()), NOW, invoices).drop == \
        "invoice_request for another offer"
    forged = invreq[:-1] + bytes([invreq[-1] ^ 1])
    assert core.handle(offer_ctx, Received(None, {64: forged}, reply()), NOW, invoices).drop \
        == "invoice_request signature does not verify"


def test_path_book_checks():
    book = PathBook(lambda n: b"\x05" * n, pubkey(NODE), VIRTUAL)
    path, path_id, ctx = book.make("p", NOW, 60, peer="x", k=1)
    assert path.first_node_id == pubkey(NODE) and len(path.hops) == 2
    assert ctx == PathContext("p", NOW + 60, "x", {"k": 1})
    assert PathContext.from_record(ctx.to_record()) == ctx
    contexts = {path_id: ctx}
    pid = bytes.fromhex(path_id)
    assert PathBook.check(contexts, pid, NOW, ["p"]) == (ctx, None)
    assert PathBook.check(contexts, pid, NOW + 60, ["p"])[1] == "expired path"
    assert PathBook.check(contexts, pid, NOW, ["q"])[1] == "message not expected on a p path"
    assert PathBook.check(contexts, b"\x01" * 32, NOW, ["p"])[1] == "unknown path"
    assert PathBook.check(contexts, None, NOW, ["p"])[1] == "no 32-byte path_id"
    # the path really ends at the virtual key with that path_id
    msg = onionmsg.build(os.urandom(32), path, {72: b"\x00"})
    hop = onionmsg.peel(NODE, msg)
    assert hop.next_node_id == pubkey(VIRTUAL)
    got = onionmsg.peel(VIRTUAL, hop.message)
    assert got.path_id == pid


def test_server_paths_a_peer_asks_for_are_bounded_and_expired_ones_pruned():
    """Issue 11 item 16: clnlsp.asyncpay.get_server_paths cannot grow our store."""
    from fakes import MemoryRpc

    import lsps.asyncpay.messenger as asyncpay
    from bolt12ext.contexts import PathContext
    from lsps.node.store import Store
    rpc = MemoryRpc()
    messenger = asyncpay.OnionMessenger.__new__(asyncpay.OnionMessenger)
    messenger.store = Store(lambda: rpc)
    messenger._lock = __import__("threading").Lock()
    messenger._contexts, messenger._waiting, messenger._remembered = {}, {}, 0
    for i in range(20):
        messenger.remember(f"{i:064x}", PathContext("request", 2**40, "peer"),
                           keep_per_peer=asyncpay.SERVER_PATHS_PER_RECIPIENT)
    messenger.remember("ff" * 32, PathContext("request", 2**40, "other"),
                       keep_per_peer=asyncpay.SERVER_PATHS_PER_RECIPIENT)
    mine = [k for k, c in messenger._contexts.items() if c.peer == "peer"]
    assert mine == [f"{i:064x}" for i in range(16, 20)]   # the newest four
    assert "ff" * 32 in messenger._contexts
    assert len(rpc.data) == 5
    for i in range(asyncpay.PRUNE_EVERY):
        messenger.remember(f"e{i:063x}", PathContext("reply", 1, None))
    # the sweep at the 64th path dropped the expired ones made before it
    expired = [k for k, c in messenger._contexts.items() if c.expires_at == 1]
    assert len(expired) == 21 + asyncpay.PRUNE_EVERY - (asyncpay.PRUNE_EVERY - 1)
    assert len(rpc.data) == 5 + len(expired)


def _bare_messenger():
    import threading
    from collections import Counter

    import lsps.asyncpay.messenger as asyncpay
    m = asyncpay.OnionMessenger.__new__(asyncpay.OnionMessenger)
    m._lock = threading.Lock()
    m._local = threading.local()
    m._queued = m._connecting = 0
    m.dropped = Counter()
    m.log = lambda msg, level: None
    return m


def test_the_worker_queue_is_bounded():
    from fakes import Workers

    import lsps.asyncpay.messenger as asyncpay
    m = _bare_messenger()
    m._worker = Workers()
    for _ in range(asyncpay.MAX_QUEUED + 5):
        m._submit(lambda: None)
    assert len(m._worker.jobs) == asyncpay.MAX_QUEUED and m.dropped["queue full"] == 5
    fn, args = m._worker.jobs[0]
    fn(*args)
    m._submit(lambda: None)
    assert len(m._worker.jobs) == asyncpay.MAX_QUEUED + 1


def test_a_reply_to_an_unreachable_node_never_blocks_the_worker():
    """Issue 11 item 16: the worker hands sends that must connect to another pool."""
    import os

    from fakes import Workers

    import lsps.asyncpay.messenger as asyncpay
    from bolt12ext import blinding
    from bolt12ext.sphinx import pubkey

    class Node:
        def connected_peers(self):
            return []

        def connect(self, peer):
            raise AssertionError("the worker must not connect")

    m = _bare_messenger()
    m.node, m.node_id, m._connector = Node(), pubkey(bytes([1] * 32)), Workers()
    far = pubkey(bytes([2] * 32))
    path = blinding.message_path(os.urandom(32), [far, pubkey(bytes([3] * 32))], os.urandom(32))
    m._local.on_worker = True
    assert m.send(path, {64: b"x"}) is True and len(m._connector.jobs) == 1
    for _ in range(asyncpay.MAX_CONNECTING):
        m.send(path, {64: b"x"})
    assert len(m._connector.jobs) == asyncpay.MAX_CONNECTING
    assert m.dropped["too many sends waiting for a connection"] == 1

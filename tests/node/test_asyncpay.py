"""Async payments on real nodes: the onion-message layer and the static invoice server.

The server (l1) runs clnlsp with --lsp-asyncpay-server. The recipient and the payer are
played by this test with the bolt12ext library, from l2: their messages are injected at
l2, and answers to them travel over reply paths that end at keys behind l2, where the
om_sink plugin catches them (lightningd's onionmessage_forward_fail)."""
import os
import time

import pytest
from pyln.client import RpcError
from pyln.testing.utils import wait_for

from bolt12ext import asyncmsg, blinding, build, encoding, messages, onionmsg
from bolt12ext.blinding import PaymentHop, PaymentRelay
from bolt12ext.sphinx import pubkey
from bolt12ext.tlv import records

SINK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins", "om_sink.py")


class Player:
    """A recipient or payer made of library calls, sending from node `node` (with om_sink)."""

    def __init__(self, node):
        self.node = node
        self.node_id = bytes.fromhex(node.info["id"])
        self.seen = 0

    def reply_path(self):
        key = os.urandom(32)
        return key, blinding.message_path(os.urandom(32), [self.node_id, pubkey(key)],
                                          os.urandom(32))

    def send(self, path, contents, reply_path=None):
        full = onionmsg.prepend(os.urandom(32), [self.node_id], path)
        msg = onionmsg.build(os.urandom(32), full, contents, reply_path)
        self.node.rpc.injectonionmessage(path_key=msg.path_key.hex(), message=msg.packet.hex())

    def receive(self, key, timeout=30):
        """The next message that reached `key` (behind our node), peeled."""
        def arrived():
            failed = self.node.rpc.call("om-sink-list")["failed"]
            return [f for f in failed if f.get("next_node_id") == pubkey(key).hex()]
        wait_for(arrived, timeout=timeout)
        (event,) = arrived()[:1]
        got = onionmsg.peel(key, onionmsg.OnionMessage.parse(bytes.fromhex(event["outgoing"])))
        assert isinstance(got, onionmsg.Received)
        return got

    def nothing_for(self, key, seconds=3):
        time.sleep(seconds)
        failed = self.node.rpc.call("om-sink-list")["failed"]
        return not [f for f in failed if f.get("next_node_id") == pubkey(key).hex()]


def server_and_player(node_factory, plugin_path):
    l1, l2 = node_factory.line_graph(2, opts=[
        {"plugin": plugin_path, "lsp-asyncpay-server": None, "may_reconnect": True},
        {"plugin": SINK, "may_reconnect": True}], wait_for_announce=True)
    return l1, Player(l2)


def offer_paths_dance(l1, player, slot=0):
    """Recipient side: ask for offer paths, build offer + static invoice, have it stored."""
    (hexpath,) = l1.rpc.call("asyncpay-serverpaths", {"recipient_id": "alice"})["paths"]
    server_path = blinding.parse_paths(bytes.fromhex(hexpath))[0]
    key, reply = player.reply_path()
    req = asyncmsg.OfferPathsRequest(slot)
    player.send(server_path, {req.TYPE: req.encode()}, reply)
    got = player.receive(key)
    ((t, value),) = got.contents.items()
    offer_paths = asyncmsg.decode(t, value)
    assert isinstance(offer_paths, asyncmsg.OfferPaths)
    assert offer_paths.paths_absolute_expiry > time.time() + 300 * 24 * 3600
    assert got.reply_path is not None

    issuer = os.urandom(32)
    offer = build.offer(offer_issuer_id=pubkey(issuer), offer_paths=offer_paths.paths,
                        offer_description="async tips")
    hop = PaymentHop(bytes.fromhex(l1.info["id"]), "1x1x1", PaymentRelay(40, 100, 1000))
    pay_path, payinfo = blinding.payment_path(os.urandom(32), [hop], player.node_id,
                                              os.urandom(32), max_cltv_expiry=10_000_000,
                                              htlc_maximum_msat=10**9)
    inv = build.static_invoice(offer, issuer, invoice_paths=[pay_path],
                               invoice_blindedpay=[payinfo],
                               invoice_created_at=int(time.time()))
    forward_key, forward_path = player.reply_path()
    persisted_key, persisted_reply = player.reply_path()
    serve = asyncmsg.ServeStaticInvoice(inv, forward_path)
    player.send(got.reply_path, {serve.TYPE: serve.encode()}, persisted_reply)
    return offer, inv, issuer, forward_key, persisted_key, got.reply_path


def test_static_invoice_server_full_dance(node_factory, plugin_path):
    l1, player = server_and_player(node_factory, plugin_path)
    offer, inv, issuer, forward_key, persisted_key, _ = offer_paths_dance(l1, player)

    got = player.receive(persisted_key)
    ((t, value),) = got.contents.items()
    assert asyncmsg.decode(t, value) == asyncmsg.StaticInvoicePersisted()
    (stored,) = l1.rpc.call("asyncpay-invoices", {"recipient_id": "alice"})["invoices"]
    assert stored["slot"] == 0 and stored["invoice"] == inv.hex()
    assert stored["offer"] == encoding.encode("lno", offer)

    # A payer's invoice_request on the offer path: the static invoice comes back to the payer,
    # and the invoice_request goes on to the recipient with the payer's reply path.
    payer = os.urandom(32)
    invreq = build.invoice_request(offer, payer, invreq_metadata=os.urandom(16),
                                   invreq_amount_msat=21_000)
    payer_key, payer_reply = player.reply_path()
    offer_path = blinding.parse_paths(dict((t, v) for t, v, _ in records(offer))[16])[0]
    player.send(offer_path, {onionmsg.INVOICE_REQUEST: invreq}, payer_reply)
    answer = player.receive(payer_key)
    assert answer.contents == {onionmsg.STATIC_INVOICE: inv}
    assert messages.decode_static_invoice(answer.contents[70])["signature_valid"]
    forwarded = player.receive(forward_key)
    assert forwarded.contents == {onionmsg.INVOICE_REQUEST: invreq}
    assert forwarded.reply_path == payer_reply

    stats = l1.rpc.call("asyncpay-messages")
    assert stats["received"] == {"server_request": 1, "server_serve": 1, "server_offer": 1}

    # the stored invoice survives a restart, and so do the offer paths
    l1.restart()
    assert len(l1.rpc.call("asyncpay-invoices")["invoices"]) == 1
    player.node.rpc.connect(l1.info["id"], "localhost", l1.port)
    wait_for(lambda: l1.rpc.listpeers(player.node.info["id"])["peers"][0]["connected"])
    payer_key2, payer_reply2 = player.reply_path()
    player.send(offer_path, {onionmsg.INVOICE_REQUEST: invreq}, payer_reply2)
    assert player.receive(payer_key2).contents == {onionmsg.STATIC_INVOICE: inv}

    assert l1.rpc.call("asyncpay-forget", {"recipient_id": "alice"}) == {"forgotten": 1}
    payer_key3, payer_reply3 = player.reply_path()
    player.send(offer_path, {onionmsg.INVOICE_REQUEST: invreq}, payer_reply3)
    assert player.nothing_for(payer_key3)
    assert "no static invoice stored for this offer" in l1.rpc.call("asyncpay-messages")[
        "dropped"]


def test_server_refuses_bad_messages(node_factory, plugin_path):
    l1, player = server_and_player(node_factory, plugin_path)
    (hexpath,) = l1.rpc.call("asyncpay-serverpaths", {"recipient_id": "bob"})["paths"]
    server_path = blinding.parse_paths(bytes.fromhex(hexpath))[0]

    # a slot beyond the limit, and an unknown path id: no answer, counted
    key, reply = player.reply_path()
    req = asyncmsg.OfferPathsRequest(10)
    player.send(server_path, {req.TYPE: req.encode()}, reply)
    unknown = blinding.message_path(os.urandom(32), [bytes.fromhex(l1.info["id"]),
                                                     bytes.fromhex(
                                                         l1.rpc.call("asyncpay-messages")[
                                                             "virtual_node_id"])],
                                    os.urandom(32))
    player.send(unknown, {req.TYPE: asyncmsg.OfferPathsRequest(0).encode()}, reply)
    assert player.nothing_for(key)
    dropped = l1.rpc.call("asyncpay-messages")["dropped"]
    assert dropped.get("slot 10 beyond the limit") == 1 and dropped.get("unknown path") == 1

    # a tampered static invoice is not stored
    offer, inv, issuer, _, persisted_key, serve_reply = offer_paths_dance(l1, player)
    assert player.receive(persisted_key)  # the good one is stored
    tampered = bytearray(inv)
    tampered[len(tampered) // 2] ^= 1
    bad_key, bad_reply = player.reply_path()
    _, forward_path = player.reply_path()
    serve = asyncmsg.ServeStaticInvoice(bytes(tampered), forward_path)
    player.send(serve_reply, {serve.TYPE: serve.encode()}, bad_reply)
    assert player.nothing_for(bad_key)
    (stored,) = l1.rpc.call("asyncpay-invoices")["invoices"]
    assert stored["invoice"] == inv.hex()


def test_server_commands_without_the_server(node_factory, plugin_path):
    node = node_factory.get_node(options={"plugin": plugin_path})
    with pytest.raises(RpcError, match="static invoice server is off") as e:
        node.rpc.call("asyncpay-serverpaths")
    assert e.value.error["code"] == 1600
    assert node.rpc.call("asyncpay-messages")["paths"] == 0
    for params in ({"recipient_id": ""}, {"recipient_id": "x" * 67}):
        with pytest.raises(RpcError) as e:
            node.rpc.call("asyncpay-serverpaths", params)
        assert e.value.error["code"] == -32602
    with pytest.raises(RpcError) as e:
        node.rpc.call("asyncpay-forget", {"recipient_id": "a", "slot": "one"})
    assert e.value.error["code"] == -32602


def test_mailbox_keeps_messages_for_an_offline_peer(node_factory, plugin_path):
    """l3 sends to a path through l1 to l2 while l2 is down: l1 keeps the message (one per
    peer here), survives a restart, and hands it over when l2 is back."""
    l1, l2 = node_factory.line_graph(2, opts=[
        {"plugin": plugin_path, "lsp-asyncpay-server": None,
         "lsp-asyncpay-mailbox-per-peer": 1, "may_reconnect": True},
        {"plugin": SINK, "may_reconnect": True}], wait_for_announce=True)
    l3 = node_factory.get_node()
    l3.connect(l1)
    recipient = Player(l2)
    key = os.urandom(32)
    path_id = os.urandom(32)
    path = blinding.message_path(os.urandom(32), [bytes.fromhex(l1.info["id"]),
                                                  recipient.node_id, pubkey(key)], path_id)
    l2.stop()
    sender = Player(l3)
    held = asyncmsg.HeldHtlcAvailable()
    sender.send(path, {held.TYPE: held.encode()})
    wait_for(lambda: l1.rpc.call("asyncpay-messages")["mailbox"].get("stored") == 1)
    sender.send(path, {held.TYPE: held.encode()})  # beyond the per-peer bound
    wait_for(lambda: l1.rpc.call("asyncpay-messages")["mailbox"].get(
        "refused: mailbox full for this peer") == 1)

    l1.restart()
    assert l1.rpc.call("asyncpay-messages")["mailbox"]["waiting"] == 1
    l2.start()
    try:   # lightningd reconnects its channel peer by itself too: the two may race
        l2.rpc.connect(l1.info["id"], "localhost", l1.port)
    except RpcError:
        pass
    wait_for(lambda: any(p["connected"] for p in l2.rpc.listpeers(l1.info["id"])["peers"]))
    got = recipient.receive(key)
    assert got.path_id == path_id
    ((t, value),) = got.contents.items()
    assert asyncmsg.decode(t, value) == held
    wait_for(lambda: l1.rpc.call("asyncpay-messages")["mailbox"]["waiting"] == 0)
    assert l1.rpc.call("asyncpay-messages")["mailbox"]["delivered"] == 1


def test_bad_asyncpay_options_disable_the_plugin(node_factory, plugin_path):
    node = node_factory.get_node(options={"plugin": plugin_path, "lsp-asyncpay-server": None,
                                          "lsp-asyncpay-mailbox-ttl": 0})
    assert node.daemon.is_in_log(
        r"disabled itself at init: lsp-asyncpay-mailbox-\* must be at least 1")
    with pytest.raises(RpcError):
        node.rpc.call("asyncpay-messages")

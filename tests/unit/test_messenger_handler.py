"""OnionMessenger at run time: messages reaching the virtual node (or the real node,
through onion_message_recv_secret) are checked against persisted path contexts and
handed to their role, or dropped and counted; sends go along blinded paths, through
the graph or a new connection, never blocking the worker."""
import json
import os
import time

from fakes import MemoryRpc
from fakes_onion import (
    FAR,
    FAR_SECRET,
    NOW,
    PEER,
    PEER_SECRET,
    OnionNode,
    arrive,
    forward_fail,
    make_messenger,
    open_message,
    reply_path_to,
    rpc_error,
    run,
)

import lsps.asyncpay.messenger as messenger_mod
from bolt12ext import blinding, onionmsg
from bolt12ext.decoded import path_dict
from lsps.asyncpay.messenger import PATHS

HELLO = {onionmsg.HELD_HTLC_AVAILABLE: b""}


def with_handler(monkeypatch, purpose="test", node=None, rpc=None, clock=None):
    """A started messenger and the messages its `purpose` handler got: [(ctx, Received)]."""
    m = make_messenger(monkeypatch, node=node, rpc=rpc, clock=clock)
    m.start()
    got = []
    m.register([purpose], lambda ctx, received: got.append((ctx, received)))
    return m, got


def test_now_s_is_the_wall_clock_in_seconds():
    assert abs(messenger_mod.now_s() - time.time()) < 2
    assert isinstance(messenger_mod.now_s(), int)


# ---- receiving -----------------------------------------------------------------------------

def test_message_on_a_known_path_reaches_its_handler_on_the_worker(monkeypatch):
    m, got = with_handler(monkeypatch)
    path, path_id, _ = m.new_path("test", 60, peer="alice", k=1)
    reply = reply_path_to()
    m.on_forward_fail(forward_fail(m, path, HELLO, reply))
    assert got == []                              # lightningd's thread only queues it
    run(m)
    ((ctx, received),) = got
    assert ctx.peer == "alice" and ctx.data == {"k": 1}
    assert received.path_id.hex() == path_id and received.contents == HELLO
    assert received.reply_path.serialize() == reply.serialize()
    assert m.stats()["received"] == {"test": 1}


def test_new_paths_are_persisted_before_they_are_handed_out(monkeypatch):
    m, _ = with_handler(monkeypatch)
    _, path_id, ctx = m.new_path("test", 60, peer="alice")
    assert m.store.get(PATHS, path_id) == ctx.to_record()
    assert ctx.expires_at == NOW + 60


def test_messages_on_unknown_expired_or_foreign_paths_are_dropped(monkeypatch):
    m, got = with_handler(monkeypatch)
    unknown, _, _ = m.book.make("test", NOW, 60)            # never remembered
    arrive(m, unknown, HELLO)
    short, _, _ = m.new_path("test", 10)
    other, _, _ = m.new_path("nobody handles this", 60)
    m.clock.now += 10
    arrive(m, short, HELLO)
    arrive(m, other, HELLO)
    assert got == []
    assert m.stats()["dropped"] == {"unknown path": 1, "expired path": 1,
                                    "message not expected on a nobody handles this path": 1}


def test_unreadable_message_is_dropped(monkeypatch):
    m, got = with_handler(monkeypatch)
    m.on_forward_fail({"next_node_id": m.virtual_id.hex(), "outgoing": "00" * 40})
    m.on_forward_fail({"next_node_id": m.virtual_id.hex(), "outgoing": "zz"})
    run(m)
    assert got == [] and sum(m.dropped.values()) == 2
    assert all(why.startswith("unreadable") for why in m.dropped)


def test_the_virtual_node_does_not_forward(monkeypatch):
    m, got = with_handler(monkeypatch)
    path = blinding.message_path(os.urandom(32), [m.node_id, m.virtual_id, FAR], os.urandom(32))
    arrive(m, path, HELLO)
    assert got == [] and m.dropped == {"the virtual node does not forward": 1}


def test_forward_failure_to_another_node_without_a_mailbox_is_ignored(monkeypatch):
    m, got = with_handler(monkeypatch)
    path, _, _ = m.new_path("test", 60)
    event = dict(forward_fail(m, path, HELLO), next_node_id=FAR.hex(), incoming="aa")
    m.on_forward_fail(event)
    assert m._worker.jobs == [] and got == []


def test_a_handler_that_fails_is_logged_and_the_next_message_still_handled(monkeypatch):
    m, got = with_handler(monkeypatch)

    def boom(ctx, received):
        raise RuntimeError("bad")
    m.register(["boom"], boom)
    bad, _, _ = m.new_path("boom", 60)
    good, _, _ = m.new_path("test", 60)
    arrive(m, bad, HELLO)
    arrive(m, good, HELLO)
    assert len(got) == 1
    assert any(level == "warn" and "boom path not handled" in text and "bad" in text
               for level, text in m.logs)


def test_start_loads_live_contexts_deletes_expired_and_keeps_unreadable(monkeypatch):
    rpc = MemoryRpc()
    m, _ = with_handler(monkeypatch, rpc=rpc)
    live, live_id, _ = m.new_path("test", 60)
    _, dead_id, _ = m.new_path("test", 5)
    rpc.data[("clnlsp", PATHS.name, "broken")] = json.dumps({"v": 1, "peer": "x"})
    m.clock.now += 5
    m2, got = with_handler(monkeypatch, rpc=rpc, clock=m.clock)
    assert set(m2.store.list(PATHS)) == {live_id, "broken"}
    assert m2.stats()["paths"] == 1
    arrive(m2, live, HELLO)
    assert len(got) == 1


def test_reply_paths_deliver_to_their_queue_and_are_not_persisted(monkeypatch):
    m, _ = with_handler(monkeypatch)
    path, path_id, waiting = m.reply_path(30)
    assert m.store.list(PATHS) == {}
    arrive(m, path, {onionmsg.INVOICE: b"inv"})
    received = waiting.get_nowait()
    assert received.contents == {onionmsg.INVOICE: b"inv"}
    m.forget_reply(path_id)
    arrive(m, path, {onionmsg.INVOICE: b"late"})
    assert waiting.empty() and m.dropped == {"unknown path": 1}


def test_stats_name_the_virtual_node(monkeypatch):
    m, _ = with_handler(monkeypatch)
    m.new_path("test", 60)
    stats = m.stats()
    assert stats == {"virtual_node_id": m.virtual_id.hex(), "paths": 1, "received": {},
                     "dropped": {}}
    assert m.virtual_id != m.node_id


# ---- onion_message_recv_secret -------------------------------------------------------------

def test_cln_message_on_a_path_of_ours_is_handled_with_its_reply_path(monkeypatch):
    m, got = with_handler(monkeypatch)
    _, path_id, _ = m.new_path("test", 60, peer="bob")
    reply = reply_path_to()
    d = path_dict(reply)
    message = {"pathsecret": path_id, "invoice_request": "0102",
               "unknown_fields": [{"number": 75540, "value": "00"}],
               "reply_blindedpath": {"first_node_id": d["first_node_id"],
                                     "first_path_key": d["first_path_key"], "hops": d["path"]}}
    assert m.on_cln_message(message) is True
    run(m)
    ((ctx, received),) = got
    assert ctx.peer == "bob" and received.path_id.hex() == path_id
    assert received.contents == {onionmsg.INVOICE_REQUEST: b"\x01\x02", 75540: b"\x00"}
    assert received.reply_path.serialize() == reply.serialize()


def test_cln_message_on_someone_elses_path_is_not_ours(monkeypatch):
    m, got = with_handler(monkeypatch)
    assert m.on_cln_message({"pathsecret": "11" * 32, "invoice": "00"}) is False
    assert m.on_cln_message({}) is False
    run(m)
    assert got == [] and m.dropped == {}


# ---- sending -------------------------------------------------------------------------------

def test_send_to_a_connected_peer_prepends_our_node(monkeypatch):
    m = make_messenger(monkeypatch)
    path_id = os.urandom(32)
    reply = reply_path_to(FAR_SECRET)
    assert m.send(reply_path_to(PEER_SECRET, path_id), HELLO, reply) is True
    (injected,) = m.node.injected
    got = open_message(*injected, PEER_SECRET)
    assert got.path_id == path_id and got.contents == HELLO
    assert got.reply_path.serialize() == reply.serialize()


def test_send_on_a_path_we_introduce_goes_straight_in(monkeypatch):
    m = make_messenger(monkeypatch)
    path = blinding.message_path(os.urandom(32), [m.node_id, PEER], b"\x07" * 32)
    assert m.send(path, HELLO) is True
    assert m.node.injected[0][0] == path.first_path_key
    assert open_message(*m.node.injected[0], PEER_SECRET).path_id == b"\x07" * 32


def test_send_to_a_path_introduced_by_a_short_channel_id_is_refused(monkeypatch):
    m = make_messenger(monkeypatch)
    path = blinding.message_path(os.urandom(32), [PEER], os.urandom(32),
                                 first_scid_dir=b"\x00" + b"\x01" * 8)
    assert m.send(path, HELLO) is False and m.node.injected == []


def test_send_to_a_far_node_goes_through_the_graph(monkeypatch):
    m = make_messenger(monkeypatch)
    m.node.routes[FAR.hex()] = [{"node_id": PEER.hex()}, {"node_id": FAR.hex()}]
    path_id = os.urandom(32)
    assert m.send(reply_path_to(FAR_SECRET, path_id), HELLO) is True
    assert m.node.connects == []
    (injected,) = m.node.injected
    assert open_message(*injected, PEER_SECRET, FAR_SECRET).path_id == path_id


def test_send_without_a_route_connects_to_the_introduction_node(monkeypatch):
    m = make_messenger(monkeypatch)
    m.node.reachable.add(FAR.hex())
    path_id = os.urandom(32)
    assert m.send(reply_path_to(FAR_SECRET, path_id), HELLO) is True
    assert m.node.connects == [FAR.hex()]
    assert open_message(*m.node.injected[0], FAR_SECRET).path_id == path_id


def test_send_to_an_unreachable_node_fails_and_is_logged(monkeypatch):
    m = make_messenger(monkeypatch)
    assert m.send(reply_path_to(FAR_SECRET), HELLO) is False
    assert m.node.injected == [] and m.node.connects == [FAR.hex()]
    assert "cannot reach introduction node" in m.logs.text()


def test_send_that_lightningd_refuses_fails_and_is_logged(monkeypatch):
    m = make_messenger(monkeypatch)
    m.node.inject_error = rpc_error("too big")
    assert m.send(reply_path_to(PEER_SECRET), HELLO) is False
    assert "not sent" in m.logs.text() and "too big" in m.logs.text()


def test_a_reply_from_the_worker_that_must_connect_is_sent_on_the_connector(monkeypatch):
    node = OnionNode(connected=[PEER.hex()])
    node.reachable.add(FAR.hex())
    m, _ = with_handler(monkeypatch, node=node)
    path_id = os.urandom(32)
    results = []
    m.register(["ask"], lambda ctx, got: results.append(m.send(got.reply_path, HELLO)))
    ask, _, _ = m.new_path("ask", 60)
    m.on_forward_fail(forward_fail(m, ask, HELLO, reply_path_to(FAR_SECRET, path_id)))
    m._worker.run_all()
    assert results == [True] and node.connects == [] and node.injected == []
    assert len(m._connector.jobs) == 1 and m._connecting == 1
    m._connector.run_all()
    assert node.connects == [FAR.hex()] and m._connecting == 0
    assert open_message(*node.injected[0], FAR_SECRET).path_id == path_id


def test_a_reply_from_the_worker_to_a_connected_peer_is_sent_at_once(monkeypatch):
    m, _ = with_handler(monkeypatch)
    m.register(["ask"], lambda ctx, got: m.send(got.reply_path, HELLO))
    ask, _, _ = m.new_path("ask", 60)
    m.on_forward_fail(forward_fail(m, ask, HELLO, reply_path_to(PEER_SECRET)))
    m._worker.run_all()
    assert len(m.node.injected) == 1 and m._connector.jobs == []


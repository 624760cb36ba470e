"""PeerMailbox at run time: onion messages lightningd could not forward to an offline
channel peer are stored, bounded, and injected again once when the peer connects."""
import json

from fakes import MemoryRpc
from fakes_onion import NOW, PEER, Logs, OnionNode, channel, make_messenger, rpc_error, run

from bolt12ext.mailbox import Limits, Mailbox
from lsps.asyncpay.mailbox import PeerMailbox
from lsps.asyncpay.messenger import MAILBOX

OFFLINE = PEER.hex()
OFFLINE2 = "02" + "33" * 32
ONLINE = "03" + "11" * 32
LIMITS = Limits(per_peer=2, total=3, ttl_s=100)


def event(n, peer=OFFLINE, **changes):
    """onionmessage_forward_fail for a message to `peer` (its bytes numbered n)."""
    out = {"next_node_id": peer, "path_key": "02" + f"{n:02x}" * 32,
           "incoming": f"{n:02x}" * 40, "outgoing": "aa" * 40}
    out.update(changes)
    return out


def make_box(monkeypatch, rpc=None, limits=LIMITS):
    node = OnionNode(channels=[channel(OFFLINE, scids=("7x7x7", "alias1")), channel(OFFLINE2),
                               channel(ONLINE, connected=True, scids=("8x8x8",))])
    m = make_messenger(monkeypatch, node=node, rpc=rpc)
    box = PeerMailbox(node, m.store, Mailbox(limits), Logs())
    box.start()
    m.mailbox = box
    return m, box


def stored(m):
    return {k[2]: json.loads(v) for k, v in m.rpc.data.items() if k[1] == MAILBOX.name}


def test_message_for_an_offline_channel_peer_is_stored(monkeypatch):
    m, box = make_box(monkeypatch)
    m.on_forward_fail(event(1))
    assert stored(m) == {}                     # on the worker, not on lightningd's thread
    run(m)
    (rec,) = stored(m).values()
    assert rec == {"v": 1, "peer": OFFLINE, "path_key": event(1)["path_key"],
                   "packet": event(1)["incoming"], "stored_at": NOW}
    assert m.stats()["mailbox"] == {"waiting": 1, "capacity": 3, "stored": 1}


def test_message_named_by_short_channel_id_is_stored(monkeypatch):
    m, box = make_box(monkeypatch)
    box.keep(event(1, peer=None, next_short_channel_id_dir="alias1/0"))
    assert [r["peer"] for r in stored(m).values()] == [OFFLINE]


def test_messages_for_online_or_unknown_peers_are_not_kept(monkeypatch):
    m, box = make_box(monkeypatch)
    box.keep(event(1, peer=ONLINE))
    box.keep(event(2, peer="02" + "22" * 32))
    box.keep(event(3, peer=None, next_short_channel_id_dir="8x8x8/1"))
    assert stored(m) == {} and box.stats() == {"waiting": 0, "capacity": 3}


def test_forward_failure_without_a_packet_is_not_kept(monkeypatch):
    m, box = make_box(monkeypatch)
    m.on_forward_fail(event(1, incoming=None))
    m.on_forward_fail(event(2, outgoing=None))
    run(m)
    assert stored(m) == {}


def test_no_mailbox_keeps_nothing_and_delivers_nothing(monkeypatch):
    m = make_messenger(monkeypatch)
    m.on_forward_fail(event(1))
    m.on_connect(OFFLINE)
    assert m._worker.jobs == [] and "mailbox" not in m.stats()


def test_mailbox_limits_refuse_and_count(monkeypatch):
    m, box = make_box(monkeypatch)
    for n in range(3):
        box.keep(event(n))
    assert len(stored(m)) == 2
    assert box.stats() == {"waiting": 2, "capacity": 3, "stored": 2,
                           "refused: mailbox full for this peer": 1}


def test_mailbox_total_limit_holds_across_peers(monkeypatch):
    m, box = make_box(monkeypatch)
    for n, peer in enumerate((OFFLINE, OFFLINE, OFFLINE2, OFFLINE2)):
        box.keep(event(n, peer=peer))
    assert len(stored(m)) == 3 and box.stats()["refused: mailbox full"] == 1


def test_expired_messages_are_deleted_when_a_new_one_comes(monkeypatch):
    m, box = make_box(monkeypatch)
    box.keep(event(1))
    m.clock.now += 100
    box.keep(event(2))
    assert [r["packet"] for r in stored(m).values()] == [event(2)["incoming"]]


def test_connect_delivers_in_arrival_order_once(monkeypatch):
    m, box = make_box(monkeypatch)
    box.keep(event(1))
    m.clock.now += 1
    box.keep(event(2))
    m.on_connect(OFFLINE)
    run(m)
    assert m.node.injected == [(bytes.fromhex(event(n)["path_key"]),
                                bytes.fromhex(event(n)["incoming"])) for n in (1, 2)]
    assert stored(m) == {} and box.stats() == {"waiting": 0, "capacity": 3, "stored": 2,
                                               "delivered": 2}
    m.on_connect(OFFLINE)
    run(m)
    assert len(m.node.injected) == 2


def test_connect_of_another_peer_delivers_nothing(monkeypatch):
    m, box = make_box(monkeypatch)
    box.keep(event(1))
    box.deliver(ONLINE)
    assert m.node.injected == [] and len(stored(m)) == 1


def test_expired_messages_are_dropped_not_delivered(monkeypatch):
    m, box = make_box(monkeypatch)
    box.keep(event(1))
    m.clock.now += 100
    box.deliver(OFFLINE)
    assert m.node.injected == [] and stored(m) == {}


def test_message_that_cannot_be_injected_is_logged_and_not_kept(monkeypatch):
    m, box = make_box(monkeypatch)
    box.keep(event(1))
    m.node.inject_error = rpc_error("peer gone")
    box.deliver(OFFLINE)
    assert stored(m) == {} and "delivered" not in box.stats()
    assert "not delivered" in box.log.text() and "peer gone" in box.log.text()


def test_start_reloads_stored_messages_and_skips_incomplete_ones(monkeypatch):
    rpc = MemoryRpc()
    m, box = make_box(monkeypatch, rpc=rpc)
    box.keep(event(1))
    rpc.data[("clnlsp", MAILBOX.name, "half")] = json.dumps({"v": 1, "peer": OFFLINE})
    m2, box2 = make_box(monkeypatch, rpc=rpc)
    assert box2.stats() == {"waiting": 1, "capacity": 3}
    box2.deliver(OFFLINE)
    assert m2.node.injected == [(bytes.fromhex(event(1)["path_key"]),
                                 bytes.fromhex(event(1)["incoming"]))]


def test_messages_for_the_servers_recipients_are_kept_without_a_channel(monkeypatch):
    """An async recipient whose first channel is a JIT one has none while it is away."""
    m, box = make_box(monkeypatch)
    recipient = "02" + "44" * 32
    box.keep(event(1, peer=recipient))
    assert stored(m) == {}
    box.also_for = lambda peer_id: peer_id == recipient
    box.keep(event(2, peer=recipient))
    box.keep(event(3, peer=ONLINE))   # online: lightningd forwards it
    assert [r["peer"] for r in stored(m).values()] == [recipient]


def test_a_kept_message_wakes_its_peer(monkeypatch):
    """(lsps/app.py hands on_kept to LSPS5: lsps5.onion_message_incoming.)"""
    m, box = make_box(monkeypatch)
    woken = []
    box.on_kept = woken.append
    box.keep(event(1))
    box.keep(event(2, peer=ONLINE))   # not kept: nobody to wake
    assert woken == [OFFLINE]

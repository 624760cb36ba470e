"""Lsps0 over a node: only custom messages of type 37913 are LSPS0, a peer that talks
is connected, requests reach the service only when it is on, and client calls go out
through the node's sendcustommsg. The sender and timer run on this thread."""
import json

import pytest

import lsps.lsps0.link as link
from lsps.lsps0.client import PEER_DISCONNECTED, PEER_NOT_CONNECTED, ClientError
from lsps.lsps0.service import Limits, MethodSpec

PEER = "02" + "11" * 32
PREFIX = "9419"


class Node:
    def __init__(self, peers=()):
        self.peers, self.sent, self.logs = list(peers), [], []

    def log(self, message, level="info"):
        self.logs.append((message, level))

    def send_custommsg(self, peer_id, message):
        assert message[:2] == bytes.fromhex("9419")   # LSPS0's message type 37913
        self.sent.append((peer_id, json.loads(message[2:])))

    def connected_peers(self):
        return self.peers


class Sender:
    """FairSender on this thread: transmits at once."""

    def __init__(self, transmit, log=None):
        self.transmit = transmit

    def send(self, peer_id, payload, on_error=None):
        self.transmit(peer_id, payload)


class Timer:
    def __init__(self, log=None):
        self.scheduled = []

    def schedule(self, delay, fn):
        self.scheduled.append((delay, fn))
        return lambda: None


@pytest.fixture(autouse=True)
def on_this_thread(monkeypatch):
    monkeypatch.setattr(link, "FairSender", Sender)
    monkeypatch.setattr(link, "TimerService", Timer)


def make(service=True, peers=()):
    node = Node(peers)
    lsp = link.Lsps0(node, service=service, timeout=5.0, limits=Limits())
    if lsp.dispatcher is not None:
        lsp.dispatcher.register(MethodSpec("lsps0.list_protocols", 0,
                                           lambda call: {"protocols": [2]}))
    return lsp, node


def message(obj) -> str:
    return PREFIX + json.dumps(obj).encode().hex()


LIST = {"jsonrpc": "2.0", "id": "r1", "method": "lsps0.list_protocols", "params": {}}


def test_new_request_ids_are_128_random_bits_in_hex():
    ids = {link.new_request_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_request_to_the_service_is_answered_through_sendcustommsg():
    lsp, node = make()
    lsp.on_custommsg(PEER, message(LIST))
    assert node.sent == [(PEER, {"jsonrpc": "2.0", "id": "r1", "result": {"protocols": [2]}})]


def test_a_peer_that_sends_lsps0_is_connected():
    lsp, _ = make()
    assert not lsp.transport.is_connected(PEER)
    lsp.on_custommsg(PEER, message(LIST))
    assert lsp.transport.is_connected(PEER)


@pytest.mark.parametrize("payload", ["", "94", "9418" + "7b7d", "0001" + "7b7d", "zz",
                                     "941", None])
def test_other_custom_messages_are_not_lsps0(payload):
    lsp, node = make()
    lsp.on_custommsg(PEER, payload)
    assert node.sent == []
    assert not lsp.transport.is_connected(PEER)
    assert lsp.transport.ignored == 0


def test_without_the_service_a_request_is_ignored():
    lsp, node = make(service=False)
    assert lsp.dispatcher is None
    lsp.on_custommsg(PEER, message(LIST))
    assert node.sent == []
    assert lsp.transport.ignored == 1


def test_start_takes_the_connected_peers_from_the_node():
    lsp, _ = make(peers=[PEER])
    lsp.start()
    assert lsp.transport.is_connected(PEER)
    assert not lsp.transport.is_connected("03" + "22" * 32)


def test_connect_and_disconnect_events():
    lsp, _ = make()
    lsp.on_connect(PEER)
    assert lsp.transport.is_connected(PEER)
    lsp.on_disconnect(PEER)
    assert not lsp.transport.is_connected(PEER)


def call(lsp):
    outcomes = []
    lsp.call(PEER, "lsps0.list_protocols", {}, outcomes.append)
    return outcomes


def test_a_call_to_an_unconnected_peer_fails_at_once():
    lsp, node = make()
    [outcome] = call(lsp)
    assert isinstance(outcome, ClientError) and outcome.code == PEER_NOT_CONNECTED
    assert node.sent == []


def test_a_call_goes_out_and_its_answer_comes_back():
    lsp, node = make(service=False)
    lsp.on_connect(PEER)
    outcomes = call(lsp)
    [(peer, sent)] = node.sent
    assert peer == PEER and sent["method"] == "lsps0.list_protocols" and sent["params"] == {}
    assert lsp.timer.scheduled[0][0] == 5.0
    lsp.on_custommsg(PEER, message({"jsonrpc": "2.0", "id": sent["id"],
                                    "result": {"protocols": [1]}}))
    assert outcomes == [{"protocols": [1]}]


def test_a_disconnect_fails_the_call_waiting_on_that_peer():
    lsp, _ = make()
    lsp.on_connect(PEER)
    outcomes = call(lsp)
    lsp.on_disconnect(PEER)
    [outcome] = outcomes
    assert isinstance(outcome, ClientError) and outcome.code == PEER_DISCONNECTED


def test_the_real_sender_transmits_through_the_node(monkeypatch):
    monkeypatch.undo()                      # the real FairSender and TimerService
    node = Node()
    lsp = link.Lsps0(node, service=True, timeout=5.0, limits=Limits())
    lsp.sender._transmit(PEER, b"{}")
    assert node.sent == [(PEER, {})]
    lsp.sender.stop()
    lsp.timer.stop()

import itertools
import json

import pytest

import lsps.lsps0.client as C
import lsps.lsps0.msgs as jsonrpc
import lsps.lsps0.protocols as lsps0
from lsps.lsps0.client import Client, ClientError
from lsps.lsps0.link import new_request_id
from lsps.lsps0.service import Dispatcher
from lsps.lsps0.transport import Transport

LSP = "02" + "11" * 32
OTHER = "03" + "22" * 32


class FakeTimers:
    def __init__(self):
        self.pending = []

    def schedule(self, delay, fn):
        entry = [delay, fn, True]
        self.pending.append(entry)

        def cancel():
            entry[2] = False
        return cancel

    def fire_all(self):
        for entry in list(self.pending):
            if entry[2]:
                entry[2] = False
                entry[1]()


class Net:
    """Records what a node sends; can make a send fail."""

    def __init__(self):
        self.sent = []
        self.fail_with = None

    def send(self, peer, payload, on_error=None):
        if self.fail_with and on_error:
            on_error(self.fail_with)
            return
        self.sent.append((peer, payload))


class Node:
    def __init__(self, service=False, timeout=60.0):
        self.net = Net()
        self.timers = FakeTimers()
        ids = (f"{i:032x}" for i in itertools.count(1))
        self.client = Client(self.net.send, self.timers.schedule, lambda: next(ids),
                             is_connected=lambda p: self.transport.is_connected(p),
                             timeout=timeout)
        self.dispatcher = None
        if service:
            self.dispatcher = Dispatcher(lambda p, b: self.net.send(p, b))
            lsps0.register_service(self.dispatcher)
        self.transport = Transport(self.client, self.dispatcher)
        self.results = []

    def call(self, peer, method="lsps0.list_protocols", params=None):
        return self.client.call(peer, method, params or {}, self.results.append)


def wire(a: Node, a_id: str, b: Node, b_id: str):
    """Deliver everything each side sent to the other, until quiet."""
    while a.net.sent or b.net.sent:
        for src, dst, src_id in ((a, b, a_id), (b, a, b_id)):
            out, src.net.sent = src.net.sent, []
            for _, payload in out:
                dst.transport.on_payload(src_id, payload)


def connected(*nodes_and_peers):
    for node, peer in nodes_and_peers:
        node.transport.on_connect(peer)


def test_list_protocols_round_trip():
    client, lsp = Node(), Node(service=True)
    connected((client, LSP), (lsp, OTHER))
    client.call(LSP)
    wire(client, OTHER, lsp, LSP)
    assert client.results == [{"protocols": []}]
    assert client.client.outstanding() == 0


def test_request_ids_have_128_random_bits():
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in ids)


def test_request_shape_on_the_wire():
    node = Node()
    connected((node, LSP))
    node.call(LSP, "lsps2.get_info", {"token": "t"})
    peer, payload = node.net.sent[0]
    body = json.loads(payload)
    assert peer == LSP
    assert body == {"jsonrpc": "2.0", "id": body["id"], "method": "lsps2.get_info",
                    "params": {"token": "t"}}


def test_not_connected_fails_at_once():
    node = Node()
    node.call(LSP)
    assert node.results[0].code == C.PEER_NOT_CONNECTED
    assert node.net.sent == []


def test_send_failure_fails_promptly():
    node = Node()
    connected((node, LSP))
    node.net.fail_with = "Peer is not connected"
    node.call(LSP)
    assert node.results[0].code == C.PEER_NOT_CONNECTED
    assert node.client.outstanding() == 0


def test_timeout():
    node = Node(timeout=5)
    connected((node, LSP))
    node.call(LSP)
    assert node.timers.pending[0][0] == 5
    node.timers.fire_all()
    assert node.results[0].code == C.TIMEOUT and "5s" in node.results[0].message


def test_disconnect_fails_pending_calls_of_that_peer_only():
    node = Node()
    connected((node, LSP), (node, OTHER))
    node.call(LSP)
    node.call(OTHER)
    node.transport.on_disconnect(LSP)
    assert len(node.results) == 1 and node.results[0].code == C.PEER_DISCONNECTED
    assert node.client.outstanding() == 1


def test_late_answer_after_timeout_is_ignored():
    node = Node()
    connected((node, LSP))
    rid = node.call(LSP)
    node.timers.fire_all()
    node.transport.on_payload(LSP, jsonrpc.encode_result(rid, {"protocols": [2]}))
    assert len(node.results) == 1 and isinstance(node.results[0], ClientError)
    assert node.transport.ignored == 1


def test_unknown_id_and_wrong_peer_ignored():
    node = Node()
    connected((node, LSP), (node, OTHER))
    rid = node.call(LSP)
    node.transport.on_payload(LSP, jsonrpc.encode_result("nope", {}))
    node.transport.on_payload(OTHER, jsonrpc.encode_result(rid, {}))  # right id, wrong peer
    assert node.results == [] and node.transport.ignored == 2
    node.transport.on_payload(LSP, jsonrpc.encode_result(rid, {"protocols": [1]}))
    assert node.results == [{"protocols": [1]}]


def test_error_answer_passed_through():
    node = Node()
    connected((node, LSP))
    rid = node.call(LSP)
    node.transport.on_payload(LSP, jsonrpc.encode_error(rid, 200, "bad token", {"x": 1}))
    err = node.results[0]
    assert err.code == C.PEER_ERROR
    assert err.data == {"code": 200, "message": "bad token", "data": {"x": 1}}


def test_garbage_from_awaited_lsp_fails_calls_and_blocks_until_reconnect():
    node = Node(service=True)
    connected((node, LSP))
    node.call(LSP)
    node.transport.on_payload(LSP, b"not json")
    assert node.results[0].code == C.BAD_RESPONSE
    assert node.net.sent[-1][0] == LSP and b"method" in node.net.sent[-1][1]  # no -32700 sent
    node.call(LSP)
    assert node.results[1].code == C.BAD_RESPONSE
    node.transport.on_disconnect(LSP)
    node.transport.on_connect(LSP)
    node.call(LSP)
    assert len(node.results) == 2  # sent this time, waiting


def test_client_only_node_stays_silent():
    node = Node(service=False)
    node.transport.on_payload(OTHER, jsonrpc.encode_request(
        jsonrpc.Request("1", "lsps0.list_protocols", {})))
    node.transport.on_payload(OTHER, b"\x00garbage")
    node.transport.on_payload(OTHER, b'{"jsonrpc":"2.0","method":"x","params":{}}')
    assert node.net.sent == []


def test_service_answers_garbage_with_parse_error():
    lsp = Node(service=True)
    lsp.transport.on_payload(OTHER, b"{{{")
    assert json.loads(lsp.net.sent[-1][1])["error"]["code"] == -32700


def test_service_treats_client_notification_as_bad_format():
    lsp = Node(service=True)
    lsp.transport.on_payload(OTHER, b'{"jsonrpc":"2.0","method":"x","params":{}}')
    assert json.loads(lsp.net.sent[-1][1]) == {
        "jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}


def test_malformed_response_from_stranger_is_ignored_by_service():
    lsp = Node(service=True)
    lsp.transport.on_payload(OTHER, b'{"jsonrpc":"2.0","id":"a","result":[1]}')
    assert lsp.net.sent == [] and lsp.transport.ignored == 1


@pytest.mark.parametrize("result", [None, {}, {"protocols": "1"}, {"protocols": [True]},
                                    {"protocols": [-1]}, {"protocols": [1.5]}])
def test_list_protocols_result_validation(result):
    with pytest.raises(ClientError) as e:
        lsps0.parse_list_protocols(LSP, result)
    assert e.value.code == C.BAD_RESPONSE


def test_list_protocols_ignores_extra_keys():
    assert lsps0.parse_list_protocols(LSP, {"protocols": [7, 1, 2], "x": True}) == {
        "protocols": [1, 2, 7]}

"""LSPS0 between real lightningd nodes."""
import json
import os

import pytest
from pyln.client import RpcError
from pyln.testing.utils import wait_for

FAKE_LSP = os.path.join(os.path.dirname(__file__), "plugins", "fake_lsp.py")
LSPS_BIT = 729


def has_feature(features_hex: str, bit: int) -> bool:
    value = int(features_hex or "0", 16)
    return bool(value >> bit & 1)


def send_raw(node, peer, text):
    data = text if isinstance(text, bytes) else text.encode()
    node.rpc.sendcustommsg(peer.info["id"], "9419" + data.hex())


def answers(node, count):
    """The raw 37913 messages `node` (running fake_lsp) received, once there are `count`."""
    wait_for(lambda: len(node.rpc.call("fakelsp-received")["messages"]) >= count)
    return [json.loads(m["text"]) for m in node.rpc.call("fakelsp-received")["messages"]]


def connected_pair(node_factory, opts_first, opts_second):
    first, second = node_factory.get_nodes(2, opts=[opts_first, opts_second])
    first.connect(second)
    return first, second


@pytest.fixture
def lsp_and_client(node_factory, plugin_path):
    return connected_pair(node_factory, {"plugin": plugin_path},
                          {"plugin": plugin_path, "lsp-service": None})


def test_client_lists_protocols_of_service(lsp_and_client):
    client, lsp = lsp_and_client
    result = client.rpc.call("lsps0-listprotocols", {"lsp_id": lsp.info["id"]})
    # What the service registered; 0 itself is never listed.
    assert result == {"protocols": [1, 2, 5, 7]}


def test_feature_bit_only_on_the_service(lsp_and_client):
    client, lsp = lsp_and_client
    lsp_seen_by_client = client.rpc.listpeers(lsp.info["id"])["peers"][0]
    client_seen_by_lsp = lsp.rpc.listpeers(client.info["id"])["peers"][0]
    assert has_feature(lsp_seen_by_client["features"], LSPS_BIT)
    assert not has_feature(client_seen_by_lsp["features"], LSPS_BIT)
    assert has_feature(lsp.rpc.getinfo()["our_features"]["node"], LSPS_BIT)
    assert not has_feature(client.rpc.getinfo()["our_features"]["node"], LSPS_BIT)


@pytest.fixture
def raw_and_service(node_factory, plugin_path):
    return connected_pair(node_factory, {"plugin": FAKE_LSP},
                          {"plugin": plugin_path, "lsp-service": None})


def test_service_error_answers_on_the_wire(raw_and_service):
    raw, lsp = raw_and_service
    send_raw(raw, lsp, "this is not json")
    send_raw(raw, lsp, '{"jsonrpc":"2.0","id":"u1","method":"lsps9.nope","params":{}}')
    send_raw(raw, lsp, '{"jsonrpc":"2.0","id":"u2","method":"lsps0.list_protocols",'
                       '"params":{"zzz":1}}')
    send_raw(raw, lsp, '{"jsonrpc":"2.0","id":"u3","method":"lsps0.list_protocols",'
                       '"params":[]}')
    send_raw(raw, lsp, '{"jsonrpc":"2.0","id":"u4","method":"lsps0.list_protocols",'
                       '"params":{}}')
    got = answers(raw, 5)
    by_id = {a["id"]: a for a in got}
    assert by_id[None] == {"jsonrpc": "2.0", "id": None,
                           "error": {"code": -32700, "message": "parse error"}}
    assert by_id["u1"]["error"]["code"] == -32601
    assert by_id["u2"]["error"]["code"] == -32602
    assert by_id["u2"]["error"]["data"] == {"unrecognized": ["zzz"]}
    assert by_id["u3"]["error"]["code"] == -32600
    assert by_id["u4"] == {"jsonrpc": "2.0", "id": "u4", "result": {"protocols": [1, 2, 5, 7]}}


def test_nul_and_maximum_size_payloads(raw_and_service):
    raw, lsp = raw_and_service
    send_raw(raw, lsp, b'{"jsonrpc":"2.0","id":"n","method":"lsps0.list_protocols",'
                       b'"params":{}}\x00')
    # A maximum-size request whose honest answer would not fit: 600 unknown
    # parameter names of ~100 bytes. The answer must stay within 65533 bytes
    # (bigger ones crash the sender's connectd) and still be -32602.
    names = {f"{i:04d}" + "p" * 96: 0 for i in range(600)}
    head = '{"jsonrpc":"2.0","id":"big","method":"lsps0.list_protocols","params":'
    body = json.dumps(names, separators=(",", ":"))
    text = head + body + "}"
    text = text[:-1] + " " * (65533 - len(text)) + "}"
    assert len(text.encode()) == 65533
    send_raw(raw, lsp, text)
    # And garbage of the maximum size.
    send_raw(raw, lsp, b"x" * 65533)
    got = answers(raw, 3)
    assert sum(1 for a in got if a["id"] is None and a["error"]["code"] == -32700) == 2
    big = next(a for a in got if a["id"] == "big")
    assert big["error"]["code"] == -32602 and big["error"]["data"]["unrecognized"]
    # The service node is alive and still answers.
    send_raw(raw, lsp, '{"jsonrpc":"2.0","id":"after","method":"lsps0.list_protocols"}')
    assert any(a["id"] == "after" and "result" in a for a in answers(raw, 4))
    assert lsp.rpc.getinfo()["id"]


def test_flood_from_one_peer_does_not_starve_another(node_factory, plugin_path):
    flooder, lsp, client = node_factory.get_nodes(3, opts=[
        {"plugin": FAKE_LSP},
        {"plugin": plugin_path, "lsp-service": None},
        {"plugin": plugin_path},
    ])
    flooder.connect(lsp)
    client.connect(lsp)
    for i in range(200):
        send_raw(flooder, lsp, b"garbage %d" % i)
    result = client.rpc.call("lsps0-listprotocols", {"lsp_id": lsp.info["id"]})
    assert result == {"protocols": [1, 2, 5, 7]}


def test_client_only_node_stays_silent_and_client_times_out(node_factory, plugin_path):
    client, silent, raw = node_factory.get_nodes(3, opts=[
        {"plugin": plugin_path, "lsp-request-timeout": 3},
        {"plugin": plugin_path},
        {"plugin": FAKE_LSP},
    ])
    client.connect(silent)
    raw.connect(silent)
    with pytest.raises(RpcError) as e:
        client.rpc.call("lsps0-listprotocols", {"lsp_id": silent.info["id"]})
    assert e.value.error["code"] == 1002
    assert "within 3s" in e.value.error["message"]
    send_raw(raw, silent, "garbage")
    send_raw(raw, silent, '{"jsonrpc":"2.0","id":"x","method":"lsps0.list_protocols"}')
    # Once `silent` has seen both, an answer would already be on its way.
    silent.daemon.wait_for_logs(["ignored LSPS0 malformed message",
                                 "ignored LSPS0 request, but lsp-service is off"])
    raw.rpc.ping(silent.info["id"])
    assert raw.rpc.call("fakelsp-received")["messages"] == []
    assert not has_feature(silent.rpc.getinfo()["our_features"]["init"], LSPS_BIT)


def test_disconnect_mid_request_fails_promptly(node_factory, plugin_path, executor):
    client, mute = connected_pair(node_factory,
                                  {"plugin": plugin_path, "lsp-request-timeout": 600},
                                  {"plugin": FAKE_LSP})  # records and never answers
    fut = executor.submit(client.rpc.call, "lsps0-listprotocols", {"lsp_id": mute.info["id"]})
    wait_for(lambda: len(mute.rpc.call("fakelsp-received")["messages"]) == 1)
    client.rpc.disconnect(mute.info["id"], force=True)
    with pytest.raises(RpcError) as e:
        fut.result(timeout=30)  # far below the 600 s request timeout
    assert e.value.error["code"] == 1005


def test_not_connected(node_factory, plugin_path):
    client = node_factory.get_node(options={"plugin": plugin_path})
    with pytest.raises(RpcError) as e:
        client.rpc.call("lsps0-listprotocols", {"lsp_id": "02" + "11" * 32})
    assert e.value.error["code"] == 1001


def test_bad_lsp_id_is_a_clear_rpc_error(node_factory, plugin_path):
    client = node_factory.get_node(options={"plugin": plugin_path})
    with pytest.raises(RpcError, match="lsp_id: expected a 33-byte node id") as e:
        client.rpc.call("lsps0-listprotocols", {"lsp_id": "nope"})
    assert e.value.error["code"] == -32602


def test_peer_error_and_garbage_answers(node_factory, plugin_path):
    client, fake = connected_pair(node_factory, {"plugin": plugin_path}, {"plugin": FAKE_LSP})
    fake.rpc.call("fakelsp-mode", {"reply": "error"})
    with pytest.raises(RpcError) as e:
        client.rpc.call("lsps0-listprotocols", {"lsp_id": fake.info["id"]})
    assert e.value.error["code"] == 1003
    assert e.value.error["data"] == {"code": 12345, "message": "nope",
                                     "data": {"why": "testing"}}

    fake.rpc.call("fakelsp-mode", {"reply": json.dumps({"protocols": "two"})})
    with pytest.raises(RpcError) as e:
        client.rpc.call("lsps0-listprotocols", {"lsp_id": fake.info["id"]})
    assert e.value.error["code"] == 1004

    fake.rpc.call("fakelsp-mode", {"reply": "garbage"})
    with pytest.raises(RpcError) as e:
        client.rpc.call("lsps0-listprotocols", {"lsp_id": fake.info["id"]})
    assert e.value.error["code"] == 1004
    # bLIP-50: after garbage, no more requests to that LSP until it reconnects.
    fake.rpc.call("fakelsp-mode", {"reply": json.dumps({"protocols": [1]})})
    with pytest.raises(RpcError, match="reconnect"):
        client.rpc.call("lsps0-listprotocols", {"lsp_id": fake.info["id"]})
    client.rpc.disconnect(fake.info["id"], force=True)
    client.connect(fake)
    assert client.rpc.call("lsps0-listprotocols", {"lsp_id": fake.info["id"]}) == {
        "protocols": [1]}

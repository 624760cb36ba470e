import json
import threading

import pytest

import lsps.lsps0.msgs as jsonrpc
import lsps.lsps0.protocols as lsps0
from lsps.lsps0.msgs import LspsError, Request
from lsps.lsps0.service import DEFERRED, Dispatcher, Limits, MethodSpec

PEER_A = "02" + "aa" * 32
PEER_B = "03" + "bb" * 32


class Outbox:
    def __init__(self):
        self.sent = []

    def __call__(self, peer, payload):
        self.sent.append((peer, json.loads(payload)))

    def last(self, peer=None):
        for p, body in reversed(self.sent):
            if peer is None or p == peer:
                return body
        raise AssertionError("nothing sent")


@pytest.fixture
def outbox():
    return Outbox()


@pytest.fixture
def dispatcher(outbox):
    d = Dispatcher(outbox, Limits(per_peer=2, total=3))
    lsps0.register_service(d)
    return d


def test_list_protocols_lists_registered_protocols_without_zero(dispatcher, outbox):
    dispatcher.register(MethodSpec("lsps2.get_info", 2, lambda c: {},
                                   optional=frozenset({"token"})))
    dispatcher.register(MethodSpec("lsps1.get_info", 1, lambda c: {}))
    dispatcher.on_request(PEER_A, Request("1", "lsps0.list_protocols", {}))
    assert outbox.last() == {"jsonrpc": "2.0", "id": "1", "result": {"protocols": [1, 2]}}


def test_unknown_method(dispatcher, outbox):
    dispatcher.on_request(PEER_A, Request("1", "lsps9.nope", {}))
    assert outbox.last()["error"]["code"] == -32601
    assert outbox.last()["id"] == "1"


def test_unknown_param_lists_unrecognized(dispatcher, outbox):
    dispatcher.on_request(PEER_A, Request("1", "lsps0.list_protocols", {"b": 1, "a": 2}))
    err = outbox.last()["error"]
    assert err["code"] == -32602
    assert err["data"] == {"unrecognized": ["a", "b"]}


def test_missing_required_param(outbox):
    d = Dispatcher(outbox)
    d.register(MethodSpec("lsps1.get_order", 1, lambda c: {}, required=frozenset({"order_id"})))
    d.on_request(PEER_A, Request("1", "lsps1.get_order", {}))
    err = outbox.last()["error"]
    assert err["code"] == -32602 and err["data"]["missing"] == ["order_id"]
    assert err["data"]["property"] == "order_id"
    assert err["data"]["unrecognized"] == []


def test_null_optional_param_means_absent(outbox):
    seen = {}
    d = Dispatcher(outbox)
    d.register(MethodSpec("lsps2.get_info", 2, lambda c: seen.update(c.params) or {},
                          optional=frozenset({"token"})))
    d.on_request(PEER_A, Request("1", "lsps2.get_info", {"token": None}))
    assert "result" in outbox.last() and seen == {}


def test_handler_lsps_error_passed_to_peer(outbox):
    d = Dispatcher(outbox)

    def handler(call):
        raise LspsError(201, "invalid opening fee params", {"property": "promise"})
    d.register(MethodSpec("lsps2.buy", 2, handler))
    d.on_request(PEER_A, Request("1", "lsps2.buy", {}))
    assert outbox.last()["error"] == {"code": 201, "message": "invalid opening fee params",
                                      "data": {"property": "promise"}}
    assert d.pending() == 0


def test_handler_crash_is_internal_error_and_releases_slot(outbox):
    d = Dispatcher(outbox)
    d.register(MethodSpec("lsps2.buy", 2, lambda c: 1 / 0))
    d.on_request(PEER_A, Request("1", "lsps2.buy", {}))
    err = outbox.last()["error"]
    assert err == {"code": -32603, "message": "internal error"}
    assert "ZeroDivision" not in json.dumps(outbox.sent)
    assert d.pending() == 0 and d.stats.internal_errors == 1


def test_handler_returning_non_dict_is_internal_error(outbox):
    d = Dispatcher(outbox)
    d.register(MethodSpec("x.y", 9, lambda c: [1]))
    d.on_request(PEER_A, Request("1", "x.y", {}))
    assert outbox.last()["error"]["code"] == -32603


class TestLimits:
    def setup_method(self):
        self.calls = []

    def make(self, outbox):
        d = Dispatcher(outbox, Limits(per_peer=2, total=3))
        d.register(MethodSpec("lsps2.buy", 2, lambda c: self.calls.append(c) or DEFERRED))
        return d

    def test_per_peer_limit_gives_code_1_and_spares_other_peers(self, outbox):
        d = self.make(outbox)
        for i in range(2):
            d.on_request(PEER_A, Request(str(i), "lsps2.buy", {}))
        d.on_request(PEER_A, Request("x", "lsps2.buy", {}))
        assert outbox.last(PEER_A) == {"jsonrpc": "2.0", "id": "x", "error": {
            "code": 1, "message": "too many pending requests"}}
        d.on_request(PEER_B, Request("b", "lsps2.buy", {}))
        assert len(self.calls) == 3  # B was served
        assert d.pending(PEER_A) == 2 and d.pending(PEER_B) == 1

    def test_total_limit(self, outbox):
        d = self.make(outbox)
        d.on_request(PEER_A, Request("1", "lsps2.buy", {}))
        d.on_request(PEER_A, Request("2", "lsps2.buy", {}))
        d.on_request(PEER_B, Request("3", "lsps2.buy", {}))
        d.on_request(PEER_B, Request("4", "lsps2.buy", {}))
        assert outbox.last(PEER_B)["error"]["code"] == 1
        assert d.stats.rejected_over_limit == 1

    def test_answer_frees_slot(self, outbox):
        d = self.make(outbox)
        d.on_request(PEER_A, Request("1", "lsps2.buy", {}))
        d.on_request(PEER_A, Request("2", "lsps2.buy", {}))
        self.calls[0].respond({"ok": True})
        assert outbox.last(PEER_A) == {"jsonrpc": "2.0", "id": "1", "result": {"ok": True}}
        d.on_request(PEER_A, Request("3", "lsps2.buy", {}))
        assert len(self.calls) == 3

    def test_deferred_answer_from_another_thread(self, outbox):
        d = self.make(outbox)
        d.on_request(PEER_A, Request("1", "lsps2.buy", {}))
        t = threading.Thread(target=lambda: self.calls[0].fail(LspsError(203, "too large")))
        t.start()
        t.join()
        assert outbox.last()["error"]["code"] == 203
        assert d.pending() == 0

    def test_answering_twice_is_a_bug(self, outbox):
        d = self.make(outbox)
        d.on_request(PEER_A, Request("1", "lsps2.buy", {}))
        self.calls[0].respond({})
        with pytest.raises(RuntimeError):
            self.calls[0].respond({})


def test_malformed_answers(dispatcher, outbox):
    dispatcher.on_malformed(PEER_A, jsonrpc.Malformed("junk"))
    assert outbox.last() == {"jsonrpc": "2.0", "id": None,
                             "error": {"code": -32700, "message": "parse error"}}
    dispatcher.on_malformed(PEER_A, jsonrpc.Malformed('"jsonrpc" must be "2.0"',
                                                      jsonrpc.INVALID_REQUEST, "q"))
    assert outbox.last() == {"jsonrpc": "2.0", "id": "q", "error": {
        "code": -32600, "message": '"jsonrpc" must be "2.0"'}}


def test_register_twice_refused(dispatcher):
    with pytest.raises(ValueError):
        lsps0.register_service(dispatcher)


def test_stats_count_results_per_method_and_errors_per_code(dispatcher, outbox):
    """What lsp-summary shows of LSPS0: every answer counted once, by what it was."""
    def refuse(call):
        raise LspsError(201, "no")
    dispatcher.register(MethodSpec("lsps1.create_order", 1, refuse))
    later = []
    dispatcher.register(MethodSpec("lsps2.buy", 2, lambda c: later.append(c) or DEFERRED))
    dispatcher.on_request(PEER_A, Request("1", "lsps0.list_protocols", {}))
    dispatcher.on_request(PEER_A, Request("2", "lsps0.list_protocols", {"x": 1}))
    dispatcher.on_request(PEER_A, Request("3", "lsps9.nope", {}))
    dispatcher.on_request(PEER_A, Request("4", "lsps1.create_order", {}))
    dispatcher.on_request(PEER_B, Request("5", "lsps2.buy", {}))
    dispatcher.on_malformed(PEER_B, jsonrpc.Malformed("bad json"))
    assert dispatcher.stats.served == {"lsps0.list_protocols": 1}
    later[0].fail(LspsError(jsonrpc.INTERNAL_ERROR, "x"))
    assert dispatcher.stats.served == {"lsps0.list_protocols": 1}
    assert dispatcher.stats.rejected == {-32602: 1, -32601: 1, 201: 1, -32603: 1, -32700: 1}
    assert len(outbox.sent) == 6

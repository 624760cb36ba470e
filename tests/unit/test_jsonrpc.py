import json

import pytest

import lsps.lsps0.msgs as jsonrpc
from lsps.lsps0.msgs import (
    INVALID_REQUEST,
    MAX_PAYLOAD_BYTES,
    PARSE_ERROR,
    Malformed,
    Notification,
    Request,
    Response,
    decode,
)


def enc(obj) -> bytes:
    return json.dumps(obj).encode()


def request(**overrides):
    obj = {"jsonrpc": "2.0", "id": "abc", "method": "lsps0.list_protocols", "params": {}}
    obj.update(overrides)
    return {k: v for k, v in obj.items() if v is not ...}


class TestBadFormat:
    @pytest.mark.parametrize("payload", [
        b"", b"{", b"[]", b" [ ] ", b"{} {}", b"{} {", b"null", b"42", b'"x"',
        b"\xff\xfe{}", b"{\x00}", b'{"a":1}\x00', b"NaN", b'{"a": NaN}',
        b'{"a":1,"a":2}',
    ])
    def test_parse_error(self, payload):
        msg = decode(payload)
        assert isinstance(msg, Malformed)
        assert msg.code == PARSE_ERROR
        assert msg.id is None

    def test_whitespace_around_object_is_fine(self):
        msg = decode(b" \t\r\n" + enc(request()) + b" \n")
        assert isinstance(msg, Request)

    def test_oversized(self):
        payload = b'{"x":"' + b"a" * MAX_PAYLOAD_BYTES + b'"}'
        msg = decode(payload)
        assert isinstance(msg, Malformed) and "exceeds" in msg.reason

    def test_exactly_max_size_is_parsed(self):
        base = enc(request(params={"pad": ""}))
        pad = MAX_PAYLOAD_BYTES - len(base)
        payload = enc(request(params={"pad": "a" * pad}))
        assert len(payload) == MAX_PAYLOAD_BYTES
        assert isinstance(decode(payload), Request)

    def test_deep_nesting_does_not_raise(self):
        msg = decode(b"[" * 100000 + b"]" * 100000)
        assert isinstance(msg, Malformed)

    def test_neither_request_nor_response(self):
        msg = decode(b'{"jsonrpc":"2.0","id":"x"}')
        assert isinstance(msg, Malformed) and msg.code == PARSE_ERROR


class TestRequests:
    def test_valid(self):
        msg = decode(enc(request(params={"token": "t"})))
        assert msg == Request("abc", "lsps0.list_protocols", {"token": "t"})

    def test_missing_params_means_empty(self):
        assert decode(enc(request(params=...))) == Request("abc", "lsps0.list_protocols", {})

    def test_integer_id_accepted(self):
        assert decode(enc(request(id=7))).id == 7

    @pytest.mark.parametrize("bad_id", [None, True, 1.5, [], {}, "x" * 1025])
    def test_bad_id_is_invalid_request_with_null_id(self, bad_id):
        msg = decode(enc(request(id=bad_id)))
        assert isinstance(msg, Malformed)
        assert msg.code == INVALID_REQUEST and msg.id is None

    @pytest.mark.parametrize("fields", [
        {"jsonrpc": "1.0"}, {"jsonrpc": ...}, {"method": 5},
        {"params": [1, 2]}, {"params": "x"},
    ])
    def test_invalid_request_keeps_id(self, fields):
        msg = decode(enc(request(**fields)))
        assert isinstance(msg, Malformed)
        assert msg.code == INVALID_REQUEST and msg.id == "abc"

    def test_notification(self):
        msg = decode(enc({"jsonrpc": "2.0", "method": "lsps5.x", "params": {"a": 1}}))
        assert msg == Notification("lsps5.x", {"a": 1})

    def test_bad_notification(self):
        msg = decode(enc({"jsonrpc": "2.0", "method": "lsps5.x", "params": []}))
        assert isinstance(msg, Malformed) and msg.code == PARSE_ERROR


class TestResponses:
    def test_result(self):
        msg = decode(enc({"jsonrpc": "2.0", "id": "a", "result": {"protocols": [2]}}))
        assert msg == Response("a", result={"protocols": [2]})

    def test_error_with_any_data(self):
        for data in ({"unrecognized": ["x"]}, "ldk string", None):
            obj = {"jsonrpc": "2.0", "id": "a", "error": {"code": 201, "message": "m"}}
            if data is not None:
                obj["error"]["data"] = data
            msg = decode(enc(obj))
            assert isinstance(msg, Response)
            assert msg.error == jsonrpc.ErrorObject(201, "m", data)

    def test_error_with_null_id(self):
        msg = decode(enc({"jsonrpc": "2.0", "id": None,
                          "error": {"code": -32700, "message": "parse error"}}))
        assert isinstance(msg, Response) and msg.id is None

    @pytest.mark.parametrize("obj", [
        {"jsonrpc": "2.0", "id": "a", "result": [1]},
        {"jsonrpc": "2.0", "id": "a", "result": {}, "error": {"code": 1, "message": "x"}},
        {"jsonrpc": "2.0", "id": "a", "error": {"code": "1", "message": "x"}},
        {"jsonrpc": "2.0", "id": "a", "error": {"code": 1}},
        {"jsonrpc": "2.0", "id": "a", "error": "boom"},
        {"id": "a", "result": {}},
        {"jsonrpc": "2.0", "result": {}},
    ])
    def test_malformed_response(self, obj):
        msg = decode(enc(obj))
        assert isinstance(msg, Malformed) and msg.looked_like_response


class TestEncoding:
    def test_request_roundtrip(self):
        req = Request("f00d", "lsps2.get_info", {"token": "ünï"})
        data = jsonrpc.encode_request(req)
        assert "ünï".encode() in data  # characters written directly, not escaped
        assert decode(data) == req

    def test_parse_error_shape(self):
        data = jsonrpc.encode_error(None, PARSE_ERROR, "parse error")
        assert json.loads(data) == {"jsonrpc": "2.0", "id": None,
                                    "error": {"code": -32700, "message": "parse error"}}

    def test_lone_surrogate_is_escaped_not_crashing(self):
        data = jsonrpc.encode_error("\ud800", -32601, "method not found")
        assert json.loads(data)["id"] == "\ud800"

    def test_error_capped_at_max_payload(self):
        names = ["p" * 1000 + str(i) for i in range(200)]
        data = jsonrpc.encode_error("x" * 1024, -32602, "invalid params",
                                    {"unrecognized": names})
        assert len(data) <= MAX_PAYLOAD_BYTES
        body = json.loads(data)
        assert body["error"]["code"] == -32602
        assert body["error"]["data"]["unrecognized"]  # still says which ones

    def test_huge_message_capped(self):
        data = jsonrpc.encode_error("x", 1, "m" * 70000)
        assert len(data) <= MAX_PAYLOAD_BYTES

    def test_result_too_large_becomes_internal_error(self):
        data = jsonrpc.encode_result("x", {"blob": "a" * MAX_PAYLOAD_BYTES})
        assert json.loads(data)["error"]["code"] == jsonrpc.INTERNAL_ERROR

    def test_oversized_request_refused(self):
        with pytest.raises(ValueError):
            jsonrpc.encode_request(Request("x", "m", {"a": "b" * MAX_PAYLOAD_BYTES}))

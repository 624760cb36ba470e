"""Whatever a peer sends, decoding and serving never raise and always answer right."""
import json

from hypothesis import given, settings
from hypothesis import strategies as st

import lsps.lsps0.msgs as jsonrpc
import lsps.lsps0.protocols as lsps0
from lsps.lsps0.msgs import MAX_PAYLOAD_BYTES, Malformed, Notification, Request, Response
from lsps.lsps0.service import Dispatcher

PEER = "02" + "aa" * 32

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)

request_like = st.fixed_dictionaries({}, optional={
    "jsonrpc": st.sampled_from(["2.0", "1.0", 2]) | json_values,
    "id": st.text(max_size=40) | st.integers() | json_values,
    "method": st.sampled_from(["lsps0.list_protocols", "lsps1.x"]) | json_values,
    "params": st.dictionaries(st.text(max_size=8), json_values, max_size=3) | json_values,
    "result": json_values,
    "error": st.fixed_dictionaries({"code": st.integers(), "message": st.text()}) | json_values,
})


def check_decoded(msg):
    assert isinstance(msg, (Request, Notification, Response, Malformed))
    if isinstance(msg, Malformed):
        assert msg.code in (jsonrpc.PARSE_ERROR, jsonrpc.INVALID_REQUEST)
        if msg.code == jsonrpc.PARSE_ERROR:
            assert msg.id is None


@settings(max_examples=400)
@given(st.binary(max_size=512))
def test_arbitrary_bytes(payload):
    check_decoded(jsonrpc.decode(payload))


@settings(max_examples=400)
@given(json_values)
def test_arbitrary_json(value):
    msg = jsonrpc.decode(json.dumps(value).encode())
    check_decoded(msg)
    if not isinstance(value, dict):
        assert isinstance(msg, Malformed) and msg.code == jsonrpc.PARSE_ERROR


@settings(max_examples=400)
@given(request_like)
def test_service_answers_every_request_like_object_exactly_once(obj):
    sent = []
    d = Dispatcher(lambda peer, payload: sent.append(payload))
    lsps0.register_service(d)
    msg = jsonrpc.decode(json.dumps(obj).encode())
    check_decoded(msg)
    if isinstance(msg, Request):
        d.on_request(PEER, msg)
    elif isinstance(msg, Malformed) and not msg.looked_like_response:
        d.on_malformed(PEER, msg)
    else:
        return
    assert len(sent) == 1 and len(sent[0]) <= MAX_PAYLOAD_BYTES
    answer = json.loads(sent[0])
    assert answer["jsonrpc"] == "2.0"
    assert ("result" in answer) != ("error" in answer)
    if isinstance(msg, Request):
        assert answer["id"] == msg.id
    assert d.pending() == 0

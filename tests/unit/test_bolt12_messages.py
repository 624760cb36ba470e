
import coincurve
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vectorfiles import load

from bolt12ext import encoding, merkle, messages
from bolt12ext.tlv import DecodeError, record, serialize_stream, tu

NODE_SECRET = bytes([0x43] * 32)
NODE_ID = coincurve.PrivateKey(NODE_SECRET).public_key.format()
PATH_KEY = coincurve.PrivateKey(bytes([0x44] * 32)).public_key.format()
HOP = coincurve.PrivateKey(bytes([0x45] * 32)).public_key.format()


def blinded_path():
    return NODE_ID + PATH_KEY + bytes([1]) + HOP + (3).to_bytes(2, "big") + b"abc"


def payinfo():
    return ((1).to_bytes(4, "big") + (100).to_bytes(4, "big") + (40).to_bytes(2, "big")
            + (1000).to_bytes(8, "big") + (10**9).to_bytes(8, "big") + (0).to_bytes(2, "big"))


def static_invoice(extra=None, sign=True):
    body = serialize_stream({10: b"coffee", 22: NODE_ID, 160: blinded_path(), 162: payinfo(),
                             164: tu(1_700_000_000, 4), 176: NODE_ID, **(extra or {})})
    if sign:
        body += record(240, merkle.sign("static_invoice", body, NODE_SECRET))
    return body


def test_invoice_request_vector():
    case = load("bolt12/signature-test.json")[-1]
    got = messages.decode(case["bolt12"])
    assert got["type"] == "bolt12 invoice_request" and got["valid"] is True
    assert got["invreq_metadata"] == "0000000000000000"
    assert got["offer_currency"] == "USD" and got["offer_amount"] == 100
    data = bytearray(encoding.decode(case["bolt12"])[1])
    data[-1] ^= 1  # flip a signature bit
    assert messages.decode_invoice_request(bytes(data))["signature_valid"] is False


def test_static_invoice_round_trip():
    data = static_invoice()
    got = messages.decode(data.hex())
    assert got["type"] == "bolt12 static invoice" and got["valid"] is True
    assert got["offer_description"] == "coffee" and got["invoice_node_id"] == NODE_ID.hex()
    assert got["invoice_blindedpay"][0]["cltv_expiry_delta"] == 40
    assert got["invoice_paths"][0]["path"][0]["encrypted_recipient_data"] == b"abc".hex()


def test_static_invoice_every_byte_flip_is_caught():
    data = static_invoice()
    for i in range(len(data)):
        mutated = bytearray(data)
        mutated[i] ^= 0x01
        try:
            assert messages.decode_static_invoice(bytes(mutated))["signature_valid"] is False
        except DecodeError:
            pass


@pytest.mark.parametrize("extra,why", [
    ({168: bytes(32)}, "no invoice_payment_hash"),
    ({170: tu(5)}, "no invoice_amount_msat"),
    ({88: NODE_ID}, "not allowed"),
    ({238: b""}, "unknown even"),
])
def test_static_invoice_rules(extra, why):
    with pytest.raises(DecodeError, match=why):
        messages.decode_static_invoice(static_invoice(extra))


def test_static_invoice_size_limit():
    with pytest.raises(DecodeError, match="5 KiB"):
        messages.decode_static_invoice(static_invoice({1001: b"x" * 5200}, sign=False))


def test_missing_signature():
    with pytest.raises(DecodeError, match="signature"):
        messages.decode_static_invoice(static_invoice(sign=False))


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_decode_error(data):
    for fn in (messages.decode_static_invoice, messages.decode_invoice,
               messages.decode_invoice_request):
        try:
            fn(data)
        except DecodeError:
            pass

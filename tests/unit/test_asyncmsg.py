"""Async-payment messages: LDK's byte layouts written out by hand, round trips, rejections."""
import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bolt12ext import asyncmsg, blinding, onionmsg
from bolt12ext.asyncmsg import (
    HeldHtlcAvailable,
    InvoiceError,
    OfferPaths,
    OfferPathsRequest,
    ReleaseHeldHtlc,
    ServeStaticInvoice,
    StaticInvoicePersisted,
)
from bolt12ext.sphinx import pubkey
from bolt12ext.tlv import DecodeError, bigsize, record

H = bytes.fromhex
KEYS = [hashlib.sha256(b"k%d" % i).digest() for i in range(3)]


def path():
    return blinding.message_path(b"\x07" * 32, [pubkey(KEYS[0]), pubkey(KEYS[1])], b"i" * 32)


# LDK writes these payloads with impl_writeable_tlv_based!: BigSize(length of the inner
# stream) then the inner TLVs; u16/u64 fields keep their full width.
def test_empty_messages_ldk_bytes():
    assert record(*asyncmsg.encode(HeldHtlcAvailable())) == H("480100")
    assert record(*asyncmsg.encode(ReleaseHeldHtlc())) == H("4a0100")
    assert record(*asyncmsg.encode(StaticInvoicePersisted())) == H("fe0001271a0100")
    assert asyncmsg.decode(72, H("00")) == HeldHtlcAvailable()
    assert asyncmsg.decode(74, H("00")) == ReleaseHeldHtlc()
    # LDK refuses a bare zero-length value; so do we (no inner length)
    with pytest.raises(DecodeError):
        asyncmsg.decode(72, b"")
    # an odd inner record is skipped, an even one refused
    assert asyncmsg.decode(72, H("03010100")) == HeldHtlcAvailable()
    with pytest.raises(DecodeError):
        asyncmsg.decode(72, H("03020100"))


def test_offer_paths_request_ldk_bytes():
    assert record(*asyncmsg.encode(OfferPathsRequest(3))) == H("fe00012714" "05" "04" "00020003")
    assert asyncmsg.decode(75540, H("0400020003")) == OfferPathsRequest(3)
    with pytest.raises(DecodeError, match="2 bytes"):
        asyncmsg.decode(75540, H("03000103"))  # a truncated u16 is not LDK's u16
    with pytest.raises(DecodeError, match="invoice_slot"):
        asyncmsg.decode(75540, H("00"))


def test_offer_paths_ldk_bytes():
    p = path()
    raw = p.serialize()
    inner = record(0, raw) + H("0208") + (1_900_000_000).to_bytes(8, "big")
    want = bigsize(len(inner)) + inner
    msg = OfferPaths([p], 1_900_000_000)
    assert msg.encode() == want
    assert asyncmsg.decode(75542, want) == msg
    two = OfferPaths([p, p])
    assert asyncmsg.decode(75542, two.encode()).paths == [p, p]
    assert asyncmsg.decode(75542, two.encode()).paths_absolute_expiry is None


def test_serve_static_invoice_ldk_bytes():
    p = path()
    invoice = b"\x0a\x04tips"  # raw TLV bytes, kept as they are
    inner = record(0, invoice) + record(2, p.serialize())
    msg = ServeStaticInvoice(invoice, p)
    assert msg.encode() == bigsize(len(inner)) + inner
    assert asyncmsg.decode(75544, msg.encode()) == msg
    with pytest.raises(DecodeError):
        asyncmsg.decode(75544, asyncmsg.frame({0: invoice}))
    with pytest.raises(DecodeError, match="trailing"):
        asyncmsg.decode(75544, asyncmsg.frame({0: invoice, 2: p.serialize() + b"x"}))


def test_invoice_error_both_framings():
    err = InvoiceError("amount too low", erroneous_field=82, suggested_value=H("03e8"))
    ldk = err.encode()
    plain = err.encode(framed=False)
    assert plain == H("010152") + H("0302") + H("03e8") + H("050e") + b"amount too low"
    assert ldk == bytes([len(plain)]) + plain
    assert InvoiceError.decode(ldk) == err == InvoiceError.decode(plain)
    assert InvoiceError.decode(H("0502") + b"no") == InvoiceError("no")
    with pytest.raises(DecodeError):
        InvoiceError.decode(H("0302ffff"))  # no error text
    with pytest.raises(DecodeError):
        InvoiceError.decode(H("0302ffff") + H("0502") + b"no")  # value without field
    with pytest.raises(DecodeError):
        InvoiceError.decode(H("0400") + H("0502") + b"no")


def test_messages_travel_in_onion_messages():
    p = path()
    for message in (HeldHtlcAvailable(), ReleaseHeldHtlc(), OfferPathsRequest(9),
                    OfferPaths([p], 5), ServeStaticInvoice(b"\x0a\x01x", p),
                    StaticInvoicePersisted(), InvoiceError("bad")):
        t, value = asyncmsg.encode(message)
        msg = onionmsg.build(os.urandom(32), p, {t: value}, reply_path=p)
        hop = onionmsg.peel(KEYS[0], msg)
        got = onionmsg.peel(KEYS[1], hop.message)
        assert got.path_id == b"i" * 32 and got.reply_path == p
        (got_type, got_value), = got.contents.items()
        assert asyncmsg.decode(got_type, got_value) == message


def test_decode_rejects_other_types():
    with pytest.raises(DecodeError):
        asyncmsg.decode(64, b"\x00")


def test_final_payload_with_preimage_and_invoice_request():
    preimage = os.urandom(32)
    payload = asyncmsg.final_payload(10_000, 800_123, 10_000, b"enc", H("02" + "11" * 32),
                                     preimage=preimage, invoice_request=b"\x00\x01x")
    decoded = asyncmsg.decode_payment_payload(payload)
    assert decoded == {"amt_to_forward": 10_000, "outgoing_cltv_value": 800_123,
                       "encrypted_recipient_data": b"enc",
                       "current_path_key": H("02" + "11" * 32), "total_amount_msat": 10_000,
                       "payment_preimage": preimage, "invoice_request": b"\x00\x01x"}
    # 5482373484 is BigSize 0xff‖8 bytes, 77777 is 0xfe‖4 bytes, after the standard types
    assert payload.endswith(b"\xfe\x00\x01\x2f\xd1\x03\x00\x01x" + b"\xff"
                            + (5482373484).to_bytes(8, "big") + b"\x20" + preimage)
    with pytest.raises(DecodeError):
        asyncmsg.decode_payment_payload(record(20, b"x"))
    with pytest.raises(DecodeError):
        asyncmsg.decode_payment_payload(record(asyncmsg.PREIMAGE_TYPE, b"short"))
    assert asyncmsg.decode_payment_payload(record(21, b"x"))["unknown"] == {21: b"x"}
    with pytest.raises(ValueError):
        asyncmsg.final_payload(1, 1, 1, b"", preimage=b"short")


def test_hold_htlc_tlv():
    tlvs = asyncmsg.hold_htlc_tlvs()
    assert tlvs == H("fe00012711") + H("00")
    assert asyncmsg.has_hold_htlc(tlvs)
    other = record(65537, H("0102"))
    both = other + tlvs  # 65537 sorts before 75537
    assert asyncmsg.has_hold_htlc(both)
    assert asyncmsg.without_hold_htlc(both) == other
    assert not asyncmsg.has_hold_htlc(other)
    assert not asyncmsg.has_hold_htlc(b"\xff")


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(asyncmsg.MESSAGES)), st.binary(max_size=300))
def test_decoders_only_raise_decode_error(tlv_type, value):
    try:
        asyncmsg.decode(tlv_type, value)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_payment_payload_only_raises_decode_error(value):
    try:
        asyncmsg.decode_payment_payload(value)
    except DecodeError:
        pass

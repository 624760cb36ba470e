"""Blinded message/payment paths built by the library, read back hop by hop."""
import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bolt12ext import blinding, onionmsg, sphinx
from bolt12ext.blinding import PaymentHop, PaymentRelay
from bolt12ext.tlv import DecodeError


def key(n):
    return hashlib.sha256(b"node%d" % n).digest()


NODES = [key(i) for i in range(5)]
IDS = [sphinx.pubkey(k) for k in NODES]


def walk(path, secrets, contents, reply_path=None, size=None):
    """Send an onion message along `path` and peel it at each node; the final Received."""
    msg = onionmsg.build(os.urandom(32), path, contents, reply_path, size)
    for i, secret in enumerate(secrets):
        out = onionmsg.peel(secret, onionmsg.OnionMessage.parse(msg.serialize()))
        if i < len(secrets) - 1:
            assert isinstance(out, onionmsg.Forward)
            assert out.next_node_id == IDS[NODES.index(secrets[i + 1])]
            msg = out.message
    assert isinstance(out, onionmsg.Received)
    return out


def test_message_path_delivers_contents_and_path_id():
    path_id = os.urandom(32)
    path = blinding.message_path(os.urandom(32), IDS[:3], path_id)
    assert path.first_node_id == IDS[0] and len(path.hops) == 3
    # padding makes every hop's encrypted data the same length
    assert len({len(h.encrypted_data) for h in path.hops}) == 1
    got = walk(path, NODES[:3], {onionmsg.HELD_HTLC_AVAILABLE: b"\x00"})
    assert got.path_id == path_id
    assert got.contents == {onionmsg.HELD_HTLC_AVAILABLE: b"\x00"}


def test_reply_path_travels_and_is_usable():
    reply = blinding.message_path(os.urandom(32), [IDS[3], IDS[4]], b"r" * 32)
    path = blinding.message_path(os.urandom(32), [IDS[1]], b"p" * 32)
    got = walk(path, [NODES[1]], {onionmsg.INVOICE_REQUEST: b"x"}, reply_path=reply)
    assert got.reply_path == reply
    back = walk(got.reply_path, [NODES[3], NODES[4]], {onionmsg.INVOICE: b"y"})
    assert back.path_id == b"r" * 32


def test_prepend_our_node_before_introduction():
    path = blinding.message_path(os.urandom(32), [IDS[2], IDS[3]], b"q" * 32)
    full = onionmsg.prepend(os.urandom(32), [IDS[0], IDS[1]], path)
    assert full.first_node_id == IDS[0] and len(full.hops) == 4
    got = walk(full, [NODES[0], NODES[1], NODES[2], NODES[3]], {onionmsg.STATIC_INVOICE: b"z"})
    assert got.path_id == b"q" * 32


def test_large_payload_uses_32768_packet():
    path = blinding.message_path(os.urandom(32), [IDS[0]], b"a" * 32)
    small = onionmsg.build(os.urandom(32), path, {onionmsg.STATIC_INVOICE: b"s" * 100})
    big = onionmsg.build(os.urandom(32), path, {onionmsg.STATIC_INVOICE: b"s" * 5000})
    assert len(small.packet) == 1366 and len(big.packet) == 32834
    assert walk(path, [NODES[0]], {onionmsg.STATIC_INVOICE: b"s" * 5000}).contents[70] == \
        b"s" * 5000
    with pytest.raises(ValueError):
        onionmsg.build(os.urandom(32), path, {onionmsg.STATIC_INVOICE: b"s" * 40000})


def test_reader_rules():
    path = blinding.message_path(os.urandom(32), [IDS[0], IDS[1]], b"a" * 32)
    # an unknown even payload type is ignored (error), an unknown odd one is fine
    msg = onionmsg.build(os.urandom(32), path, {80: b"x"})
    fwd = onionmsg.peel(NODES[0], msg)
    with pytest.raises(DecodeError, match="unknown even"):
        onionmsg.peel(NODES[1], fwd.message)
    msg = onionmsg.build(os.urandom(32), path, {81: b"x"})
    got = onionmsg.peel(NODES[1], onionmsg.peel(NODES[0], msg).message)
    assert got.contents == {81: b"x"}
    # two payloads of known types: ignored
    msg = onionmsg.build(os.urandom(32), path, {64: b"a", 66: b"b"})
    with pytest.raises(DecodeError, match="more than one"):
        onionmsg.peel(NODES[1], onionmsg.peel(NODES[0], msg).message)
    # extra fields for a non-final hop: ignored
    bad = blinding.message_path(os.urandom(32), [IDS[0], IDS[1]], b"a" * 32)
    packet_hops = [(bad.hops[0].blinded_node_id,
                    b"\x04" + bytes([len(bad.hops[0].encrypted_data)])
                    + bad.hops[0].encrypted_data + b"\x40\x01\x00"),
                   (bad.hops[1].blinded_node_id,
                    b"\x04" + bytes([len(bad.hops[1].encrypted_data)])
                    + bad.hops[1].encrypted_data)]
    msg = onionmsg.OnionMessage(bad.first_path_key, sphinx.build(os.urandom(32), packet_hops))
    with pytest.raises(DecodeError, match="non-final"):
        onionmsg.peel(NODES[0], msg)


def test_path_id_in_non_final_hop_and_payment_fields_rejected():
    data = [blinding.encode_data({"next_node_id": IDS[1], "path_id": b"x" * 32}),
            blinding.encode_data({"path_id": b"y" * 32})]
    path = blinding.blind(os.urandom(32), list(zip(IDS[:2], data, strict=True)))
    with pytest.raises(DecodeError, match="path_id"):
        onionmsg.peel(NODES[0], onionmsg.build(os.urandom(32), path, {}))
    data = [blinding.encode_data({"path_id": b"y" * 32,
                                  "payment_relay": PaymentRelay(1, 2, 3)})]
    path = blinding.blind(os.urandom(32), list(zip(IDS[:1], data, strict=True)))
    with pytest.raises(DecodeError, match="payment"):
        onionmsg.peel(NODES[0], onionmsg.build(os.urandom(32), path, {}))


def test_encrypted_data_rejects_unknown_even_and_bad_lengths():
    with pytest.raises(DecodeError):
        blinding.decode_data(bytes.fromhex("1001ff"))  # type 16 unknown even
    assert blinding.decode_data(bytes.fromhex("1101ff")) == {17: b"\xff"}
    with pytest.raises(DecodeError):
        blinding.decode_data(bytes.fromhex("0203000000"))  # short scid
    with pytest.raises(DecodeError):
        blinding.decode_data(bytes.fromhex("0402aabb"))  # short next_node_id


def test_payment_path_constraints_and_payinfo():
    hops = [PaymentHop(IDS[0], "1x2x3", PaymentRelay(40, 1000, 1000), htlc_minimum_msat=1000),
            PaymentHop(IDS[1], "4x5x6", PaymentRelay(80, 200, 0), htlc_minimum_msat=1)]
    path, payinfo = blinding.payment_path(os.urandom(32), hops, IDS[2], b"id" * 16,
                                          max_cltv_expiry=1000, htlc_maximum_msat=10**9,
                                          min_final_cltv_expiry_delta=18)
    assert (payinfo.fee_base_msat, payinfo.fee_proportional_millionths,
            payinfo.cltv_expiry_delta) == (1000, 1201, 40 + 80 + 18)
    assert payinfo.htlc_minimum_msat == 1000 and payinfo.htlc_maximum_msat == 10**9
    assert len({len(h.encrypted_data) for h in path.hops}) == 1
    key_ = path.first_path_key
    got = []
    for secret, hop in zip(NODES[:3], path.hops, strict=True):
        u = blinding.unblind(secret, key_, hop.encrypted_data)
        assert sphinx.pubkey(u.blinded_secret) == hop.blinded_node_id
        got.append(u.fields)
        key_ = u.next_path_key
    assert got[0]["short_channel_id"] == blinding.scid_int("1x2x3")
    assert got[0]["payment_relay"] == PaymentRelay(40, 1000, 1000)
    # the limit grows by each later hop's delta, starting from the recipient's own + final delta
    assert got[0]["payment_constraints"].max_cltv_expiry == 1000 + 18 + 80 + 40
    assert got[1]["payment_constraints"].max_cltv_expiry == 1000 + 18 + 80
    assert got[2]["payment_constraints"].max_cltv_expiry == 1000
    assert got[2]["path_id"] == b"id" * 16
    assert all(g["payment_constraints"].htlc_minimum_msat == 1000 for g in got)
    info = blinding.PayInfo(1, 2, 3, 4, 5, b"\x01")
    assert len(info.serialize()) == 29


def test_scid_formats():
    assert blinding.scid_str(blinding.scid_int("103x1x0")) == "103x1x0"
    assert blinding.scid_int(5) == 5


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=1500), st.binary(min_size=33, max_size=33))
def test_peel_random_bytes_only_raises_decode_error(packet, path_key):
    try:
        onionmsg.peel(NODES[0], onionmsg.OnionMessage(path_key, packet))
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_path_parse_random_bytes(data):
    try:
        blinding.parse_paths(data)
    except DecodeError:
        pass


def test_payinfo_parse_round_trip_and_truncation():
    infos = [blinding.PayInfo(1, 2, 3, 4, 5, b"\x01\x02"),
             blinding.PayInfo(2**32 - 1, 0, 0, 0, 2**64 - 1)]
    data = b"".join(i.serialize() for i in infos)
    assert blinding.parse_payinfos(data) == infos
    assert blinding.PayInfo.parse(data, len(infos[0].serialize())) == (infos[1], len(data))
    assert blinding.parse_payinfos(b"") == []
    with pytest.raises(DecodeError, match="truncated blinded_payinfo$"):
        blinding.parse_payinfos(data[:-1])
    with pytest.raises(DecodeError, match="features"):
        blinding.parse_payinfos(infos[0].serialize()[:-1])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_payinfo_parse_random_bytes(data):
    try:
        infos = blinding.parse_payinfos(data)
    except DecodeError:
        return
    assert b"".join(i.serialize() for i in infos) == data

"""BOLT4's official vectors: Sphinx onions, route blinding, blinded onion messages,
blinded payment onions (shared/vectors/bolt04)."""
import pytest
from vectorfiles import load

from bolt12ext import blinding, onionmsg, sphinx
from bolt12ext.blinding import PaymentConstraints, PaymentRelay
from bolt12ext.tlv import DecodeError, read_bigsize, records

H = bytes.fromhex


def strip_length(framed_hex):
    """The vectors give hop payloads with their BigSize length in front."""
    data = H(framed_hex)
    length, pos = read_bigsize(data, 0)
    assert pos + length == len(data)
    return data[pos:]


def vector_tlvs(tlvs):
    """encrypted_data_tlv fields as the vectors spell them -> encode_data's input."""
    out = {}
    for name, value in tlvs.items():
        if name.startswith("unknown_tag_"):
            out[int(name[len("unknown_tag_"):])] = H(value)
        elif name == "payment_relay":
            out[name] = PaymentRelay(value["cltv_expiry_delta"],
                                     value["fee_proportional_millionths"],
                                     value.get("fee_base_msat", 0))
        elif name == "payment_constraints":
            out[name] = PaymentConstraints(value["max_cltv_expiry"], value["htlc_minimum_msat"])
        elif name == "allowed_features":
            bits = value["features"]
            n = max(bits) + 1 if bits else 0
            as_int = sum(1 << b for b in bits)
            out[name] = as_int.to_bytes((n + 7) // 8, "big") if n else b""
        elif name == "short_channel_id":
            out[name] = value
        elif name in ("path_key_override_secret",):
            continue
        else:
            out[name] = H(value)
    return out


# ---- plain Sphinx -------------------------------------------------------------------------

def test_onion_packet_built_byte_for_byte():
    v = load("bolt04/onion-test.json")
    gen = v["generate"]
    hops = [(H(h["pubkey"]), strip_length(h["payload"])) for h in gen["hops"]]
    packet = sphinx.build(H(gen["session_key"]), hops, H(gen["associated_data"]), size=1300)
    assert packet.hex() == v["onion"]


def test_onion_packet_peeled_hop_by_hop():
    v = load("bolt04/onion-test.json")
    gen = v["generate"]
    packet = H(v["onion"])
    for i, secret in enumerate(v["decode"]):
        layer = sphinx.peel(H(secret), packet, H(gen["associated_data"]))
        assert layer.payload == strip_length(gen["hops"][i]["payload"])
        if i == len(v["decode"]) - 1:
            assert layer.next_packet is None
        else:
            packet = layer.next_packet


def test_onion_tampering_is_detected():
    v = load("bolt04/onion-test.json")
    gen = v["generate"]
    packet = bytearray(H(v["onion"]))
    packet[100] ^= 1
    with pytest.raises(DecodeError, match="HMAC"):
        sphinx.peel(H(v["decode"][0]), bytes(packet), H(gen["associated_data"]))
    with pytest.raises(DecodeError, match="HMAC"):  # wrong associated data
        sphinx.peel(H(v["decode"][0]), H(v["onion"]), b"")
    with pytest.raises(DecodeError, match="HMAC"):  # wrong key
        sphinx.peel(H(v["decode"][1]), H(v["onion"]), H(gen["associated_data"]))
    with pytest.raises(DecodeError, match="version"):
        sphinx.peel(H(v["decode"][0]), b"\x01" + H(v["onion"])[1:], H(gen["associated_data"]))


# ---- route blinding -----------------------------------------------------------------------

def test_encrypted_data_encoding():
    v = load("bolt04/route-blinding-test.json")
    for hop in v["generate"]["hops"]:
        assert blinding.encode_data(vector_tlvs(hop["tlvs"])).hex() == hop["encoded_tlvs"]
        decoded = blinding.decode_data(H(hop["encoded_tlvs"]))
        assert blinding.encode_data(decoded).hex() == hop["encoded_tlvs"]


def test_blinded_route_built():
    v = load("bolt04/route-blinding-test.json")
    hops = v["generate"]["hops"]
    trace = []
    bob_carol = blinding.blind(H(hops[0]["session_key"]),
                               [(H(h["node_id"]), H(h["encoded_tlvs"])) for h in hops[:2]], trace)
    dave_eve = blinding.blind(H(hops[2]["session_key"]),
                              [(H(h["node_id"]), H(h["encoded_tlvs"])) for h in hops[2:]], trace)
    for got, want in zip(trace, hops, strict=True):
        assert got.path_key.hex() == want["path_key"]
        assert got.shared_secret.hex() == want["shared_secret"]
        assert got.rho.hex() == want["rho"]
        assert got.encrypted_data.hex() == want["encrypted_data"]
        assert got.blinded_node_id.hex() == want["blinded_node_id"]
    route = blinding.concatenate(bob_carol, dave_eve)
    want = v["route"]
    assert route.first_node_id.hex() == want["first_node_id"]
    assert route.first_path_key.hex() == want["first_path_key"]
    assert [(h.blinded_node_id.hex(), h.encrypted_data.hex()) for h in route.hops] == \
        [(h["blinded_node_id"], h["encrypted_data"]) for h in want["hops"]]
    again, end = blinding.BlindedPath.parse(route.serialize())
    assert again == route and end == len(route.serialize())


def test_blinded_route_unblinded_hop_by_hop():
    v = load("bolt04/route-blinding-test.json")
    for hop, enc in zip(v["unblind"]["hops"], v["route"]["hops"], strict=True):
        got = blinding.unblind(H(hop["node_privkey"]), H(hop["path_key"]),
                               H(enc["encrypted_data"]))
        assert got.data.hex() == hop["decrypted_data"]
        assert got.blinded_secret.hex() == hop["blinded_privkey"]
        assert sphinx.pubkey(got.blinded_secret).hex() == enc["blinded_node_id"]
        want_next = hop.get("next_path_key_override", hop["next_path_key"])
        assert got.next_path_key.hex() == want_next


def test_unblind_rejects_wrong_key_and_tampering():
    v = load("bolt04/route-blinding-test.json")
    hop, enc = v["unblind"]["hops"][0], v["route"]["hops"][0]
    with pytest.raises(DecodeError):
        blinding.unblind(H(v["unblind"]["hops"][1]["node_privkey"]), H(hop["path_key"]),
                         H(enc["encrypted_data"]))
    tampered = bytearray(H(enc["encrypted_data"]))
    tampered[0] ^= 0x80
    with pytest.raises(DecodeError):
        blinding.unblind(H(hop["node_privkey"]), H(hop["path_key"]), bytes(tampered))


def test_payinfo_aggregation_matches_payment_vector():
    v = load("bolt04/blinded-payment-onion-test.json")
    relays = []
    for hop in v["generate"]["full_route"]["hops"][1:-1]:
        r = hop["tlvs"]["encrypted_recipient_data"]["payment_relay"]
        relays.append(PaymentRelay(r["cltv_expiry_delta"], r["fee_proportional_millionths"],
                                   r.get("fee_base_msat", 0)))
    want = v["generate"]["blinded_payinfo"]
    assert blinding.aggregate_relay(relays) == (
        want["fee_base_msat"], want["fee_proportional_millionths"], want["cltv_expiry_delta"])


# ---- blinded onion message ----------------------------------------------------------------

def _message_route(v):
    # Dave's path Bob -> Carol -> Dave starts with Bob's secret; Alice's hop is prepended by the
    # sender and hands over with next_path_key_override.
    hops, ids = v["generate"]["hops"], _node_ids(v)
    dave_path = blinding.blind(H(hops[1]["path_key_secret"]),
                               [(H(n), H(h["encrypted_data_tlv"]))
                                for n, h in zip(ids[1:], hops[1:], strict=True)])
    alice = blinding.blind(H(hops[0]["path_key_secret"]),
                           [(H(ids[0]), H(hops[0]["encrypted_data_tlv"]))])
    return blinding.concatenate(alice, dave_path)


def _node_ids(v):
    # Alice is the route's first node; each hop's next_node_id names the following one.
    ids = [v["route"]["first_node_id"]]
    ids += [h["tlvs"]["next_node_id"] for h in v["generate"]["hops"][:-1]]
    return ids


def test_onion_message_route_and_packet():
    v = load("bolt04/blinded-onion-message-onion-test.json")
    route = _message_route(v)
    for got, want in zip(route.hops, v["route"]["hops"], strict=True):
        assert got.blinded_node_id.hex() == want["blinded_node_id"]
        assert got.encrypted_data.hex() == want["encrypted_recipient_data"]
    assert route.first_path_key.hex() == v["route"]["first_path_key"]
    msg = onionmsg.build(H(v["generate"]["session_key"]), route,
                         {1: H(v["onionmessage"]["unknown_tag_1"])}, size=1300)
    assert msg.packet.hex() == v["onionmessage"]["onion_message_packet"]
    assert msg.serialize().hex() == v["decrypt"]["hops"][0]["onion_message"]


def test_onion_message_prepend_matches_vector():
    v = load("bolt04/blinded-onion-message-onion-test.json")
    hops = v["generate"]["hops"]
    ids = _node_ids(v)
    dave_path = blinding.blind(H(hops[1]["path_key_secret"]),
                               [(H(n), H(h["encrypted_data_tlv"]))
                                for n, h in zip(ids[1:], hops[1:], strict=True)])
    route = onionmsg.prepend(H(hops[0]["path_key_secret"]), [H(ids[0])], dave_path)
    assert route == _message_route(v)


def test_onion_message_peeled_hop_by_hop():
    v = load("bolt04/blinded-onion-message-onion-test.json")
    steps = v["decrypt"]["hops"]
    msg = onionmsg.OnionMessage.parse(H(steps[0]["onion_message"]))
    for i, step in enumerate(steps):
        assert msg.serialize().hex() == step["onion_message"]
        out = onionmsg.peel(H(step["privkey"]), msg)
        if i < len(steps) - 1:
            assert isinstance(out, onionmsg.Forward)
            assert out.next_node_id.hex() == step["next_node_id"]
            msg = out.message
        else:
            assert isinstance(out, onionmsg.Received)
            assert out.path_id.hex() == v["generate"]["hops"][-1]["tlvs"]["path_id"]
            assert out.contents == {} and out.reply_path is None
            assert out.data[65535] == H("06c1")


def test_onion_message_peel_rejections():
    v = load("bolt04/blinded-onion-message-onion-test.json")
    steps = v["decrypt"]["hops"]
    msg = onionmsg.OnionMessage.parse(H(steps[0]["onion_message"]))
    with pytest.raises(DecodeError):  # not our message
        onionmsg.peel(H(steps[1]["privkey"]), msg)
    wrong_key = onionmsg.OnionMessage(H(steps[1]["onion_message"])[2:35], msg.packet)
    with pytest.raises(DecodeError):  # path key does not match the packet
        onionmsg.peel(H(steps[0]["privkey"]), wrong_key)
    with pytest.raises(DecodeError):
        onionmsg.OnionMessage.parse(H(steps[0]["onion_message"])[:100])


# ---- blinded payment onion ----------------------------------------------------------------

def test_payment_onion_built_and_peeled():
    v = load("bolt04/blinded-payment-onion-test.json")
    gen = v["generate"]
    hops = [(H(h["pubkey"]), strip_length(h["payload"])) for h in gen["full_route"]["hops"]]
    packet = sphinx.build(H(gen["session_key"]), hops, H(gen["associated_data"]), size=1300)
    assert packet.hex() == gen["onion"]

    steps = v["decrypt"]["hops"]
    path_key = None
    for i, step in enumerate(steps):
        assert packet.hex() == step["onion"]
        secret = H(step["node_privkey"])
        if path_key is not None:  # inside the blinded route, past the introduction node
            secret = blinding.unblind(secret, path_key, _encrypted(hops[i][1])).blinded_secret
        layer = sphinx.peel(secret, packet, H(gen["associated_data"]))
        assert layer.payload == hops[i][1]
        if "next_path_key" in step:
            this_key = path_key or _current_path_key(layer.payload)
            hop = blinding.unblind(H(step["node_privkey"]), this_key, _encrypted(layer.payload))
            assert hop.next_path_key.hex() == step["next_path_key"]
            path_key = hop.next_path_key
        packet = layer.next_packet
    assert packet is None


def _encrypted(payload):
    return next(v for t, v, _ in records(payload) if t == 10)


def _current_path_key(payload):
    return next(v for t, v, _ in records(payload) if t == 12)


def test_payment_path_unblinds_to_vector_data():
    v = load("bolt04/blinded-payment-onion-test.json")
    gen = v["generate"]
    route = gen["blinded_route"]
    path_key = H(route["first_path_key"])
    for step, hop, full in zip(v["decrypt"]["hops"][1:], route["hops"],
                               gen["full_route"]["hops"][1:], strict=True):
        got = blinding.unblind(H(step["node_privkey"]), path_key, H(hop["encrypted_data"]))
        assert got.data == blinding.encode_data(vector_tlvs(full["tlvs"]
                                                            ["encrypted_recipient_data"]))
        path_key = got.next_path_key


def test_payer_builds_the_official_payment_onion():
    """bolt12ext.payer gives every hop payload of the vector from the blinded route and
    payinfo alone, and so the packet itself."""
    from bolt12ext import payer
    from bolt12ext.blinding import BlindedHop, BlindedPath, PayInfo
    v = load("bolt04/blinded-payment-onion-test.json")
    gen = v["generate"]
    route = gen["blinded_route"]
    path = BlindedPath(H(route["first_node_id"]), H(route["first_path_key"]),
                       [BlindedHop(H(h["blinded_node_id"]), H(h["encrypted_data"]))
                        for h in route["hops"]])
    info = gen["blinded_payinfo"]
    payinfo = PayInfo(info["fee_base_msat"], info["fee_proportional_millionths"],
                      info["cltv_expiry_delta"], 0, 0)
    amount, cltv = payer.at_introduction(gen["final_amount_msat"], gen["final_cltv"], payinfo)
    alice = gen["full_route"]["hops"][0]
    forwards = [payer.Forward(H(alice["pubkey"]), 10, amount, cltv)]
    total = {t: v for t, v, _ in records(strip_length(gen["full_route"]["hops"][-1]["payload"]))}
    hops = payer.onion_hops(forwards, path, gen["final_amount_msat"], gen["final_cltv"],
                            total_msat=int.from_bytes(total[18], "big"))
    want = [(H(h["pubkey"]), strip_length(h["payload"])) for h in gen["full_route"]["hops"]]
    assert hops == want
    packet = sphinx.build(H(gen["session_key"]), hops, H(gen["associated_data"]), size=1300)
    assert packet.hex() == gen["onion"]

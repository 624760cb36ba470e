"""Route blinding (BOLT4): blinded paths for messages and payments.

Building needs only public keys and a random session key; reading a hop
needs that hop's node secret. `encrypted_data_tlv` is handled as a dict with
the spec's names; unknown odd records are kept under their type number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from . import sphinx
from .tlv import DecodeError, read_tu, record, records, tu

NONCE = b"\x00" * 12

# ---- encrypted_data_tlv ---------------------------------------------------------------------

DATA_TYPES = {1: "padding", 2: "short_channel_id", 4: "next_node_id", 6: "path_id",
              8: "next_path_key_override", 10: "payment_relay", 12: "payment_constraints",
              14: "allowed_features"}
DATA_NUMBERS = {name: t for t, name in DATA_TYPES.items()}


def scid_int(scid: Union[int, str]) -> int:
    if isinstance(scid, int):
        return scid
    block, tx, out = (int(x) for x in scid.split("x"))
    return block << 40 | tx << 16 | out


def scid_str(value: int) -> str:
    return f"{value >> 40}x{(value >> 16) & 0xFFFFFF}x{value & 0xFFFF}"


@dataclass(frozen=True)
class PaymentRelay:
    cltv_expiry_delta: int
    fee_proportional_millionths: int
    fee_base_msat: int = 0


@dataclass(frozen=True)
class PaymentConstraints:
    max_cltv_expiry: int
    htlc_minimum_msat: int


def encode_data(data: Dict[Union[str, int], object]) -> bytes:
    """encrypted_data_tlv from spec names (or raw type numbers for unknown records)."""
    out = {}
    for key, value in data.items():
        t = DATA_NUMBERS[key] if isinstance(key, str) else key
        if t in (1, 6, 14) or t not in DATA_TYPES:
            v = bytes(value)
        elif t == 2:
            v = scid_int(value).to_bytes(8, "big")
        elif t in (4, 8):
            v = bytes(value)
            if len(v) != 33:
                raise ValueError(f"{DATA_TYPES[t]} must be a 33-byte point")
        elif t == 10:
            v = (value.cltv_expiry_delta.to_bytes(2, "big")
                 + value.fee_proportional_millionths.to_bytes(4, "big")
                 + tu(value.fee_base_msat, 4))
        else:  # 12
            v = value.max_cltv_expiry.to_bytes(4, "big") + tu(value.htlc_minimum_msat)
        out[t] = v
    return b"".join(record(t, v) for t, v in sorted(out.items()))


def decode_data(raw: bytes) -> dict:
    """Parsed encrypted_data_tlv; unknown even types are an error (spec: reader MUST fail)."""
    out: dict = {}
    for t, v, _ in records(raw):
        name = DATA_TYPES.get(t)
        if name is None:
            if t % 2 == 0:
                raise DecodeError(f"unknown even encrypted_data type {t}")
            out[t] = v
        elif t == 2:
            if len(v) != 8:
                raise DecodeError("short_channel_id must be 8 bytes")
            out[name] = int.from_bytes(v, "big")
        elif t in (4, 8):
            if len(v) != 33:
                raise DecodeError(f"{name} must be a 33-byte point")
            out[name] = v
        elif t == 10:
            if not 6 <= len(v) <= 10:
                raise DecodeError("bad payment_relay")
            out[name] = PaymentRelay(int.from_bytes(v[:2], "big"), int.from_bytes(v[2:6], "big"),
                                     read_tu(v[6:], 4))
        elif t == 12:
            if not 4 <= len(v) <= 12:
                raise DecodeError("bad payment_constraints")
            out[name] = PaymentConstraints(int.from_bytes(v[:4], "big"), read_tu(v[4:]))
        else:
            out[name] = v
    return out


def encrypt(rho: bytes, plaintext: bytes) -> bytes:
    return ChaCha20Poly1305(rho).encrypt(NONCE, plaintext, b"")


def decrypt(rho: bytes, ciphertext: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(rho).decrypt(NONCE, ciphertext, b"")
    except (InvalidTag, ValueError):
        raise DecodeError("encrypted_recipient_data does not decrypt") from None


# ---- blinded_path ---------------------------------------------------------------------------

@dataclass
class BlindedHop:
    blinded_node_id: bytes
    encrypted_data: bytes


@dataclass
class BlindedPath:
    first_node_id: bytes          # 33-byte point, or 9-byte sciddir (direction ‖ scid)
    first_path_key: bytes
    hops: List[BlindedHop] = field(default_factory=list)

    def serialize(self) -> bytes:
        out = self.first_node_id + self.first_path_key + bytes([len(self.hops)])
        for hop in self.hops:
            out += hop.blinded_node_id + len(hop.encrypted_data).to_bytes(2, "big")
            out += hop.encrypted_data
        return out

    @classmethod
    def parse(cls, data: bytes, pos: int = 0) -> Tuple["BlindedPath", int]:
        def take(n: int) -> bytes:
            nonlocal pos
            if pos + n > len(data):
                raise DecodeError("truncated blinded_path")
            pos += n
            return data[pos - n:pos]
        if pos >= len(data):
            raise DecodeError("truncated blinded_path")
        first = take(9 if data[pos] in (0, 1) else 33)
        path = cls(first, take(33))
        count = take(1)[0]
        if count == 0:
            raise DecodeError("blinded_path with zero hops")
        for _ in range(count):
            node = take(33)
            length = int.from_bytes(take(2), "big")
            path.hops.append(BlindedHop(node, take(length)))
        return path, pos


def parse_paths(data: bytes) -> List[BlindedPath]:
    """A concatenation of blinded_path (no count), at least one."""
    if not data:
        raise DecodeError("empty blinded path list")
    paths, pos = [], 0
    while pos < len(data):
        path, pos = BlindedPath.parse(data, pos)
        paths.append(path)
    return paths


def serialize_paths(paths: Sequence[BlindedPath]) -> bytes:
    return b"".join(p.serialize() for p in paths)


# ---- building and reading -------------------------------------------------------------------

@dataclass
class BlindedHopTrace:
    """What the builder computed for one hop (checked against the spec vectors)."""
    path_key: bytes
    shared_secret: bytes
    rho: bytes
    blinded_node_id: bytes
    encrypted_data: bytes


def blind(session_key: bytes, hops: Sequence[Tuple[bytes, bytes]],
          trace: Optional[List[BlindedHopTrace]] = None) -> BlindedPath:
    """BlindedPath through `hops` = [(node_id, encrypted_data_tlv bytes)], first hop first."""
    if not hops:
        raise ValueError("a blinded path needs at least one hop")
    e = session_key
    path = BlindedPath(hops[0][0], sphinx.pubkey(e))
    for node_id, plaintext in hops:
        point = sphinx.pubkey(e)
        ss = sphinx.ecdh(e, node_id)
        rho = sphinx.hmac256(b"rho", ss)
        blinded = sphinx.tweak_point(node_id, sphinx.hmac256(b"blinded_node_id", ss))
        hop = BlindedHop(blinded, encrypt(rho, plaintext))
        path.hops.append(hop)
        if trace is not None:
            trace.append(BlindedHopTrace(point, ss, rho, blinded, hop.encrypted_data))
        e = sphinx.tweak_secret(e, sphinx.next_ephemeral(point, ss))
    return path


@dataclass
class Unblinded:
    data: bytes                   # the decrypted encrypted_data_tlv
    blinded_secret: bytes         # key for this hop's onion layer
    shared_secret: bytes
    next_path_key: bytes          # override applied when present

    @property
    def fields(self) -> dict:
        return decode_data(self.data)


def unblind(node_secret: bytes, path_key: bytes, encrypted_data: bytes) -> Unblinded:
    """Read one hop: decrypt its data, derive its blinded key and the next path key."""
    ss = sphinx.ecdh(node_secret, path_key)
    plain = decrypt(sphinx.hmac256(b"rho", ss), encrypted_data)
    fields = decode_data(plain)
    next_key = fields.get("next_path_key_override") or \
        sphinx.tweak_point(path_key, sphinx.next_ephemeral(path_key, ss))
    blinded = sphinx.tweak_secret(node_secret, sphinx.hmac256(b"blinded_node_id", ss))
    return Unblinded(plain, blinded, ss, next_key)


def concatenate(head: BlindedPath, tail: BlindedPath) -> BlindedPath:
    """`head`'s last hop must carry next_path_key_override = tail.first_path_key."""
    return BlindedPath(head.first_node_id, head.first_path_key, head.hops + tail.hops)


def pad_equal(payloads: Sequence[Dict]) -> List[bytes]:
    """Encode each hop's data, padded (type 1) to one length so that hops look alike."""
    plain = [encode_data(p) for p in payloads]
    if len({len(p) for p in plain}) <= 1:
        return plain
    target = max(len(p) for p in plain) + 2  # the longest gets an empty padding record
    out = []
    for fields, data in zip(payloads, plain, strict=True):
        pad = target - len(data) - 2
        if pad >= 253:
            pad -= 2  # the padding length itself needs a 3-byte BigSize
        out.append(encode_data(dict(fields, padding=b"\x00" * pad)))
    return out


def message_path(session_key: bytes, node_ids: Sequence[bytes], path_id: bytes,
                 first_scid_dir: Optional[bytes] = None) -> BlindedPath:
    """Blinded message path node_ids[0] → … → node_ids[-1]; the last hop gets `path_id`.

    `first_scid_dir` (9 bytes) replaces the introduction node id when given.
    """
    payloads = [{"next_node_id": nxt} for nxt in node_ids[1:]] + [{"path_id": path_id}]
    path = blind(session_key, list(zip(node_ids, pad_equal(payloads), strict=True)))
    if first_scid_dir is not None:
        path.first_node_id = first_scid_dir
    return path


@dataclass(frozen=True)
class PaymentHop:
    """A forwarding hop of a blinded payment path: node, outgoing channel, its policy."""
    node_id: bytes
    short_channel_id: Union[int, str]
    relay: PaymentRelay
    htlc_minimum_msat: int = 0


@dataclass(frozen=True)
class PayInfo:
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int
    htlc_minimum_msat: int
    htlc_maximum_msat: int
    features: bytes = b""

    def serialize(self) -> bytes:
        return (self.fee_base_msat.to_bytes(4, "big")
                + self.fee_proportional_millionths.to_bytes(4, "big")
                + self.cltv_expiry_delta.to_bytes(2, "big")
                + self.htlc_minimum_msat.to_bytes(8, "big")
                + self.htlc_maximum_msat.to_bytes(8, "big")
                + len(self.features).to_bytes(2, "big") + self.features)

    @classmethod
    def parse(cls, data: bytes, pos: int = 0) -> Tuple["PayInfo", int]:
        if pos + 28 > len(data):
            raise DecodeError("truncated blinded_payinfo")
        flen = int.from_bytes(data[pos + 26:pos + 28], "big")
        if pos + 28 + flen > len(data):
            raise DecodeError("truncated blinded_payinfo features")
        info = cls(int.from_bytes(data[pos:pos + 4], "big"),
                   int.from_bytes(data[pos + 4:pos + 8], "big"),
                   int.from_bytes(data[pos + 8:pos + 10], "big"),
                   int.from_bytes(data[pos + 10:pos + 18], "big"),
                   int.from_bytes(data[pos + 18:pos + 26], "big"),
                   data[pos + 28:pos + 28 + flen])
        return info, pos + 28 + flen


def parse_payinfos(data: bytes) -> List[PayInfo]:
    """A concatenation of blinded_payinfo (an invoice's invoice_blindedpay; may be empty)."""
    infos, pos = [], 0
    while pos < len(data):
        info, pos = PayInfo.parse(data, pos)
        infos.append(info)
    return infos


def aggregate_relay(relays: Sequence[PaymentRelay]) -> Tuple[int, int, int]:
    """(fee_base, fee_ppm, cltv_delta) of the hops, per BOLT4, rounding up, from the recipient."""
    base = ppm = cltv = 0
    for r in reversed(relays):
        base = (r.fee_base_msat * 1_000_000 + base * (1_000_000 + r.fee_proportional_millionths)
                + 999_999) // 1_000_000
        ppm = ((ppm + r.fee_proportional_millionths) * 1_000_000
               + ppm * r.fee_proportional_millionths + 999_999) // 1_000_000
        cltv += r.cltv_expiry_delta
    return base, ppm, cltv


def payment_path(session_key: bytes, hops: Sequence[PaymentHop], recipient: bytes,
                 path_id: bytes, max_cltv_expiry: int, htlc_maximum_msat: int,
                 min_final_cltv_expiry_delta: int = 0, htlc_minimum_msat: int = 0,
                 extra_final: Optional[Dict] = None) -> Tuple[BlindedPath, PayInfo]:
    """Blinded payment path hops… → recipient, and the blinded_payinfo the sender needs.

    `max_cltv_expiry` is the recipient's own limit; each earlier hop's limit adds
    the deltas after it (BOLT4). `extra_final` adds records to the recipient's data.
    """
    final_max = max_cltv_expiry
    limits = []
    running = final_max + min_final_cltv_expiry_delta
    for hop in reversed(hops):
        running += hop.relay.cltv_expiry_delta
        limits.append(running)
    limits.reverse()
    htlc_min = max([htlc_minimum_msat] + [h.htlc_minimum_msat for h in hops])
    payloads = [{"short_channel_id": hop.short_channel_id, "payment_relay": hop.relay,
                 "payment_constraints": PaymentConstraints(limit, htlc_min)}
                for hop, limit in zip(hops, limits, strict=True)]
    payloads.append(dict({"path_id": path_id,
                          "payment_constraints": PaymentConstraints(final_max, htlc_min)},
                         **(extra_final or {})))
    nodes = [h.node_id for h in hops] + [recipient]
    path = blind(session_key, list(zip(nodes, pad_equal(payloads), strict=True)))
    base, ppm, cltv = aggregate_relay([h.relay for h in hops])
    return path, PayInfo(base, ppm, cltv + min_final_cltv_expiry_delta, htlc_min,
                         htlc_maximum_msat)

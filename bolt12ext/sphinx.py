"""Sphinx onion packets (BOLT4): build with public keys, peel one layer with a secret.

Used for onion messages (any routing size; 1300 and 32768 are the usual ones)
and for payment onions (1300). Hop payloads are TLV streams; the BigSize
length in front of each is added here. Key derivation and blinding primitives
shared with route blinding live here too.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import coincurve
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from .tlv import DecodeError, bigsize, read_bigsize

VERSION = 0
HMAC_LEN = 32
MESSAGE_SIZES = (1300, 32768)
PAYMENT_SIZE = 1300


def hmac256(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def ecdh(secret: bytes, point: bytes) -> bytes:
    """SHA256 of the compressed shared point (BOLT4 shared secret)."""
    try:
        return coincurve.PrivateKey(secret).ecdh(point)
    except (ValueError, TypeError):
        raise DecodeError("invalid point or key for ECDH") from None


def pubkey(secret: bytes) -> bytes:
    return coincurve.PrivateKey(secret).public_key.format()


def tweak_point(point: bytes, scalar: bytes) -> bytes:
    try:
        return coincurve.PublicKey(point).multiply(scalar).format()
    except (ValueError, TypeError):
        raise DecodeError("invalid point") from None


def tweak_secret(secret: bytes, scalar: bytes) -> bytes:
    return coincurve.PrivateKey(secret).multiply(scalar).secret


def next_ephemeral(point: bytes, shared_secret: bytes) -> bytes:
    """The blinding factor SHA256(E ‖ ss) that takes E_i to E_{i+1}."""
    return hashlib.sha256(point + shared_secret).digest()


def stream(key: bytes, length: int) -> bytes:
    """ChaCha20 keystream, 96-bit zero nonce, counter 0."""
    enc = Cipher(algorithms.ChaCha20(key, b"\x00" * 16), mode=None).encryptor()
    return enc.update(b"\x00" * length)


def xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b[:len(a)], "big")).to_bytes(len(a), "big")


def _hop_secrets(session_key: bytes, pubkeys: Sequence[bytes]) -> List[bytes]:
    secrets, e = [], session_key
    for node in pubkeys:
        point = pubkey(e)
        ss = ecdh(e, node)
        secrets.append(ss)
        e = tweak_secret(e, next_ephemeral(point, ss))
    return secrets


def build(session_key: bytes, hops: Sequence[Tuple[bytes, bytes]],
          associated_data: bytes = b"", size: Optional[int] = None) -> bytes:
    """Packet for `hops` = [(33-byte node key, TLV payload)], first hop first.

    `size` is the routing-info size; for onion messages the smallest of
    MESSAGE_SIZES that fits is chosen when it is None.
    """
    if not hops:
        raise ValueError("no hops")
    frames = [bigsize(len(payload)) + payload for _, payload in hops]
    needed = sum(len(f) + HMAC_LEN for f in frames)
    if size is None:
        size = next((s for s in MESSAGE_SIZES if s >= needed), None)
        if size is None:
            raise ValueError(f"payloads need {needed} bytes, more than {MESSAGE_SIZES[-1]}")
    if needed > size:
        raise ValueError(f"payloads need {needed} bytes, more than {size}")
    secrets = _hop_secrets(session_key, [node for node, _ in hops])

    filler = b""
    for i in range(len(hops) - 1):
        hop_len = len(frames[i]) + HMAC_LEN
        filler += b"\x00" * hop_len
        keystream = stream(hmac256(b"rho", secrets[i]), 2 * size)
        start = size - (len(filler) - hop_len)
        filler = xor(filler, keystream[start:start + len(filler)])

    routing = stream(hmac256(b"pad", session_key), size)
    next_hmac = b"\x00" * HMAC_LEN
    for i in range(len(hops) - 1, -1, -1):
        frame = frames[i] + next_hmac
        routing = (frame + routing)[:size]
        routing = xor(routing, stream(hmac256(b"rho", secrets[i]), size))
        if i == len(hops) - 1 and filler:
            routing = routing[:size - len(filler)] + filler
        next_hmac = hmac256(hmac256(b"mu", secrets[i]), routing + associated_data)
    return bytes([VERSION]) + pubkey(session_key) + routing + next_hmac


@dataclass
class Peeled:
    payload: bytes                 # this hop's TLV stream
    shared_secret: bytes
    next_packet: Optional[bytes]   # None at the final hop


def peel(secret: bytes, packet: bytes, associated_data: bytes = b"") -> Peeled:
    """Remove one layer with the hop's (possibly blinded) secret key."""
    size = len(packet) - 1 - 33 - HMAC_LEN
    if size <= 0:
        raise DecodeError("onion packet too short")
    if packet[0] != VERSION:
        raise DecodeError(f"unknown onion version {packet[0]}")
    point, routing, mac = packet[1:34], packet[34:34 + size], packet[34 + size:]
    ss = ecdh(secret, point)
    if not hmac.compare_digest(hmac256(hmac256(b"mu", ss), routing + associated_data), mac):
        raise DecodeError("onion HMAC mismatch")
    clear = xor(routing + b"\x00" * size, stream(hmac256(b"rho", ss), 2 * size))
    length, pos = read_bigsize(clear, 0)
    if length == 0 or pos + length + HMAC_LEN > size:
        raise DecodeError("bad hop payload length")
    payload = clear[pos:pos + length]
    next_hmac = clear[pos + length:pos + length + HMAC_LEN]
    if next_hmac == b"\x00" * HMAC_LEN:
        return Peeled(payload, ss, None)
    rest = clear[pos + length + HMAC_LEN:pos + length + HMAC_LEN + size]
    next_point = tweak_point(point, next_ephemeral(point, ss))
    return Peeled(payload, ss, bytes([VERSION]) + next_point + rest + next_hmac)

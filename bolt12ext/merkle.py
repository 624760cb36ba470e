"""BOLT12 merkle root and BIP340 signatures over TLV streams."""

from __future__ import annotations

import hashlib
from typing import List

import coincurve

from .tlv import DecodeError, bigsize, records

SIGNATURE_RANGE = (240, 1000)


def tagged_hash(tag: bytes, msg: bytes) -> bytes:
    t = hashlib.sha256(tag).digest()
    return hashlib.sha256(t + t + msg).digest()


def _branch(a: bytes, b: bytes) -> bytes:
    return tagged_hash(b"LnBranch", min(a, b) + max(a, b))


def merkle_root(data: bytes) -> bytes:
    """Root over the non-signature records of a TLV stream (BOLT12 "Signature Calculation")."""
    recs = [(t, raw) for t, _, raw in records(data)
            if not SIGNATURE_RANGE[0] <= t <= SIGNATURE_RANGE[1]]
    if not recs:
        raise DecodeError("no records to sign")
    first = recs[0][1]
    level: List[bytes] = [
        _branch(tagged_hash(b"LnLeaf", raw), tagged_hash(b"LnNonce" + first, bigsize(t)))
        for t, raw in recs]
    while len(level) > 1:
        nxt = [_branch(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])  # an odd node carries up
        level = nxt
    return level[0]


def signature_message(messagename: str, root: bytes) -> bytes:
    return tagged_hash(b"lightning" + messagename.encode() + b"signature", root)


def sign(messagename: str, data: bytes, secret: bytes, aux_randomness=b"") -> bytes:
    """BIP340 signature; fresh auxiliary randomness unless given (None: none, as CLN)."""
    msg = signature_message(messagename, merkle_root(data))
    return coincurve.PrivateKey(secret).sign_schnorr(msg, aux_randomness)


def verify(messagename: str, data: bytes, signature: bytes, pubkey: bytes) -> bool:
    """BIP340 check of `signature` by the 33-byte `pubkey` over `data`'s merkle root."""
    if len(signature) != 64 or len(pubkey) != 33:
        return False
    try:
        xonly = coincurve.PublicKeyXOnly(pubkey[1:])
        return xonly.verify(signature, signature_message(messagename, merkle_root(data)))
    except Exception:
        return False

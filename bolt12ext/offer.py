"""BOLT12 offers: decoding with every reader rule of the spec.

`decode_offer(string)` returns a dict with CLN-`decode`-like names and the raw
records (for byte-exact re-encoding and for the merkle tree); any rule broken
raises `DecodeError`.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import coincurve

from . import encoding
from .tlv import DecodeError, read_tu, records

OFFER_RANGES = ((1, 79), (1_000_000_000, 1_999_999_999))
OFFER_TYPES = {2: "offer_chains", 4: "offer_metadata", 6: "offer_currency", 8: "offer_amount",
               10: "offer_description", 12: "offer_features", 14: "offer_absolute_expiry",
               16: "offer_paths", 18: "offer_issuer", 20: "offer_quantity_max",
               22: "offer_issuer_id"}
# Feature bits BOLT12 defines for offers: none yet. Unknown even bits are fatal.
KNOWN_OFFER_FEATURES: frozenset = frozenset()


def point(data: bytes, what: str) -> str:
    if len(data) != 33:
        raise DecodeError(f"{what}: expected a 33-byte point")
    try:
        coincurve.PublicKey(data)
    except Exception:
        raise DecodeError(f"{what}: not a valid point") from None
    return data.hex()


def utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{what}: invalid UTF-8") from None


def check_features(data: bytes, known: frozenset, what: str) -> str:
    bits = int.from_bytes(data, "big")
    bit = 0
    while bits >> bit:
        if (bits >> bit) & 1 and bit % 2 == 0 and bit not in known and bit + 1 not in known:
            raise DecodeError(f"{what}: unknown even feature {bit}")
        bit += 1
    return data.hex()


def sciddir_or_pubkey(data: bytes, pos: int) -> Tuple[dict, int]:
    if pos >= len(data):
        raise DecodeError("truncated first_node_id")
    if data[pos] in (0, 1):
        if pos + 9 > len(data):
            raise DecodeError("truncated sciddir")
        scid = int.from_bytes(data[pos + 1:pos + 9], "big")
        return {"first_scid_dir": data[pos], "first_scid":
                f"{scid >> 40}x{(scid >> 16) & 0xFFFFFF}x{scid & 0xFFFF}"}, pos + 9
    if pos + 33 > len(data):
        raise DecodeError("truncated first_node_id")
    return {"first_node_id": point(data[pos:pos + 33], "first_node_id")}, pos + 33


def blinded_paths(data: bytes) -> List[dict]:
    """A concatenation of blinded_path (at least one)."""
    if not data:
        raise DecodeError("empty blinded path list")
    paths, pos = [], 0
    while pos < len(data):
        path, pos = sciddir_or_pubkey(data, pos)
        if pos + 34 > len(data):
            raise DecodeError("truncated blinded_path")
        path["first_path_key"] = point(data[pos:pos + 33], "first_path_key")
        num_hops = data[pos + 33]
        pos += 34
        if num_hops == 0:
            raise DecodeError("blinded_path with zero hops")
        hops = []
        for _ in range(num_hops):
            if pos + 35 > len(data):
                raise DecodeError("truncated onionmsg_hop")
            node = point(data[pos:pos + 33], "blinded_node_id")
            length = int.from_bytes(data[pos + 33:pos + 35], "big")
            pos += 35
            if pos + length > len(data):
                raise DecodeError("truncated encrypted_recipient_data")
            hops.append({"blinded_node_id": node,
                         "encrypted_recipient_data": data[pos:pos + length].hex()})
            pos += length
        path["path"] = hops
        paths.append(path)
    return paths


def in_ranges(t: int, ranges) -> bool:
    return any(lo <= t <= hi for lo, hi in ranges)


def decode_offer_fields(recs, ranges=OFFER_RANGES, strict_ranges=True) -> dict:
    """The offer part of a TLV stream (records from tlv.records)."""
    out: dict = {}
    unknown = []
    for t, value, _ in recs:
        if t in OFFER_TYPES:
            name = OFFER_TYPES[t]
            if t == 2:
                if not value or len(value) % 32:
                    raise DecodeError("offer_chains must be a non-empty list of 32-byte hashes")
                out[name] = [value[i:i + 32][::-1].hex() for i in range(0, len(value), 32)]
            elif t in (4,):
                out[name] = value.hex()
            elif t in (6, 10, 18):
                out[name] = utf8(value, name)
            elif t in (8, 14, 20):
                out[name] = read_tu(value)
            elif t == 12:
                out[name] = check_features(value, KNOWN_OFFER_FEATURES, name)
            elif t == 16:
                out[name] = blinded_paths(value)
            elif t == 22:
                out[name] = point(value, name)
        elif in_ranges(t, ranges):
            if t % 2 == 0:
                raise DecodeError(f"unknown even offer field {t}")
            unknown.append({"type": t, "value": value.hex()})
        elif strict_ranges:
            raise DecodeError(f"field {t} outside the offer ranges")
    if unknown:
        out["unknown_offer_tlvs"] = unknown
    if "offer_amount" in out:
        if out["offer_amount"] == 0:
            raise DecodeError("offer_amount is zero")
        if "offer_description" not in out:
            raise DecodeError("offer_amount without offer_description")
    if "offer_currency" in out and "offer_amount" not in out:
        raise DecodeError("offer_currency without offer_amount")
    if "offer_amount" in out and "offer_currency" not in out:
        out["offer_amount_msat"] = out.pop("offer_amount")  # bitcoin amounts are msat
    return out


def decode_offer(text: str) -> dict:
    hrp, data = encoding.decode(text)
    if hrp != "lno":
        raise DecodeError(f"not an offer ({hrp})")
    recs = records(data)
    if not recs:
        raise DecodeError("empty offer")
    out = decode_offer_fields(recs)
    if "offer_issuer_id" not in out and "offer_paths" not in out:
        raise DecodeError("offer has neither offer_issuer_id nor offer_paths")
    out.update(type="bolt12 offer", valid=True)
    return out


def offer_records(text: str) -> Optional[list]:
    """The raw records of an offer string (after decode_offer has accepted it)."""
    return records(encoding.decode(text)[1])

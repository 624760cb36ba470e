"""BOLT12 offers: decoding with every reader rule of the spec.

`parse_offer(string)` returns a typed `Decoded`, `decode_offer(string)` its JSON
form with CLN-`decode`-like names; any rule broken raises `DecodeError`.
"""

from __future__ import annotations

from typing import List, Optional

import coincurve

from . import encoding
from .blinding import BlindedHop, BlindedPath, parse_paths, scid_int
from .decoded import Decoded, UnknownTlv, path_dict  # noqa: F401 (path_dict: API)
from .tlv import DecodeError, read_tu, records

OFFER_RANGES = ((1, 79), (1_000_000_000, 1_999_999_999))
OFFER_TYPES = {2: "offer_chains", 4: "offer_metadata", 6: "offer_currency", 8: "offer_amount",
               10: "offer_description", 12: "offer_features", 14: "offer_absolute_expiry",
               16: "offer_paths", 18: "offer_issuer", 20: "offer_quantity_max",
               22: "offer_issuer_id"}
# Feature bits BOLT12 defines for offers: none yet. Unknown even bits are fatal.
KNOWN_OFFER_FEATURES: frozenset = frozenset()


def point(data: bytes, what: str) -> bytes:
    if len(data) != 33:
        raise DecodeError(f"{what}: expected a 33-byte point")
    try:
        coincurve.PublicKey(data)
    except Exception:
        raise DecodeError(f"{what}: not a valid point") from None
    return data


def utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{what}: invalid UTF-8") from None


def check_features(data: bytes, known: frozenset, what: str) -> bytes:
    bits = int.from_bytes(data, "big")
    bit = 0
    while bits >> bit:
        if (bits >> bit) & 1 and bit % 2 == 0 and bit not in known and bit + 1 not in known:
            raise DecodeError(f"{what}: unknown even feature {bit}")
        bit += 1
    return data


def check_path(path: BlindedPath) -> BlindedPath:
    """`path` if each of its points is one (introduction node first, then hop by hop)."""
    if len(path.first_node_id) != 9:
        point(path.first_node_id, "first_node_id")
    point(path.first_path_key, "first_path_key")
    for hop in path.hops:
        point(hop.blinded_node_id, "blinded_node_id")
    return path


def dict_path(d: dict) -> BlindedPath:
    """The inverse of path_dict (e.g. for paths given as JSON)."""
    try:
        if "first_node_id" in d:
            first = bytes.fromhex(d["first_node_id"])
        else:
            first = bytes([d["first_scid_dir"]]) + scid_int(d["first_scid"]).to_bytes(8, "big")
        hops = [BlindedHop(bytes.fromhex(h["blinded_node_id"]),
                           bytes.fromhex(h["encrypted_recipient_data"])) for h in d["path"]]
        path = BlindedPath(first, bytes.fromhex(d["first_path_key"]), hops)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise DecodeError("not a blinded path object") from None
    return check_path(path)  # the same checks as a path read from the wire


def checked_paths(data: bytes) -> List[BlindedPath]:
    """A concatenation of blinded_path (at least one), every point checked."""
    return [check_path(p) for p in parse_paths(data)]


def in_ranges(t: int, ranges) -> bool:
    return any(lo <= t <= hi for lo, hi in ranges)


def offer_fields(recs, ranges=OFFER_RANGES, strict_ranges=True) -> dict:
    """The offer part of a TLV stream (records from tlv.records): name -> typed value."""
    out: dict = {}
    unknown = []
    for t, value, _ in recs:
        if t in OFFER_TYPES:
            name = OFFER_TYPES[t]
            if t == 2:
                if not value or len(value) % 32:
                    raise DecodeError("offer_chains must be a non-empty list of 32-byte hashes")
                # wire byte order, as CLN's decode prints them
                out[name] = [value[i:i + 32] for i in range(0, len(value), 32)]
            elif t in (4,):
                out[name] = value
            elif t in (6, 10, 18):
                out[name] = utf8(value, name)
            elif t in (8, 14, 20):
                out[name] = read_tu(value)
            elif t == 12:
                out[name] = check_features(value, KNOWN_OFFER_FEATURES, name)
            elif t == 16:
                out[name] = checked_paths(value)
            elif t == 22:
                out[name] = point(value, name)
        elif in_ranges(t, ranges):
            if t % 2 == 0:
                raise DecodeError(f"unknown even offer field {t}")
            unknown.append(UnknownTlv(t, value))
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
        # bitcoin amounts are msat; moved to the end, where `decode` has always shown it
        out["offer_amount_msat"] = out.pop("offer_amount")
    return out


def parse_offer(text: str) -> Decoded:
    hrp, data = encoding.decode(text)
    if hrp != "lno":
        raise DecodeError(f"not an offer ({hrp})")
    recs = records(data)
    if not recs:
        raise DecodeError("empty offer")
    fields = offer_fields(recs)
    if "offer_issuer_id" not in fields and "offer_paths" not in fields:
        raise DecodeError("offer has neither offer_issuer_id nor offer_paths")
    return Decoded("offer", fields)


def decode_offer(text: str) -> dict:
    """The offer's JSON form (CLN `decode`'s names); parse_offer for typed values."""
    return parse_offer(text).to_json()


def offer_part(data: bytes) -> bytes:
    """The raw records of a TLV stream that belong to the offer (what an invoice_request or
    a static invoice copies from its offer)."""
    return b"".join(raw for t, _, raw in records(data) if in_ranges(t, OFFER_RANGES))


def offer_records(text: str) -> Optional[list]:
    """The raw records of an offer string (after decode_offer has accepted it)."""
    return records(encoding.decode(text)[1])

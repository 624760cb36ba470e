"""BOLT12 invoice_request, invoice and static invoice decoding, and `decode()`.

Field names follow CLN's `decode` (offer_*, invreq_*, invoice_*). Signatures
are checked and reported (`signature_valid`), the way CLN's `decode` reports
`valid`; structural rule violations raise `DecodeError`.
"""

from __future__ import annotations

from typing import List

from . import encoding, merkle
from .offer import (
    OFFER_RANGES,
    OFFER_TYPES,
    blinded_paths,
    check_features,
    decode_offer,
    decode_offer_fields,
    in_ranges,
    point,
    utf8,
)
from .tlv import DecodeError, read_tu, records

OFFER = OFFER_RANGES
INVREQ = ((0, 0), (80, 159), (2_000_000_000, 2_999_999_999))
INVOICE = ((160, 239), (3_000_000_000, 3_999_999_999))
SIGNATURE = ((240, 1000),)

INVREQ_TYPES = {0: "invreq_metadata", 80: "invreq_chain", 82: "invreq_amount_msat",
                84: "invreq_features", 86: "invreq_quantity", 88: "invreq_payer_id",
                89: "invreq_payer_note", 90: "invreq_paths", 91: "invreq_bip_353_name"}
INVOICE_TYPES = {160: "invoice_paths", 162: "invoice_blindedpay", 164: "invoice_created_at",
                 166: "invoice_relative_expiry", 168: "invoice_payment_hash",
                 170: "invoice_amount_msat", 172: "invoice_fallbacks", 174: "invoice_features",
                 176: "invoice_node_id", 236: "invoice_held_htlc_available_paths"}

STATIC_INVOICE_MAX_BYTES = 5 * 1024


def blindedpay(data: bytes) -> List[dict]:
    out, pos = [], 0
    while pos < len(data):
        if pos + 28 > len(data):
            raise DecodeError("truncated blinded_payinfo")
        flen = int.from_bytes(data[pos + 26:pos + 28], "big")
        if pos + 28 + flen > len(data):
            raise DecodeError("truncated blinded_payinfo features")
        out.append({
            "fee_base_msat": int.from_bytes(data[pos:pos + 4], "big"),
            "fee_proportional_millionths": int.from_bytes(data[pos + 4:pos + 8], "big"),
            "cltv_expiry_delta": int.from_bytes(data[pos + 8:pos + 10], "big"),
            "htlc_minimum_msat": int.from_bytes(data[pos + 10:pos + 18], "big"),
            "htlc_maximum_msat": int.from_bytes(data[pos + 18:pos + 26], "big"),
            "features": data[pos + 28:pos + 28 + flen].hex()})
        pos += 28 + flen
    return out


def _fields(recs, table: dict, ranges, out: dict) -> None:
    unknown = []
    for t, value, _ in recs:
        if not in_ranges(t, ranges):
            continue
        name = table.get(t)
        if name is None:
            if t % 2 == 0:
                raise DecodeError(f"unknown even field {t}")
            unknown.append({"type": t, "value": value.hex()})
            continue
        if name in ("invreq_metadata",):
            out[name] = value.hex()
        elif name in ("invreq_chain", "invoice_payment_hash"):
            if len(value) != 32:
                raise DecodeError(f"{name} must be 32 bytes")
            out[name] = value.hex()  # chain hash in wire byte order, as CLN prints it
        elif name in ("invreq_amount_msat", "invreq_quantity", "invoice_created_at",
                      "invoice_relative_expiry", "invoice_amount_msat"):
            out[name] = read_tu(value, 4 if name == "invoice_relative_expiry" else 8)
        elif name in ("invreq_features", "invoice_features"):
            out[name] = check_features(value, frozenset(), name)
        elif name in ("invreq_payer_id", "invoice_node_id"):
            out[name] = point(value, name)
        elif name in ("invreq_payer_note", "invreq_bip_353_name"):
            out[name] = utf8(value, name) if name == "invreq_payer_note" else value.hex()
        elif name in ("invreq_paths", "invoice_paths", "invoice_held_htlc_available_paths"):
            out[name] = blinded_paths(value)
        elif name == "invoice_blindedpay":
            out[name] = blindedpay(value)
        elif name == "invoice_fallbacks":
            out[name] = value.hex()
    if unknown:
        out.setdefault("unknown_tlvs", []).extend(unknown)


def _check_ranges(recs, allowed) -> None:
    for t, _, _ in recs:
        if not in_ranges(t, allowed):
            raise DecodeError(f"field {t} not allowed here")


def _signature(recs, data: bytes, messagename: str, key_hex: str, out: dict) -> None:
    sig = next((v for t, v, _ in recs if t == 240), None)
    if sig is None:
        raise DecodeError("missing signature")
    out["signature"] = sig.hex()
    out["signature_valid"] = merkle.verify(messagename, data, sig, bytes.fromhex(key_hex))


def decode_invoice_request(data: bytes) -> dict:
    recs = records(data)
    _check_ranges(recs, OFFER + INVREQ + SIGNATURE)
    out = decode_offer_fields(recs, strict_ranges=False)
    _fields(recs, INVREQ_TYPES, INVREQ, out)
    for required in ("invreq_metadata", "invreq_payer_id"):
        if required not in out:
            raise DecodeError(f"missing {required}")
    _signature(recs, data, "invoice_request", out["invreq_payer_id"], out)
    out.update(type="bolt12 invoice_request")
    out["valid"] = out["signature_valid"]
    return out


def decode_invoice(data: bytes) -> dict:
    recs = records(data)
    _check_ranges(recs, OFFER + INVREQ + INVOICE + SIGNATURE)
    out = decode_offer_fields(recs, strict_ranges=False)
    _fields(recs, INVREQ_TYPES, INVREQ, out)
    _fields(recs, INVOICE_TYPES, INVOICE, out)
    for required in ("invoice_paths", "invoice_blindedpay", "invoice_created_at",
                     "invoice_payment_hash", "invoice_amount_msat", "invoice_node_id"):
        if required not in out:
            raise DecodeError(f"missing {required}")
    if len(out["invoice_paths"]) != len(out["invoice_blindedpay"]):
        raise DecodeError("invoice_blindedpay does not match invoice_paths")
    out.setdefault("invoice_relative_expiry", 7200)  # BOLT12's default, as CLN shows it
    _signature(recs, data, "invoice", out["invoice_node_id"], out)
    out.update(type="bolt12 invoice")
    out["valid"] = out["signature_valid"]
    return out


def decode_static_invoice(data: bytes) -> dict:
    """LDK's static invoice: offer records + 160/162/164/166/172/174/176/236, signed."""
    if len(data) > STATIC_INVOICE_MAX_BYTES:
        raise DecodeError("static invoice larger than 5 KiB")
    recs = records(data)
    _check_ranges(recs, OFFER + INVOICE + SIGNATURE)
    out = decode_offer_fields(recs, strict_ranges=False)
    _fields(recs, INVOICE_TYPES, INVOICE, out)
    for forbidden in ("invoice_payment_hash", "invoice_amount_msat"):
        if forbidden in out:
            raise DecodeError(f"a static invoice has no {forbidden}")
    for required in ("invoice_paths", "invoice_blindedpay", "invoice_created_at",
                     "invoice_node_id"):
        if required not in out:
            raise DecodeError(f"missing {required}")
    if len(out["invoice_paths"]) != len(out["invoice_blindedpay"]):
        raise DecodeError("invoice_blindedpay does not match invoice_paths")
    _signature(recs, data, "static_invoice", out["invoice_node_id"], out)
    out.update(type="bolt12 static invoice")
    out["valid"] = out["signature_valid"]
    return out


def expires_at(decoded: dict) -> int:
    """When a decoded invoice or static invoice expires (BOLT12's default: 7200 s)."""
    return decoded["invoice_created_at"] + decoded.get("invoice_relative_expiry", 7200)


def invreq_part(data: bytes) -> bytes:
    """The raw records an invoice copies from its invoice_request (the offer's included)."""
    return b"".join(raw for t, _, raw in records(data) if in_ranges(t, OFFER + INVREQ))


def decode(text: str) -> dict:
    """Any BOLT12 string, or a static invoice as raw TLV hex."""
    if not isinstance(text, str):
        raise DecodeError("expected a string")
    stripped = text.strip()
    if stripped and all(c in "0123456789abcdefABCDEF" for c in stripped) and \
            len(stripped) % 2 == 0:
        return decode_static_invoice(bytes.fromhex(stripped))
    hrp, data = encoding.decode(stripped)
    if hrp == "lno":
        return decode_offer(stripped)
    if hrp == "lnr":
        return decode_invoice_request(data)
    return decode_invoice(data)


__all__ = ["decode", "decode_invoice", "decode_invoice_request", "decode_static_invoice",
           "expires_at", "invreq_part", "OFFER_TYPES"]

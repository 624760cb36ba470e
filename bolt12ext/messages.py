"""BOLT12 invoice_request, invoice and static invoice decoding, and `parse()`/`decode()`.

`parse*` return a typed `Decoded`; `decode*` its JSON form (`Decoded.to_json()`).
Field names follow CLN's `decode` (offer_*, invreq_*, invoice_*). Signatures
are checked and reported (`signature_valid`), the way CLN's `decode` reports
`valid`; structural rule violations raise `DecodeError`.
"""

from __future__ import annotations

from . import encoding, merkle
from .blinding import parse_payinfos
from .decoded import DEFAULT_RELATIVE_EXPIRY, Decoded, UnknownTlv
from .offer import (
    OFFER_RANGES,
    OFFER_TYPES,
    check_features,
    checked_paths,
    in_ranges,
    offer_fields,
    parse_offer,
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


def _fields(recs, table: dict, ranges, out: dict) -> None:
    unknown = []
    for t, value, _ in recs:
        if not in_ranges(t, ranges):
            continue
        name = table.get(t)
        if name is None:
            if t % 2 == 0:
                raise DecodeError(f"unknown even field {t}")
            unknown.append(UnknownTlv(t, value))
            continue
        if name in ("invreq_metadata", "invreq_bip_353_name", "invoice_fallbacks"):
            out[name] = value
        elif name in ("invreq_chain", "invoice_payment_hash"):
            if len(value) != 32:
                raise DecodeError(f"{name} must be 32 bytes")
            out[name] = value  # chain hash in wire byte order, as CLN prints it
        elif name in ("invreq_amount_msat", "invreq_quantity", "invoice_created_at",
                      "invoice_relative_expiry", "invoice_amount_msat"):
            out[name] = read_tu(value, 4 if name == "invoice_relative_expiry" else 8)
        elif name in ("invreq_features", "invoice_features"):
            out[name] = check_features(value, frozenset(), name)
        elif name in ("invreq_payer_id", "invoice_node_id"):
            out[name] = point(value, name)
        elif name == "invreq_payer_note":
            out[name] = utf8(value, name)
        elif name in ("invreq_paths", "invoice_paths", "invoice_held_htlc_available_paths"):
            out[name] = checked_paths(value)
        elif name == "invoice_blindedpay":
            out[name] = parse_payinfos(value)
    if unknown:
        out.setdefault("unknown_tlvs", []).extend(unknown)


def _check_ranges(recs, allowed) -> None:
    for t, _, _ in recs:
        if not in_ranges(t, allowed):
            raise DecodeError(f"field {t} not allowed here")


def _signed(kind: str, messagename: str, recs, data: bytes, fields: dict,
            key: bytes) -> Decoded:
    sig = next((v for t, v, _ in recs if t == 240), None)
    if sig is None:
        raise DecodeError("missing signature")
    return Decoded(kind, fields, sig, merkle.verify(messagename, data, sig, key))


def parse_invoice_request(data: bytes) -> Decoded:
    recs = records(data)
    _check_ranges(recs, OFFER + INVREQ + SIGNATURE)
    fields = offer_fields(recs, strict_ranges=False)
    _fields(recs, INVREQ_TYPES, INVREQ, fields)
    for required in ("invreq_metadata", "invreq_payer_id"):
        if required not in fields:
            raise DecodeError(f"missing {required}")
    return _signed("invoice_request", "invoice_request", recs, data, fields,
                   fields["invreq_payer_id"])


def parse_invoice(data: bytes) -> Decoded:
    recs = records(data)
    _check_ranges(recs, OFFER + INVREQ + INVOICE + SIGNATURE)
    fields = offer_fields(recs, strict_ranges=False)
    _fields(recs, INVREQ_TYPES, INVREQ, fields)
    _fields(recs, INVOICE_TYPES, INVOICE, fields)
    for required in ("invoice_paths", "invoice_blindedpay", "invoice_created_at",
                     "invoice_payment_hash", "invoice_amount_msat", "invoice_node_id"):
        if required not in fields:
            raise DecodeError(f"missing {required}")
    if len(fields["invoice_paths"]) != len(fields["invoice_blindedpay"]):
        raise DecodeError("invoice_blindedpay does not match invoice_paths")
    # shown even when absent, as CLN shows it
    fields.setdefault("invoice_relative_expiry", DEFAULT_RELATIVE_EXPIRY)
    return _signed("invoice", "invoice", recs, data, fields, fields["invoice_node_id"])


def parse_static_invoice(data: bytes) -> Decoded:
    """LDK's static invoice: offer records + 160/162/164/166/172/174/176/236, signed."""
    if len(data) > STATIC_INVOICE_MAX_BYTES:
        raise DecodeError("static invoice larger than 5 KiB")
    recs = records(data)
    _check_ranges(recs, OFFER + INVOICE + SIGNATURE)
    fields = offer_fields(recs, strict_ranges=False)
    _fields(recs, INVOICE_TYPES, INVOICE, fields)
    for forbidden in ("invoice_payment_hash", "invoice_amount_msat"):
        if forbidden in fields:
            raise DecodeError(f"a static invoice has no {forbidden}")
    for required in ("invoice_paths", "invoice_blindedpay", "invoice_created_at",
                     "invoice_node_id"):
        if required not in fields:
            raise DecodeError(f"missing {required}")
    if len(fields["invoice_paths"]) != len(fields["invoice_blindedpay"]):
        raise DecodeError("invoice_blindedpay does not match invoice_paths")
    return _signed("static invoice", "static_invoice", recs, data, fields,
                   fields["invoice_node_id"])


# The JSON forms (CLN `decode`'s names and hex strings), what the RPC and older callers use.
def decode_invoice_request(data: bytes) -> dict:
    return parse_invoice_request(data).to_json()


def decode_invoice(data: bytes) -> dict:
    return parse_invoice(data).to_json()


def decode_static_invoice(data: bytes) -> dict:
    return parse_static_invoice(data).to_json()


def expires_at(decoded: dict) -> int:
    """When a decoded invoice or static invoice expires (BOLT12's default: 7200 s)."""
    return decoded["invoice_created_at"] + decoded.get("invoice_relative_expiry",
                                                       DEFAULT_RELATIVE_EXPIRY)


def invreq_part(data: bytes) -> bytes:
    """The raw records an invoice copies from its invoice_request (the offer's included)."""
    return b"".join(raw for t, _, raw in records(data) if in_ranges(t, OFFER + INVREQ))


def parse(text: str) -> Decoded:
    """Any BOLT12 string, or a static invoice as raw TLV hex."""
    if not isinstance(text, str):
        raise DecodeError("expected a string")
    stripped = text.strip()
    if stripped and all(c in "0123456789abcdefABCDEF" for c in stripped) and \
            len(stripped) % 2 == 0:
        return parse_static_invoice(bytes.fromhex(stripped))
    hrp, data = encoding.decode(stripped)
    if hrp == "lno":
        return parse_offer(stripped)
    if hrp == "lnr":
        return parse_invoice_request(data)
    return parse_invoice(data)


def decode(text: str) -> dict:
    """`parse(text)` in its JSON form: what `bolt12ext-decode` returns."""
    return parse(text).to_json()


__all__ = ["Decoded", "decode", "decode_invoice", "decode_invoice_request",
           "decode_static_invoice", "expires_at", "invreq_part", "parse", "parse_invoice",
           "parse_invoice_request", "parse_static_invoice", "OFFER_TYPES"]

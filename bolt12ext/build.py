"""Building and signing BOLT12 objects: offer, invoice_request, invoice, static invoice.

Fields are given with the decoder's names (`offer_description`, `invoice_paths`, …)
and natural Python values (str, int, bytes, BlindedPath, PayInfo). Records a
message inherits are copied byte for byte (BOLT12: the invoice_request copies
the offer, the invoice copies the invoice_request, LDK's static invoice copies
the offer). Every result is decoded again before it is returned, so what
leaves here satisfies the same reader rules as what comes in.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Mapping, Optional, Tuple

from . import encoding, merkle, messages
from .blinding import BlindedPath, PayInfo, serialize_paths
from .offer import decode_offer, in_ranges
from .sphinx import pubkey
from .tlv import DecodeError, record, records, tu

STATIC_INVOICE_DEFAULT_EXPIRY = 14 * 24 * 3600  # LDK's default relative expiry


def _chain(value: str) -> bytes:
    raw = bytes.fromhex(value)
    if len(raw) != 32:
        raise ValueError("a chain hash is 32 bytes")
    return raw  # wire byte order, as decoders and CLN print it


def _point(value: bytes) -> bytes:
    if len(value) != 33:
        raise ValueError("expected a 33-byte point")
    return bytes(value)


def _paths(value: Iterable[BlindedPath]) -> bytes:
    value = list(value)
    if not value:
        raise ValueError("at least one blinded path is needed")
    return serialize_paths(value)


def _payinfos(value: Iterable[PayInfo]) -> bytes:
    return b"".join(p.serialize() for p in value)


ENCODERS: Dict[str, Tuple[int, Callable]] = {
    "offer_chains": (2, lambda v: b"".join(_chain(c) for c in v)),
    "offer_metadata": (4, bytes),
    "offer_currency": (6, str.encode),
    "offer_amount": (8, tu),
    "offer_amount_msat": (8, tu),
    "offer_description": (10, str.encode),
    "offer_features": (12, bytes),
    "offer_absolute_expiry": (14, tu),
    "offer_paths": (16, _paths),
    "offer_issuer": (18, str.encode),
    "offer_quantity_max": (20, tu),
    "offer_issuer_id": (22, _point),
    "invreq_metadata": (0, bytes),
    "invreq_chain": (80, _chain),
    "invreq_amount_msat": (82, tu),
    "invreq_features": (84, bytes),
    "invreq_quantity": (86, tu),
    "invreq_payer_id": (88, _point),
    "invreq_payer_note": (89, str.encode),
    "invreq_paths": (90, _paths),
    "invreq_bip_353_name": (91, bytes),
    "invoice_paths": (160, _paths),
    "invoice_blindedpay": (162, _payinfos),
    "invoice_created_at": (164, tu),
    "invoice_relative_expiry": (166, lambda v: tu(v, 4)),
    "invoice_payment_hash": (168, bytes),
    "invoice_amount_msat": (170, tu),
    "invoice_fallbacks": (172, bytes),
    "invoice_features": (174, bytes),
    "invoice_node_id": (176, _point),
    "invoice_held_htlc_available_paths": (236, _paths),
}


def encode_fields(fields: Mapping[str, object], extra: Optional[Mapping[int, bytes]] = None,
                  allowed=None) -> Dict[int, bytes]:
    """type -> value for named fields (None values skipped) plus raw `extra` records."""
    out: Dict[int, bytes] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if name not in ENCODERS:
            raise ValueError(f"unknown field {name}")
        t, encode = ENCODERS[name]
        if allowed is not None and not in_ranges(t, allowed):
            raise ValueError(f"{name} does not belong in this message")
        out[t] = encode(value)
    for t, value in (extra or {}).items():
        if allowed is not None and not in_ranges(t, allowed):
            raise ValueError(f"record {t} does not belong in this message")
        if t in out:
            raise ValueError(f"record {t} given twice")
        out[t] = bytes(value)
    return out


def _join(inherited: bytes, own: Dict[int, bytes]) -> bytes:
    """Inherited raw records and our own, in type order; no type twice."""
    recs = [(t, raw) for t, _, raw in records(inherited)]
    taken = {t for t, _ in recs}
    clash = taken & set(own)
    if clash:
        raise ValueError(f"records {sorted(clash)} are already set")
    recs += [(t, record(t, v)) for t, v in own.items()]
    return b"".join(raw for _, raw in sorted(recs))


def sign(messagename: str, unsigned: bytes, secret: bytes) -> bytes:
    """`unsigned` with its BIP340 merkle signature as record 240 (before experimental types)."""
    return _join(unsigned, {240: merkle.sign(messagename, unsigned, secret)})


def _strip_signatures(data: bytes) -> bytes:
    low, high = merkle.SIGNATURE_RANGE
    return b"".join(raw for t, _, raw in records(data) if not low <= t <= high)


def _checked(decoder, data: bytes) -> bytes:
    try:
        decoded = decoder(data)
    except DecodeError as e:
        raise ValueError(f"the result would be invalid: {e}") from None
    if decoded.get("valid") is False:
        raise ValueError("the signature does not verify (wrong key?)")
    return data


# ---- the four objects -----------------------------------------------------------------------

def offer(extra: Optional[Mapping[int, bytes]] = None, **fields) -> bytes:
    """Offer TLV bytes (encode with offer_string)."""
    data = b"".join(record(t, v) for t, v in
                    sorted(encode_fields(fields, extra, messages.OFFER).items()))
    try:
        decode_offer(encoding.encode("lno", data))
    except DecodeError as e:
        raise ValueError(f"the offer would be invalid: {e}") from None
    return data


def offer_string(data: bytes) -> str:
    return encoding.encode("lno", data)


def invoice_request(offer_data: bytes, payer_secret: bytes,
                    extra: Optional[Mapping[int, bytes]] = None, **fields) -> bytes:
    """Signed invoice_request for `offer_data`; invreq_payer_id defaults to the payer key."""
    fields.setdefault("invreq_payer_id", pubkey(payer_secret))
    if "invreq_metadata" not in fields:
        raise ValueError("invreq_metadata is required (unique per request)")
    offer_fields = decode_offer(encoding.encode("lno", offer_data))
    if "offer_amount_msat" not in offer_fields and "offer_amount" not in offer_fields \
            and fields.get("invreq_amount_msat") is None:
        raise ValueError("the offer has no amount: invreq_amount_msat is required")
    own = encode_fields(fields, extra, messages.INVREQ)
    unsigned = _join(offer_data, own)
    return _checked(messages.decode_invoice_request,
                    sign("invoice_request", unsigned, payer_secret))


def invoice(invreq_data: bytes, node_secret: bytes,
            extra: Optional[Mapping[int, bytes]] = None, **fields) -> bytes:
    """Signed invoice answering `invreq_data` (all its non-signature records copied)."""
    req = messages.decode_invoice_request(invreq_data)
    if not req["signature_valid"]:
        raise ValueError("the invoice_request signature does not verify")
    fields.setdefault("invoice_node_id", pubkey(node_secret))
    if fields.get("invoice_amount_msat") is None:
        amount = req.get("invreq_amount_msat")
        if amount is None and "offer_amount_msat" in req:
            amount = req["offer_amount_msat"] * req.get("invreq_quantity", 1)
        if amount is None:
            raise ValueError("invoice_amount_msat is required (offer in a currency)")
        fields["invoice_amount_msat"] = amount
    own = encode_fields(fields, extra, messages.INVOICE)
    unsigned = _join(_strip_signatures(invreq_data), own)
    return _checked(messages.decode_invoice, sign("invoice", unsigned, node_secret))


def invoice_string(data: bytes) -> str:
    return encoding.encode("lni", data)


def static_invoice(offer_data: bytes, node_secret: bytes,
                   extra: Optional[Mapping[int, bytes]] = None, **fields) -> bytes:
    """LDK's static invoice for `offer_data`: offer records + invoice records, signed.

    invoice_node_id is the signer; when the offer names an issuer it must be that key.
    """
    offer_fields = decode_offer(encoding.encode("lno", offer_data))
    node_id = pubkey(node_secret)
    fields.setdefault("invoice_node_id", node_id)
    issuer = offer_fields.get("offer_issuer_id")
    if issuer is not None and bytes.fromhex(issuer) != fields["invoice_node_id"]:
        raise ValueError("invoice_node_id must be the offer's issuer id")
    for forbidden in ("invoice_payment_hash", "invoice_amount_msat"):
        if fields.get(forbidden) is not None:
            raise ValueError(f"a static invoice has no {forbidden}")
    fields.setdefault("invoice_relative_expiry", STATIC_INVOICE_DEFAULT_EXPIRY)
    own = encode_fields(fields, extra, messages.INVOICE)
    unsigned = _join(offer_data, own)
    return _checked(messages.decode_static_invoice, sign("static_invoice", unsigned, node_secret))

"""Async-payment messages with LDK's wire encodings (what interoperates today).

Onion-message payloads 68, 72, 74 and 75540–75546 carry LDK's framing:
value = BigSize(inner length) ‖ inner TLV stream, with fixed-width integers
inside. 70 (static invoice) is the invoice's raw TLV bytes. Also here: the
records a payer puts in the final hop of a static-invoice payment
(5482373484 preimage, 77777 invoice_request) and update_add_htlc's
`hold_htlc` (75537). Decoders raise only DecodeError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from . import onionmsg
from .blinding import BlindedPath, parse_paths, serialize_paths
from .tlv import DecodeError, bigsize, read_bigsize, read_tu, record, records, tu

PREIMAGE_TYPE = 5482373484          # final payment hop: the payer-chosen preimage
INVOICE_REQUEST_TYPE = 77777        # final payment hop: the payer's invoice_request
HOLD_HTLC_TYPE = 75537              # update_add_htlc: hold until release_held_htlc


def frame(inner: Dict[int, bytes]) -> bytes:
    stream = b"".join(record(t, v) for t, v in sorted(inner.items()))
    return bigsize(len(stream)) + stream


def unframe(value: bytes, known=()) -> Dict[int, bytes]:
    """LDK's length-prefixed inner stream; unknown even inner types are refused."""
    length, pos = read_bigsize(value, 0)
    if pos + length != len(value):
        raise DecodeError("inner length does not match the value")
    inner = {t: v for t, v, _ in records(value[pos:])}
    for t in inner:
        if t % 2 == 0 and t not in known:
            raise DecodeError(f"unknown even field {t}")
    return inner


def _fixed(value: bytes, width: int, what: str) -> int:
    if len(value) != width:
        raise DecodeError(f"{what} must be {width} bytes")
    return int.from_bytes(value, "big")


def _one_path(value: bytes) -> BlindedPath:
    path, end = BlindedPath.parse(value)
    if end != len(value):
        raise DecodeError("trailing bytes after a blinded path")
    return path


@dataclass
class OfferPathsRequest:
    invoice_slot: int
    TYPE = onionmsg.OFFER_PATHS_REQUEST

    def encode(self) -> bytes:
        return frame({0: self.invoice_slot.to_bytes(2, "big")})

    @classmethod
    def decode(cls, value: bytes) -> "OfferPathsRequest":
        inner = unframe(value, (0,))
        if 0 not in inner:
            raise DecodeError("missing invoice_slot")
        return cls(_fixed(inner[0], 2, "invoice_slot"))


@dataclass
class OfferPaths:
    paths: List[BlindedPath]
    paths_absolute_expiry: Optional[int] = None
    TYPE = onionmsg.OFFER_PATHS

    def encode(self) -> bytes:
        inner = {0: serialize_paths(self.paths)}
        if self.paths_absolute_expiry is not None:
            inner[2] = self.paths_absolute_expiry.to_bytes(8, "big")
        return frame(inner)

    @classmethod
    def decode(cls, value: bytes) -> "OfferPaths":
        inner = unframe(value, (0, 2))
        if 0 not in inner:
            raise DecodeError("missing paths")
        expiry = _fixed(inner[2], 8, "paths_absolute_expiry") if 2 in inner else None
        return cls(parse_paths(inner[0]), expiry)


@dataclass
class ServeStaticInvoice:
    invoice: bytes
    forward_invoice_request_path: BlindedPath
    TYPE = onionmsg.SERVE_STATIC_INVOICE

    def encode(self) -> bytes:
        return frame({0: self.invoice, 2: self.forward_invoice_request_path.serialize()})

    @classmethod
    def decode(cls, value: bytes) -> "ServeStaticInvoice":
        inner = unframe(value, (0, 2))
        if 0 not in inner or 2 not in inner:
            raise DecodeError("serve_static_invoice needs invoice and forward path")
        return cls(inner[0], _one_path(inner[2]))


@dataclass
class _Empty:
    def encode(self) -> bytes:
        return frame({})

    @classmethod
    def decode(cls, value: bytes):
        unframe(value)
        return cls()


@dataclass
class StaticInvoicePersisted(_Empty):
    TYPE = onionmsg.STATIC_INVOICE_PERSISTED


@dataclass
class HeldHtlcAvailable(_Empty):
    TYPE = onionmsg.HELD_HTLC_AVAILABLE


@dataclass
class ReleaseHeldHtlc(_Empty):
    TYPE = onionmsg.RELEASE_HELD_HTLC


@dataclass
class InvoiceError:
    """BOLT12 invoice_error (68). LDK length-prefixes it, the spec and CLN do not:
    both are read; `framed` picks what is written."""
    error: str
    erroneous_field: Optional[int] = None
    suggested_value: Optional[bytes] = None
    TYPE = onionmsg.INVOICE_ERROR

    def encode(self, framed: bool = True) -> bytes:
        inner = {5: self.error.encode()}
        if self.erroneous_field is not None:
            inner[1] = tu(self.erroneous_field)
        if self.suggested_value is not None:
            inner[3] = self.suggested_value
        if framed:
            return frame(inner)
        return b"".join(record(t, v) for t, v in sorted(inner.items()))

    @classmethod
    def decode(cls, value: bytes) -> "InvoiceError":
        inner = None
        try:
            inner = unframe(value)  # LDK's framing
        except DecodeError:
            pass
        if inner is None or 5 not in inner:
            inner = {t: v for t, v, _ in records(value)}  # the spec's plain stream
        for t in inner:
            if t % 2 == 0:
                raise DecodeError(f"unknown even field {t}")
        if 5 not in inner:
            raise DecodeError("invoice_error without error")
        if 3 in inner and 1 not in inner:
            raise DecodeError("suggested_value without erroneous_field")
        try:
            text = inner[5].decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("error is not UTF-8") from None
        field = read_tu(inner[1]) if 1 in inner else None
        return cls(text, field, inner.get(3))


MESSAGES = {m.TYPE: m for m in (OfferPathsRequest, OfferPaths, ServeStaticInvoice,
                                 StaticInvoicePersisted, HeldHtlcAvailable, ReleaseHeldHtlc,
                                 InvoiceError)}


def encode(message) -> Tuple[int, bytes]:
    """(onion message payload type, value) of an async message."""
    return message.TYPE, message.encode()


def decode(tlv_type: int, value: bytes):
    """The message object for an onion-message payload of `tlv_type`."""
    cls = MESSAGES.get(tlv_type)
    if cls is None:
        raise DecodeError(f"not an async-payments message type: {tlv_type}")
    return cls.decode(value)


# ---- payment onion and update_add_htlc records ------------------------------------------------

PAYMENT_TYPES = {2: "amt_to_forward", 4: "outgoing_cltv_value", 6: "short_channel_id",
                 8: "payment_data", 10: "encrypted_recipient_data", 12: "current_path_key",
                 16: "payment_metadata", 18: "total_amount_msat",
                 PREIMAGE_TYPE: "payment_preimage", INVOICE_REQUEST_TYPE: "invoice_request"}


def final_payload(amount_msat: int, cltv_expiry: int, total_msat: int, encrypted_data: bytes,
                  current_path_key: Optional[bytes] = None, preimage: Optional[bytes] = None,
                  invoice_request: Optional[bytes] = None) -> bytes:
    """A blinded final hop's payload; for a static invoice, with preimage and invreq (LDK)."""
    recs = {2: tu(amount_msat), 4: tu(cltv_expiry, 4), 10: encrypted_data, 18: tu(total_msat)}
    if current_path_key is not None:
        recs[12] = current_path_key
    if preimage is not None:
        if len(preimage) != 32:
            raise ValueError("a preimage is 32 bytes")
        recs[PREIMAGE_TYPE] = preimage
    if invoice_request is not None:
        recs[INVOICE_REQUEST_TYPE] = invoice_request
    return b"".join(record(t, v) for t, v in sorted(recs.items()))


def decode_payment_payload(payload: bytes) -> dict:
    """A payment onion hop payload (BOLT4 + the async records); unknown even types fail."""
    out: dict = {}
    for t, v, _ in records(payload):
        name = PAYMENT_TYPES.get(t)
        if name is None:
            if t % 2 == 0:
                raise DecodeError(f"unknown even payload type {t}")
            out.setdefault("unknown", {})[t] = v
        elif t in (2, 18):
            out[name] = read_tu(v)
        elif t == 4:
            out[name] = read_tu(v, 4)
        elif t == 6:
            out[name] = _fixed(v, 8, name)
        elif t == 8:
            if not 32 <= len(v) <= 40:
                raise DecodeError("bad payment_data")
            out[name] = {"payment_secret": v[:32], "total_msat": read_tu(v[32:])}
        elif t == 12:
            if len(v) != 33:
                raise DecodeError("current_path_key must be a point")
            out[name] = v
        elif t == PREIMAGE_TYPE:
            if len(v) != 32:
                raise DecodeError("payment_preimage must be 32 bytes")
            out[name] = v
        else:
            out[name] = v
    return out


def hold_htlc_tlvs() -> bytes:
    """update_add_htlc extra TLVs asking the next node to hold the HTLC (LDK: empty 75537)."""
    return record(HOLD_HTLC_TYPE, b"")


def has_hold_htlc(extra_tlvs: bytes) -> bool:
    try:
        return any(t == HOLD_HTLC_TYPE for t, _, _ in records(extra_tlvs))
    except DecodeError:
        return False


def without_hold_htlc(extra_tlvs: bytes) -> bytes:
    """The update_add_htlc TLVs to forward once released: everything but hold_htlc."""
    return b"".join(raw for t, _, raw in records(extra_tlvs) if t != HOLD_HTLC_TYPE)

"""LSPS2 (bLIP-52) wire types and maths: opening_fee_params, fees, promises, SCIDs.

Pure code. Strict out (exactly the spec's fields, amounts as strings), lenient
in (amounts as strings or numbers)."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

from bolt12ext import tlv
from bolt12ext.blinding import scid_str as format_scid  # noqa: F401  (one formatter)

U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1

# Error codes of bLIP-52.
UNRECOGNIZED_OR_STALE_TOKEN = 200
INVALID_OPENING_FEE_PARAMS = 201
PAYMENT_SIZE_TOO_SMALL = 202
PAYMENT_SIZE_TOO_LARGE = 203

# BOLT4 failure messages (hex) used by the LSP when it fails held parts.

EXTRA_FEE_TLV = 65537
MAX_PROMISE_BYTES = 512

PARAM_FIELDS = ("min_fee_msat", "proportional", "valid_until", "min_lifetime",
                "max_client_to_self_delay", "min_payment_size_msat",
                "max_payment_size_msat", "promise")


class ProtocolError(ValueError):
    """A peer's LSPS2 object is not what the spec allows."""


def compute_opening_fee(payment_size_msat: int, min_fee_msat: int,
                        proportional: int) -> Optional[int]:
    """bLIP-52 opening fee in u64 arithmetic; None on overflow."""
    product = payment_size_msat * proportional
    if product > U64_MAX:
        return None
    rounded = product + 999_999
    if rounded > U64_MAX:
        return None
    return max(rounded // 1_000_000, min_fee_msat)


# --- encodings -------------------------------------------------------------

def parse_msat(value: Any, name: str) -> int:
    """LSPS0 amount: a decimal string (numbers accepted), u64."""
    if isinstance(value, bool):
        raise ProtocolError(f"{name} must be an amount")
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,20}", value):
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise ProtocolError(f"{name} must be a u64 amount as a decimal string")
    return value


def parse_uint(value: Any, name: str, maximum: int = U32_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise ProtocolError(f"{name} must be an integer in 0..{maximum}")
    return value


_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


def parse_datetime_ms(value: Any, name: str) -> int:
    """ISO8601 datetime -> unix milliseconds (Z or an offset accepted)."""
    if not isinstance(value, str):
        raise ProtocolError(f"{name} must be an ISO8601 datetime string")
    m = _DATETIME.match(value)
    if not m:
        raise ProtocolError(f"{name} is not an ISO8601 datetime: {value[:40]!r}")
    try:
        text = value[:19] + ("+00:00" if m.group(8) == "Z" else m.group(8))
        dt = datetime.fromisoformat(text)
    except ValueError as e:
        raise ProtocolError(f"{name}: {e}") from None
    frac = (m.group(7) or "0").ljust(3, "0")[:3]
    return int(dt.timestamp()) * 1000 + int(frac)


def format_datetime_ms(ms: int) -> str:
    """LSPS0 datetime: YYYY-MM-DDThh:mm:ss.sssZ."""
    dt = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def parse_scid(value: Any) -> int:
    if not isinstance(value, str):
        raise ProtocolError("short channel id must be a string")
    m = re.fullmatch(r"(\d{1,8})x(\d{1,8})x(\d{1,5})", value)
    if not m:
        raise ProtocolError(f"bad short channel id {value[:40]!r}")
    block, tx, out = (int(g) for g in m.groups())
    if block >= 1 << 24 or tx >= 1 << 24 or out >= 1 << 16:
        raise ProtocolError(f"short channel id out of range: {value}")
    return block << 40 | tx << 16 | out


# --- opening_fee_params ------------------------------------------------------

@dataclass(frozen=True)
class OpeningFeeParams:
    min_fee_msat: int
    proportional: int
    valid_until_ms: int
    min_lifetime: int
    max_client_to_self_delay: int
    min_payment_size_msat: int
    max_payment_size_msat: int
    promise: str = ""
    # The object exactly as the LSP sent it: clients hand it back verbatim.
    raw: Optional[dict] = field(default=None, compare=False, hash=False, repr=False)

    def wire(self) -> dict:
        return dict(self.raw) if self.raw is not None else self.to_json()

    def to_json(self) -> dict:
        return {
            "min_fee_msat": str(self.min_fee_msat),
            "proportional": self.proportional,
            "valid_until": format_datetime_ms(self.valid_until_ms),
            "min_lifetime": self.min_lifetime,
            "max_client_to_self_delay": self.max_client_to_self_delay,
            "min_payment_size_msat": str(self.min_payment_size_msat),
            "max_payment_size_msat": str(self.max_payment_size_msat),
            "promise": self.promise,
        }

    @classmethod
    def from_json(cls, obj: Any) -> "OpeningFeeParams":
        if not isinstance(obj, dict):
            raise ProtocolError("opening_fee_params must be an object")
        unknown = sorted(set(obj) - set(PARAM_FIELDS))
        if unknown:
            raise ProtocolError(f"opening_fee_params has unknown fields {unknown}")
        missing = [f for f in PARAM_FIELDS if f not in obj]
        if missing:
            raise ProtocolError(f"opening_fee_params lacks {missing}")
        promise = obj["promise"]
        if not isinstance(promise, str) or len(promise.encode("utf-8")) > MAX_PROMISE_BYTES:
            raise ProtocolError("promise must be a string of at most 512 bytes")
        return cls(
            min_fee_msat=parse_msat(obj["min_fee_msat"], "min_fee_msat"),
            proportional=parse_uint(obj["proportional"], "proportional"),
            valid_until_ms=parse_datetime_ms(obj["valid_until"], "valid_until"),
            min_lifetime=parse_uint(obj["min_lifetime"], "min_lifetime"),
            max_client_to_self_delay=parse_uint(obj["max_client_to_self_delay"],
                                                "max_client_to_self_delay"),
            min_payment_size_msat=parse_msat(obj["min_payment_size_msat"],
                                             "min_payment_size_msat"),
            max_payment_size_msat=parse_msat(obj["max_payment_size_msat"],
                                             "max_payment_size_msat"),
            promise=promise,
            raw=dict(obj),
        )

    def fee_for(self, payment_size_msat: int) -> Optional[int]:
        return compute_opening_fee(payment_size_msat, self.min_fee_msat, self.proportional)


def _promise_message(client_id: bytes, p: OpeningFeeParams) -> bytes:
    # LDK's layout; valid_until as RFC3339 text with +00:00, to the millisecond.
    valid_until = format_datetime_ms(p.valid_until_ms)[:-1] + "+00:00"
    return (client_id
            + p.min_fee_msat.to_bytes(8, "big")
            + p.proportional.to_bytes(4, "big")
            + valid_until.encode()
            + p.min_lifetime.to_bytes(4, "big")
            + p.max_client_to_self_delay.to_bytes(4, "big")
            + p.min_payment_size_msat.to_bytes(8, "big")
            + p.max_payment_size_msat.to_bytes(8, "big"))


def make_promise(secret: bytes, client_id_hex: str, p: OpeningFeeParams) -> str:
    """HMAC-SHA256 over the other fields, bound to the client: lowercase hex."""
    return hmac.new(secret, _promise_message(bytes.fromhex(client_id_hex), p),
                    hashlib.sha256).hexdigest()


def verify_promise(secret: bytes, client_id_hex: str, p: OpeningFeeParams) -> bool:
    return hmac.compare_digest(make_promise(secret, client_id_hex, p), p.promise)


def menu_is_ordered(menu: list) -> bool:
    """bLIP-52: each entry raises min_fee_msat or proportional, lowering neither."""
    for prev, cur in zip(menu, menu[1:], strict=False):
        if cur.min_fee_msat < prev.min_fee_msat or cur.proportional < prev.proportional:
            return False
        if (cur.min_fee_msat, cur.proportional) == (prev.min_fee_msat, prev.proportional):
            return False
    return True


# --- TLV streams (onion payloads and update_add_htlc extra TLVs) -------------
# The primitives live in bolt12ext.tlv; here they raise ProtocolError.

def _tlv(fn):
    def wrapped(*args):
        try:
            return fn(*args)
        except tlv.DecodeError as e:
            raise ProtocolError(str(e)) from None
    wrapped.__doc__ = fn.__doc__
    return wrapped


_read_bigsize = _tlv(tlv.read_bigsize)
bigsize = tlv.bigsize
parse_tlv_stream = _tlv(tlv.parse_stream)
serialize_tlv_stream = tlv.serialize_stream
tu64 = tlv.tu
read_tu64 = _tlv(tlv.read_tu)


def strip_length_prefix(payload: bytes) -> bytes:
    """htlc_accepted gives onion.payload with its bigsize length in front."""
    length, pos = _read_bigsize(payload, 0)
    if pos + length != len(payload):
        raise ProtocolError("onion payload length mismatch")
    return payload[pos:]

"""BOLT12 strings: bech32 characters without a checksum (BOLT12 "Encoding").

`lno` offers, `lnr` invoice_requests, `lni` invoices. All-lowercase or
all-uppercase; `+` (optionally followed by whitespace) may join two parts,
only between bech32 characters; leftover bits of the 5→8 conversion must be
fewer than 5 and zero.
"""

from __future__ import annotations

import re
from typing import Tuple

from .tlv import DecodeError

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
HRPS = ("lno", "lnr", "lni")
_JOIN = re.compile(r"\+\s*")


def decode(text: str) -> Tuple[str, bytes]:
    """(hrp, TLV bytes) of a BOLT12 string."""
    if not isinstance(text, str):
        raise DecodeError("not a string")
    text = text.strip()
    if text.lower() != text and text.upper() != text:
        raise DecodeError("mixed case")
    text = text.lower()
    parts = _JOIN.split(text)
    if any(not part or not re.fullmatch(r"[a-z0-9]+", part) for part in parts):
        raise DecodeError("'+' must join bech32 characters")
    joined = "".join(parts)
    pos = joined.rfind("1")
    if pos < 1:
        raise DecodeError("no separator")
    hrp, data = joined[:pos], joined[pos + 1:]
    if hrp not in HRPS:
        raise DecodeError(f"unknown prefix {hrp!r}")
    try:
        words = [CHARSET.index(c) for c in data]
    except ValueError:
        raise DecodeError("not a bech32 character") from None
    acc, bits, out = 0, 0, bytearray()
    for w in words:
        acc = (acc << 5) | w
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5 or (acc & ((1 << bits) - 1)):
        raise DecodeError("invalid padding")
    return hrp, bytes(out)


def encode(hrp: str, data: bytes) -> str:
    if hrp not in HRPS:
        raise ValueError(f"unknown prefix {hrp!r}")
    acc, bits, words = 0, 0, []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            words.append((acc >> bits) & 31)
    if bits:
        words.append((acc << (5 - bits)) & 31)
    return hrp + "1" + "".join(CHARSET[w] for w in words)

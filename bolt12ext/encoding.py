"""BOLT12 strings: bech32 characters without a checksum (BOLT12 "Encoding").

`lno` offers, `lnr` invoice_requests, `lni` invoices. All-lowercase or
all-uppercase; `+` (optionally followed by whitespace) may join two parts,
only between bech32 characters; leftover bits of the 5→8 conversion must be
fewer than 5 and zero.
"""

from __future__ import annotations

import re
from typing import Tuple

import bech32

from .tlv import DecodeError

CHARSET = bech32.CHARSET
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
    # Without padding, convertbits refuses exactly what BOLT12 does: 5 or
    # more leftover bits, or leftover bits that are not zero.
    out = bech32.convertbits(words, 5, 8, False)
    if out is None:
        raise DecodeError("invalid padding")
    return hrp, bytes(out)


def encode(hrp: str, data: bytes) -> str:
    if hrp not in HRPS:
        raise ValueError(f"unknown prefix {hrp!r}")
    words = bech32.convertbits(data, 8, 5, True)
    return hrp + "1" + "".join(CHARSET[w] for w in words)

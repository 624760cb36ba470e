"""Rewrite a BOLT11 invoice's tagged fields, for the LSPS2 client.

CLN's `invoice` stores the invoice (preimage, payment_secret, amount) but
cannot put an arbitrary route hint in it and always sets basic_mpp. We take
the string it made, replace the `r`, `c` and `9` fields as bLIP-52 wants,
and have lightningd re-sign it (`signinvoice`): paying the new string pays
the stored invoice, since both share payment_hash and payment_secret.

Only the 5-bit tagged-field layer is touched; the bech32 checksum comes from
the `bech32` package (its own decoder refuses strings over 90 characters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

import bech32

CHARSET = bech32.CHARSET
SIGNATURE_WORDS = 104  # 520 bits: 64-byte signature + recovery id
TIMESTAMP_WORDS = 7

TAG_ROUTE = CHARSET.index("r")
TAG_MIN_FINAL_CLTV = CHARSET.index("c")
TAG_FEATURES = CHARSET.index("9")
TAG_EXPIRY = CHARSET.index("x")
TAG_PAYMENT_HASH = CHARSET.index("p")
TAG_PAYMENT_SECRET = CHARSET.index("s")

BASIC_MPP_BITS = (16, 17)


class Bolt11Error(ValueError):
    pass


@dataclass
class RawInvoice:
    hrp: str
    timestamp_words: List[int]
    tags: List[Tuple[int, List[int]]]

    def tag_values(self, tag: int) -> List[List[int]]:
        return [data for t, data in self.tags if t == tag]

    def replace(self, tag: int, values: List[List[int]]) -> None:
        """Drop every field of `tag`, then append the given ones."""
        self.tags = [(t, d) for t, d in self.tags if t != tag]
        self.tags.extend((tag, v) for v in values)


def decode(invoice: str) -> RawInvoice:
    text = invoice.strip()
    if text.lower() != text and text.upper() != text:
        raise Bolt11Error("mixed case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise Bolt11Error("no bech32 separator")
    hrp, rest = text[:pos], text[pos + 1:]
    try:
        words = [CHARSET.index(c) for c in rest]
    except ValueError:
        raise Bolt11Error("bad bech32 character") from None
    if not bech32.bech32_verify_checksum(hrp, words):
        raise Bolt11Error("bad checksum")
    words = words[:-6]
    if len(words) < TIMESTAMP_WORDS + SIGNATURE_WORDS:
        raise Bolt11Error("too short")
    body = words[TIMESTAMP_WORDS:-SIGNATURE_WORDS]
    tags = []
    i = 0
    while i < len(body):
        if i + 3 > len(body):
            raise Bolt11Error("truncated tagged field")
        tag = body[i]
        length = body[i + 1] << 5 | body[i + 2]
        data = body[i + 3:i + 3 + length]
        if len(data) != length:
            raise Bolt11Error("truncated tagged field")
        tags.append((tag, data))
        i += 3 + length
    return RawInvoice(hrp, words[:TIMESTAMP_WORDS], tags)


_MULTIPLIER_MSAT = {"": 10**11, "m": 10**8, "u": 10**5, "n": 100}


def amount_msat(raw: RawInvoice) -> Optional[int]:
    """The amount in the human-readable part, or None for an any-amount invoice."""
    m = re.fullmatch(r"ln[a-z]+?(\d+)([munp]?)", raw.hrp)
    if m is None:
        if re.fullmatch(r"ln[a-z]+", raw.hrp):
            return None
        raise Bolt11Error(f"bad amount in {raw.hrp!r}")
    value, unit = int(m.group(1)), m.group(2)
    if unit == "p":
        if value % 10:
            raise Bolt11Error("pico-bitcoin amount not a whole msat")
        return value // 10
    return value * _MULTIPLIER_MSAT[unit]


def encode_unsigned(raw: RawInvoice) -> str:
    """Encode with an all-zero signature, for `signinvoice` to replace."""
    body: List[int] = list(raw.timestamp_words)
    for tag, data in raw.tags:
        if len(data) >= 1 << 10:
            raise Bolt11Error("tagged field too long")
        body += [tag, len(data) >> 5, len(data) & 31] + list(data)
    body += [0] * SIGNATURE_WORDS
    checksum = bech32.bech32_create_checksum(raw.hrp, body)
    return raw.hrp + "1" + "".join(CHARSET[w] for w in body + checksum)


def to_words(data: bytes) -> List[int]:
    words = bech32.convertbits(data, 8, 5, True)
    assert words is not None
    return words


def from_words(words: List[int]) -> bytes:
    data = bech32.convertbits(words, 5, 8, False)
    if data is None:
        # BOLT11 pads byte fields to whole 5-bit words: drop the padding bits.
        data = bech32.convertbits(words, 5, 8, True)[:len(words) * 5 // 8]
    return bytes(data)


def int_to_words(value: int) -> List[int]:
    words: List[int] = []
    while value:
        words.insert(0, value & 31)
        value >>= 5
    return words or [0]


def words_to_int(words: List[int]) -> int:
    value = 0
    for w in words:
        value = value << 5 | w
    return value


def route_hint_words(node_id_hex: str, scid: int, fee_base_msat: int, fee_ppm: int,
                     cltv_expiry_delta: int) -> List[int]:
    hop = (bytes.fromhex(node_id_hex) + scid.to_bytes(8, "big")
           + fee_base_msat.to_bytes(4, "big") + fee_ppm.to_bytes(4, "big")
           + cltv_expiry_delta.to_bytes(2, "big"))
    return to_words(hop)


def features(raw: RawInvoice) -> int:
    values = raw.tag_values(TAG_FEATURES)
    return words_to_int(values[0]) if values else 0


def set_features(raw: RawInvoice, bits: int) -> None:
    raw.replace(TAG_FEATURES, [int_to_words(bits)] if bits else [])


def min_final_cltv(raw: RawInvoice) -> int:
    values = raw.tag_values(TAG_MIN_FINAL_CLTV)
    return words_to_int(values[0]) if values else 18  # BOLT11 default


def rewrite_for_jit(invoice: str, lsp_id: str, jit_scid: int, lsp_cltv_expiry_delta: int,
                    cltv_margin: int = 2, allow_mpp: bool = True) -> str:
    """bLIP-52 invoice: one route hint hop via the LSP, +margin final CLTV,
    and no basic_mpp in no-MPP mode. Returns the unsigned string."""
    raw = decode(invoice)
    raw.replace(TAG_ROUTE, [route_hint_words(lsp_id, jit_scid, 0, 0, lsp_cltv_expiry_delta)])
    raw.replace(TAG_MIN_FINAL_CLTV, [int_to_words(min_final_cltv(raw) + cltv_margin)])
    if not allow_mpp:
        bits = features(raw)
        for b in BASIC_MPP_BITS:
            bits &= ~(1 << b)
        set_features(raw, bits)
    return encode_unsigned(raw)

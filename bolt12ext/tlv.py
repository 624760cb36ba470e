"""Lightning TLV primitives (BOLT1): BigSize, truncated integers, TLV streams.

Pure and strict: every decoding error is a `DecodeError`, never anything else.
"""

from __future__ import annotations

from typing import List, Tuple


class DecodeError(ValueError):
    """Bytes that are not what the spec allows."""


def read_bigsize(data: bytes, pos: int) -> Tuple[int, int]:
    """(value, new position); minimal encodings only."""
    if pos >= len(data):
        raise DecodeError("truncated bigsize")
    first = data[pos]
    if first < 0xFD:
        return first, pos + 1
    width = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
    if pos + 1 + width > len(data):
        raise DecodeError("truncated bigsize")
    value = int.from_bytes(data[pos + 1:pos + 1 + width], "big")
    if value < {2: 0xFD, 4: 0x10000, 8: 0x100000000}[width]:
        raise DecodeError("non-minimal bigsize")
    return value, pos + 1 + width


def bigsize(value: int) -> bytes:
    if value < 0xFD:
        return bytes([value])
    if value <= 0xFFFF:
        return b"\xfd" + value.to_bytes(2, "big")
    if value <= 0xFFFFFFFF:
        return b"\xfe" + value.to_bytes(4, "big")
    return b"\xff" + value.to_bytes(8, "big")


def records(data: bytes) -> List[Tuple[int, bytes, bytes]]:
    """[(type, value, the record's raw bytes)] in order; types strictly increasing."""
    out = []
    pos, last = 0, -1
    while pos < len(data):
        start = pos
        t, pos = read_bigsize(data, pos)
        length, pos = read_bigsize(data, pos)
        if t <= last:
            raise DecodeError("TLV types not strictly increasing")
        if pos + length > len(data):
            raise DecodeError("truncated TLV value")
        out.append((t, data[pos:pos + length], data[start:pos + length]))
        pos += length
        last = t
    return out


def parse_stream(data: bytes) -> dict:
    """type -> value bytes."""
    return {t: v for t, v, _ in records(data)}


def serialize_stream(recs: dict) -> bytes:
    return b"".join(record(t, v) for t, v in sorted(recs.items()))


def record(t: int, value: bytes) -> bytes:
    return bigsize(t) + bigsize(len(value)) + value


def tu(value: int, width: int = 8) -> bytes:
    """Truncated unsigned integer (tu16/tu32/tu64): big-endian, no leading zeros."""
    return value.to_bytes(width, "big").lstrip(b"\x00")


def read_tu(value: bytes, width: int = 8) -> int:
    if len(value) > width or (value and value[0] == 0):
        raise DecodeError(f"bad tu{width * 8}")
    return int.from_bytes(value, "big") if value else 0

"""lightningd's hook and notification payloads, read once at the edge."""

from __future__ import annotations

from typing import Optional

from bolt12ext import tlv


def msat(value) -> int:
    """lightningd amounts come as ints or as \"123msat\" strings."""
    if isinstance(value, int):
        return value
    text = str(value)
    return int(text[:-4]) if text.endswith("msat") else int(text)


def htlc_height(htlc: dict) -> int:
    """The block height lightningd judged an htlc_accepted request at (no RPC needed)."""
    return htlc["cltv_expiry"] - htlc["cltv_expiry_relative"]



def payload_is_blinded(payload_hex: Optional[str]) -> bool:
    """Does this onion payload carry encrypted_recipient_data (TLV 10): a hop of a
    blinded path, whose forward amount lightningd took from the encrypted relay?"""
    if not payload_hex:
        return False
    try:
        raw = bytes.fromhex(payload_hex)
        length, pos = tlv.read_bigsize(raw, 0)
        return 10 in tlv.parse_stream(raw[pos:pos + length])
    except (ValueError, tlv.DecodeError):
        return False



def htlc_onion_fields(onion: dict) -> dict:
    """What lightningd parsed of a final hop's onion: amt_to_forward,
    outgoing_cltv_value, total_msat and payment_secret (absent ones None)."""
    return {"forward_msat": msat(onion["forward_msat"]) if "forward_msat" in onion else None,
            "outgoing_cltv": onion.get("outgoing_cltv_value"),
            "total_msat": msat(onion["total_msat"]) if "total_msat" in onion else None,
            "payment_secret": onion.get("payment_secret")}

"""BOLT4 failure messages we answer HTLCs with, as hex. Pure."""

from __future__ import annotations

INCORRECT_OR_UNKNOWN = 0x400F           # PERM|15
UNKNOWN_NEXT_PEER = "400a"              # PERM|10
TEMPORARY_NODE_FAILURE = "2002"         # NODE|2
TEMPORARY_CHANNEL_FAILURE = "10070000"  # UPDATE|7 + empty channel_update


def incorrect_or_unknown(amount_msat: int, height: int) -> str:
    """incorrect_or_unknown_payment_details: the final node's answer (htlc_msat, height)."""
    return (INCORRECT_OR_UNKNOWN.to_bytes(2, "big") + amount_msat.to_bytes(8, "big")
            + height.to_bytes(4, "big")).hex()

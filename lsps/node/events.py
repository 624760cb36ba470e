"""lightningd's hook and notification payloads, read once at the edge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from bolt12ext import tlv


def msat(value) -> int:
    """lightningd amounts come as ints or as \"123msat\" strings."""
    if isinstance(value, int):
        return value
    text = str(value)
    return int(text[:-4]) if text.endswith("msat") else int(text)


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


@dataclass(frozen=True)
class Htlc:
    """An htlc_accepted request, read once: what the HTLC carries and what lightningd
    decoded of its onion for us. Onion values (forward_msat, total_msat, ...) are the
    payer's claims; amount_msat and cltv_expiry are what arrives."""
    key: str                     # "incoming scid/htlc id": unique while it is pending
    peer_id: Optional[str]       # the peer it came from
    payment_hash: str
    amount_msat: int
    cltv_expiry: int
    height: int                  # the block height lightningd judged it at
    incoming_scid: str
    htlc_id: int
    extra_tlvs: str              # update_add_htlc TLVs as hex, "" when none
    payload: str                 # the onion payload as hex, with its bigsize length first
    next_scid: Optional[str]     # where the onion forwards to; None for a final hop
    next_node_id: Optional[str]
    forward_msat: Optional[int]  # amt_to_forward
    outgoing_cltv: Optional[int]
    total_msat: Optional[int]
    payment_secret: Optional[str]
    blinded: bool                # a hop of a blinded path (encrypted_recipient_data)

    @property
    def final(self) -> bool:
        """We are the onion's last hop (nothing to forward to)."""
        return self.next_scid is None and self.next_node_id is None

    @classmethod
    def parse(cls, onion: dict, htlc: dict, peer_id: Optional[str] = None) -> "Htlc":
        payload = onion.get("payload") or ""
        return cls(
            key=f"{htlc['short_channel_id']}/{htlc['id']}", peer_id=peer_id,
            payment_hash=htlc["payment_hash"], amount_msat=msat(htlc["amount_msat"]),
            cltv_expiry=htlc["cltv_expiry"],
            height=htlc["cltv_expiry"] - htlc["cltv_expiry_relative"],
            incoming_scid=htlc["short_channel_id"], htlc_id=htlc["id"],
            extra_tlvs=htlc.get("extra_tlvs") or "", payload=payload,
            next_scid=onion.get("short_channel_id"), next_node_id=onion.get("next_node_id"),
            forward_msat=msat(onion["forward_msat"]) if "forward_msat" in onion else None,
            outgoing_cltv=onion.get("outgoing_cltv_value"),
            total_msat=msat(onion["total_msat"]) if "total_msat" in onion else None,
            payment_secret=onion.get("payment_secret"), blinded=payload_is_blinded(payload))

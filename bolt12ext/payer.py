"""Paying along a blinded payment path (BOLT4 route blinding, BOLT12 invoices).

The sender treats the blinded path as one hop with the invoice's blinded_payinfo:
the introduction node must receive `amount + fee_base + amount·ppm/10^6` (rounded
down, as the official vector shows) at `final_cltv + cltv_expiry_delta`. The hops
before it are plain forwards (amount, CLTV and channel from a route); the
introduction node gets the path key in its payload, later hops only their
encrypted data, the recipient its amounts (and, for a static invoice, the
preimage and invoice_request as LDK sends them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from . import asyncmsg
from .blinding import BlindedPath, PayInfo, scid_int
from .tlv import record, tu


@dataclass(frozen=True)
class Forward:
    """A plain hop before the introduction node: where it forwards, how much, until when."""
    node_id: bytes
    short_channel_id: object     # int or "BxTxO"
    amt_to_forward: int
    outgoing_cltv: int


@dataclass(frozen=True)
class Limits:
    """What the payer accepts to pay for a path (fees of every hop, the blinded
    part's included) and the longest lock of its first HTLC (blocks)."""
    maxfee_msat: int
    max_cltv: int


def over_limits(limits: Limits, amount_msat: int, first_amount_msat: int,
                first_cltv_blocks: int) -> Optional[str]:
    """Why a route whose first HTLC carries first_amount_msat for first_cltv_blocks
    is refused, or None."""
    fee = first_amount_msat - amount_msat
    if fee > limits.maxfee_msat:
        return f"fees {fee} msat above maxfee_msat {limits.maxfee_msat}"
    if first_cltv_blocks > limits.max_cltv:
        return f"CLTV of {first_cltv_blocks} blocks above {limits.max_cltv}"
    return None


def fee_msat(amount_msat: int, payinfo: PayInfo) -> int:
    return payinfo.fee_base_msat + amount_msat * payinfo.fee_proportional_millionths // 1_000_000


def at_introduction(amount_msat: int, final_cltv: int, payinfo: PayInfo) -> Tuple[int, int]:
    """(amount, cltv_expiry) the introduction node must receive."""
    return amount_msat + fee_msat(amount_msat, payinfo), final_cltv + payinfo.cltv_expiry_delta


def forward_payload(hop: Forward) -> bytes:
    return (record(2, tu(hop.amt_to_forward)) + record(4, tu(hop.outgoing_cltv, 4))
            + record(6, scid_int(hop.short_channel_id).to_bytes(8, "big")))


def onion_hops(forwards: Sequence[Forward], path: BlindedPath, amount_msat: int,
               final_cltv: int, total_msat: Optional[int] = None,
               preimage: Optional[bytes] = None,
               invoice_request: Optional[bytes] = None) -> List[Tuple[bytes, bytes]]:
    """[(onion key, payload)] from the first plain hop to the recipient."""
    if len(path.first_node_id) != 33:
        raise ValueError("the introduction node must be given by node id")
    if not path.hops:
        raise ValueError("a blinded path has at least one hop")
    hops = [(f.node_id, forward_payload(f)) for f in forwards]
    last = len(path.hops) - 1
    for i, hop in enumerate(path.hops):
        key = path.first_node_id if i == 0 else hop.blinded_node_id
        path_key = path.first_path_key if i == 0 else None
        if i == last:
            payload = asyncmsg.final_payload(
                amount_msat, final_cltv, amount_msat if total_msat is None else total_msat,
                hop.encrypted_data, current_path_key=path_key, preimage=preimage,
                invoice_request=invoice_request)
        else:
            payload = record(10, hop.encrypted_data)
            if path_key is not None:
                payload += record(12, path_key)
        hops.append((key, payload))
    return hops

"""LSPS2 over BOLT12, pure parts: a JIT channel as the last hop of a blinded path.

The client (recipient) makes a one-hop blinded payment path [LSP --jit scid--> us].
The opening fee is charged inside the LSP hop's *encrypted* payment_relay while
the blinded_payinfo the payer reads says the hop is free: the payer sends the
invoice amount A, the LSP's lightningd forwards `A - fee` by itself, and the LSP's
plugin only checks that skim (../shared/notes/lsps2-bolt12.md). The client then
claims a payment that is short by exactly that fee.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

from bolt12ext.blinding import PayInfo, PaymentHop, PaymentRelay
from lsps.lsps2.msgs import OpeningFeeParams

TU32_MAX = 2**32 - 1
MILLION = 1_000_000


def blinded_forward_msat(amount_msat: int, relay: PaymentRelay) -> int:
    """What a blinded hop forwards of an incoming `amount_msat` (BOLT4 route blinding:
    amt_to_forward = ceil((amount - base) * 1e6 / (1e6 + proportional)))."""
    ppm = relay.fee_proportional_millionths
    return -(-(amount_msat - relay.fee_base_msat) * MILLION // (MILLION + ppm))


def fee_relay(amount_msat: int, fee_msat: int, cltv_expiry_delta: int) -> PaymentRelay:
    """The LSP hop's relay that leaves the LSP at least `fee_msat` of a payment of
    `amount_msat` in one part, and no more than it needs. The base fee is a tu32: a
    larger fee goes into the proportional part."""
    if not 0 <= fee_msat < amount_msat:
        raise ValueError(f"an opening fee of {fee_msat} msat cannot come out of "
                         f"{amount_msat} msat")
    if fee_msat <= TU32_MAX:
        return PaymentRelay(cltv_expiry_delta, 0, fee_msat)
    ppm = -(-fee_msat * MILLION // (amount_msat - fee_msat))
    while amount_msat - blinded_forward_msat(amount_msat, PaymentRelay(0, ppm)) < fee_msat:
        ppm += 1   # the ceiling of the forward may take one msat back
    if ppm > TU32_MAX:
        raise ValueError("the opening fee does not fit a payment relay")
    return PaymentRelay(cltv_expiry_delta, ppm, 0)


def opening_fee(params: dict, amount_msat: int) -> Optional[int]:
    """The fee the LSP will take from a single-part payment of `amount_msat` under
    the purchase's opening_fee_params (wire form), or None when the amount is
    outside the params (or the fee would consume it)."""
    p = OpeningFeeParams.from_json(params)
    if not p.min_payment_size_msat <= amount_msat <= p.max_payment_size_msat:
        return None
    fee = p.fee_for(amount_msat)
    if fee is None or fee >= amount_msat:
        return None
    return fee


def jit_hop(lsp_id: str, scid: str, lsp_cltv_expiry_delta: int, amount_msat: int,
            fee_msat: int) -> PaymentHop:
    """The LSP's hop of the path: through the jit scid, the fee in its relay."""
    return PaymentHop(bytes.fromhex(lsp_id), scid,
                      fee_relay(amount_msat, fee_msat, lsp_cltv_expiry_delta), 0)


def free_payinfo(info: PayInfo) -> PayInfo:
    """What the payer is told: the path costs nothing (the LSP's fee comes out of
    the amount the recipient receives), with the path's CLTV and limits."""
    return dataclasses.replace(info, fee_base_msat=0, fee_proportional_millionths=0)


def fee_segments(params: dict, lowest_msat: int) -> List[Tuple[int, int, PaymentRelay]]:
    """Relays that leave the LSP at least the opening fee of *any* single-part amount
    from `lowest_msat` up to the params' max_payment_size_msat, for a static invoice
    made before the amount is known: [(htlc_minimum, htlc_maximum, relay)], one path
    each. The fee is max(min_fee, amount × proportional): up to the amount where the
    proportional part takes over, a base fee of exactly min_fee; above it a slightly
    higher proportional rate plus a few msat, so the ceiling of the forward never
    leaves the LSP short (skim > amount × proportional + 1). cltv_expiry_delta is 0:
    the caller sets the LSP's."""
    p = OpeningFeeParams.from_json(params)
    lo = max(lowest_msat, p.min_payment_size_msat, p.min_fee_msat + 1)
    hi = p.max_payment_size_msat
    if lo > hi:
        return []
    q = p.proportional
    flat_up_to = hi if q == 0 else min(hi, p.min_fee_msat * MILLION // q)
    out = []
    if lo <= flat_up_to:
        out.append((lo, flat_up_to, PaymentRelay(0, 0, p.min_fee_msat)))
    if flat_up_to < hi:
        if q >= MILLION:
            return out   # a fee of the whole amount or more: no payment can pay it
        ppm = -(-q * MILLION // (MILLION - q))
        base = -(-2 * (MILLION + ppm) // MILLION)
        out.append((max(lo, flat_up_to + 1), hi, PaymentRelay(0, ppm, base)))
    return out

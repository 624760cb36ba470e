"""LSPS2 client core: reading the menu, choosing an entry, accepting the JIT HTLCs.

Pure logic: the plugin feeds it LSP answers and HTLCs, it answers with what
to do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from lsps.lsps0.client import BAD_RESPONSE, ClientError
from lsps.lsps2.msgs import (
    EXTRA_FEE_TLV,
    OpeningFeeParams,
    ProtocolError,
    parse_scid,
    parse_tlv_stream,
    parse_uint,
    read_tu64,
    serialize_tlv_stream,
    strip_length_prefix,
    tu64,
)

# RPC error codes of the client commands (README.md).
NO_SUITABLE_PARAMS = 1201
FEE_TOO_HIGH = 1202
BAD_ARGUMENT = -32602

# Purchase states.
WAITING, PAID, EXPIRED = "waiting", "paid", "expired"

# The invoice expires this long before valid_until (the payer needs time to
# reach the LSP), and lives at least MIN_INVOICE_EXPIRY_S: entries valid for
# less than the sum of both are not chosen.
EXPIRY_MARGIN_S = 60
MIN_INVOICE_EXPIRY_S = 60


def parse_menu(lsp_id: str, result: Any) -> List[OpeningFeeParams]:
    """bLIP-52: any malformed entry (unknown field, long promise) aborts."""
    menu = result.get("opening_fee_params_menu") if isinstance(result, dict) else None
    if not isinstance(menu, list):
        raise ClientError(BAD_RESPONSE, f"{lsp_id} sent no opening_fee_params_menu",
                          {"result": result})
    try:
        return [OpeningFeeParams.from_json(entry) for entry in menu]
    except ProtocolError as e:
        raise ClientError(BAD_RESPONSE, f"{lsp_id} sent invalid opening_fee_params: {e}",
                          {"result": result}) from None


@dataclass(frozen=True)
class Choice:
    params: OpeningFeeParams
    fee_msat: Optional[int]


def choose(menu: List[OpeningFeeParams], payment_size_msat: Optional[int], now_ms: int,
           our_to_self_delay: int, max_fee_msat: Optional[int]) -> Choice:
    """The cheapest entry that is still valid, accepts the size and our delay."""
    usable = []
    reasons = []
    for p in menu:
        if p.valid_until_ms <= now_ms + (EXPIRY_MARGIN_S + MIN_INVOICE_EXPIRY_S) * 1000:
            reasons.append("expires too soon")
            continue
        if our_to_self_delay > p.max_client_to_self_delay:
            reasons.append(f"our to_self_delay {our_to_self_delay} above "
                           f"max_client_to_self_delay {p.max_client_to_self_delay}")
            continue
        if payment_size_msat is None:
            usable.append(Choice(p, None))
            continue
        if not p.min_payment_size_msat <= payment_size_msat <= p.max_payment_size_msat:
            reasons.append("amount outside min/max payment size")
            continue
        fee = p.fee_for(payment_size_msat)
        if fee is None or fee >= payment_size_msat:
            reasons.append("fee would consume the payment")
            continue
        usable.append(Choice(p, fee))
    if not usable:
        raise ClientError(NO_SUITABLE_PARAMS, "no opening_fee_params entry fits: "
                          + ("; ".join(sorted(set(reasons))) or "the menu is empty"))
    # Menus are ordered by price; still, pick by fee rather than trust it.
    best = min(usable, key=lambda c: (c.fee_msat if c.fee_msat is not None
                                      else c.params.min_fee_msat, c.params.proportional))
    if max_fee_msat is not None and best.fee_msat is not None and best.fee_msat > max_fee_msat:
        raise ClientError(FEE_TOO_HIGH, f"opening fee {best.fee_msat}msat exceeds "
                          f"max_fee_msat {max_fee_msat}", {"opening_fee_msat": best.fee_msat})
    if max_fee_msat is not None and best.fee_msat is None and \
            best.params.min_fee_msat > max_fee_msat:
        raise ClientError(FEE_TOO_HIGH, f"minimum opening fee {best.params.min_fee_msat}msat "
                          f"exceeds max_fee_msat {max_fee_msat}")
    return best


def parse_buy_result(lsp_id: str, result: Any) -> dict:
    try:
        if not isinstance(result, dict):
            raise ProtocolError("result is not an object")
        scid = result.get("jit_channel_scid")
        parse_scid(scid)
        delta = parse_uint(result.get("lsp_cltv_expiry_delta"), "lsp_cltv_expiry_delta", 65535)
        trusts = result.get("client_trusts_lsp", False)
        if not isinstance(trusts, bool):
            raise ProtocolError("client_trusts_lsp must be a boolean")
    except ProtocolError as e:
        raise ClientError(BAD_RESPONSE, f"{lsp_id} sent an invalid lsps2.buy result: {e}",
                          {"result": result}) from None
    return {"jit_channel_scid": scid, "lsp_cltv_expiry_delta": delta,
            "client_trusts_lsp": trusts}


# --- receiving the JIT payment -------------------------------------------------

@dataclass
class HtlcVerdict:
    """accept: continue with `payload` (replacement onion payload hex) and,
    for fixed invoices, `invoice_msat`; otherwise leave the HTLC to CLN."""
    accept: bool
    reason: str = ""
    payload: Optional[str] = None
    invoice_msat: Optional[int] = None


# Parts of one attempt arrive within CLN's 60 s MPP window; fees seen longer
# ago belong to a failed attempt the LSP may retry with new HTLCs.
FEE_MEMORY_MS = 120_000


def check_jit_htlc(purchase: dict, htlc_key: str, amount_msat: int, onion_payload_hex: str,
                   extra_tlvs_hex: Optional[str], seen_fees: Dict[str, tuple],
                   now_ms: int, over_jit_channel: Callable[[], bool] = lambda: True
                   ) -> HtlcVerdict:
    """Accept a part of the JIT payment the LSP forwarded with its fee deducted.

    The part must be `onion amount - extra_fee`, and the extra fees of all
    parts (`seen_fees`, keyed by HTLC, updated here) must stay within the fee
    the chosen params promise and the buyer's max_fee_msat. A part with a fee
    taken must come over the channel the LSP opened for this purchase
    (`over_jit_channel`, asked only then). The onion payload is rewritten to
    what actually arrived so lightningd's final-hop checks pass."""
    try:
        records = parse_tlv_stream(strip_length_prefix(bytes.fromhex(onion_payload_hex)))
        onion_amount = read_tu64(records[2])
        extra = parse_tlv_stream(bytes.fromhex(extra_tlvs_hex)) if extra_tlvs_hex else {}
        raw_fee = extra.get(EXTRA_FEE_TLV)
        if raw_fee is not None and len(raw_fee) != 8:
            return HtlcVerdict(False, "extra_fee must be 8 bytes")
        extra_fee = int.from_bytes(raw_fee, "big") if raw_fee is not None else 0
        payment_data = records.get(8)
    except (ProtocolError, KeyError, ValueError) as e:
        return HtlcVerdict(False, f"unreadable HTLC: {e}")

    if amount_msat != onion_amount - extra_fee:
        return HtlcVerdict(False, f"amount {amount_msat} is not onion amount {onion_amount} "
                                  f"minus extra_fee {extra_fee}")
    params = OpeningFeeParams.from_json(purchase["opening_fee_params"])
    size = purchase.get("payment_size_msat")
    fee = purchase.get("opening_fee_msat") if size is not None else params.fee_for(onion_amount)
    max_fee = purchase.get("max_fee_msat")
    if fee is not None and max_fee is not None and fee > max_fee:
        return HtlcVerdict(False, f"opening fee {fee} above max_fee_msat {max_fee}")
    for key in [k for k, (_, at) in seen_fees.items() if now_ms - at > FEE_MEMORY_MS]:
        del seen_fees[key]
    total_fees = extra_fee + sum(f for k, (f, _) in seen_fees.items() if k != htlc_key)
    if fee is None or total_fees > fee:
        return HtlcVerdict(False, f"extra fees {total_fees} exceed the promised fee {fee}")
    if extra_fee and not over_jit_channel():
        return HtlcVerdict(False, "fee taken on a channel the LSP did not open for this purchase")
    seen_fees[htlc_key] = (extra_fee, now_ms)

    if size is None:
        if payment_data is not None and len(payment_data) >= 32:
            # no-MPP: the whole payment is this part; the total is what arrived.
            records[8] = payment_data[:32] + tu64(amount_msat)
        records[2] = tu64(amount_msat)
        return HtlcVerdict(True, payload=serialize_tlv_stream(records).hex())

    expected_total = size - fee
    if payment_data is None or len(payment_data) < 32:
        return HtlcVerdict(False, "no payment_data in a fixed-amount JIT payment")
    records[2] = tu64(amount_msat)
    records[8] = payment_data[:32] + tu64(expected_total)
    return HtlcVerdict(True, payload=serialize_tlv_stream(records).hex(),
                       invoice_msat=expected_total)


def invoice_expiry(params: OpeningFeeParams, now_ms: int, requested_s: Optional[int]) -> int:
    """Seconds the invoice lives: as asked (default 1 h), ending before valid_until."""
    latest = (params.valid_until_ms - now_ms) // 1000 - EXPIRY_MARGIN_S
    return max(MIN_INVOICE_EXPIRY_S, min(requested_s or 3600, latest))

"""LSPS1 service core (bLIP-51): options, order checks, fees, order and payment states.

Pure logic: time is unix milliseconds and block heights are ints, passed in.
An order is a plain dict, persisted as is. Lightning payment is a hold
invoice: parts are held (HOLD) until the channel is open, then released
(PAID) or failed back (REFUNDED).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import FrozenSet, List, Optional, Tuple

import lsps.orders.payment as P
from lsps.lsps0.msgs import LspsError
from lsps.lsps1.msgs import OPTION_MISMATCH
from lsps.lsps2.msgs import ProtocolError, format_datetime_ms, parse_msat
from lsps.orders.payment import (
    COMPLETED,
    CREATED,
    EXPECT_PAYMENT,
    Decision,
    payment_json,
    release,
    unrefunded,
)


@dataclass(frozen=True)
class Policy:
    min_required_channel_confirmations: int = 0
    min_funding_confirms_within_blocks: int = 6
    supports_zero_channel_reserve: bool = False
    max_channel_expiry_blocks: int = 13140
    min_initial_client_balance_sat: int = 0
    max_initial_client_balance_sat: int = 1_000_000
    min_initial_lsp_balance_sat: int = 100_000
    max_initial_lsp_balance_sat: int = 10_000_000
    min_channel_balance_sat: int = 100_000
    max_channel_balance_sat: int = 11_000_000
    fee_base_sat: int = 1000
    fee_ppm: int = 2000                 # of lsp_balance_sat
    lease_ppm_per_block: int = 0        # of lsp_balance_sat, per leased block
    order_valid_for_s: int = 3600
    onchain: bool = False
    min_onchain_payment_confirmations: int = 1
    min_fee_for_0conf: int = 253        # sat per 1000 weight units, advertised only
    tokens: FrozenSet[str] = field(default_factory=frozenset)

    def check(self) -> Optional[str]:
        pairs = (("min_initial_client_balance_sat", "max_initial_client_balance_sat"),
                 ("min_initial_lsp_balance_sat", "max_initial_lsp_balance_sat"),
                 ("min_channel_balance_sat", "max_channel_balance_sat"))
        for lo, hi in pairs:
            if getattr(self, lo) > getattr(self, hi):
                return f"{lo} is above {hi}"
        if self.min_funding_confirms_within_blocks < 1:
            return "min_funding_confirms_within_blocks must be at least 1"
        if self.max_channel_expiry_blocks < 1:
            return "max_channel_expiry_blocks must be at least 1"
        if self.order_valid_for_s < 60:
            return "orders must stay valid for at least 60 seconds"
        if self.min_onchain_payment_confirmations < 1:
            return "on-chain payments need at least 1 confirmation (no zero-conf payments)"
        return None

    def info(self) -> dict:
        """lsps1.get_info: the flat form, amounts as strings."""
        out = {}
        for name in ("min_required_channel_confirmations", "min_funding_confirms_within_blocks",
                     "supports_zero_channel_reserve", "max_channel_expiry_blocks"):
            out[name] = getattr(self, name)
        for name in ("min_initial_client_balance_sat", "max_initial_client_balance_sat",
                     "min_initial_lsp_balance_sat", "max_initial_lsp_balance_sat",
                     "min_channel_balance_sat", "max_channel_balance_sat"):
            out[name] = str(getattr(self, name))
        return out


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def fee_sat(policy: Policy, lsp_balance_sat: int, channel_expiry_blocks: int) -> int:
    """fee = base + ceil(lsp_balance * fee_ppm / 1e6)
             + ceil(lsp_balance * lease_ppm_per_block * channel_expiry_blocks / 1e6)."""
    return (policy.fee_base_sat
            + _ceil_div(lsp_balance_sat * policy.fee_ppm, 1_000_000)
            + _ceil_div(lsp_balance_sat * policy.lease_ppm_per_block * channel_expiry_blocks,
                        1_000_000))


@dataclass(frozen=True)
class OrderRequest:
    lsp_balance_sat: int
    client_balance_sat: int
    required_channel_confirmations: int
    funding_confirms_within_blocks: int
    channel_expiry_blocks: int
    token: str
    refund_onchain_address: Optional[str]
    announce_channel: bool




_invalid = P.invalid_param


def _mismatch(prop: str, message: str) -> LspsError:
    return LspsError(OPTION_MISMATCH, "option mismatch", {"property": prop, "message": message})


def _uint(params: dict, name: str, maximum: int) -> int:
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise _invalid(name, f"must be an integer in 0..{maximum}")
    return value


def check_order(policy: Policy, params: dict,
                address_ok=lambda address: True) -> OrderRequest:
    """Validate lsps1.create_order params: -32602 for malformed fields, 102
    for a bad token, 100 for values outside the options."""
    amounts = {}
    for name in ("lsp_balance_sat", "client_balance_sat"):
        try:
            amounts[name] = parse_msat(params[name], name)
        except ProtocolError as e:
            raise _invalid(name, str(e)) from None
    confs = _uint(params, "required_channel_confirmations", 0xFFFF)
    within = _uint(params, "funding_confirms_within_blocks", 0xFFFF)
    expiry = _uint(params, "channel_expiry_blocks", 0xFFFFFFFF)
    announce = params["announce_channel"]
    if not isinstance(announce, bool):
        raise _invalid("announce_channel", "not a boolean")
    token = P.check_token_and_refund(params, policy.tokens, address_ok)

    lsp, client = amounts["lsp_balance_sat"], amounts["client_balance_sat"]
    if lsp < 1:
        raise _invalid("lsp_balance_sat", "must be 1 or greater")
    checks: List[Tuple[bool, str, str]] = [
        (lsp < policy.min_initial_lsp_balance_sat, "min_initial_lsp_balance_sat",
         "lsp_balance_sat below the minimum"),
        (lsp > policy.max_initial_lsp_balance_sat, "max_initial_lsp_balance_sat",
         "lsp_balance_sat above the maximum"),
        (client < policy.min_initial_client_balance_sat, "min_initial_client_balance_sat",
         "client_balance_sat below the minimum"),
        (client > policy.max_initial_client_balance_sat, "max_initial_client_balance_sat",
         "client_balance_sat above the maximum"),
        (lsp + client < policy.min_channel_balance_sat, "min_channel_balance_sat",
         "channel below the minimum size"),
        (lsp + client > policy.max_channel_balance_sat, "max_channel_balance_sat",
         "channel above the maximum size"),
        (confs < policy.min_required_channel_confirmations,
         "min_required_channel_confirmations", "fewer confirmations than the LSP requires"),
        (within < policy.min_funding_confirms_within_blocks,
         "min_funding_confirms_within_blocks", "funding cannot confirm that fast"),
        (expiry < 1 or expiry > policy.max_channel_expiry_blocks, "max_channel_expiry_blocks",
         "channel_expiry_blocks outside 1..max_channel_expiry_blocks"),
    ]
    for failed, prop, message in checks:
        if failed:
            raise _mismatch(prop, message)
    return OrderRequest(lsp, client, confs, within, expiry, token or "",
                        params.get("refund_onchain_address"), announce)


def new_order(client_id: str, request: OrderRequest, policy: Policy, now_ms: int,
              order_id: Optional[str] = None) -> dict:
    fee = fee_sat(policy, request.lsp_balance_sat, request.channel_expiry_blocks)
    return {
        "order_id": order_id or str(uuid.uuid4()), "client_id": client_id,
        "request": asdict(request), "created_ms": now_ms, "order_state": CREATED,
        "fee_total_sat": fee, "order_total_sat": fee + request.client_balance_sat,
        "expires_ms": now_ms + policy.order_valid_for_s * 1000,
        "bolt11": {"state": EXPECT_PAYMENT, "invoice": None, "payment_hash": None,
                   "label": None},
        "onchain": ({"state": EXPECT_PAYMENT, "address": None, "outputs": [],
                     "refund_txid": None, "refunding": []}
                    if policy.onchain and request.refund_onchain_address else None),
        "parts": [], "first_part_ms": None,
        "channel": None, "channel_id": None, "failure": None, "updated_ms": now_ms,
        "lease_expiry_block": None, "extensions": [],
    }


def order_json(order: dict, policy: Optional[Policy] = None) -> dict:
    """The order object of lsps1.create_order / lsps1.get_order."""
    r = order["request"]
    return {
        "order_id": order["order_id"],
        "lsp_balance_sat": str(r["lsp_balance_sat"]),
        "client_balance_sat": str(r["client_balance_sat"]),
        "required_channel_confirmations": r["required_channel_confirmations"],
        "funding_confirms_within_blocks": r["funding_confirms_within_blocks"],
        "channel_expiry_blocks": r["channel_expiry_blocks"],
        "token": r["token"], "announce_channel": r["announce_channel"],
        "created_at": format_datetime_ms(order["created_ms"]),
        "order_state": order["order_state"], "payment": payment_json(order, policy),
        "channel": order["channel"],
    }


# --- lightning payment (hold invoice) ------------------------------------------

def on_channel_opened(order: dict, channel_id: str, funding_outpoint: str, height: int,
                      now_ms: int, block_ms: int = 600_000) -> Decision:
    """Funding published: COMPLETED, the held payment is released (PAID)."""
    if order["order_state"] != CREATED:
        return Decision()  # never for a failed order (may_open guards every open)
    r = order["request"]
    order["channel_id"] = channel_id
    order["lease_expiry_block"] = height + r["channel_expiry_blocks"]
    order["channel"] = {
        "funded_at": format_datetime_ms(now_ms), "funding_outpoint": funding_outpoint,
        "expires_at": format_datetime_ms(now_ms + r["channel_expiry_blocks"] * block_ms)}
    order["order_state"] = COMPLETED
    order["updated_ms"] = now_ms
    d = Decision(changed=True, settle=release(order))
    if d.settle:
        d.refund = unrefunded(order)  # an on-chain payment beside it goes back
    return d


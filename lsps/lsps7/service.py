"""LSPS7 service core (draft bLIP-57): extending a channel's lease.

Pure logic on plain dicts. An extension order is paid exactly like an LSPS1
order (hold invoice, see lsps1_service), so it has the same payment fields
and the same on_htlc / on_tick / on_block apply; only what happens once the
payment is held differs: the new expiry is recorded and the payment settled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import FrozenSet, Optional

import lsps.lsps1.service as S
import lsps.orders.payment as P
from lsps.lsps0.msgs import LspsError
from lsps.lsps1.msgs import OPTION_MISMATCH
from lsps.lsps2.msgs import ProtocolError, format_datetime_ms, parse_scid


@dataclass(frozen=True)
class Policy:
    max_extension_blocks: int = 13140
    fee_base_sat: int = 0
    fee_ppm_per_block: int = 1          # of the channel's capacity, per block
    order_valid_for_s: int = 3600
    extend_any_channel: bool = False    # not only channels bought through LSPS1
    tokens: FrozenSet[str] = field(default_factory=frozenset)


def fee_sat(policy: Policy, capacity_sat: int, blocks: int) -> int:
    return policy.fee_base_sat + -(-capacity_sat * policy.fee_ppm_per_block * blocks
                                   // 1_000_000)


def extendable_json(lease: dict, policy: Policy) -> dict:
    """One entry of lsps7.get_extendable_channels."""
    out = {"short_channel_id": lease["short_channel_id"],
           "max_channel_extension_expiry_blocks": policy.max_extension_blocks,
           "expiration_block": lease["expiration_block"],
           "extension_order_ids": list(lease["extension_order_ids"])}
    if lease.get("original_order_id"):
        out["original_order"] = {"id": lease["original_order_id"], "service": "LSPS1"}
    return out


_invalid = P.invalid_param


def check_order(policy: Policy, params: dict, leases: dict,
                address_ok=lambda address: True) -> tuple:
    """-> (lease, blocks, token). `leases`: short_channel_id -> lease of this peer."""
    scid = params["short_channel_id"]
    try:
        parse_scid(scid)
    except ProtocolError as e:
        raise _invalid("short_channel_id", str(e)) from None
    blocks = params["channel_extension_expiry_blocks"]
    if isinstance(blocks, bool) or not isinstance(blocks, int) or not 0 <= blocks <= 2**32 - 1:
        raise _invalid("channel_extension_expiry_blocks", "must be an integer (u32)")
    token = P.check_token_and_refund(params, policy.tokens, address_ok)
    lease = leases.get(scid)
    if lease is None:
        raise LspsError(OPTION_MISMATCH, "option mismatch", {
            "property": "short_channel_id", "message": "not an extendable channel of yours"})
    if blocks < 1 or blocks > policy.max_extension_blocks:
        raise LspsError(OPTION_MISMATCH, "option mismatch", {
            "property": "max_channel_extension_expiry_blocks",
            "message": "channel_extension_expiry_blocks outside 1..max"})
    return lease, blocks, token or ""


def new_order(client_id: str, lease: dict, blocks: int, token: str, policy: Policy,
              now_ms: int, order_id: Optional[str] = None,
              refund_onchain_address: Optional[str] = None, onchain: bool = False) -> dict:
    """`onchain`: accept on-chain payment (LSPS1's option), given a refund address."""
    fee = fee_sat(policy, lease["capacity_sat"], blocks)
    return {
        "kind": "lsps7", "order_id": order_id or str(uuid.uuid4()), "client_id": client_id,
        "channel_id": lease["channel_id"], "short_channel_id": lease["short_channel_id"],
        "channel_extension_expiry_blocks": blocks, "token": token,
        "new_channel_expiry_block": lease["expiration_block"] + blocks,
        "created_ms": now_ms, "order_state": P.CREATED, "fee_total_sat": fee,
        "order_total_sat": fee, "expires_ms": now_ms + policy.order_valid_for_s * 1000,
        "bolt11": {"state": P.EXPECT_PAYMENT, "invoice": None, "payment_hash": None,
                   "label": None},
        "request": {"refund_onchain_address": refund_onchain_address},
        "onchain": ({"state": P.EXPECT_PAYMENT, "address": None, "outputs": [],
                     "refund_txid": None, "refunding": []}
                    if onchain and refund_onchain_address else None),
        "parts": [], "first_part_ms": None, "failure": None, "updated_ms": now_ms,
    }


def order_json(order: dict, lease: dict, policy: Policy,
               payment_policy: Optional[S.Policy] = None) -> dict:
    # Unpaid, the extension counts from the lease as it is now (another
    # extension may have been paid since); done, it is what was recorded.
    new_expiry = (lease["expiration_block"] + order["channel_extension_expiry_blocks"]
                  if order["order_state"] == P.CREATED else order["new_channel_expiry_block"])
    return {
        "order_id": order["order_id"], "short_channel_id": order["short_channel_id"],
        "channel_extension_expiry_blocks": order["channel_extension_expiry_blocks"],
        "new_channel_expiry_block": new_expiry,
        "token": order["token"], "created_at": format_datetime_ms(order["created_ms"]),
        "order_state": order["order_state"],
        "payment": P.payment_json(order, payment_policy),
        "channel": extendable_json(lease, policy),
    }


def on_held(order: dict, lease: dict, now_ms: int) -> P.Decision:
    """The payment is held: extend the lease, then release the payment.

    The new expiry counts from the lease as it is now, so two extensions
    paid one after the other add up even if their orders were created
    against the same old expiry."""
    if not P.may_open(order):
        return P.Decision()
    if order["order_id"] not in lease["extension_order_ids"]:  # not twice after a restart
        lease["expiration_block"] += order["channel_extension_expiry_blocks"]
        lease["extension_order_ids"].append(order["order_id"])
    order["new_channel_expiry_block"] = lease["expiration_block"]
    settle = P.release(order)
    order["order_state"] = P.COMPLETED
    order["updated_ms"] = now_ms
    return P.Decision(settle=settle, changed=True)

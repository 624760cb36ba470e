"""LSPS1 service core (bLIP-51): options, order checks, fees, order and payment states.

Pure logic: time is unix milliseconds and block heights are ints, passed in.
An order is a plain dict, persisted as is. Lightning payment is a hold
invoice: parts are held (HOLD) until the channel is open, then released
(PAID) or failed back (REFUNDED).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Dict, FrozenSet, List, Optional, Tuple

from lsps.htlc import incorrect_or_unknown
from lsps.lsps0.msgs import INVALID_PARAMS, LspsError
from lsps.lsps2.msgs import ProtocolError, format_datetime_ms, parse_msat

OPTION_MISMATCH = 100
ORDER_NOT_FOUND = 101
UNRECOGNIZED_TOKEN = 102

# Order states and payment states (bLIP-51).
CREATED, COMPLETED, FAILED = "CREATED", "COMPLETED", "FAILED"
EXPECT_PAYMENT, HOLD, PAID, REFUNDED = "EXPECT_PAYMENT", "HOLD", "PAID", "REFUNDED"


HOLD_COLLECTION_MS = 90_000


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


CREATE_ORDER_REQUIRED = frozenset({"lsp_balance_sat", "client_balance_sat",
                                   "required_channel_confirmations",
                                   "funding_confirms_within_blocks", "channel_expiry_blocks",
                                   "announce_channel"})
CREATE_ORDER_OPTIONAL = frozenset({"token", "refund_onchain_address"})


def _invalid(prop: str, message: str) -> LspsError:
    return LspsError(INVALID_PARAMS, "invalid params",
                     {"property": prop, "message": message, "unrecognized": []})


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
    token = params.get("token")
    if token is not None and not isinstance(token, str):
        raise _invalid("token", "not a string")
    refund = params.get("refund_onchain_address")
    if refund is not None and (not isinstance(refund, str) or not address_ok(refund)):
        raise _invalid("refund_onchain_address", "not an on-chain address of this network")
    if policy.tokens and (token or "") not in policy.tokens:
        raise LspsError(UNRECOGNIZED_TOKEN, "unrecognized or stale token")

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
    return OrderRequest(lsp, client, confs, within, expiry, token or "", refund, announce)


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


def payment_json(order: dict, policy: Optional[Policy] = None) -> Dict[str, dict]:
    """The `payment` object (LSPS1, and LSPS7 which copies it)."""
    payment: Dict[str, dict] = {}
    common = {"expires_at": format_datetime_ms(order["expires_ms"]),
              "fee_total_sat": str(order["fee_total_sat"]),
              "order_total_sat": str(order["order_total_sat"])}
    if order["bolt11"]["invoice"]:
        payment["bolt11"] = {"state": order["bolt11"]["state"], **common,
                             "invoice": order["bolt11"]["invoice"]}
    onchain = order.get("onchain")
    if onchain and onchain["address"] and policy is not None:
        # bLIP-51 wants min_fee_for_0conf absent when confirmations are
        # required, but LDK clients fail without it: sent anyway.
        payment["onchain"] = {
            "state": onchain["state"], **common, "address": onchain["address"],
            "min_onchain_payment_confirmations": policy.min_onchain_payment_confirmations,
            "min_fee_for_0conf": policy.min_fee_for_0conf,
            "refund_onchain_address": order["request"]["refund_onchain_address"]}
    return payment


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

@dataclass
class Decision:
    hold: List[str] = field(default_factory=list)
    settle: List[str] = field(default_factory=list)   # answer `continue`: CLN settles
    fail: Dict[str, str] = field(default_factory=dict)
    refund: List[str] = field(default_factory=list)   # on-chain outpoints to send back
    open: bool = False
    changed: bool = False
    why: str = ""                                      # why a new part was refused


@dataclass(frozen=True)
class Part:
    """An HTLC paying an order's invoice, as lightningd parsed it."""
    key: str
    amount_msat: int                # what the HTLC carries
    cltv_expiry: int
    forward_msat: int               # the onion's amt_to_forward
    outgoing_cltv: int              # the onion's outgoing_cltv_value
    total_msat: Optional[int]       # the onion's total_msat (payment_data)
    payment_secret: Optional[str]   # the onion's payment_secret, hex


def refusal(order: dict, part: Part, height: int, min_cltv_blocks: int,
            now_ms: int) -> Optional[str]:
    """Why lightningd (BOLT4 final-node rules) would not let this part settle the
    order's invoice, or None. Checked before holding: a part we hold and cannot
    settle is no money."""
    bolt11 = order["bolt11"]
    if part.payment_secret is None or (bolt11.get("payment_secret") is not None
                                       and part.payment_secret != bolt11["payment_secret"]):
        return "wrong or missing payment_secret"
    if part.total_msat != order["order_total_sat"] * 1000:
        return f"total_msat {part.total_msat} is not the order total"
    if part.amount_msat < part.forward_msat:
        return f"HTLC carries {part.amount_msat} msat, the onion claims {part.forward_msat}"
    if part.cltv_expiry < part.outgoing_cltv:
        return "cltv_expiry below the onion's outgoing_cltv_value"
    if part.cltv_expiry - height < min_cltv_blocks:
        return f"cltv_expiry {part.cltv_expiry} leaves fewer than {min_cltv_blocks} blocks"
    if now_ms >= order["expires_ms"]:
        return "order expired"
    return None


def on_htlc(order: dict, part: Part, height: int, now_ms: int,
            min_cltv_blocks: int) -> Decision:
    """A part paying this order's invoice (`min_cltv_blocks`: cltv-final plus the
    hold margin)."""
    bolt11 = order["bolt11"]
    key = part.key
    refuse = Decision(fail={key: incorrect_or_unknown(part.amount_msat, height)})
    known = next((p for p in order["parts"] if p["key"] == key), None)
    if known is not None:  # replayed after a restart
        if bolt11["state"] == PAID:
            return Decision(settle=[key])
        if bolt11["state"] == REFUNDED or order["order_state"] == FAILED:
            return refuse
        return Decision(hold=[key])
    onchain_paid = bool(order.get("onchain")) and order["onchain"]["state"] == PAID
    if order["order_state"] != CREATED or bolt11["state"] != EXPECT_PAYMENT or onchain_paid:
        refuse.why = "order paid already or over"
        return refuse
    why = refusal(order, part, height, min_cltv_blocks, now_ms)
    if why is not None:
        refuse.why = why
        return refuse
    order["parts"].append({"key": key, "amount_msat": part.amount_msat,
                           "cltv_expiry": part.cltv_expiry, "arrived_ms": now_ms})
    if order["first_part_ms"] is None:
        order["first_part_ms"] = now_ms
    order["updated_ms"] = now_ms
    d = Decision(hold=[key], changed=True)
    if sum(p["amount_msat"] for p in order["parts"]) >= order["order_total_sat"] * 1000:
        bolt11["state"] = HOLD
        d.open = True
    return d


def _unrefunded(order: dict) -> List[str]:
    onchain = order.get("onchain")
    if not onchain:
        return []
    return [o["outpoint"] for o in onchain["outputs"]
            if o["outpoint"] not in onchain["refunding"]]


def _refund(order: dict, reason: str, height: int, now_ms: int) -> Decision:
    d = Decision(changed=True)
    for p in order["parts"]:
        d.fail[p["key"]] = incorrect_or_unknown(p["amount_msat"], height)
    if order["bolt11"]["state"] in (HOLD, EXPECT_PAYMENT) and order["parts"]:
        order["bolt11"]["state"] = REFUNDED
    d.refund = _unrefunded(order)
    order["order_state"] = FAILED
    order["failure"] = reason
    order["updated_ms"] = now_ms
    return d


def on_tick(order: dict, height: int, now_ms: int) -> Decision:
    """Incomplete part sets time out; unpaid orders expire."""
    if order["order_state"] != CREATED:
        return Decision()
    if order["bolt11"]["state"] == EXPECT_PAYMENT and order["parts"] and \
            now_ms - order["first_part_ms"] >= HOLD_COLLECTION_MS:
        d = Decision(changed=True)
        for p in order["parts"]:
            d.fail[p["key"]] = incorrect_or_unknown(p["amount_msat"], height)
        order["parts"] = []
        order["first_part_ms"] = None
        order["updated_ms"] = now_ms
        return d
    onchain_paid = order.get("onchain") and order["onchain"]["state"] == PAID
    if now_ms >= order["expires_ms"] and order["bolt11"]["state"] == EXPECT_PAYMENT \
            and not onchain_paid:
        return _refund(order, "order expired unpaid", height, now_ms)
    return Decision()


def on_onchain_outputs(order: dict, outputs: List[dict], min_confirmations: int,
                       now_ms: int) -> Decision:
    """What the order's address received: [{outpoint, amount_sat, confirmations}].

    Enough confirmed sats before expiry pay the order (PAID, then the open);
    anything arriving when the order can no longer use it is sent back."""
    onchain = order.get("onchain")
    if not onchain:
        return Decision()
    known = {o["outpoint"] for o in onchain["outputs"]}
    fresh = [o for o in outputs if o["outpoint"] not in known]
    confirmations = {o["outpoint"]: o["confirmations"] for o in outputs}
    d = Decision()
    if fresh:
        onchain["outputs"].extend({"outpoint": o["outpoint"], "amount_sat": o["amount_sat"]}
                                  for o in fresh)
        order["updated_ms"] = now_ms
        d.changed = True
    usable = order["order_state"] == CREATED and onchain["state"] == EXPECT_PAYMENT \
        and order["bolt11"]["state"] == EXPECT_PAYMENT and now_ms < order["expires_ms"]
    if usable:
        confirmed = sum(o["amount_sat"] for o in onchain["outputs"]
                        if confirmations.get(o["outpoint"], 0) >= min_confirmations)
        if confirmed >= order["order_total_sat"]:
            onchain["state"] = PAID
            d.open = d.changed = True
    elif onchain["state"] == PAID and order["order_state"] != FAILED:
        d.refund = [o["outpoint"] for o in fresh]  # more money after the payment: back
    else:
        # Late, beside a lightning payment, or for a failed order: all back.
        d.refund = _unrefunded(order)
    return d


def on_refund_sent(order: dict, outpoints: List[str], txid: str, now_ms: int) -> None:
    onchain = order["onchain"]
    onchain["refunding"].extend(o for o in outpoints if o not in onchain["refunding"])
    onchain["refund_txid"] = txid
    if onchain["state"] in (PAID, EXPECT_PAYMENT) and order["order_state"] == FAILED:
        onchain["state"] = REFUNDED
    order["updated_ms"] = now_ms


def may_open(order: dict) -> bool:
    """Paid and not over: held by invoice, or paid on chain, and still CREATED.
    An order whose payment went back never opens (nor extends)."""
    if order["order_state"] != CREATED:
        return False
    onchain = order.get("onchain")
    return order["bolt11"]["state"] == HOLD or bool(onchain and onchain["state"] == PAID)


def on_block(order: dict, height: int, margin: int, now_ms: int,
             opening: bool = False) -> Decision:
    """Held parts are failed before their CLTV expiry; not while an open is in
    flight (its outcome settles or fails them)."""
    if order["bolt11"]["state"] not in (EXPECT_PAYMENT, HOLD) or not order["parts"]:
        return Decision()
    if order["order_state"] == COMPLETED or opening:
        return Decision()
    if any(p["cltv_expiry"] - height <= margin for p in order["parts"]):
        return _refund(order, f"payment near CLTV expiry at height {height}", height, now_ms)
    return Decision()


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
    d = Decision(changed=True)
    if order["bolt11"]["state"] == HOLD:
        order["bolt11"]["state"] = PAID
        d.settle = [p["key"] for p in order["parts"]]
        d.refund = _unrefunded(order)  # an on-chain payment beside it goes back
    return d


def on_open_failed(order: dict, reason: str, height: int, now_ms: int) -> Decision:
    return _refund(order, f"channel open failed: {reason}", height, now_ms)

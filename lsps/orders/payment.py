"""How an order is paid, shared by LSPS1 channel orders and LSPS7 lease extensions.

Pure logic: time is unix milliseconds and block heights are ints, passed in.
An order is a plain dict. Lightning payment is a hold invoice (`bolt11`) or an offer
whose invoices we answer ourselves (`bolt12`, bLIP-51): either way parts are held
(HOLD) until the channel is open or the lease extended, then released (PAID) or
failed back (REFUNDED); the parts of one payment are all of one kind. An on-chain
payment is PAID once confirmed, or refunded. Every function returns a `Decision`
the handler applies (persist, then act)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from lsps.htlc import incorrect_or_unknown
from lsps.lsps0.msgs import INVALID_PARAMS, LspsError
from lsps.lsps2.msgs import format_datetime_ms

ORDER_NOT_FOUND = 101

# Order states and payment states (bLIP-51).
CREATED, COMPLETED, FAILED = "CREATED", "COMPLETED", "FAILED"

EXPECT_PAYMENT, HOLD, PAID, REFUNDED = "EXPECT_PAYMENT", "HOLD", "PAID", "REFUNDED"

HOLD_COLLECTION_MS = 90_000
LIGHTNING = ("bolt11", "bolt12")   # the lightning payment options, as bLIP-51 names them
MAX_OFFER_CHARS = 2048             # bLIP-51: payment.bolt12.offer



def offered(order: dict) -> List[str]:
    """The payment options the order offers: bolt11 (an invoice), bolt12 (an offer),
    onchain (an address)."""
    return [m for m, field_name in (("bolt11", "invoice"), ("bolt12", "offer"),
                                    ("onchain", "address"))
            if order.get(m) and order[m].get(field_name)]


def payment_json(order: dict, policy: Optional[Any] = None) -> Dict[str, dict]:
    """The `payment` object (LSPS1, and LSPS7 which copies it)."""
    payment: Dict[str, dict] = {}
    common = {"expires_at": format_datetime_ms(order["expires_ms"]),
              "fee_total_sat": str(order["fee_total_sat"]),
              "order_total_sat": str(order["order_total_sat"])}
    methods = offered(order)
    if "bolt11" in methods:
        payment["bolt11"] = {"state": order["bolt11"]["state"], **common,
                             "invoice": order["bolt11"]["invoice"]}
    if "bolt12" in methods:
        bolt12 = order["bolt12"]
        payment["bolt12"] = {"state": bolt12["state"], **common, "offer": bolt12["offer"]}
    onchain = order.get("onchain")
    if "onchain" in methods and policy is not None:
        # bLIP-51 wants min_fee_for_0conf absent when confirmations are
        # required, but LDK clients fail without it: sent anyway.
        payment["onchain"] = {
            "state": onchain["state"], **common, "address": onchain["address"],
            "min_onchain_payment_confirmations": policy.min_onchain_payment_confirmations,
            "min_fee_for_0conf": policy.min_fee_for_0conf,
            "refund_onchain_address": order["request"]["refund_onchain_address"]}
    return payment



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
    """An HTLC paying an order's invoice, as lightningd parsed it (bolt11), or as its
    blinded final payload reads (bolt12)."""
    key: str
    amount_msat: int                # what the HTLC carries
    cltv_expiry: int
    forward_msat: int               # the onion's amt_to_forward
    outgoing_cltv: int              # the onion's outgoing_cltv_value
    total_msat: Optional[int]       # the onion's total_msat (payment_data / total_amount_msat)
    payment_secret: Optional[str]   # the onion's payment_secret, hex
    method: str = "bolt11"
    # bolt12: SHA256 of the encrypted_recipient_data it carried, when a path key came
    # with it (our payment path's data is the payment_secret of a blinded payment)
    path_data: Optional[str] = None


def lightning_unpaid(order: dict) -> bool:
    """No lightning payment is held, paid or refunded."""
    return all(order[m]["state"] == EXPECT_PAYMENT for m in LIGHTNING if order.get(m))


def takes_payment(order: dict, now_ms: int) -> bool:
    """May a lightning payment still come for the order: unpaid, not expired?"""
    onchain = order.get("onchain")
    return order["order_state"] == CREATED and lightning_unpaid(order) and \
        not (onchain and onchain["state"] == PAID) and now_ms < order["expires_ms"]


def parts_method(order: dict) -> Optional[str]:
    """The payment option the held parts pay: "bolt11" or "bolt12"."""
    return order["parts"][0].get("method", "bolt11") if order["parts"] else None


def preimage_of(order: dict, key: str) -> Optional[str]:
    """The preimage that settles part `key` (None: lightningd settles, for orders made
    before we kept our own)."""
    part = next((p for p in order["parts"] if p["key"] == key), None)
    method = order[part.get("method", "bolt11") if part else "bolt11"]
    return method.get("preimage")


def release(order: dict) -> List[str]:
    """The held lightning payment is released: PAID; the part keys to settle."""
    method = parts_method(order)
    if method is None or order[method]["state"] != HOLD:
        return []
    order[method]["state"] = PAID
    return [p["key"] for p in order["parts"]]



def refusal(order: dict, part: Part, height: int, min_cltv_blocks: int,
            now_ms: int) -> Optional[str]:
    """Why lightningd (BOLT4 final-node rules) would not let this part settle the
    order's invoice, or None. Checked before holding: a part we hold and cannot
    settle is no money."""
    if part.method == "bolt12":
        bolt12 = order.get("bolt12") or {}
        if part.path_data is None or part.path_data != bolt12.get("path_data"):
            return "not on the order's blinded payment path"
    else:
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
    key = part.key
    refuse = Decision(fail={key: incorrect_or_unknown(part.amount_msat, height)})
    known = next((p for p in order["parts"] if p["key"] == key), None)
    if known is not None:  # replayed after a restart
        state = order[known.get("method", "bolt11")]["state"]
        if state == PAID:
            return Decision(settle=[key])
        if state == REFUNDED or order["order_state"] == FAILED:
            return refuse
        return Decision(hold=[key])
    onchain_paid = bool(order.get("onchain")) and order["onchain"]["state"] == PAID
    if order["order_state"] != CREATED or not lightning_unpaid(order) or onchain_paid:
        refuse.why = "order paid already or over"
        return refuse
    if parts_method(order) not in (None, part.method):
        refuse.why = f"parts of the {parts_method(order)} payment are being collected"
        return refuse
    why = refusal(order, part, height, min_cltv_blocks, now_ms)
    if why is not None:
        refuse.why = why
        return refuse
    order["parts"].append({"key": key, "amount_msat": part.amount_msat,
                           "cltv_expiry": part.cltv_expiry, "arrived_ms": now_ms,
                           "method": part.method})
    if order["first_part_ms"] is None:
        order["first_part_ms"] = now_ms
    order["updated_ms"] = now_ms
    d = Decision(hold=[key], changed=True)
    if sum(p["amount_msat"] for p in order["parts"]) >= order["order_total_sat"] * 1000:
        order[part.method]["state"] = HOLD
        d.open = True
    return d



def unrefunded(order: dict) -> List[str]:
    onchain = order.get("onchain")
    if not onchain:
        return []
    return [o["outpoint"] for o in onchain["outputs"]
            if o["outpoint"] not in onchain["refunding"]]



def onchain_refund_json(order: dict) -> Optional[dict]:
    """What went back on chain (sats, and in which transaction) and what is owed back
    but not sent yet (a failed order's payment); None without an on-chain option."""
    onchain = order.get("onchain")
    if not onchain or not onchain.get("address"):
        return None
    amounts = {o["outpoint"]: o["amount_sat"] for o in onchain["outputs"]}
    owed = unrefunded(order) if order["order_state"] == FAILED else []
    return {"refunded_sat": sum(amounts.get(o, 0) for o in onchain["refunding"]),
            "pending_sat": sum(amounts[o] for o in owed),
            "txid": onchain.get("refund_txid")}


def summary_row(order: dict, lease_expiry_block: Optional[int] = None) -> dict:
    """What lsp-summary adds up of an order (small: kept for every archived one), as the
    service's order listing shows it; `lease_expiry_block` with extensions, if known."""
    return {"kind": order.get("kind", "lsps1"), "order_state": order["order_state"],
            "payment_states": {m: order[m]["state"] for m in offered(order)},
            "lease_expiry_block": lease_expiry_block or order.get("lease_expiry_block"),
            "closed_at_block": order.get("closed_at_block"),
            "onchain_refund": onchain_refund_json(order)}


def _refund(order: dict, reason: str, height: int, now_ms: int) -> Decision:
    d = Decision(changed=True)
    for p in order["parts"]:
        d.fail[p["key"]] = incorrect_or_unknown(p["amount_msat"], height)
    method = parts_method(order)
    if method is not None and order[method]["state"] in (HOLD, EXPECT_PAYMENT):
        order[method]["state"] = REFUNDED
    d.refund = unrefunded(order)
    order["order_state"] = FAILED
    order["failure"] = reason
    order["updated_ms"] = now_ms
    return d



def on_tick(order: dict, height: int, now_ms: int) -> Decision:
    """Incomplete part sets time out; unpaid orders expire."""
    if order["order_state"] != CREATED:
        return Decision()
    if lightning_unpaid(order) and order["parts"] and \
            now_ms - order["first_part_ms"] >= HOLD_COLLECTION_MS:
        d = Decision(changed=True)
        for p in order["parts"]:
            d.fail[p["key"]] = incorrect_or_unknown(p["amount_msat"], height)
        order["parts"] = []
        order["first_part_ms"] = None
        order["updated_ms"] = now_ms
        return d
    onchain_paid = order.get("onchain") and order["onchain"]["state"] == PAID
    if now_ms >= order["expires_ms"] and lightning_unpaid(order) and not onchain_paid:
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
        and lightning_unpaid(order) and now_ms < order["expires_ms"]
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
        d.refund = unrefunded(order)
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
    return any(order[m]["state"] == HOLD for m in LIGHTNING if order.get(m)) or \
        bool(onchain and onchain["state"] == PAID)



def on_block(order: dict, height: int, margin: int, now_ms: int,
             opening: bool = False) -> Decision:
    """Held parts are failed before their CLTV expiry; not while an open is in
    flight (its outcome settles or fails them)."""
    method = parts_method(order)
    if method is None or order[method]["state"] not in (EXPECT_PAYMENT, HOLD):
        return Decision()
    if order["order_state"] == COMPLETED or opening:
        return Decision()
    if any(p["cltv_expiry"] - height <= margin for p in order["parts"]):
        return _refund(order, f"payment near CLTV expiry at height {height}", height, now_ms)
    return Decision()



def on_open_failed(order: dict, reason: str, height: int, now_ms: int) -> Decision:
    return _refund(order, f"channel open failed: {reason}", height, now_ms)


# --- what is kept of an order ------------------------------------------------------------
def stored_record(order: dict) -> dict:
    """What is stored of an order: no in-memory marks."""
    return {k: v for k, v in order.items() if not k.startswith("_")}


def is_live(order: dict) -> bool:
    """Can anything still happen to it: unpaid or being paid, an address we watch (a
    late payment is refunded), or a sold lease that may be closed at expiry?"""
    onchain = order.get("onchain")
    return (order["order_state"] == CREATED or bool(onchain and onchain.get("address"))
            or (order.get("kind", "lsps1") == "lsps1" and order["order_state"] == COMPLETED
                and order.get("closed_at_block") is None))


def payment_hashes(order: dict) -> List[str]:
    """The payment hashes of the order's lightning options (bolt11, bolt12)."""
    return [order[m]["payment_hash"] for m in LIGHTNING
            if order.get(m) and order[m].get("payment_hash")]


# --- what LSPS1 and LSPS7 orders ask alike ---------------------------------------------
UNRECOGNIZED_TOKEN = 102   # bLIP-51; the LSPS7 draft gives none and uses it too


def invalid_param(prop: str, message: str) -> LspsError:
    return LspsError(INVALID_PARAMS, "invalid params",
                     {"property": prop, "message": message, "unrecognized": []})


def check_token_and_refund(params: dict, tokens, address_ok) -> Optional[str]:
    """The order's `token` (a string, one of `tokens` when there are any) and
    `refund_onchain_address` (an address of this network); returns the token."""
    token = params.get("token")
    if token is not None and not isinstance(token, str):
        raise invalid_param("token", "not a string")
    refund = params.get("refund_onchain_address")
    if refund is not None and (not isinstance(refund, str) or not address_ok(refund)):
        raise invalid_param("refund_onchain_address", "not an on-chain address of this network")
    if tokens and (token or "") not in tokens:
        raise LspsError(UNRECOGNIZED_TOKEN, "unrecognized or stale token")
    return token


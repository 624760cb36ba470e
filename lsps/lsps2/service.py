"""LSPS2 service core: the menu, lsps2.buy checks, and JIT sessions.

Pure logic: time comes in as unix milliseconds, block heights as ints, and
every answer is a decision the adapter carries out (hold / fail / forward an
HTLC, open a channel, persist the session). A session is a plain dict so it
can be persisted as is (see lsps/node/store.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, FrozenSet, List, Optional, Tuple

from lsps.htlc import TEMPORARY_CHANNEL_FAILURE, UNKNOWN_NEXT_PEER
from lsps.lsps0.msgs import INVALID_PARAMS, LspsError
from lsps.lsps2.msgs import (
    INVALID_OPENING_FEE_PARAMS,
    PAYMENT_SIZE_TOO_LARGE,
    PAYMENT_SIZE_TOO_SMALL,
    UNRECOGNIZED_OR_STALE_TOKEN,
    OpeningFeeParams,
    ProtocolError,
    make_promise,
    menu_is_ordered,
    parse_msat,
    verify_promise,
)

MPP_COLLECTION_MS = 90_000


@dataclass(frozen=True)
class Policy:
    fees: Tuple[Tuple[int, int], ...]  # (min_fee_msat, proportional) per menu entry
    valid_for_s: int
    min_lifetime: int
    max_client_to_self_delay: int
    min_payment_size_msat: int
    max_payment_size_msat: int
    cltv_expiry_delta: int
    min_channel_sat: int
    tokens: FrozenSet[str] = frozenset()
    htlc_expiry_margin: int = 6
    open_timeout_s: int = 60

    def check(self) -> Optional[str]:
        """Why this configuration is unusable, or None."""
        if not self.fees:
            return "no fee entry"
        entries = [OpeningFeeParams(f, p, 0, 0, 0, 0, 0) for f, p in self.fees]
        if not menu_is_ordered(entries):
            return ("fee entries must each raise min_fee_msat or proportional "
                    "and lower neither")
        if self.min_payment_size_msat > self.max_payment_size_msat:
            return "min payment size above max payment size"
        if self.valid_for_s < 60:
            return "valid-for must be at least 60 seconds"
        return None


@dataclass
class Service:
    policy: Policy
    secret: bytes

    def menu(self, client_id: str, now_ms: int, token: Optional[str]) -> List[dict]:
        self.check_token(token)
        valid_until = (now_ms // 1000 + self.policy.valid_for_s) * 1000
        out = []
        for min_fee, proportional in self.policy.fees:
            params = OpeningFeeParams(
                min_fee, proportional, valid_until, self.policy.min_lifetime,
                self.policy.max_client_to_self_delay, self.policy.min_payment_size_msat,
                self.policy.max_payment_size_msat)
            promise = make_promise(self.secret, client_id, params)
            out.append(OpeningFeeParams(**{**params.__dict__, "promise": promise}).to_json())
        return out

    def check_token(self, token) -> None:
        if token is not None and not isinstance(token, str):
            raise LspsError(INVALID_PARAMS, "token must be a string",
                            {"unrecognized": [], "property": "token"})
        if self.policy.tokens and token not in self.policy.tokens:
            raise LspsError(UNRECOGNIZED_OR_STALE_TOKEN, "unrecognized or stale token")

    def check_buy(self, client_id: str, params_json, payment_size_raw, now_ms: int,
                  inbound_msat: Optional[int]) -> Tuple[OpeningFeeParams, Optional[int],
                                                        Optional[int]]:
        """lsps2.buy checks; returns (params, payment_size or None, fee or None)."""
        try:
            params = OpeningFeeParams.from_json(params_json)
        except ProtocolError as e:
            raise LspsError(INVALID_PARAMS, f"opening_fee_params: {e}",
                            {"unrecognized": [], "property": "opening_fee_params"}) from None
        if not verify_promise(self.secret, client_id, params):
            raise LspsError(INVALID_OPENING_FEE_PARAMS, "invalid opening_fee_params: "
                            "promise does not match")
        if params.valid_until_ms <= now_ms:
            raise LspsError(INVALID_OPENING_FEE_PARAMS, "invalid opening_fee_params: "
                            "valid_until has passed")
        if payment_size_raw is None:
            return params, None, None
        try:
            size = parse_msat(payment_size_raw, "payment_size_msat")
        except ProtocolError as e:
            raise LspsError(INVALID_PARAMS, str(e), {"unrecognized": [],
                                                     "property": "payment_size_msat"}) from None
        if size < params.min_payment_size_msat:
            raise LspsError(PAYMENT_SIZE_TOO_SMALL, "payment size below min_payment_size_msat")
        if size > params.max_payment_size_msat:
            raise LspsError(PAYMENT_SIZE_TOO_LARGE, "payment size above max_payment_size_msat")
        fee = params.fee_for(size)
        if fee is None:
            raise LspsError(PAYMENT_SIZE_TOO_LARGE, "opening fee computation overflows")
        if fee >= size:
            raise LspsError(PAYMENT_SIZE_TOO_SMALL, "opening fee would consume the payment")
        if inbound_msat is not None and inbound_msat < size:
            raise LspsError(PAYMENT_SIZE_TOO_LARGE, "not enough inbound liquidity")
        return params, size, fee


# --- sessions ---------------------------------------------------------------

# States. WAITING: bought, no HTLC yet. COLLECTING: holding parts.
# OPENING: fundchannel under way (write-ahead). FORWARDING: channel open,
# parts forwarded. DONE/FAILED: final (FAILED only when valid_until passes
# with no channel; failing a set of parts returns the session to WAITING).
WAITING, COLLECTING, OPENING, FORWARDING, DONE, FAILED = (
    "waiting", "collecting", "opening", "forwarding", "done", "failed")


def new_session(scid: str, client_id: str, params: OpeningFeeParams,
                payment_size_msat: Optional[int], fee_msat: Optional[int],
                now_ms: int) -> dict:
    return {
        "scid": scid, "client_id": client_id, "params": params.to_json(),
        "valid_until_ms": params.valid_until_ms,
        "payment_size_msat": payment_size_msat, "opening_fee_msat": fee_msat,
        "state": WAITING, "parts": [], "payment_hash": None, "first_part_ms": None,
        "channel_id": None, "created_ms": now_ms, "updated_ms": now_ms,
        "failures": [], "forwards": {},
    }


@dataclass
class Decision:
    """What the adapter must do. `fail` maps part key -> failure message hex;
    `forward` maps part key -> (amount_to_forward_msat, extra_fee_msat);
    `hold` lists part keys to keep pending; `open` asks for a channel."""
    hold: List[str] = field(default_factory=list)
    fail: Dict[str, str] = field(default_factory=dict)
    forward: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    open: bool = False
    changed: bool = False
    why: str = ""   # why a new part was refused by `refusal`


def part_key(incoming_scid: str, htlc_id: int) -> str:
    return f"{incoming_scid}/{htlc_id}"


def _fail_all(session: dict, code: str, reason: str, now_ms: int) -> Decision:
    d = Decision(changed=True)
    for p in session["parts"]:
        d.fail[p["key"]] = code
    session["failures"].append({"at_ms": now_ms, "reason": reason, "parts": len(session["parts"])})
    session["parts"] = []
    session["payment_hash"] = None
    session["first_part_ms"] = None
    session.pop("wake_until_ms", None)
    if session["payment_size_msat"] is None:
        session["opening_fee_msat"] = None  # no-MPP: the next first part sets it
    session["state"] = WAITING
    session["updated_ms"] = now_ms
    return d


def counted_msat(part: dict) -> int:
    """What a part brings towards the payment: the money that arrives, never more
    than the onion asks us to forward (a blinded part: what the payer sent, since
    lightningd already took the fee out of its forward amount)."""
    if part.get("blinded"):
        return part["amount_msat"]
    return min(part["amount_msat"], part["forward_msat"])


def skim_msat(part: dict) -> int:
    """What lightningd leaves us of a blinded part (amount − the relay's forward)."""
    return part["amount_msat"] - part["forward_msat"]


def refusal(session: dict, part: dict, cltv_delta: int, margin: int) -> Optional[str]:
    """Why this part cannot be forwarded through the JIT channel with the fee
    deducted (checked before anything is held or opened), or None. `part` also
    carries the onion's outgoing_cltv, the height and `blinded`."""
    if part["amount_msat"] < part["forward_msat"]:
        return f"HTLC carries {part['amount_msat']} msat, the onion asks {part['forward_msat']}"
    if part["cltv_expiry"] - part["outgoing_cltv"] < cltv_delta:
        return f"CLTV delta below lsp_cltv_expiry_delta {cltv_delta}"
    if part["cltv_expiry"] - part["height"] <= cltv_delta + margin:
        return "CLTV expiry too close"
    if session["state"] not in (WAITING, COLLECTING):
        return None  # no set is being collected: the size does not apply
    limit = session["payment_size_msat"]
    if limit is None:
        limit = OpeningFeeParams.from_json(session["params"]).max_payment_size_msat
    if sum(counted_msat(p) for p in session["parts"]) + counted_msat(part) > limit:
        return f"parts above the payment size {limit}"
    if session["parts"] and bool(session["parts"][0].get("blinded")) != bool(part.get("blinded")):
        return "blinded and plain parts in one payment"
    return None


def on_htlc(session: dict, part: dict, now_ms: int, client_connected: bool,
            cltv_delta: int, margin: int) -> Decision:
    """An HTLC whose next hop is this session's jit scid.

    `part`: key, payment_hash, amount_msat (incoming), forward_msat and
    outgoing_cltv (onion), cltv_expiry, height, blinded. Replays of a part we
    already hold are held again (or forwarded as decided)."""
    state = session["state"]
    key = part["key"]
    known = next((p for p in session["parts"] if p["key"] == key), None)
    if known is not None:
        forward = session["forwards"].get(key)
        if forward is not None:
            return Decision(forward={key: tuple(forward)})
        return Decision(hold=[key])
    if state == FAILED or now_ms >= session["valid_until_ms"]:
        return Decision(fail={key: UNKNOWN_NEXT_PEER})
    why = refusal(session, part, cltv_delta, margin)
    if why is not None:
        return Decision(fail={key: UNKNOWN_NEXT_PEER}, why=why)
    if state == DONE and session["channel_id"]:
        # The opening fee is paid: later payments over the new channel, no fee.
        return Decision(forward={key: (part["forward_msat"], 0)})
    if state in (OPENING, FORWARDING, DONE):
        # A set is being delivered; anything more is extra.
        return Decision(fail={key: TEMPORARY_CHANNEL_FAILURE})

    params = OpeningFeeParams.from_json(session["params"])
    mpp = session["payment_size_msat"] is not None
    if session["payment_hash"] not in (None, part["payment_hash"]):
        return Decision(fail={key: UNKNOWN_NEXT_PEER})

    if not mpp:
        if session["parts"]:
            return Decision(fail={key: UNKNOWN_NEXT_PEER})
        size = counted_msat(part)
        fee = params.fee_for(size)
        if (fee is None or fee + 1 > size or size < params.min_payment_size_msat
                or size > params.max_payment_size_msat):
            return Decision(fail={key: UNKNOWN_NEXT_PEER})
        if part.get("blinded") and skim_msat(part) < fee:
            return Decision(fail={key: UNKNOWN_NEXT_PEER})  # the path does not pay the fee
        session["opening_fee_msat"] = fee

    session["parts"].append({**part, "arrived_ms": now_ms})
    session["payment_hash"] = part["payment_hash"]
    if session["first_part_ms"] is None:
        session["first_part_ms"] = now_ms
    session["state"] = COLLECTING
    session["updated_ms"] = now_ms

    d = Decision(hold=[key], changed=True)
    if _complete(session) and part.get("blinded") and \
            sum(skim_msat(p) for p in session["parts"]) < (session["opening_fee_msat"] or 0):
        return _fail_all(session, UNKNOWN_NEXT_PEER, "blinded parts do not pay the fee", now_ms)
    if _complete(session) and client_connected:
        session["state"] = OPENING
        d.open = True
    return d


def _complete(session: dict) -> bool:
    total = sum(counted_msat(p) for p in session["parts"])
    target = session["payment_size_msat"]
    return bool(session["parts"]) and (target is None or total >= target)


def on_client_connected(session: dict, now_ms: int) -> Decision:
    """A complete set waiting for the client to come online."""
    if session["state"] != COLLECTING or now_ms >= session["valid_until_ms"]:
        return Decision()
    if _complete(session):
        session["state"] = OPENING
        session["updated_ms"] = now_ms
        return Decision(open=True, changed=True)
    return Decision()


def on_woken(session: dict, now_ms: int, timeout_ms: int) -> Decision:
    """The client, away, is being woken (LSPS5) for the parts held: a complete set
    waits up to `timeout_ms` from the first wake for it to come back, instead of the
    collection window."""
    if session["state"] != COLLECTING or session.get("wake_until_ms") is not None:
        return Decision()
    session["wake_until_ms"] = now_ms + timeout_ms
    session["updated_ms"] = now_ms
    return Decision(changed=True)


def deadline_ms(session: dict) -> int:
    """When a set being collected is given up: the wake deadline for a complete set
    whose client is being woken, else the collection window; never after valid_until."""
    woken = session.get("wake_until_ms")
    at = woken if woken is not None and _complete(session) else \
        session["first_part_ms"] + MPP_COLLECTION_MS
    return min(at, session["valid_until_ms"])


def on_tick(session: dict, now_ms: int) -> Decision:
    """Deadlines: 90 s MPP collection window (or the wake timeout), then valid_until."""
    if session["state"] == COLLECTING:
        if now_ms >= session["valid_until_ms"]:
            d = _fail_all(session, UNKNOWN_NEXT_PEER, "valid_until passed", now_ms)
            session["state"] = FAILED
            return d
        if session.get("wake_until_ms") is not None and _complete(session):
            if now_ms >= session["wake_until_ms"]:
                return _fail_all(session, TEMPORARY_CHANNEL_FAILURE,
                                 "client not back within the wake timeout", now_ms)
        elif now_ms - session["first_part_ms"] >= MPP_COLLECTION_MS:
            return _fail_all(session, TEMPORARY_CHANNEL_FAILURE,
                             "payment parts not complete within 90 s", now_ms)
    elif session["state"] == WAITING and now_ms >= session["valid_until_ms"]:
        session["state"] = FAILED
        session["updated_ms"] = now_ms
        return Decision(changed=True)
    return Decision()


def on_block(session: dict, height: int, margin: int, now_ms: int) -> Decision:
    """Held parts are failed before their CLTV expiry (CLN would not)."""
    if session["state"] not in (COLLECTING, OPENING):
        return Decision()
    if any(p["cltv_expiry"] - height <= margin for p in session["parts"]):
        return _fail_all(session, TEMPORARY_CHANNEL_FAILURE,
                         f"held parts near CLTV expiry at height {height}", now_ms)
    return Decision()


def on_open_failed(session: dict, refused_by_client: bool, reason: str,
                   now_ms: int) -> Decision:
    code = UNKNOWN_NEXT_PEER if refused_by_client else TEMPORARY_CHANNEL_FAILURE
    return _fail_all(session, code, f"channel open failed: {reason}", now_ms)


def split_fee(amounts: List[int], fee: int, htlc_minimum_msat: int) -> Optional[List[int]]:
    """bLIP-52's split: per part, the fee share taken from it; None if impossible."""
    shares = []
    left = fee
    for amount in amounts:
        take = min(left, max(0, amount - htlc_minimum_msat))
        shares.append(take)
        left -= take
    return shares if left == 0 else None


def on_channel_ready(session: dict, channel_id: str, htlc_minimum_msat: int,
                     now_ms: int) -> Decision:
    """The JIT channel can carry HTLCs: forward every held part, fee deducted."""
    if session["state"] != OPENING:
        return Decision()
    session["channel_id"] = channel_id
    parts = session["parts"]
    fee = session["opening_fee_msat"] or 0
    if parts and parts[0].get("blinded"):
        # lightningd forwards what the encrypted relay says: the skim is our fee.
        d = Decision(changed=True)
        for p in parts:
            session["forwards"][p["key"]] = [p["forward_msat"], skim_msat(p)]
            d.forward[p["key"]] = (p["forward_msat"], skim_msat(p))
        session["state"] = FORWARDING
        session["updated_ms"] = now_ms
        session.setdefault("forwarded_ms", now_ms)
        return d
    shares = split_fee([counted_msat(p) for p in parts], fee, htlc_minimum_msat)
    if shares is None:
        d = _fail_all(session, UNKNOWN_NEXT_PEER, "too many parts to deduct the fee", now_ms)
        session["channel_id"] = channel_id
        return d
    d = Decision(changed=True)
    for p, share in zip(parts, shares, strict=True):
        forward = (counted_msat(p) - share, share)
        session["forwards"][p["key"]] = list(forward)
        d.forward[p["key"]] = forward
    session["state"] = FORWARDING
    session["updated_ms"] = now_ms
    session.setdefault("forwarded_ms", now_ms)
    return d


def on_part_resolved(session: dict, key: str, settled: bool, now_ms: int) -> bool:
    """A forwarded part settled or failed downstream; True if the session changed.

    The opening fee is paid only when a part that carried it settles. When every
    part of the forwarded set has failed (the client refused it), the fee is still
    owed: the session collects again and the next set pays it, over the channel
    already opened."""
    if session["state"] != FORWARDING or key not in session["forwards"]:
        return False
    if settled:
        session["state"] = DONE
        session["updated_ms"] = now_ms
        return True
    session["parts"] = [p for p in session["parts"] if p["key"] != key]
    del session["forwards"][key]
    if not session["parts"]:
        session["failures"].append({"at_ms": now_ms, "reason": "the client failed the "
                                    "forwarded payment; the opening fee is still owed",
                                    "parts": 1})
        session["state"] = WAITING
        session["payment_hash"] = None
        session["first_part_ms"] = None
        if session["payment_size_msat"] is None:
            session["opening_fee_msat"] = None
    session["updated_ms"] = now_ms
    return True

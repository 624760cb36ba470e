"""HTLC holding for async payments (the sender's LSP), pure bookkeeping.

A hold is asked for one payment hash by one peer, either with LDK's `hold_htlc`
update_add_htlc record (75537) or, from senders whose node cannot set it (CLN),
with the LSPS0 extension `clnlsp.asyncpay.hold`, which also hands out the release
paths. HTLCs of that peer with that hash are kept until `release_held_htlc`
arrives on one of the hold's release paths, and failed `margin` blocks before
they expire. A release may come before the HTLC: the HTLC is then forwarded at
once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Dict, List, Optional, Tuple

WAITING, HELD, RELEASED, FAILED = "waiting_htlc", "held", "released", "failed"


@dataclass(frozen=True)
class Limits:
    per_peer: int = 20
    total: int = 1000
    ttl_s: int = 24 * 3600           # a hold nobody used is forgotten after this
    expiry_margin_blocks: int = 12   # fail held HTLCs this many blocks before expiry


@dataclass
class Hold:
    peer: str
    payment_hash: str
    created_at: int
    expires_at: int
    release_path_ids: List[str] = field(default_factory=list)
    state: str = WAITING
    htlcs: Dict[str, dict] = field(default_factory=dict)   # "scid/id" -> amount, expiry, since
    released_at: Optional[int] = None
    why: str = ""

    @property
    def key(self) -> str:
        return hold_key(self.peer, self.payment_hash)

    def to_record(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_record(cls, record: dict) -> "Hold":
        return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})


def hold_key(peer: str, payment_hash: str) -> str:
    return f"{peer}-{payment_hash}"


class HoldError(Exception):
    pass


class HoldBook:
    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        self.holds: Dict[str, Hold] = {}

    def register(self, peer: str, payment_hash: str, now: int,
                 channel_peers: Optional[Collection[str]] = None) -> Hold:
        """A hold for (peer, hash); asking again gives the same hold. With
        `channel_peers`, peers without a channel share half of the total, so that
        fresh node ids cannot take every hold from the peers we have channels with."""
        known = self.holds.get(hold_key(peer, payment_hash))
        if known is not None and known.state in (WAITING, HELD):
            return known
        active = [h for h in self.holds.values() if h.state in (WAITING, HELD)]
        if sum(h.peer == peer for h in active) >= self.limits.per_peer:
            raise HoldError("too many holds for this peer")
        if len(active) >= self.limits.total:
            raise HoldError("too many holds")
        if channel_peers is not None and peer not in channel_peers and \
                sum(h.peer not in channel_peers for h in active) >= self.limits.total // 2:
            raise HoldError("too many holds for peers without a channel")
        hold = Hold(peer, payment_hash, now, now + self.limits.ttl_s)
        self.holds[hold.key] = hold
        return hold

    def on_htlc(self, peer: Optional[str], payment_hash: str, htlc_key: str, amount_msat: int,
                cltv_expiry: int, flagged: bool, now: int, height: int
                ) -> Tuple[Optional[str], Optional[Hold]]:
        """What to do with an arriving (or replayed) HTLC: ("hold" | "forward" | "fail" |
        None when it is not ours to hold, the hold touched)."""
        hold = self.holds.get(hold_key(peer or "", payment_hash))
        if hold is None or hold.state == FAILED:
            if not flagged or peer is None:
                return None, None
            try:
                hold = self.register(peer, payment_hash, now)
            except HoldError:
                # Beyond the limits: failed, never forwarded with hold_htlc still set.
                return "fail", None
        if hold.state == RELEASED:
            hold.htlcs.pop(htlc_key, None)
            return "forward", hold
        if cltv_expiry - self.limits.expiry_margin_blocks <= height:
            hold.htlcs.pop(htlc_key, None)
            return "fail", hold
        hold.htlcs.setdefault(htlc_key, {"amount_msat": amount_msat,
                                         "cltv_expiry": cltv_expiry, "since": now})
        hold.state = HELD
        return "hold", hold

    def release(self, peer: str, payment_hash: str, now: int) -> Optional[Hold]:
        """release_held_htlc arrived: the hold (its HTLCs are now to be forwarded)."""
        hold = self.holds.get(hold_key(peer, payment_hash))
        if hold is None or hold.state not in (WAITING, HELD):
            return None
        hold.state, hold.released_at = RELEASED, now
        return hold

    def due(self, height: int) -> List[Tuple[Hold, str]]:
        """(hold, htlc key) of held HTLCs that must be failed now."""
        out = []
        for hold in self.holds.values():
            if hold.state != HELD:
                continue
            for key, htlc in hold.htlcs.items():
                if htlc["cltv_expiry"] - self.limits.expiry_margin_blocks <= height:
                    out.append((hold, key))
        return out

    def fail(self, hold: Hold, htlc_key: str, why: str) -> None:
        hold.htlcs.pop(htlc_key, None)
        if not hold.htlcs:
            hold.state, hold.why = FAILED, why

    def stale(self, now: int) -> List[Hold]:
        """Holds to forget: unused past their TTL, or finished a TTL ago."""
        return [h for h in self.holds.values()
                if h.expires_at <= now and not (h.state == HELD and h.htlcs)]

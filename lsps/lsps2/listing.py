"""The operator's view of a JIT session (lsps2-service-sessions) and what lsp-summary
adds up of it: the stored session as JSON with unix seconds. Pure."""

from __future__ import annotations

from typing import Optional

import lsps.lsps2.service as S


def session_json(s: dict) -> dict:
    return {
        "jit_channel_scid": s["scid"], "peer_id": s["client_id"],
        "state": s["state"], "kind": kind(s), "opening_fee_params": s["params"],
        "payment_size_msat": s["payment_size_msat"],
        "opening_fee_msat": s["opening_fee_msat"],
        "payment_hash": s["payment_hash"],
        "parts": [{"htlc": p["key"], "amount_msat": p["amount_msat"],
                   "forward_msat": p["forward_msat"], "cltv_expiry": p["cltv_expiry"],
                   "arrived_at": p["arrived_ms"] // 1000,
                   "forwarded_msat": (s["forwards"].get(p["key"]) or [None])[0]}
                  for p in s["parts"]],
        "channel_id": s["channel_id"] or s.get("opening_channel_id"),
        "created_at": s["created_ms"] // 1000,
        "updated_at": s["updated_ms"] // 1000,
        "valid_until": s["valid_until_ms"] // 1000,
        "failures": [{"at": f["at_ms"] // 1000, "reason": f["reason"], "parts": f["parts"]}
                     for f in s["failures"]],
        # the open, for the operator's sums: size, funding fee, when it opened and forwarded
        "channel_sat": s.get("channel_sat"),
        "funding_fee_sat": s.get("funding_fee_sat"),
        "opened_at": _seconds(s.get("open_started_ms")),
        "forwarded_at": _seconds(s.get("forwarded_ms")),
        "open_to_forward_ms": _open_to_forward_ms(s),
        "opening_fee_earned_msat": fee_earned_msat(s),
    }


def summary_row(s: dict) -> dict:
    """What lsp-summary adds up of a session (small: kept for every archived one)."""
    listed = session_json(s)
    row = {k: listed[k] for k in ("state", "forwarded_at", "channel_sat", "funding_fee_sat",
                                  "opening_fee_earned_msat", "open_to_forward_ms")}
    row["held_parts"] = len(s["parts"]) if s["state"] in (S.COLLECTING, S.OPENING) else 0
    return row


def kind(session: dict) -> Optional[str]:
    """How the session's payment came: "bolt12" over a blinded path (the JIT scid was
    the last hop of one), "bolt11" by route hint; None before any part arrived."""
    if not session["parts"]:
        return None
    return "bolt12" if session["parts"][0].get("blinded") else "bolt11"


def fee_earned_msat(session: dict) -> int:
    """The opening fee a session has been paid: the fee shares of its forwarded parts
    once one settled (DONE), else nothing."""
    if session["state"] != S.DONE:
        return 0
    return sum(share for _, share in session["forwards"].values())


def _seconds(ms: Optional[int]) -> Optional[int]:
    return None if ms is None else ms // 1000


def _open_to_forward_ms(session: dict) -> Optional[int]:
    started, forwarded = session.get("open_started_ms"), session.get("forwarded_ms")
    return None if started is None or forwarded is None else forwarded - started

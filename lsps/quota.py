"""How much one peer may make us store: a bound per peer and in total, where peers
with no channel to us share only part of the total, so that many fresh node ids
cannot lock out the peers we do business with. Pure."""

from __future__ import annotations

from typing import Collection, Mapping, Optional

# Peers without a channel together use at most this share of a total.
STRANGERS_SHARE = 0.5


def refusal(counts: Mapping[str, int], peer: str, per_peer: int, total: int,
            channel_peers: Collection[str]) -> Optional[str]:
    """Why `peer` may not add one more record (counts: records per peer now), or None."""
    if counts.get(peer, 0) >= per_peer:
        return "too many for this peer"
    if sum(counts.values()) >= total:
        return "too many for all peers"
    if peer not in channel_peers:
        strangers = sum(n for p, n in counts.items() if p not in channel_peers)
        if strangers >= int(total * STRANGERS_SHARE):
            return "too many for peers without a channel"
    return None

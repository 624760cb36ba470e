"""Mailbox for onion messages to offline peers (pure: the runtime persists and injects).

A message our node could not forward because the next peer is offline is kept as it
arrived (path_key and packet, our own layer still on), bounded per peer and in total
and for a limited time; when the peer reconnects the runtime hands each one back to
lightningd, which peels our layer again and forwards it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple


@dataclass(frozen=True)
class Limits:
    per_peer: int = 50
    total: int = 1000
    ttl_s: int = 24 * 3600


class Mailbox:
    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        self.items: Dict[str, dict] = {}   # key -> {peer, path_key, packet, stored_at}

    def admit(self, peer: str, now: int) -> Tuple[List[str], Optional[str]]:
        """(expired keys to delete first, why the new message is refused or None)."""
        expired = [k for k, r in self.items.items() if r["stored_at"] + self.limits.ttl_s <= now]
        for key in expired:
            del self.items[key]
        if len(self.items) >= self.limits.total:
            return expired, "mailbox full"
        if sum(1 for r in self.items.values() if r["peer"] == peer) >= self.limits.per_peer:
            return expired, "mailbox full for this peer"
        return expired, None

    def add(self, key: str, peer: str, path_key: str, packet: str, now: int) -> dict:
        record = {"peer": peer, "path_key": path_key, "packet": packet, "stored_at": now}
        self.items[key] = record
        return record

    def take(self, peer: str, now: int) -> Tuple[List[Tuple[str, dict]], List[str]]:
        """(messages to deliver to `peer`, oldest first; expired keys), all removed."""
        mine = sorted(((k, r) for k, r in self.items.items() if r["peer"] == peer),
                      key=lambda kr: (kr[1]["stored_at"], kr[0]))
        deliver, expired = [], []
        for key, record in mine:
            del self.items[key]
            if record["stored_at"] + self.limits.ttl_s <= now:
                expired.append(key)
            else:
                deliver.append((key, record))
        return deliver, expired

    def count(self, peer: Optional[str] = None) -> int:
        return sum(1 for r in list(self.items.values()) if peer is None or r["peer"] == peer)

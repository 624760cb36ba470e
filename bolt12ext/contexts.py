"""Blinded message paths that end at this node's virtual key, each tied to a context.

Stock CLN drops onion messages whose payload type it does not know, so every
path we hand out ends one hop *behind* the real node, at a key the plugin
holds (the virtual node). The real node fails to forward, reports the peeled
message, and the plugin reads the last layer. The 32-byte path_id of the
final hop names a persisted context: what the path is for, for whom, until
when. Messages on unknown, expired or mismatched paths are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

from . import blinding
from .blinding import BlindedPath
from .sphinx import pubkey


@dataclass
class PathContext:
    purpose: str
    expires_at: int
    peer: Optional[str] = None
    data: dict = field(default_factory=dict)

    def to_record(self) -> dict:
        return {"purpose": self.purpose, "expires_at": self.expires_at, "peer": self.peer,
                "data": self.data}

    @classmethod
    def from_record(cls, record: dict) -> "PathContext":
        return cls(record["purpose"], int(record["expires_at"]), record.get("peer"),
                   dict(record.get("data") or {}))


class PathBook:
    """Makes paths to the virtual node and checks the context of what arrives on them."""

    def __init__(self, random: Callable[[int], bytes], node_id: bytes, virtual_secret: bytes):
        """`random(n)`: n fresh random bytes (os.urandom in the plugin)."""
        self.node_id = node_id
        self.virtual_secret = virtual_secret
        self.virtual_id = pubkey(virtual_secret)
        self._random = random

    def make(self, purpose: str, now: int, ttl_s: int, peer: Optional[str] = None,
             via: Optional[bytes] = None, **data) -> Tuple[BlindedPath, str, PathContext]:
        """(path [via →] real node → virtual node, path_id hex, its context to persist).

        `via`: a peer introducing the path (our LSP), so that messages reach it while
        we are offline and wait in its mailbox."""
        path_id = self._random(32)
        nodes = ([via] if via else []) + [self.node_id, self.virtual_id]
        path = blinding.message_path(self._random(32), nodes, path_id)
        return path, path_id.hex(), PathContext(purpose, now + ttl_s, peer, data)

    @staticmethod
    def check(contexts: Dict[str, PathContext], path_id: Optional[bytes], now: int,
              purposes) -> Tuple[Optional[PathContext], Optional[str]]:
        """(context, None) when the message may be handled, else (None, why it is dropped)."""
        if path_id is None or len(path_id) != 32:
            return None, "no 32-byte path_id"
        ctx = contexts.get(path_id.hex())
        if ctx is None:
            return None, "unknown path"
        if ctx.expires_at <= now:
            return None, "expired path"
        if ctx.purpose not in purposes:
            return None, f"message not expected on a {ctx.purpose} path"
        return ctx, None

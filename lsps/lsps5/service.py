"""LSPS5 service, pure: one client's webhooks (insert-or-replace under a maximum),
and the per-method cooldown that turns an event storm into one notification.

A client's record: {"webhooks": {app_name: url}, "channel_seen_ms": last time it had
a channel with us (or registered), for the 7-day retention}."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import lsps.lsps5.msgs as M
from lsps.lsps0.msgs import LspsError

KEEP_WITHOUT_CHANNEL_MS = 7 * 86400 * 1000   # bLIP-55: at least 7 days


@dataclass(frozen=True)
class Policy:
    max_webhooks: int = 10
    cooldown_s: int = 600


def new_record(now_ms: int) -> dict:
    return {"webhooks": {}, "channel_seen_ms": now_ms}


def set_webhook(record: dict, params: dict, policy: Policy,
                now_ms: int) -> Tuple[dict, bool]:
    """(result, changed). `record` is updated in place; `changed`: the webhook is new
    or its URL changed (then it gets lsps5.webhook_registered)."""
    app_name = M.check_app_name(params.get("app_name"))
    webhook = M.check_webhook(params.get("webhook"))
    hooks = record["webhooks"]
    if app_name not in hooks and len(hooks) >= policy.max_webhooks:
        raise LspsError(M.TOO_MANY_WEBHOOKS, "too many webhooks",
                        {"max_webhooks": policy.max_webhooks})
    no_change = hooks.get(app_name) == webhook
    hooks[app_name] = webhook
    record["channel_seen_ms"] = max(record.get("channel_seen_ms", 0), now_ms)
    return ({"num_webhooks": len(hooks), "max_webhooks": policy.max_webhooks,
             "no_change": no_change}, not no_change)


def list_webhooks(record: Optional[dict], policy: Policy) -> dict:
    return {"app_names": sorted((record or {}).get("webhooks", {})),
            "max_webhooks": policy.max_webhooks}


def remove_webhook(record: Optional[dict], params: dict) -> dict:
    app_name = M.check_app_name(params.get("app_name"))
    if record is None or app_name not in record["webhooks"]:
        raise LspsError(M.APP_NAME_NOT_FOUND, "app_name_not_found")
    del record["webhooks"][app_name]
    return {}


def forgettable(record: dict, has_channel: bool, now_ms: int) -> bool:
    """Webhooks of a client with no channel for 7 days may go."""
    return not has_channel and now_ms - record.get("channel_seen_ms", 0) >= \
        KEEP_WITHOUT_CHANNEL_MS


class Cooldowns:
    """When each (client, method) was last notified: the same method is sent again
    only after the cooldown, and the clock restarts when the client has been back."""

    def __init__(self):
        self._sent: Dict[Tuple[str, str], int] = {}

    def take(self, peer_id: str, method: str, now_ms: int, cooldown_s: int) -> bool:
        """True (and noted) when `method` may be sent to `peer_id` now."""
        if self.recent(peer_id, method, now_ms, cooldown_s):
            return False
        self._sent[(peer_id, method)] = now_ms
        return True

    def recent(self, peer_id: str, method: str, now_ms: int, cooldown_s: int) -> bool:
        """Was `method` sent to `peer_id` within the cooldown?"""
        last = self._sent.get((peer_id, method))
        return last is not None and now_ms - last < cooldown_s * 1000

    def reset(self, peer_id: str) -> None:
        for key in [k for k in self._sent if k[0] == peer_id]:
            del self._sent[key]

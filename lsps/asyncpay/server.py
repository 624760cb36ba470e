"""The static invoice server at run time: paths for recipients, their static
invoices stored (area "asyncinv") and served to payers while they are offline
(core: bolt12ext/server.py)."""

from __future__ import annotations

import os
import threading
from typing import Callable, Dict, Optional

from bolt12ext import encoding, onionmsg, server
from bolt12ext.contexts import PathContext
from bolt12ext.offer import offer_part
from bolt12ext.server import ServerCore
from lsps.asyncpay.messenger import (
    INVOICES,
    SERVER_PATHS_PER_RECIPIENT,
    OnionMessenger,
    now_s,
)
from lsps.lsps0.service import MethodSpec
from lsps.node.store import Store


class StaticInvoiceServer:
    """LSP role: keeps recipients' static invoices and answers invoice_requests for them."""

    def __init__(self, messenger: OnionMessenger, store: Store, core: ServerCore,
                 log: Callable[[str, str], None]):
        self.messenger = messenger
        self.store = store
        self.core = core
        self.log = log
        self._lock = threading.Lock()
        self._invoices: Dict[str, dict] = {}

    def start(self) -> None:
        self._invoices = self.store.list(INVOICES)
        self.messenger.register(server.PURPOSES, self.on_message)

    def on_message(self, ctx: PathContext, got: onionmsg.Received) -> None:
        with self._lock:
            out = self.core.handle(ctx, got, now_s(), dict(self._invoices))
            if out.drop:
                self.messenger.drop(out.drop)
                return
            for path_id, new_ctx in out.new_paths.items():
                # Asking again for a slot's offer paths replaces that slot's paths.
                self.messenger.remember(path_id, new_ctx, keep_per_peer=1, alike=_same_slot)
            if out.invoice is not None:
                key, record = out.invoice
                self.store.put(INVOICES, key, record)
                self._invoices[key] = record
        for send in out.sends:
            self.messenger.send(send.path, send.contents, send.reply_path)

    def serve_lsps0(self, dispatcher) -> None:
        """Our recipients fetch their server paths with `clnlsp.asyncpay.get_server_paths`
        (an LSPS0 extension: no protocol number, so not in list_protocols)."""
        dispatcher.register(MethodSpec(
            "clnlsp.asyncpay.get_server_paths", 0,
            lambda call: self.server_paths(call.peer_id)))

    # --- operator commands -------------------------------------------------------------------
    def server_paths(self, recipient_id: Optional[str]) -> dict:
        recipient = recipient_id or os.urandom(16).hex()
        path, path_id, ctx = self.core.recipient_paths(recipient, now_s())
        self.messenger.remember(path_id, ctx, keep_per_peer=SERVER_PATHS_PER_RECIPIENT)
        return {"recipient_id": recipient, "paths": [path.serialize().hex()],
                "expires_at": ctx.expires_at}

    def invoices(self, recipient_id: Optional[str] = None) -> dict:
        with self._lock:
            found = [r for r in self._invoices.values()
                     if recipient_id is None or r["recipient"] == recipient_id]
        out = []
        for r in sorted(found, key=lambda r: (r["recipient"], r["slot"])):
            raw = bytes.fromhex(r["invoice"])
            out.append({"recipient_id": r["recipient"], "slot": r["slot"],
                        "offer": encoding.encode("lno", offer_part(raw)),
                        "invoice": r["invoice"],
                        "invoice_bytes": len(raw), "stored_at": r["stored_at"],
                        "expires_at": r["expires_at"]})
        return {"invoices": out}

    def serves(self, recipient_id: str) -> bool:
        """Do we keep a static invoice for this recipient (a node id)?"""
        with self._lock:
            return any(r["recipient"] == recipient_id for r in self._invoices.values())

    def forget(self, recipient_id: str, slot: Optional[int] = None) -> dict:
        with self._lock:
            keys = [k for k, r in self._invoices.items() if r["recipient"] == recipient_id
                    and (slot is None or r["slot"] == slot)]
            for key in keys:
                self.store.delete(INVOICES, key)
                del self._invoices[key]
        return {"forgotten": len(keys)}


def _same_slot(ctx) -> tuple:
    return ctx.purpose, ctx.data.get("slot")

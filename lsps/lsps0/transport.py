"""Routes incoming 37913 payloads to the service or the client role.

A node may be an LSP, a client of other LSPs, or both; one peer may even be
both to us. Requests go to the service (when enabled, else they are ignored:
a client-only node stays silent), responses to the client. Garbage is
answered with -32700 by a service, except from a peer we are waiting on as a
client, whose garbage is a broken answer (bLIP-50: ignore it, log it)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager, Optional, Set

import lsps.lsps0.msgs as jsonrpc
from lsps.lsps0.client import Client
from lsps.lsps0.service import Dispatcher


class Transport:
    def __init__(self, client: Client, dispatcher: Optional[Dispatcher],
                 log: Callable[[str, str], None] = lambda msg, level: None,
                 lock: Optional[ContextManager] = None):
        self.client = client
        self.dispatcher = dispatcher
        self._log = log
        self._connected: Set[str] = set()
        self._lock = lock if lock is not None else nullcontext()
        self.ignored = 0

    # Connection tracking feeds the client's "not connected" checks.
    def is_connected(self, peer_id: str) -> bool:
        with self._lock:
            return peer_id in self._connected

    def on_connect(self, peer_id: str) -> None:
        with self._lock:
            self._connected.add(peer_id)

    def on_disconnect(self, peer_id: str) -> None:
        with self._lock:
            self._connected.discard(peer_id)
        self.client.on_disconnect(peer_id)

    def set_connected(self, peer_ids) -> None:
        with self._lock:
            self._connected = set(peer_ids)

    def on_payload(self, peer_id: str, payload: bytes) -> None:
        message = jsonrpc.decode(payload)
        if isinstance(message, jsonrpc.Request):
            if self.dispatcher is not None:
                self.dispatcher.on_request(peer_id, message)
            else:
                self._ignore(peer_id, "request, but lsp-service is off")
        elif isinstance(message, jsonrpc.Response):
            if not self.client.on_response(peer_id, message):
                self._ignore(peer_id, f"response with unknown id {str(message.id)[:80]!r}")
        elif isinstance(message, jsonrpc.Notification):
            if self.client.expects_answer_from(peer_id) or self.dispatcher is None:
                self._ignore(peer_id, f"notification {message.method[:80]!r}")
            else:
                # A client must never send notifications: not a request.
                self.dispatcher.on_malformed(peer_id, jsonrpc.Malformed("notification"))
        else:
            self._on_malformed(peer_id, message)

    def _on_malformed(self, peer_id: str, bad: jsonrpc.Malformed) -> None:
        if self.client.expects_answer_from(peer_id):
            self.client.on_malformed(peer_id, bad)
        elif bad.looked_like_response:
            self._ignore(peer_id, f"malformed response: {bad.reason}")
        elif self.dispatcher is not None:
            self.dispatcher.on_malformed(peer_id, bad)
        else:
            self._ignore(peer_id, f"malformed message: {bad.reason}")

    def _ignore(self, peer_id: str, what: str) -> None:
        self.ignored += 1
        self._log(f"ignored LSPS0 {what} from {peer_id}", "debug")

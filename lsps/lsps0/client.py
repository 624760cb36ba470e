"""LSPS0 client side: outstanding requests, their timeouts and their answers.

Pure logic: sending, scheduling and id generation are injected.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Dict, Optional, Tuple

import lsps.lsps0.msgs as jsonrpc

# RPC error codes our client commands fail with (documented in README.md).
PEER_NOT_CONNECTED = 1001
TIMEOUT = 1002
PEER_ERROR = 1003
BAD_RESPONSE = 1004
PEER_DISCONNECTED = 1005


class ClientError(Exception):
    def __init__(self, code: int, message: str, data: Optional[dict] = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


@dataclass
class _Pending:
    peer_id: str
    method: str
    on_done: Callable[[Any], None]
    cancel_timer: Callable[[], None]


Scheduler = Callable[[float, Callable[[], None]], Callable[[], None]]


class Client:
    """Tracks requests we sent to LSPs.

    `send(peer_id, payload, on_error)` queues a message; `on_error(reason)` is
    called if it could not be handed to lightningd. `schedule(delay, fn)`
    returns a cancel function. `on_done` receives the result dict or a
    ClientError, exactly once, outside the lock."""

    def __init__(self, send: Callable[[str, bytes, Callable[[str], None]], None],
                 schedule: Scheduler, new_id: Callable[[], str],
                 is_connected: Callable[[str], bool], timeout: float = 60.0,
                 log: Callable[[str, str], None] = lambda msg, level: None,
                 lock: Optional[ContextManager] = None):
        """`lock`: held around the outstanding requests when answers and calls come
        from several threads (the node link gives a threading.Lock)."""
        self._send = send
        self._schedule = schedule
        self._new_id = new_id
        self._is_connected = is_connected
        self.timeout = timeout
        self._log = log
        self._pending: Dict[Tuple[str, str], _Pending] = {}
        # Peers that sent us a malformed answer: bLIP-50 says stop talking
        # to them until they reconnect.
        self._broken: Dict[str, str] = {}
        self._lock = lock if lock is not None else nullcontext()

    def call(self, peer_id: str, method: str, params: dict,
             on_done: Callable[[Any], None]) -> Optional[str]:
        """Send a request; returns its id, or None if it failed at once."""
        with self._lock:
            broken = self._broken.get(peer_id)
        if broken is not None:
            on_done(ClientError(BAD_RESPONSE, f"peer {peer_id} sent a malformed LSPS0 "
                                f"message ({broken}); reconnect to try again"))
            return None
        if not self._is_connected(peer_id):
            on_done(ClientError(PEER_NOT_CONNECTED, f"peer {peer_id} is not connected"))
            return None

        request_id = self._new_id()
        payload = jsonrpc.encode_request(jsonrpc.Request(request_id, method, params))
        key = (peer_id, request_id)
        cancel = self._schedule(self.timeout, lambda: self._finish(
            key, ClientError(TIMEOUT, f"no answer from {peer_id} to {method} "
                             f"within {self.timeout:g}s")))
        with self._lock:
            self._pending[key] = _Pending(peer_id, method, on_done, cancel)

        def send_failed(reason: str) -> None:
            self._finish(key, ClientError(PEER_NOT_CONNECTED,
                                          f"could not send to {peer_id}: {reason}"))
        self._send(peer_id, payload, send_failed)
        return request_id

    def expects_answer_from(self, peer_id: str) -> bool:
        with self._lock:
            return any(p == peer_id for p, _ in self._pending)

    def on_response(self, peer_id: str, response: jsonrpc.Response) -> bool:
        """Returns False when the response matches nothing we sent (ignored)."""
        if not isinstance(response.id, str):
            return False
        key = (peer_id, response.id)
        if response.error is not None:
            err = response.error
            outcome: Any = ClientError(
                PEER_ERROR, f"{peer_id} answered with error {err.code}: {err.message}",
                {"code": err.code, "message": err.message, "data": err.data})
        else:
            outcome = response.result
        return self._finish(key, outcome)

    def on_malformed(self, peer_id: str, bad: jsonrpc.Malformed) -> None:
        with self._lock:
            self._broken[peer_id] = bad.reason
            keys = [k for k in self._pending if k[0] == peer_id]
        self._log(f"malformed LSPS0 message from {peer_id}: {bad.reason}", "warn")
        for key in keys:
            self._finish(key, ClientError(
                BAD_RESPONSE, f"{peer_id} sent a malformed LSPS0 message: {bad.reason}"))

    def on_disconnect(self, peer_id: str) -> None:
        with self._lock:
            self._broken.pop(peer_id, None)
            keys = [k for k in self._pending if k[0] == peer_id]
        for key in keys:
            self._finish(key, ClientError(
                PEER_DISCONNECTED, f"peer {peer_id} disconnected before answering"))

    def outstanding(self) -> int:
        with self._lock:
            return len(self._pending)

    def _finish(self, key: Tuple[str, str], outcome: Any) -> bool:
        with self._lock:
            pending = self._pending.pop(key, None)
        if pending is None:
            return False
        pending.cancel_timer()
        try:
            pending.on_done(outcome)
        except Exception as e:  # the caller's bug must not break the tracker
            self._log(f"completion of {pending.method} failed: {e!r}", "warn")
        return True

"""LSPS0 service side: method registry, parameter checks, pending-request limits.

Pure logic. Answers go out through the `send(peer_id, payload)` callable the
caller injects; the dispatcher never touches the network itself.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Dict, FrozenSet, Optional, Tuple

import lsps.lsps0.msgs as jsonrpc
from lsps.lsps0.msgs import LspsError

# A handler returns its result dict, or DEFERRED after arranging to call
# `call.respond(...)` / `call.fail(...)` later (e.g. from a worker thread).
DEFERRED = object()


@dataclass(frozen=True)
class MethodSpec:
    name: str
    protocol: int
    handler: Callable[["Call"], object]
    required: FrozenSet[str] = frozenset()
    optional: FrozenSet[str] = frozenset()


@dataclass(frozen=True)
class Limits:
    per_peer: int = 10
    total: int = 1000


class Call:
    """One request being served; answered exactly once."""

    def __init__(self, dispatcher: "Dispatcher", peer_id: str,
                 request_id: jsonrpc.RequestId, method: str, params: dict):
        self.peer_id = peer_id
        self.request_id = request_id
        self.method = method
        self.params = params
        self._dispatcher = dispatcher
        self._answered = False

    def respond(self, result: dict) -> None:
        self._dispatcher._answer(self, jsonrpc.encode_result(self.request_id, result), None)

    def fail(self, error: LspsError) -> None:
        self._dispatcher._answer(self, jsonrpc.encode_error(
            self.request_id, error.code, error.message, error.data), error.code)


@dataclass
class Stats:
    answered: int = 0
    parse_errors: int = 0
    rejected_over_limit: int = 0
    internal_errors: int = 0
    per_method: Dict[str, int] = field(default_factory=dict)   # requests dispatched
    served: Dict[str, int] = field(default_factory=dict)       # method -> results sent
    rejected: Dict[int, int] = field(default_factory=dict)     # error code -> errors sent

    def count(self, method: Optional[str], error_code: Optional[int]) -> None:
        if error_code is None:
            self.served[method] = self.served.get(method, 0) + 1
        else:
            self.rejected[error_code] = self.rejected.get(error_code, 0) + 1


class Dispatcher:
    def __init__(self, send: Callable[[str, bytes], None], limits: Limits = Limits(),
                 log: Callable[[str, str], None] = lambda msg, level: None,
                 lock: Optional[ContextManager] = None):
        """`lock`: held around the pending counts when calls come from several threads
        (the node link gives a threading.Lock)."""
        self._send = send
        self._limits = limits
        self._log = log
        self._methods: Dict[str, MethodSpec] = {}
        self._pending: Dict[str, int] = {}
        self._total_pending = 0
        self._lock = lock if lock is not None else nullcontext()
        self.stats = Stats()

    def register(self, spec: MethodSpec) -> None:
        if spec.name in self._methods:
            raise ValueError(f"method {spec.name} registered twice")
        if spec.required & spec.optional:
            raise ValueError(f"{spec.name}: a parameter is both required and optional")
        self._methods[spec.name] = spec

    def protocols(self) -> list:
        """Protocol numbers for lsps0.list_protocols (never 0)."""
        return sorted({m.protocol for m in self._methods.values() if m.protocol != 0})

    def pending(self, peer_id: Optional[str] = None) -> int:
        with self._lock:
            if peer_id is None:
                return self._total_pending
            return self._pending.get(peer_id, 0)

    def answer_counts(self) -> Tuple[Dict[str, int], Dict[int, int]]:
        """(results sent per method, errors sent per code), copied under the lock."""
        with self._lock:
            return dict(self.stats.served), dict(self.stats.rejected)

    def on_malformed(self, peer_id: str, bad: jsonrpc.Malformed) -> None:
        self.stats.parse_errors += 1
        self._log(f"bad LSPS0 message from {peer_id}: {bad.reason}", "debug")
        message = "parse error" if bad.code == jsonrpc.PARSE_ERROR else bad.reason
        request_id = None if bad.code == jsonrpc.PARSE_ERROR else bad.id
        self._reject(peer_id, request_id, bad.code, message)

    def on_request(self, peer_id: str, request: jsonrpc.Request) -> None:
        spec = self._methods.get(request.method)
        if spec is None:
            self._reject(peer_id, request.id, jsonrpc.METHOD_NOT_FOUND, "method not found")
            return

        # LDK sends optional parameters as null; null means absent.
        params = {k: v for k, v in request.params.items()
                  if not (v is None and k in spec.optional)}
        unrecognized = sorted(set(params) - spec.required - spec.optional)
        if unrecognized:
            self._reject(peer_id, request.id, jsonrpc.INVALID_PARAMS, "invalid params",
                         {"unrecognized": unrecognized})
            return
        missing = sorted(spec.required - set(params))
        if missing:
            self._reject(peer_id, request.id, jsonrpc.INVALID_PARAMS,
                         "missing parameter: " + ", ".join(missing),
                         # bLIP-51's {property, message} names the (first) missing field
                         {"unrecognized": [], "missing": missing, "property": missing[0],
                          "message": "missing parameter"})
            return

        with self._lock:
            mine = self._pending.get(peer_id, 0)
            if mine >= self._limits.per_peer or self._total_pending >= self._limits.total:
                self.stats.rejected_over_limit += 1
                over = True
            else:
                self._pending[peer_id] = mine + 1
                self._total_pending += 1
                over = False
        if over:
            self._reject(peer_id, request.id, jsonrpc.CLIENT_REJECTED,
                         "too many pending requests")
            return

        call = Call(self, peer_id, request.id, request.method, params)
        self.stats.per_method[spec.name] = self.stats.per_method.get(spec.name, 0) + 1
        try:
            outcome = spec.handler(call)
        except LspsError as e:
            call.fail(e)
            return
        except Exception as e:  # a bug must cost the peer an answer, never the plugin
            self.stats.internal_errors += 1
            self._log(f"{spec.name} handler failed for {peer_id}: {e!r}", "warn")
            call.fail(LspsError(jsonrpc.INTERNAL_ERROR, "internal error"))
            return
        if outcome is not DEFERRED:
            if not isinstance(outcome, dict):
                self._log(f"{spec.name} handler returned {type(outcome).__name__}", "warn")
                call.fail(LspsError(jsonrpc.INTERNAL_ERROR, "internal error"))
            else:
                call.respond(outcome)

    def _reject(self, peer_id: str, request_id, code: int, message: str,
                data: Optional[dict] = None) -> None:
        """An error answer to a request no handler took."""
        with self._lock:
            self.stats.count(None, code)
        self._send(peer_id, jsonrpc.encode_error(request_id, code, message, data))

    def _answer(self, call: Call, payload: bytes, error_code: Optional[int]) -> None:
        with self._lock:
            if call._answered:
                raise RuntimeError(f"{call.method} {call.request_id!r} answered twice")
            call._answered = True
            left = self._pending[call.peer_id] - 1
            if left:
                self._pending[call.peer_id] = left
            else:
                del self._pending[call.peer_id]
            self._total_pending -= 1
            self.stats.answered += 1
            self.stats.count(call.method, error_code)
        self._send(call.peer_id, payload)


def answer_later(submit: Callable, call: "Call", do: Callable[[str, dict], dict],
                 log: Callable[[str, str], None]):
    """Answer `call` with do(peer, params) run by `submit` (a worker pool's: it makes
    RPC calls): an LspsError is the peer's error answer, anything else is logged and
    answered -32603. Returns DEFERRED for the dispatcher."""
    def work():
        try:
            call.respond(do(call.peer_id, call.params))
        except LspsError as e:
            call.fail(e)
        except Exception as e:
            log(f"{call.method} from {call.peer_id} failed: {e!r}", "warn")
            call.fail(LspsError(jsonrpc.INTERNAL_ERROR, "internal error"))
    submit(work)
    return DEFERRED


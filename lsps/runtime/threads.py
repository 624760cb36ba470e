"""Threads that keep pyln's dispatch loop free: one timer, one fair sender.

No lightningd knowledge here: the sender is given a `transmit` callable.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import OrderedDict, deque
from typing import Callable, Deque, Dict, Optional, Tuple


class TimerService:
    """Runs callbacks after a delay on one daemon thread (monotonic clock)."""

    def __init__(self, log: Callable[[str, str], None] = lambda m, lvl: None,
                 clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._log = log
        self._heap: list = []
        self._seq = itertools.count()
        self._cancelled: set = set()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="clnlsp-timer", daemon=True)
        self._thread.start()

    def schedule(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        seq = next(self._seq)
        with self._cond:
            heapq.heappush(self._heap, (self._clock() + delay, seq, fn))
            self._cond.notify()

        def cancel() -> None:
            with self._cond:
                self._cancelled.add(seq)
        return cancel

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._heap and self._heap[0][0] <= self._clock():
                        break
                    wait = self._heap[0][0] - self._clock() if self._heap else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, seq, fn = heapq.heappop(self._heap)
                if seq in self._cancelled:
                    self._cancelled.discard(seq)
                    continue
            try:
                fn()
            except Exception as e:
                self._log(f"timer callback failed: {e!r}", "warn")


def now_ms() -> int:
    """Wall-clock unix milliseconds: the time the protocol cores are given."""
    return int(time.time() * 1000)


def arm_deadline(schedule: Callable, record: dict, at_ms: int, now_ms: int,
                 fire: Callable[[], None]) -> None:
    """Schedule `fire` at unix time `at_ms` for a record (order, session),
    once per deadline: arming the same deadline again does nothing. The
    mark lives in the record under "_armed_at" (never persisted); the
    callback clears it with `record.pop("_armed_at", None)`."""
    if record.get("_armed_at") == at_ms:
        return
    record["_armed_at"] = at_ms
    schedule(max(0.0, (at_ms - now_ms) / 1000 + 0.05), fire)


OnError = Optional[Callable[[str], None]]


class FairSender:
    """Sends messages per peer in round-robin order, on worker threads.

    A peer that floods us with requests (or garbage) can fill only its own
    queue, capped at `per_peer_queue`; beyond it its answers are dropped, and
    other peers keep their turn."""

    def __init__(self, transmit: Callable[[str, bytes], None], workers: int = 2,
                 per_peer_queue: int = 64,
                 log: Callable[[str, str], None] = lambda m, lvl: None):
        self._transmit = transmit
        self._per_peer = per_peer_queue
        self._log = log
        self._queues: "OrderedDict[str, Deque[Tuple[bytes, OnError]]]" = OrderedDict()
        self._busy: Dict[str, bool] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self.dropped = 0
        self._threads = [threading.Thread(target=self._run, name=f"clnlsp-send-{i}",
                                          daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def send(self, peer_id: str, payload: bytes, on_error: OnError = None) -> None:
        with self._cond:
            queue = self._queues.get(peer_id)
            if queue is None:
                queue = self._queues[peer_id] = deque()
            if len(queue) >= self._per_peer:
                self.dropped += 1
                drop = True
            else:
                queue.append((payload, on_error))
                drop = False
                self._cond.notify()
        if drop:
            self._log(f"send queue to {peer_id} full, message dropped", "debug")
            if on_error is not None:
                on_error("send queue full")

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _next(self) -> Optional[Tuple[str, bytes, OnError]]:
        # Caller holds the lock. One message per peer at a time keeps the
        # per-peer order and lets the other worker serve another peer.
        for peer_id, queue in self._queues.items():
            if queue and not self._busy.get(peer_id):
                payload, on_error = queue.popleft()
                self._busy[peer_id] = True
                # Rotate: this peer goes to the back of the line.
                self._queues.move_to_end(peer_id)
                return peer_id, payload, on_error
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                item = self._next()
                while item is None and not self._stopped:
                    self._cond.wait()
                    item = self._next()
                if item is None:
                    return
            peer_id, payload, on_error = item
            try:
                self._transmit(peer_id, payload)
            except Exception as e:
                if on_error is not None:
                    try:
                        on_error(str(e))
                    except Exception as e2:
                        self._log(f"send error handler failed: {e2!r}", "warn")
                else:
                    self._log(f"sending to {peer_id} failed: {e}", "debug")
            finally:
                with self._cond:
                    self._busy[peer_id] = False
                    if not self._queues.get(peer_id):
                        self._queues.pop(peer_id, None)
                        self._busy.pop(peer_id, None)
                    self._cond.notify()

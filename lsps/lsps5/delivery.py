"""LSPS5 notifications on their way out: HTTPS POSTs off every hot path.

`post` only queues (bounded in total). A small pool sends; the notifications for one
URL go out one after another in the order they were queued (webhook_registered comes
first), each signed when it leaves (timestamp and `sign`, CLN's signmessage), with a
timeout, certificates checked against the system store plus an optional CA file, and
redirects not followed. A webhook that is slow or down delays only itself."""

from __future__ import annotations

import http.client
import ssl
import threading
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Deque, Dict, Optional, Tuple
from urllib.parse import urlsplit

import lsps.lsps5.msgs as M
from lsps.lsps2.msgs import format_datetime_ms
from lsps.runtime.threads import now_ms

MAX_QUEUED = 1000
WORKERS = 4


class Delivery:
    def __init__(self, sign: Callable[[str], str], log: Callable[[str, str], None],
                 timeout_s: float = 10, ca_file: Optional[str] = None):
        self.sign = sign
        self.log = log
        self.timeout_s = timeout_s
        self.context = ssl.create_default_context()
        if ca_file:
            self.context.load_verify_locations(cafile=ca_file)
        self.counts: Counter = Counter()
        self._lock = threading.Lock()
        self._queues: Dict[str, Deque[Tuple[bytes, str]]] = {}
        self._queued = 0
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="clnlsp-lsps5")

    def post(self, url: str, body: bytes, peer_id: str) -> bool:
        """Queue one notification for `url`; False (counted) when the queue is full."""
        with self._lock:
            if self._queued >= MAX_QUEUED:
                self.counts["dropped: queue full"] += 1
                return False
            self._queued += 1
            waiting = self._queues.get(url)
            start = waiting is None
            if start:
                waiting = self._queues[url] = deque()
            waiting.append((body, peer_id))
        if start:
            self._pool.submit(self._drain, url)
        return True

    def _drain(self, url: str) -> None:
        while True:
            with self._lock:
                waiting = self._queues[url]
                if not waiting:
                    del self._queues[url]
                    return
                body, peer_id = waiting.popleft()
                self._queued -= 1
            self._send(url, body, peer_id)

    def _send(self, url: str, body: bytes, peer_id: str) -> None:
        try:
            timestamp = format_datetime_ms(now_ms())
            headers = {"Content-Type": "application/json",
                       M.TIMESTAMP_HEADER: timestamp,
                       M.SIGNATURE_HEADER: self.sign(M.signed_message(timestamp, body))}
            parts = urlsplit(url)
            conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443,
                                               timeout=self.timeout_s, context=self.context)
            try:
                conn.request("POST", (parts.path or "/") + (f"?{parts.query}"
                                                           if parts.query else ""),
                             body=body, headers=headers)
                status = conn.getresponse().status
            finally:
                conn.close()
        except Exception as e:   # unreachable, TLS, timeout: counted, never raised
            self.counts["failed"] += 1
            self.log(f"lsps5: notification for {peer_id} to {url} failed: {e!r}", "info")
            return
        if status == 200:
            self.counts["delivered"] += 1
        else:   # bLIP-55: anything but 200 OK is unusual, and otherwise ignored
            self.counts[f"http {status}"] += 1
            self.log(f"lsps5: {url} answered {status} to a notification for {peer_id}",
                     "info")

    def stats(self) -> dict:
        with self._lock:
            return {"queued": self._queued, **dict(self.counts)}

"""Versioned JSON records in CLN's datastore under ["clnlsp", area, id].

Written before the action they protect (write-ahead): a restart at any
point finds what was about to happen and neither loses nor repeats it."""

from __future__ import annotations

import json
import threading
from typing import Callable, Dict, Optional

PREFIX = "clnlsp"
VERSION = 1


class Store:
    """`rpc()` returns a LightningRpc usable on the calling thread."""

    def __init__(self, rpc: Callable[[], object]):
        self._rpc = rpc
        self._lock = threading.Lock()

    def put(self, area: str, key: str, record: dict) -> None:
        value = json.dumps({"v": VERSION, **record}, separators=(",", ":"), sort_keys=True)
        with self._lock:
            self._rpc().call("datastore", {"key": [PREFIX, area, key], "string": value,
                                           "mode": "create-or-replace"})

    def get(self, area: str, key: str) -> Optional[dict]:
        found = self._rpc().call("listdatastore", {"key": [PREFIX, area, key]})["datastore"]
        return _load(found[0]) if found else None

    def list(self, area: str) -> Dict[str, dict]:
        found = self._rpc().call("listdatastore", {"key": [PREFIX, area]})["datastore"]
        out = {}
        for entry in found:
            record = _load(entry)
            if record is not None and len(entry["key"]) == 3:
                out[entry["key"][2]] = record
        return out

    def delete(self, area: str, key: str) -> None:
        with self._lock:
            try:
                self._rpc().call("deldatastore", {"key": [PREFIX, area, key]})
            except Exception:  # already gone: deleting is idempotent
                pass


def _load(entry: dict) -> Optional[dict]:
    try:
        record = json.loads(entry.get("string", ""))
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("v") != VERSION:
        return None
    record.pop("v")
    return record

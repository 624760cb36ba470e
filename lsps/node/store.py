"""Versioned JSON records in CLN's datastore under ["clnlsp", area, id].

Written before the action they protect (write-ahead): a restart at any
point finds what was about to happen and neither loses nor repeats it.

Each area declares its record version and how older records are brought up to
it (`Area.migrate`). A record that cannot be read (not JSON, no version, a
version from a newer plugin, a failed migration) is logged loudly, listed in
`Store.unreadable` and left in the datastore untouched: never dropped, never
overwritten, so a downgrade or a bug costs no order and no held HTLC."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

PREFIX = "clnlsp"


def _same_version(version: int, record: dict) -> dict:
    return record


@dataclass(frozen=True)
class Area:
    """One datastore area: its name, the version written now, and `migrate(v, record)`
    that turns a record of an older version v into one of `version` (raises if it
    cannot)."""
    name: str
    version: int = 1
    migrate: Callable[[int, dict], dict] = _same_version

    def read(self, record: dict) -> dict:
        version = record.pop("v", None)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"no record version ({version!r})")
        if version > self.version:
            raise ValueError(f"version {version} is newer than this plugin's {self.version}")
        return record if version == self.version else self.migrate(version, record)


class Store:
    """`rpc()` returns a LightningRpc usable on the calling thread."""

    def __init__(self, rpc: Callable[[], object], log: Optional[Callable[[str, str], None]] = None):
        self._rpc = rpc
        self._log = log or (lambda message, level: None)
        self._lock = threading.Lock()
        self.unreadable: Dict[Tuple[str, str], str] = {}  # (area, key) -> why

    def put(self, area: Area, key: str, record: dict) -> None:
        if (area.name, key) in self.unreadable:
            raise ValueError(f"record {area.name}/{key} is unreadable: not overwritten")
        value = json.dumps({"v": area.version, **record}, separators=(",", ":"), sort_keys=True)
        with self._lock:
            self._rpc().call("datastore", {"key": [PREFIX, area.name, key], "string": value,
                                           "mode": "create-or-replace"})

    def get(self, area: Area, key: str) -> Optional[dict]:
        found = self._rpc().call("listdatastore", {"key": [PREFIX, area.name, key]})["datastore"]
        return self._load(area, found[0]) if found else None

    def list(self, area: Area) -> Dict[str, dict]:
        found = self._rpc().call("listdatastore", {"key": [PREFIX, area.name]})["datastore"]
        out = {}
        for entry in found:
            if len(entry["key"]) != 3:
                continue
            record = self._load(area, entry)
            if record is not None:
                out[entry["key"][2]] = record
        return out

    def delete(self, area: Area, key: str) -> None:
        with self._lock:
            try:
                self._rpc().call("deldatastore", {"key": [PREFIX, area.name, key]})
            except Exception:  # already gone: deleting is idempotent
                pass

    def unreadable_records(self) -> List[dict]:
        return [{"area": area, "key": key, "why": why}
                for (area, key), why in sorted(self.unreadable.items())]

    def _load(self, area: Area, entry: dict) -> Optional[dict]:
        key = entry["key"][-1]
        try:
            record = json.loads(entry.get("string", ""))
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            return area.read(record)
        except Exception as e:  # ValueError, or a migration that failed
            why = str(e) or type(e).__name__
            if (area.name, key) not in self.unreadable:
                self._log(f"datastore record {PREFIX}/{area.name}/{key} cannot be read "
                          f"({why}): kept untouched and ignored", "broken")
            self.unreadable[(area.name, key)] = why
            return None


DAY_MS = 86_400_000


class Archive:
    """Records moved out of their area once nothing can happen to them any more, so
    start-up never reads them: read by id or listed on demand, and forgotten day by day
    through a small index (one record per day of forgetting) instead of listing them
    all."""

    def __init__(self, store: Store, area: Area, index: Area):
        self.store, self.area, self.index = store, area, index
        self._lock = threading.Lock()
        # What the operator's sums need of each record (digest), once read: kept up to
        # date as records come and go, so lsp-summary lists the archive only once.
        self.digest: Callable[[dict], dict] = lambda record: record
        self._digests: Optional[Dict[str, dict]] = None
        self._digests_lock = threading.Lock()

    def digests(self) -> Dict[str, dict]:
        """{key: digest(record)} of every archived record."""
        with self._digests_lock:
            if self._digests is None:
                self._digests = {k: self.digest(r) for k, r in self.list().items()}
            return dict(self._digests)

    def _digested(self, key: str, record: Optional[dict]) -> None:
        with self._digests_lock:
            if self._digests is None:
                return
            if record is None:
                self._digests.pop(key, None)
            else:
                self._digests[key] = self.digest(record)

    def put(self, key: str, record: dict, forget_at_ms: Optional[int]) -> None:
        """Archive first, index after: a crash in between keeps the record for good
        (a later archive of the same key indexes it again)."""
        self.store.put(self.area, key, record)
        self._digested(key, record)
        if forget_at_ms is None:
            return
        day = str(forget_at_ms // DAY_MS)
        with self._lock:
            ids = (self.store.get(self.index, day) or {}).get("ids", [])
            if key not in ids:
                self.store.put(self.index, day, {"ids": ids + [key]})

    def get(self, key: str) -> Optional[dict]:
        return self.store.get(self.area, key)

    def list(self) -> Dict[str, dict]:
        return self.store.list(self.area)

    def find(self, key: Optional[str]) -> Dict[str, dict]:
        """{key: record} for one key (none when absent), or every archived record."""
        if key is None:
            return self.list()
        record = self.get(key)
        return {key: record} if record is not None else {}

    def forget_due(self, now_ms: int, due: Callable[[dict], bool]) -> int:
        """Forget the records indexed up to today for which `due(record)` holds (the
        caller says what is due now); the number forgotten."""
        forgotten = 0
        for day, entry in self.store.list(self.index).items():
            if not day.isdigit() or int(day) > now_ms // DAY_MS:
                continue
            waiting = []
            for key in entry.get("ids", []):
                record = self.store.get(self.area, key)
                if record is None:
                    continue
                if due(record):
                    self.store.delete(self.area, key)
                    self._digested(key, None)
                    forgotten += 1
                else:
                    waiting.append(key)
            with self._lock:
                if waiting:
                    self.store.put(self.index, day, {"ids": waiting})
                else:
                    self.store.delete(self.index, day)
        return forgotten

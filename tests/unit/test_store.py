"""Records per area, versioned: today's read as they are, older ones migrated,
unreadable ones logged loudly and left untouched."""
import json

import pytest
from fakes import MemoryRpc

from lsps.node.store import Area, Store

ORDERS = Area("orders")


def raw(rpc, area, key, value):
    rpc.call("datastore", {"key": ["clnlsp", area, key], "string": value})


def test_put_then_list_and_get_round_trip_with_the_area_version():
    rpc = MemoryRpc()
    store = Store(lambda: rpc)
    store.put(Area("orders", version=3, migrate=lambda v, r: r), "a", {"x": 1})
    stored = json.loads(rpc.call("listdatastore", {"key": ["clnlsp", "orders", "a"]})[
        "datastore"][0]["string"])
    assert stored == {"v": 3, "x": 1}
    assert store.list(Area("orders", 3)) == {"a": {"x": 1}}
    assert store.get(Area("orders", 3), "a") == {"x": 1}


def test_an_older_record_is_migrated():
    rpc, seen = MemoryRpc(), []

    def migrate(version, record):
        seen.append(version)
        record["renamed"] = record.pop("old")
        return record

    raw(rpc, "orders", "a", '{"v":1,"old":5}')
    assert Store(lambda: rpc).list(Area("orders", 2, migrate)) == {"a": {"renamed": 5}}
    assert seen == [1]


@pytest.mark.parametrize("value, why", [
    ('{"v":2,"x":1}', "newer"), ('{"x":1}', "no record version"), ("not json", "Expecting"),
    ("[1]", "not a JSON object"), ('{"v":true}', "no record version")])
def test_unreadable_records_are_logged_loudly_kept_and_never_overwritten(value, why):
    rpc, logs = MemoryRpc(), []
    raw(rpc, "orders", "bad", value)
    raw(rpc, "orders", "good", '{"v":1,"x":2}')
    store = Store(lambda: rpc, lambda message, level: logs.append((level, message)))
    assert store.list(ORDERS) == {"good": {"x": 2}}
    assert [lvl for lvl, _ in logs] == ["broken"] and "orders/bad" in logs[0][1]
    assert why in store.unreadable_records()[0]["why"]
    with pytest.raises(ValueError):
        store.put(ORDERS, "bad", {"x": 3})
    store.list(ORDERS)
    assert len(logs) == 1  # logged once per record, not at every read
    kept = rpc.call("listdatastore", {"key": ["clnlsp", "orders", "bad"]})["datastore"]
    assert kept[0]["string"] == value


def test_a_failed_migration_keeps_the_record():
    rpc = MemoryRpc()
    raw(rpc, "orders", "a", '{"v":1}')

    def migrate(version, record):
        raise KeyError("old")

    store = Store(lambda: rpc)
    assert store.list(Area("orders", 2, migrate)) == {}
    assert store.unreadable_records() == [{"area": "orders", "key": "a", "why": "'old'"}]


def test_the_archive_forgets_day_by_day_without_listing_its_records():
    from lsps.node.store import DAY_MS, Archive
    rpc = MemoryRpc()
    store = Store(lambda: rpc)
    archive = Archive(store, Area("done"), Area("done-days"))
    archive.put("a", {"x": 1}, forget_at_ms=3 * DAY_MS + 5)
    archive.put("b", {"x": 2}, forget_at_ms=3 * DAY_MS + 9)
    archive.put("b", {"x": 2}, forget_at_ms=3 * DAY_MS + 9)   # indexed once
    archive.put("kept", {"x": 3}, forget_at_ms=None)
    archive.put("later", {"x": 4}, forget_at_ms=9 * DAY_MS)
    assert store.get(Area("done-days"), "3") == {"ids": ["a", "b"]}
    assert archive.forget_due(2 * DAY_MS, lambda r: True) == 0        # nothing indexed yet
    assert archive.forget_due(3 * DAY_MS + 10, lambda r: r["x"] != 2) == 1   # a, not b
    assert store.get(Area("done-days"), "3") == {"ids": ["b"]}         # b waits
    assert archive.forget_due(4 * DAY_MS, lambda r: False) == 0
    assert set(archive.list()) == {"b", "kept", "later"} and archive.get("a") is None
    assert archive.forget_due(4 * DAY_MS, lambda r: True) == 1 and archive.get("b") is None
    assert store.get(Area("done-days"), "3") is None
    assert archive.forget_due(10 * DAY_MS, lambda r: True) == 1
    assert set(archive.list()) == {"kept"}


def test_the_archive_is_listed_once_for_its_digests_then_kept_up_to_date():
    """lsp-summary's rows of archived records: one listing of the area, then every put
    and every forgotten record updates them (no listing at each call)."""
    from lsps.node.store import DAY_MS, Archive
    rpc = MemoryRpc()
    listings = []
    real_call = rpc.call
    rpc.call = lambda method, params: (listings.append(params["key"])
                                       if method == "listdatastore" else None) or \
        real_call(method, params)
    store = Store(lambda: rpc)
    archive = Archive(store, Area("done"), Area("done-days"))
    archive.digest = lambda record: {"x10": record["x"] * 10}
    archive.put("a", {"x": 1}, forget_at_ms=3 * DAY_MS)
    assert archive.digests() == {"a": {"x10": 10}}
    archive.put("b", {"x": 2}, forget_at_ms=None)
    archive.put("a", {"x": 3}, forget_at_ms=3 * DAY_MS)
    assert archive.digests() == {"a": {"x10": 30}, "b": {"x10": 20}}
    assert archive.forget_due(3 * DAY_MS, lambda r: True) == 1
    assert archive.digests() == {"b": {"x10": 20}}
    assert [k for k in listings if k[-1] == "done"] == [["clnlsp", "done"]]   # listed once

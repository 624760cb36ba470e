"""Today's code reads the v1 datastore records that today's code wrote on real nodes.

tests/unit/fixtures/v1_records.json holds ["clnlsp", area, id] entries dumped from real
regtest nodes driven through the LSPS1/LSPS7, LSPS2 and async-payment flows, at rest
and mid-flow (tests/node/fixtures_gen_v1.py made them). A change to persistence must
keep reading them: each loads through lsps/node/store.py, carries the fields its area's
readers index, and goes through the start-up readers that take whole records. Every
area lsps/ stores records in has fixtures: a new area without them fails here."""
import ast
import json
import os
from collections import defaultdict
from types import SimpleNamespace

import pytest
from fakes import MemoryRpc

import lsps.asyncpay.holder as holder
import lsps.asyncpay.messenger as messenger
import lsps.asyncpay.payer as payer
import lsps.asyncpay.recipient as recipient
import lsps.lsps1.client_handler as lsps1_client
import lsps.lsps1.service as lsps1_service
import lsps.lsps2.client as C
import lsps.lsps2.client_handler as lsps2_client
import lsps.lsps2.service as S2
import lsps.lsps2.service_handler as lsps2_service
import lsps.lsps5.service_handler as lsps5_service
import lsps.orders.book as book
import lsps.orders.payment as S
from bolt12ext import server
from bolt12ext.contexts import PathContext
from bolt12ext.hold import FAILED as HOLD_FAILED
from bolt12ext.hold import HELD, RELEASED, WAITING, Hold
from bolt12ext.mailbox import Mailbox
from lsps.asyncpay.mailbox import PeerMailbox
from lsps.lsps1.client_handler import Lsps1Client
from lsps.lsps2.client_handler import Lsps2Client
from lsps.node.store import PREFIX, Area, Store

# The areas by module, as names (the fixture's keys).
lsps1 = SimpleNamespace(ORDERS=book.ORDERS.name, ORDERS_DONE=book.ORDERS_DONE.name,
                        ORDERS_DONE_INDEX=book.ORDERS_DONE_INDEX.name,
                        LEASES=book.LEASES.name,
                        BOUGHT=lsps1_client.BOUGHT.name)
lsps2 = SimpleNamespace(SESSIONS=lsps2_service.SESSIONS.name,
                        SESSIONS_DONE=lsps2_service.SESSIONS_DONE.name,
                        SESSIONS_DONE_INDEX=lsps2_service.SESSIONS_DONE_INDEX.name,
                        PURCHASES=lsps2_client.PURCHASES.name)
asynchold = SimpleNamespace(HOLDS=holder.HOLDS.name, RELEASE=holder.RELEASE)
asyncpayer = SimpleNamespace(PAYMENTS=payer.PAYMENTS.name)
asyncpay = SimpleNamespace(PATHS=messenger.PATHS.name, INVOICES=messenger.INVOICES.name,
                           MAILBOX=messenger.MAILBOX.name)
asyncrecipient = SimpleNamespace(OFFERS=recipient.OFFERS.name, PAYPATHS=recipient.PAYPATHS.name,
                                 ISSUED=recipient.ISSUED.name, RECEIVED=recipient.RECEIVED.name,
                                 HELD=recipient.HELD, INVREQ=recipient.INVREQ)
AREAS = {a.name: a for a in (book.ORDERS, book.ORDERS_DONE, book.ORDERS_DONE_INDEX,
                             lsps2_service.SESSIONS_DONE_INDEX, book.LEASES, lsps1_client.BOUGHT,
                             lsps2_service.SESSIONS, lsps2_service.SESSIONS_DONE,
                             lsps2_client.PURCHASES, holder.HOLDS,
                             payer.PAYMENTS, messenger.PATHS, messenger.INVOICES,
                             messenger.MAILBOX, recipient.OFFERS, recipient.PAYPATHS,
                             recipient.ISSUED, recipient.RECEIVED, lsps5_service.WEBHOOKS)}


def _load(entry):
    """A record as today's Store reads it (None when it cannot)."""
    return Store(lambda: None)._load(AREAS[entry["key"][1]], entry)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                       "v1_records.json")

with open(FIXTURE) as f:
    FIXTURES = json.load(f)

ENTRIES = [(area, e) for area in sorted(FIXTURES) for e in FIXTURES[area]]


def entry_id(value):
    if isinstance(value, dict):
        return value["key"][2][:16]
    return None


# --- which areas exist ---------------------------------------------------------------------

STORE_METHODS = {"put", "get", "list", "delete"}


def _constants(tree):
    """Module-level string constants: NAME = "..." and A, B = "...", "..."."""
    out = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            pairs = []
            if isinstance(target, ast.Name):
                pairs = [(target, node.value)]
            elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                pairs = list(zip(target.elts, node.value.elts, strict=False))
            for name, value in pairs:
                if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "Area" \
                        and value.args:
                    value = value.args[0]
                if isinstance(name, ast.Name) and isinstance(value, ast.Constant) \
                        and isinstance(value.value, str):
                    out[name.id] = value.value
    return out


def _is_store(expr):
    name = expr.attr if isinstance(expr, ast.Attribute) else getattr(expr, "id", "")
    return "store" in name.lower()


def store_areas():
    """{area: where it is named}: the first argument of every <...store>.put/get/list/
    delete call in lsps/ (and plugin.py, bolt12ext/), resolved to its string."""
    files = [os.path.join(ROOT, "plugin.py")]
    for package in ("lsps", "bolt12ext"):
        for folder, _, names in sorted(os.walk(os.path.join(ROOT, package))):
            files += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".py")]
    areas, unresolved = {}, []
    trees = {}
    for path in files:
        with open(path) as f:
            trees[path] = ast.parse(f.read())
    consts = {}   # area constants are imported across modules: resolve them house-wide
    for tree in trees.values():
        consts.update(_constants(tree))
    for path, tree in trees.items():
        if path.endswith(os.path.join("lsps", "node", "store.py")):
            continue   # the store itself: its areas are its callers'
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            if getattr(node.func, "id", "") == "Archive":   # Archive(store, area, index)
                args = node.args[1:]
            elif isinstance(node.func, ast.Attribute) and node.func.attr in STORE_METHODS \
                    and _is_store(node.func.value) and node.args:
                args = node.args[:1]
            else:
                continue
            where = f"{os.path.relpath(path, ROOT)}:{node.lineno}"
            for arg in args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    areas.setdefault(arg.value, where)
                elif isinstance(arg, ast.Name) and arg.id in consts:
                    areas.setdefault(consts[arg.id], where)
                else:
                    unresolved.append(where)
    return areas, unresolved


def test_the_area_scan_finds_the_known_areas():
    areas, unresolved = store_areas()
    assert unresolved == [], "store calls whose area is no module constant: " \
        "name it with a constant (and add fixtures)"
    known = {lsps1.ORDERS, lsps1.BOUGHT, lsps1.LEASES, lsps2.SESSIONS, lsps2.PURCHASES,
             asynchold.HOLDS, asyncpayer.PAYMENTS, asyncpay.PATHS, asyncpay.INVOICES,
             asyncpay.MAILBOX, asyncrecipient.OFFERS, asyncrecipient.PAYPATHS,
             asyncrecipient.ISSUED, asyncrecipient.RECEIVED}
    assert known <= set(areas)


def test_every_area_has_fixtures_and_no_fixture_is_of_an_unknown_area():
    areas, _ = store_areas()
    missing = {a: w for a, w in areas.items() if not FIXTURES.get(a)}
    assert missing == {}, "areas without v1 fixtures (run tests/node/fixtures_gen_v1.py)"
    assert set(FIXTURES) <= set(areas)


def test_fixtures_are_sorted_and_unique():
    for area, entries in FIXTURES.items():
        pairs = [(tuple(e["key"]), e["string"]) for e in entries]
        assert pairs == sorted(set(pairs)), area


# --- every record loads, with the fields its readers index ---------------------------------

ORDER = {"order_id", "client_id", "order_state", "bolt11", "request", "onchain", "parts",
         "first_part_ms", "created_ms", "expires_ms", "updated_ms", "fee_total_sat",
         "order_total_sat", "failure", "channel_id"}
REQUIRED = {
    lsps1.ORDERS: ORDER,
    lsps1.ORDERS_DONE: ORDER,
    lsps1.ORDERS_DONE_INDEX: {"ids"},
    lsps2.SESSIONS_DONE_INDEX: {"ids"},
    lsps1.BOUGHT: {"lsp_id", "order", "updated_at"},
    lsps1.LEASES: {"channel_id", "client_id", "short_channel_id", "capacity_sat",
                   "expiration_block", "original_order_id", "extension_order_ids"},
    lsps2.SESSIONS: {"scid", "client_id", "params", "valid_until_ms", "payment_size_msat",
                     "opening_fee_msat", "state", "parts", "payment_hash", "first_part_ms",
                     "channel_id", "created_ms", "updated_ms", "failures", "forwards"},
    lsps2.SESSIONS_DONE: {"scid", "client_id", "params", "valid_until_ms", "payment_size_msat",
                     "opening_fee_msat", "state", "parts", "payment_hash", "first_part_ms",
                     "channel_id", "created_ms", "updated_ms", "failures", "forwards"},
    lsps2.PURCHASES: {"lsp_id", "payment_hash", "label", "bolt11", "jit_channel_scid",
                      "lsp_cltv_expiry_delta", "client_trusts_lsp", "opening_fee_params",
                      "payment_size_msat", "opening_fee_msat", "pre_channels",
                      "jit_channel_id", "valid_until", "expires_at", "state", "created_at"},
    asyncpay.PATHS: {"purpose", "expires_at", "peer", "data"},
    asyncpay.INVOICES: {"recipient", "slot", "invoice", "forward_path", "stored_at",
                        "expires_at"},
    asyncpay.MAILBOX: {"peer", "path_key", "packet", "stored_at"},
    asynchold.HOLDS: set(Hold.__dataclass_fields__),
    asyncpayer.PAYMENTS: {"payment_hash", "offer", "kind", "amount_msat", "invoice",
                          "created_at", "preimage"},
    asyncrecipient.OFFERS: {"offer_id", "server_id", "slot", "offer", "description",
                            "amount_msat", "serve_path", "created_at", "state",
                            "invoice_expires_at", "persisted_at", "releases_sent",
                            "invoices_issued"},
    asyncrecipient.PAYPATHS: {"offer_id", "kind", "payment_hash", "expires_at"},
    asyncrecipient.ISSUED: {"offer_id", "preimage", "amount_msat", "expires_at"},
    asyncrecipient.RECEIVED: {"offer_id", "kind", "amount_msat", "at", "state", "why"},
    lsps5_service.WEBHOOKS.name: {"webhooks", "channel_seen_ms"},
}
LSPS1_ORDER = {"channel", "lease_expiry_block"}
LSPS7_ORDER = {"kind", "short_channel_id", "channel_extension_expiry_blocks",
               "new_channel_expiry_block", "token"}
LSPS1_REQUEST = {"lsp_balance_sat", "client_balance_sat", "required_channel_confirmations",
                 "funding_confirms_within_blocks", "channel_expiry_blocks", "token",
                 "announce_channel", "refund_onchain_address"}
BOLT11 = {"state", "invoice", "payment_hash", "label"}
ONCHAIN = {"state", "address", "outputs", "refunding", "refund_txid"}
SESSION_PART = {"key", "payment_hash", "amount_msat", "forward_msat", "outgoing_cltv",
                "cltv_expiry", "height", "arrived_ms", "payload"}
ORDER_PART = {"key", "amount_msat", "cltv_expiry", "arrived_ms"}


def test_required_fields_cover_every_fixture_area():
    assert set(REQUIRED) == set(FIXTURES)


def store_of(*entries):
    rpc = MemoryRpc()
    for e in entries:
        rpc.data[tuple(e["key"])] = e["string"]
    return Store(lambda: rpc)


def missing(record, fields):
    return sorted(set(fields) - set(record))


@pytest.mark.parametrize("area,entry", ENTRIES, ids=entry_id)
def test_record_loads_with_its_fields(area, entry):
    key = entry["key"]
    assert len(key) == 3 and key[0] == PREFIX and key[1] == area
    assert json.loads(entry["string"])["v"] == AREAS[area].version == 1
    record = _load(entry)
    assert record is not None
    assert store_of(entry).get(AREAS[area], key[2]) == record
    assert store_of(entry).list(AREAS[area]) == {key[2]: record}
    assert missing(record, REQUIRED[area]) == []

    if area in (lsps1.ORDERS, lsps1.ORDERS_DONE):
        kind = record.get("kind", "lsps1")
        assert kind in ("lsps1", "lsps7")
        assert missing(record, LSPS1_ORDER if kind == "lsps1" else LSPS7_ORDER) == []
        assert missing(record["bolt11"], BOLT11) == []
        if kind == "lsps1":
            assert missing(record["request"], LSPS1_REQUEST) == []
        assert "refund_onchain_address" in record["request"]
        if record["onchain"] is not None:
            assert missing(record["onchain"], ONCHAIN) == []
        for part in record["parts"]:
            assert missing(part, ORDER_PART) == []
    elif area == lsps1.BOUGHT:
        assert isinstance(record["order"].get("order_id"), str)
        assert record["order"]["order_id"] == key[2]
    elif area in (lsps2.SESSIONS, lsps2.SESSIONS_DONE):
        assert record["scid"] == key[2]
        for part in record["parts"]:
            assert missing(part, SESSION_PART) == []
    elif area == lsps2.PURCHASES:
        assert record["payment_hash"] == key[2]
        if record["state"] == C.PAID:
            assert "paid_at" in record
    elif area == asyncpayer.PAYMENTS:
        assert record["payment_hash"] == key[2]
    elif area == asyncrecipient.OFFERS:
        assert record["offer_id"] == key[2]
    elif area == asyncrecipient.RECEIVED and record["state"] == "claimed":
        assert "preimage" in record


# --- the start-up readers that take whole records --------------------------------------------

def entries_of(area):
    return [e for a, e in ENTRIES if a == area]


@pytest.mark.parametrize("entry", entries_of(asynchold.HOLDS), ids=entry_id)
def test_holds_read_back_unchanged(entry):
    record = _load(entry)
    hold = Hold.from_record(record)
    assert hold.to_record() == record and hold.key == entry["key"][2]


@pytest.mark.parametrize("entry", entries_of(asyncpay.PATHS), ids=entry_id)
def test_path_contexts_read_back_unchanged(entry):
    record = _load(entry)
    assert PathContext.from_record(record).to_record() == record


@pytest.mark.parametrize("entry", entries_of(asyncpay.MAILBOX), ids=entry_id)
def test_mailbox_start_keeps_the_message(entry):
    box = PeerMailbox(None, store_of(entry), Mailbox(), lambda *a: None)
    box.start()
    assert box.box.items == {entry["key"][2]: _load(entry)}


@pytest.mark.parametrize("entry", entries_of(lsps1.ORDERS), ids=entry_id)
def test_orders_answer_get_order(entry):
    order = _load(entry)
    if order.get("kind", "lsps1") == "lsps1":
        got = lsps1_service.order_json(order)
        assert got["order_id"] == order["order_id"]
        assert got["order_state"] == order["order_state"]
    payment = S.payment_json(order)
    if order["bolt11"]["invoice"]:
        assert payment["bolt11"]["state"] == order["bolt11"]["state"]


@pytest.mark.parametrize("entry", entries_of(lsps1.BOUGHT), ids=entry_id)
def test_bought_orders_listed_after_start(entry):
    client = Lsps1Client(None, store_of(entry), None, lambda *a: None)
    client.start()
    (listed,) = client.list_orders(None)
    assert listed["order_id"] == entry["key"][2]


@pytest.mark.parametrize("entry", entries_of(lsps2.PURCHASES), ids=entry_id)
def test_purchases_listed_after_start(entry):
    client = Lsps2Client(None, store_of(entry), None, lambda *a: None)
    client.start()
    (listed,) = client.list_buys()
    assert listed["payment_hash"] == entry["key"][2]


# --- states: the fixtures keep covering what they cover today ------------------------------

def states():
    out = defaultdict(set)
    for area, entry in ENTRIES:
        r = _load(entry)
        if area == lsps1.ORDERS:
            kind = r.get("kind", "lsps1")
            out[area].add((kind, r["order_state"]))
            out[area + "/bolt11"].add((kind, r["bolt11"]["state"]))
            if r["onchain"]:
                out[area + "/onchain"].add(r["onchain"]["state"])
        elif area == lsps1.BOUGHT:
            out[area].add(r["order"]["order_state"])
        elif area == asyncpay.PATHS:
            out[area].add(r["purpose"])
        elif area in (lsps2.SESSIONS, lsps2.PURCHASES, asynchold.HOLDS, asyncrecipient.OFFERS):
            out[area].add(r["state"])
        elif area == asyncrecipient.RECEIVED:
            out[area].add((r["kind"], r["state"]))
        elif area in (asyncpayer.PAYMENTS, asyncrecipient.PAYPATHS):
            out[area].add(r["kind"])
    return out


def test_fixtures_cover_the_states():
    got = states()
    want = {
        lsps1.ORDERS: {("lsps1", S.CREATED), ("lsps1", S.COMPLETED), ("lsps1", S.FAILED),
                       ("lsps7", S.CREATED), ("lsps7", S.COMPLETED)},
        lsps1.ORDERS + "/bolt11": {("lsps1", S.EXPECT_PAYMENT), ("lsps1", S.HOLD),
                                   ("lsps1", S.PAID), ("lsps1", S.REFUNDED),
                                   ("lsps7", S.EXPECT_PAYMENT), ("lsps7", S.PAID)},
        lsps1.ORDERS + "/onchain": {S.EXPECT_PAYMENT, S.PAID, S.REFUNDED},
        lsps1.BOUGHT: {S.CREATED, S.COMPLETED, S.FAILED},
        lsps2.SESSIONS: {S2.WAITING, S2.COLLECTING, S2.OPENING, S2.FORWARDING, S2.DONE,
                         S2.FAILED},
        lsps2.PURCHASES: {C.WAITING, C.PAID},
        asynchold.HOLDS: {WAITING, HELD, RELEASED, HOLD_FAILED},
        asyncpay.PATHS: {server.REQUEST, server.OFFER, server.SERVE, asynchold.RELEASE,
                         asyncrecipient.HELD, asyncrecipient.INVREQ},
        asyncrecipient.OFFERS: {"not_persisted", "ready"},
        asyncrecipient.RECEIVED: {("static", "claimed"), ("invoice", "claimed"),
                                  ("static", "refused")},
        asyncpayer.PAYMENTS: {"static", "invoice"},
        asyncrecipient.PAYPATHS: {"static", "invoice"},
    }
    for name, wanted in want.items():
        assert wanted <= got[name], (name, wanted - got[name])

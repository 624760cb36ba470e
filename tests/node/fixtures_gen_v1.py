"""One-off generator of tests/unit/fixtures/v1_records.json: real v1 datastore records.

Not collected by default (the name matches no test_*.py); run it explicitly:

    rm -f tests/unit/fixtures/v1_records.json   # for a fresh set, else records merge in
    RUST=0 python -m pytest -q tests/node/fixtures_gen_v1.py -p no:cacheprovider -n 2

Each scenario drives real nodes through today's flows (those of test_lsps1.py,
test_lsps2.py, test_asyncflow.py, test_money_safety.py) while a recorder reads every
node's ["clnlsp", area, id] datastore entries, all the time (every 0.1 s) and at the
points where a flow waits, so records of mid-flow states are kept as well as final
ones. At the end of a scenario what it saw is merged into the fixture file (under a
lock: scenarios may run in parallel), deduplicated (versions of a record that differ
only in updated_at/updated_ms count once), in a deterministic order:
{area: [{"key": [...], "string": "..."}, ...]} sorted by key, then string.
tests/unit/test_v1_records.py checks that today's code reads every one of them."""
import fcntl
import json
import os
import threading

import pytest
from pyln.client import RpcError
from pyln.testing.utils import only_one, sync_blockheight, wait_for
from test_asyncflow import held_at, make_offer
from test_asyncflow import topology as async_topology
from test_lsps1 import LSP_OPTS as LSPS1_OPTS
from test_lsps1 import ONCHAIN_OPTS, SHUTDOWN_BROKEN, order_paid_onchain, order_topology
from test_lsps2 import jit_topology, received_msat, send_jit_part
from test_money_safety import direct_route, service_order

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.environ.get("V1_FIXTURES_OUT",
                     os.path.join(ROOT, "tests", "unit", "fixtures", "v1_records.json"))
PREFIX = "clnlsp"
# LSPS2 opening_fee_params valid this long (the client takes them only with more than
# 120 s left): sessions then end within the scenario (failed, fees restored).
VALID_FOR = 130


def dump(node):
    """Every (key, string) under ["clnlsp"] in the node's datastore."""
    out = []
    todo = [[PREFIX]]
    while todo:
        prefix = todo.pop()
        for entry in node.rpc.listdatastore(prefix)["datastore"]:
            key = entry["key"]
            if "string" in entry:
                out.append((tuple(key), entry["string"]))
            elif len(key) > len(prefix) and key[:len(prefix)] == prefix:
                todo.append(key)   # a parent of other keys
    return out


class Recorder:
    """Reads the nodes' records every 0.1 s and when asked (`snap`); merges them into
    the fixture file when the scenario ends."""

    def __init__(self, nodes):
        self.nodes = list(nodes)
        self.seen = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, *nodes):
        with self._lock:
            self.nodes += nodes

    def snap(self):
        with self._lock:
            nodes = list(self.nodes)
        for node in nodes:
            try:
                found = dump(node)
            except Exception:   # stopped or restarting: nothing to read now
                continue
            with self._lock:
                self.seen.update(found)

    def _run(self):
        while not self._stop.wait(0.1):
            self.snap()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.snap()
        if exc[0] is None:
            merge(self.seen)


def merge(seen, path=OUT):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read()
        known = set(seen)
        for entries in (json.loads(text) if text.strip() else {}).values():
            known.update((tuple(e["key"]), e["string"]) for e in entries)
        out = {}
        for key, string in thin(known):
            if len(key) == 3 and key[0] == PREFIX:
                out.setdefault(key[1], []).append({"key": list(key), "string": string})
        f.seek(0)
        f.truncate()
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


VOLATILE = ("updated_at", "updated_ms")


def thin(entries):
    """Sorted, one version of a record per content: versions that differ only in when
    they were last written (a client re-reading its order) count once."""
    kept = {}
    for key, string in sorted(entries):
        try:
            record = json.loads(string)
            content = json.dumps({k: v for k, v in record.items() if k not in VOLATILE},
                                 sort_keys=True) if isinstance(record, dict) else string
        except ValueError:
            content = string
        kept.setdefault((key, content), (key, string))
    return sorted(kept.values())


# --- LSPS1 and LSPS7 ---------------------------------------------------------------------

def test_gen_lsps1_held_opened_extended(node_factory, plugin_path, bitcoind):
    """An order held while its client is away (HOLD), opened when it is back
    (COMPLETED/PAID), then extended twice over LSPS7 (lsps7 orders, a lease)."""
    payer, lsp, client = node_factory.get_nodes(3, opts=[
        {"may_reconnect": True},
        {"plugin": plugin_path, **LSPS1_OPTS, "may_reconnect": True,
         "broken_log": SHUTDOWN_BROKEN},
        {"plugin": plugin_path, "may_reconnect": True}])
    node_factory.join_nodes([payer, lsp], wait_for_announce=False)
    node_factory.join_nodes([client, lsp], wait_for_announce=False)
    lsp.fundwallet(10**7)
    lsp_id = lsp.info["id"]
    with Recorder([lsp, client]) as rec:
        order = client.rpc.call("lsps1-createorder", {
            "lsp_id": lsp_id, "lsp_balance_sat": 500_000, "channel_expiry_blocks": 1000})
        rec.snap()
        client.stop()
        invoice = order["payment"]["bolt11"]["invoice"]
        decoded = payer.rpc.decode(invoice)
        total = decoded["amount_msat"]
        payer.rpc.sendpay(direct_route(payer, lsp, total, decoded["min_final_cltv_expiry"]),
                          decoded["payment_hash"], payment_secret=decoded["payment_secret"],
                          amount_msat=total, bolt11=invoice)
        wait_for(lambda: service_order(lsp, order["order_id"])["payment"]["bolt11"]["state"]
                 == "HOLD")
        rec.snap()
        client.start()
        client.connect(lsp)
        payer.rpc.waitsendpay(decoded["payment_hash"], timeout=120)
        wait_for(lambda: service_order(lsp, order["order_id"])["order_state"] == "COMPLETED")
        got = client.rpc.call("lsps1-getorder", {"lsp_id": lsp_id,
                                                 "order_id": order["order_id"]})
        assert got["order_state"] == "COMPLETED"
        rec.snap()

        bitcoind.generate_block(1)
        sync_blockheight(bitcoind, [client, lsp])
        wait_for(lambda: all(c.get("short_channel_id") for c in
                             client.rpc.listpeerchannels(lsp_id)["channels"]))
        wait_for(lambda: any(e["original_order"]["id"] == order["order_id"] for e in
                             client.rpc.call("lsps7-getextendablechannels",
                                             {"lsp_id": lsp_id})["extendable_channels"]
                             if e.get("original_order")))
        entry = next(e for e in client.rpc.call("lsps7-getextendablechannels",
                                                {"lsp_id": lsp_id})["extendable_channels"]
                     if e.get("original_order")
                     and e["original_order"]["id"] == order["order_id"])
        for blocks in (100, 50):
            ext = client.rpc.call("lsps7-createorder", {
                "lsp_id": lsp_id, "short_channel_id": entry["short_channel_id"],
                "channel_extension_expiry_blocks": blocks})
            rec.snap()
            client.rpc.xpay(invstring=ext["payment"]["bolt11"]["invoice"])
            done = client.rpc.call("lsps7-getorder", {"lsp_id": lsp_id,
                                                      "order_id": ext["order_id"]})
            assert done["order_state"] == "COMPLETED"
            rec.snap()
        # An extension order left unpaid, and an LSPS1 order asked again by the client.
        client.rpc.call("lsps7-createorder", {
            "lsp_id": lsp_id, "short_channel_id": entry["short_channel_id"],
            "channel_extension_expiry_blocks": 10})
        client.rpc.call("lsps1-listorders", {})
        lsp.restart()
        client.connect(lsp)
        rec.snap()


def test_gen_lsps1_refunds(node_factory, plugin_path, bitcoind):
    """Orders the LSP cannot open: the lightning payment and an on-chain payment are
    refunded (FAILED/REFUNDED, refund_txid); an order left unpaid expires (FAILED)."""
    client, lsp = order_topology(node_factory, plugin_path, fund_lsp=False, lsp_opts={
        **ONCHAIN_OPTS, "lsp-lsps1-order-valid-for": 120})
    lsp.fundwallet(200_000)  # enough to refund from, not to open 500000 sat
    lsp_id = lsp.info["id"]
    with Recorder([lsp, client]) as rec:
        unpaid = client.rpc.call("lsps1-createorder", {
            "lsp_id": lsp_id, "lsp_balance_sat": 500_000, "channel_expiry_blocks": 100})
        order = client.rpc.call("lsps1-createorder", {
            "lsp_id": lsp_id, "lsp_balance_sat": 500_000, "channel_expiry_blocks": 100})
        with pytest.raises(RpcError):
            client.rpc.xpay(invstring=order["payment"]["bolt11"]["invoice"], retry_for=5)
        got = client.rpc.call("lsps1-getorder", {"lsp_id": lsp_id,
                                                 "order_id": order["order_id"]})
        assert got["order_state"] == "FAILED"
        rec.snap()

        onchain_order, refund_to = order_paid_onchain(client, lsp, bitcoind, 100_000)

        def state():
            return client.rpc.call("lsps1-getorder", {"lsp_id": lsp_id,
                                                      "order_id": onchain_order["order_id"]})
        wait_for(lambda: state()["payment"]["onchain"]["state"] == "REFUNDED")
        rec.snap()
        bitcoind.generate_block(1, wait_for_mempool=1)
        wait_for(lambda: any(o["address"] == refund_to and o["status"] == "confirmed"
                             for o in client.rpc.listfunds()["outputs"]))
        wait_for(lambda: client.rpc.call("lsps1-getorder", {
            "lsp_id": lsp_id, "order_id": unpaid["order_id"]})["order_state"] == "FAILED",
            timeout=180)
        rec.snap()


def test_gen_lsps1_onchain_opened(node_factory, plugin_path, bitcoind):
    """An order paid on-chain and opened (onchain PAID), a lease closed at expiry
    (closed_at_block)."""
    client, lsp = order_topology(node_factory, plugin_path, lsp_opts={
        **ONCHAIN_OPTS, "lsp-lsps1-close-expired": None})
    lsp_id = lsp.info["id"]
    with Recorder([lsp, client]) as rec:
        order, _ = order_paid_onchain(client, lsp, bitcoind, 20_000)
        wait_for(lambda: client.rpc.call("lsps1-getorder", {
            "lsp_id": lsp_id, "order_id": order["order_id"]})["order_state"] == "COMPLETED")
        rec.snap()
        bitcoind.generate_block(1, wait_for_mempool=1)
        short = client.rpc.call("lsps1-createorder", {
            "lsp_id": lsp_id, "lsp_balance_sat": 500_000, "channel_expiry_blocks": 3,
            "required_channel_confirmations": 1})
        client.rpc.xpay(invstring=short["payment"]["bolt11"]["invoice"])
        rec.snap()
        expiry = service_order(lsp, short["order_id"])["lease_expiry_block"]
        bitcoind.generate_block(expiry - lsp.rpc.getinfo()["blockheight"])
        wait_for(lambda: service_order(lsp, short["order_id"])["closed_at_block"] == expiry)
        rec.snap()


# --- LSPS2 -------------------------------------------------------------------------------

def test_gen_lsps2_jit(node_factory, plugin_path, bitcoind, executor):
    """Purchases waiting and paid; sessions waiting, collecting (client away), opening,
    forwarding, done, with one and with two parts."""
    payer, lsp, client = jit_topology(node_factory, plugin_path, may_reconnect=True,
                                      lsp_opts={"lsp-lsps2-valid-for": VALID_FOR})
    with Recorder([lsp, client]) as rec:
        buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"], "label": "var"})
        rec.snap()
        client.rpc.disconnect(lsp.info["id"], force=True)
        fut = executor.submit(payer.rpc.xpay, invstring=buy["bolt11"], amount_msat=4_000_000)
        wait_for(lambda: only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])[
            "state"] == "collecting")
        rec.snap()
        client.connect(lsp)
        fut.result(timeout=120)
        assert received_msat(client, "var")[0] == "paid"
        wait_for(lambda: only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])[
            "state"] == "done")
        rec.snap()
        # The open spent the wallet's only output: its change funds the next one.
        bitcoind.generate_block(1, wait_for_mempool=1)
        sync_blockheight(bitcoind, [lsp])
        wait_for(lambda: any(o["status"] == "confirmed" and not o["reserved"]
                             for o in lsp.rpc.listfunds()["outputs"]))

        amount = 3_000_000
        fixed = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"],
                                              "amount_msat": amount, "label": "fixed",
                                              "max_fee_msat": 100_000})
        rec.snap()
        send_jit_part(payer, lsp, client, fixed, 1, 1_000_000, amount)
        wait_for(lambda: lsp.rpc.call("lsps2-service-sessions", {
            "jit_channel_scid": fixed["jit_channel_scid"]})["sessions"][0]["parts"])
        rec.snap()
        send_jit_part(payer, lsp, client, fixed, 2, 2_000_000, amount)
        for partid in (1, 2):
            payer.rpc.waitsendpay(fixed["payment_hash"], partid=partid, groupid=1, timeout=120)
        assert received_msat(client, "fixed")[0] == "paid"
        rec.snap()
        # Past valid_until the channels' fees are restored (fees_restored).
        wait_for(lambda: sum('"fees_restored":true' in string for key, string in dump(lsp)
                             if key[1] == "lsps2-sessions") == 2, timeout=VALID_FOR + 60)
        rec.snap()


def test_gen_lsps2_open_failed(node_factory, plugin_path):
    """An LSP without funds: the session stays waiting, with its failure recorded,
    and fails once valid_until has passed."""
    payer, lsp, client = jit_topology(node_factory, plugin_path, fund_lsp=False,
                                      lsp_opts={"lsp-lsps2-valid-for": VALID_FOR})
    with Recorder([lsp, client]) as rec:
        buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"]})
        with pytest.raises(RpcError):
            payer.rpc.xpay(invstring=buy["bolt11"], amount_msat=5_000_000, retry_for=5)
        session = only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])
        assert session["state"] == "waiting" and session["failures"]
        rec.snap()
        wait_for(lambda: only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])[
            "state"] == "failed", timeout=VALID_FOR + 60)
        rec.snap()


# --- async payments ----------------------------------------------------------------------

def test_gen_async_held_released_claimed(node_factory, plugin_path):
    """S -- L1 (holds) -- L2 (static invoice server, mailbox) -- R (recipient): a
    payment held while R is away (mailbox, hold waiting/held), released and claimed;
    then a payment to R online, with a normal invoice (issued)."""
    s, l1, l2, r = async_topology(node_factory, plugin_path)
    with Recorder([s, l1, l2, r]) as rec:
        offer = make_offer(r, l2)
        rec.snap()
        r.stop()
        paid = s.rpc.call("asyncpay-pay", {"offer": offer["offer"]})
        payment_hash = paid["payment_hash"]
        wait_for(lambda: held_at(l1, payment_hash) and held_at(l1, payment_hash)[0]["htlcs"])
        wait_for(lambda: l2.rpc.call("asyncpay-messages")["mailbox"]["waiting"] >= 1)
        rec.snap()
        r.start()
        wait_for(lambda: any(p["state"] == "claimed" for o in
                             r.rpc.call("asyncpay-listoffers")["offers"]
                             for p in o["payments"]), timeout=90)
        wait_for(lambda: held_at(l1, payment_hash)[0]["state"] == "released")
        wait_for(lambda: s.rpc.call("asyncpay-status",
                                    {"payment_hash": payment_hash})["state"] == "complete",
                 timeout=60)
        rec.snap()
        (mine,) = r.rpc.call("asyncpay-listoffers")["offers"]
        again = s.rpc.call("asyncpay-pay", {"offer": offer["offer"], "payer_note": "thanks"})
        assert again["kind"] == "invoice" and again["state"] == "complete", again
        rec.snap()
        # A plain CLN offer paid by our payer: a payment record without a hold.
        cln = r.rpc.offer("20000msat", "cln offer")
        assert s.rpc.call("asyncpay-pay", {"offer": cln["bolt12"]})["state"] == "complete"
        rec.snap()
        # R forgets its offer; its static invoice is still served: the payment is
        # held, released, and refused by R ("offer forgotten").
        r.rpc.call("asyncpay-forgetoffer", {"offer_id": mine["offer_id"]})
        late = s.rpc.call("asyncpay-pay", {"offer": offer["offer"]})
        assert late["kind"] == "static", late
        wait_for(lambda: s.rpc.call("asyncpay-status", {
            "payment_hash": late["payment_hash"]})["state"] == "failed", timeout=90)
        rec.snap()


def test_gen_async_hold_failed(node_factory, plugin_path, bitcoind):
    """A held payment failed before its expiry: R never comes back."""
    s, l1, l2, r = async_topology(node_factory, plugin_path, hold_margin=150)
    with Recorder([s, l1, l2, r]) as rec:
        offer = make_offer(r, l2)
        r.stop()
        paid = s.rpc.call("asyncpay-pay", {"offer": offer["offer"]})
        payment_hash = paid["payment_hash"]
        wait_for(lambda: held_at(l1, payment_hash) and held_at(l1, payment_hash)[0]["htlcs"])
        rec.snap()
        expiry = held_at(l1, payment_hash)[0]["htlcs"][0]["cltv_expiry"]
        height = l1.rpc.getinfo()["blockheight"]
        bitcoind.generate_block(expiry - 150 - height)
        wait_for(lambda: held_at(l1, payment_hash)[0]["state"] == "failed")
        wait_for(lambda: s.rpc.call("asyncpay-status",
                                    {"payment_hash": payment_hash})["state"] == "failed")
        rec.snap()

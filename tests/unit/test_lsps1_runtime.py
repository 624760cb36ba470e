"""OrderService against a fake node: refunds exactly once, adoption of our own
channel only, and no open for an order whose payment went back."""
import hashlib

import pytest
from fakes import Dispatcher, MemoryRpc, Workers, htlc_event

import lsps.lsps1.service as S
import lsps.lsps7.service as X
import lsps.orders.payment as P
from lsps.app import OrderService
from lsps.node.store import Store
from lsps.orders.book import ORDERS, payment_secret

CLIENT = "02" + "ab" * 32
REFUND_TO = "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw"
REFUND_SCRIPT = "001487a87e0e17a80a2d2bd65c421a1090df8ed6cc9a"


class FakeNode:
    def __init__(self):
        self.prepared = []
        self.sent = []
        self.wallet_txs = set()
        self.outputs = []
        self.channel_list = []
        self.fundings = []
        self.invoices = []
        self.send_fails = False
        self.counter = 0

    def blockheight(self):
        return 100

    def network(self):
        return "regtest"

    def config(self, name):
        return {"cltv-final": 18}.get(name)

    def create_invoice(self, amount_msat, label, description, expiry, preimage=None,
                       cltv=None):
        self.invoices.append({"amount_msat": amount_msat, "preimage": preimage, "cltv": cltv})
        return {"bolt11": f"lnbcrt-{label}",
                "payment_hash": hashlib.sha256(bytes.fromhex(preimage)).hexdigest()}

    def new_address(self):
        return "bcrt1p-order-address"

    def wallet_outputs(self):
        return self.outputs

    def refund_fee_sat(self):
        return 200

    def prepare_onchain(self, destination, amount_sat):
        self.counter += 1
        txid = f"{self.counter:064x}"
        self.prepared.append((destination, amount_sat, txid))
        return {"txid": txid, "psbt": "psbt-" + txid}

    def send_prepared(self, txid):
        if self.send_fails:
            raise RuntimeError("lightningd forgot it")
        self.sent.append(txid)
        self.wallet_txs.add(txid)

    def discard_prepared(self, txid, psbt):
        self.prepared = [p for p in self.prepared if p[2] != txid]

    def wallet_has_tx(self, txid):
        return txid in self.wallet_txs

    def sent_to(self, script, amount_sat):
        return None

    def channels(self, peer_id=None):
        return [c for c in self.channel_list if peer_id in (None, c["peer_id"])]

    def fund_channel(self, peer_id, amount_sat, announce, mindepth, push_msat=0):
        self.fundings.append((peer_id, amount_sat))
        return {"channel_id": f"new{len(self.fundings)}", "funding_outpoint": "f:0"}


def make_service(node=None, rpc=None, connected=True):
    node = node or FakeNode()
    rpc = rpc or MemoryRpc()
    timers = []
    service = OrderService(node, Store(lambda: rpc), S.Policy(onchain=True), Dispatcher(),
                           lambda delay, fn: timers.append((delay, fn)),
                           lambda peer: connected, 6, lambda msg, level: None,
                           X.Policy(max_extension_blocks=100, fee_base_sat=0,
                                    fee_ppm_per_block=1, order_valid_for_s=3600,
                                    extend_any_channel=False, tokens=frozenset()))
    service.workers = Workers()
    service.start()
    return service, node, rpc


def place_order(service, refund=REFUND_TO):
    params = {"lsp_balance_sat": "500000", "client_balance_sat": "0",
              "required_channel_confirmations": 0, "funding_confirms_within_blocks": 6,
              "channel_expiry_blocks": 1000, "announce_channel": False}
    if refund:
        params["refund_onchain_address"] = refund
    return service._do_create(CLIENT, params)


def test_invoice_carries_our_preimage_and_cltv_room():
    service, node, _ = make_service()
    order = service.orders[place_order(service)["order_id"]]
    preimage = bytes.fromhex(node.invoices[0]["preimage"])
    assert order["bolt11"]["payment_secret"] == payment_secret(preimage)
    assert node.invoices[0]["cltv"] == 18 + 6 + 2
    # lightningd's rule: SHA256(preimage with byte 0 ^ 1)
    flipped = bytes([preimage[0] ^ 1]) + preimage[1:]
    assert payment_secret(preimage) == hashlib.sha256(flipped).hexdigest()


def failed_order_with_output(service, node):
    order = service.orders[place_order(service)["order_id"]]
    node.outputs = [{"outpoint": "t:0", "address": order["onchain"]["address"],
                     "amount_sat": 50_000, "blockheight": 100}]
    service._scan_onchain(101)
    with service.lock:
        service._apply(order, P._refund(order, "test", 101, 0))
    return order


def test_two_blocks_at_once_send_one_refund():
    service, node, _ = make_service()
    order = failed_order_with_output(service, node)
    assert P.onchain_refund_json(order) == {"refunded_sat": 0, "pending_sat": 50_000,
                                            "txid": None}
    service.on_block(102)  # the scan of each block asks for the refund again
    service.on_block(103)
    service.workers.run_all()
    assert len(node.prepared) == 1 and len(node.sent) == 1
    assert node.prepared[0][:2] == (REFUND_TO, 50_000 - 200)
    assert order["onchain"]["refund_txid"] == node.sent[0]
    assert P.onchain_refund_json(order) == {"refunded_sat": 50_000, "pending_sat": 0,
                                            "txid": node.sent[0]}
    service.on_block(104)
    service.workers.run_all()
    assert len(node.sent) == 1


def test_a_refund_in_flight_is_not_started_again():
    service, node, _ = make_service()
    order = failed_order_with_output(service, node)
    service.refunding.add(order["order_id"])  # another worker is sending it
    service._send_refund(order["order_id"], ["t:0"])
    assert node.prepared == []


def refund_recorded_before_a_crash():
    """A failed order whose refund was prepared and recorded (txid), then the crash."""
    rpc = MemoryRpc()
    service, node, _ = make_service(rpc=rpc)
    order = failed_order_with_output(service, node)
    prepared = node.prepare_onchain(REFUND_TO, 49_800)
    order["onchain"]["refund_pending"] = {"outpoints": ["t:0"], "amount_sat": 49_800,
                                          "txid": prepared["txid"], "psbt": prepared["psbt"]}
    service._persist(order)
    service.workers.jobs.clear()
    return rpc, node, order, prepared


def test_crash_after_broadcast_recovers_by_txid_without_paying_again():
    rpc, node, order, prepared = refund_recorded_before_a_crash()
    node.send_prepared(prepared["txid"])  # it went out just before the crash
    restarted, _, _ = make_service(node=node, rpc=rpc)
    restarted.on_block(105)
    restarted.workers.run_all()
    assert node.sent == [prepared["txid"]]
    assert restarted.orders[order["order_id"]]["onchain"]["refund_txid"] == prepared["txid"]


def test_crash_before_broadcast_releases_and_sends_once():
    rpc, node, order, prepared = refund_recorded_before_a_crash()
    node.send_fails = True  # lightningd restarted: it no longer knows the prepared tx
    restarted, _, _ = make_service(node=node, rpc=rpc)
    restarted._send_refund(order["order_id"], ["t:0"])
    assert node.sent == [] and prepared["txid"] not in [p[2] for p in node.prepared]
    node.send_fails = False
    restarted._send_refund(order["order_id"], ["t:0"])
    assert len(node.sent) == 1
    stored = rpc.call("listdatastore", {"key": ["clnlsp", ORDERS.name, order["order_id"]]})
    assert node.sent[0] in stored["datastore"][0]["string"]


def test_refunded_order_does_not_open_when_the_client_comes_back():
    service, node, _ = make_service(connected=False)
    order = service.orders[place_order(service, refund=None)["order_id"]]
    height = 100
    part = P.Part(key="a/1", amount_msat=order["order_total_sat"] * 1000, cltv_expiry=130,
                  forward_msat=order["order_total_sat"] * 1000, outgoing_cltv=130,
                  total_msat=order["order_total_sat"] * 1000,
                  payment_secret=order["bolt11"]["payment_secret"])
    answers = []
    service.on_htlc(htlc_event(
        {"forward_msat": part.forward_msat, "outgoing_cltv_value": 130,
         "total_msat": part.total_msat, "payment_secret": part.payment_secret},
        short_channel_id="a", id=1, amount_msat=part.amount_msat, cltv_expiry=130,
        cltv_expiry_relative=130 - height, payment_hash=order["bolt11"]["payment_hash"]),
        answers.append)
    assert order["bolt11"]["state"] == "HOLD" and order.get("_waiting_peer")
    service.on_block(124)  # margin reached: failed back
    assert answers and answers[0]["result"] == "fail"
    service.on_connect(CLIENT)
    service.workers.run_all()
    assert node.fundings == [] and order["order_state"] == "FAILED"


def test_settles_with_resolve_and_our_preimage():
    service, node, _ = make_service()
    order = service.orders[place_order(service, refund=None)["order_id"]]
    total = order["order_total_sat"] * 1000
    answers = []
    service.on_htlc(htlc_event(
        {"forward_msat": total, "outgoing_cltv_value": 200, "total_msat": total,
         "payment_secret": order["bolt11"]["payment_secret"]},
        short_channel_id="a", id=1, amount_msat=total, cltv_expiry=200,
        cltv_expiry_relative=100, payment_hash=order["bolt11"]["payment_hash"]),
        answers.append)
    service.workers.run_all()
    assert node.fundings == [(CLIENT, 500_000)]
    assert answers == [{"result": "resolve", "payment_key": order["bolt11"]["preimage"]}]


def test_adopts_only_a_channel_of_its_own_size_that_nobody_claims():
    service, node, _ = make_service()
    order = service.orders[place_order(service, refund=None)["order_id"]]
    order["pre_channels"] = []
    mine = {"channel_id": "c-mine", "peer_id": CLIENT, "opener": "local",
            "funding_outpoint": "m:0", "capacity_sat": 500_000}
    manual = dict(mine, channel_id="c-manual", capacity_sat=123_456)
    jit = dict(mine, channel_id="c-jit")
    node.channel_list = [manual, jit]
    service.claimed_elsewhere = lambda cid: cid == "c-jit"
    assert service._adopt(order) is None
    node.channel_list.append(mine)
    assert service._adopt(order)["channel_id"] == "c-mine"
    other = service.orders[place_order(service, refund=None)["order_id"]]
    other["pre_channels"] = []
    order["channel_id"] = "c-mine"  # taken by the first order (recorded as every change is)
    service._persist(order)
    assert service._adopt(other) is None


def test_finished_orders_are_kept_but_out_of_every_per_block_walk():
    """Cost that does not grow with history: a failed order with nothing to watch or
    refund leaves the live set; a sold channel is found by index."""
    service, node, rpc = make_service()
    failed = service.orders[place_order(service, refund=None)["order_id"]]
    sold = service.orders[place_order(service, refund=None)["order_id"]]
    assert set(service.live) == {failed["order_id"], sold["order_id"]}
    failed["order_state"] = P.FAILED
    service._persist(failed)
    sold.update(order_state=P.COMPLETED, channel_id="c-sold", lease_expiry_block=900)
    service._persist(sold)
    assert set(service.live) == {sold["order_id"]}      # its lease may still be closed
    assert service.claims("c-sold") and service.sold == {"c-sold": sold["order_id"]}
    restarted, _, _ = make_service(node, rpc)
    assert set(restarted.orders) == {failed["order_id"], sold["order_id"]}
    assert set(restarted.live) == {sold["order_id"]}
    sold.update(closed_at_block=901)
    service._persist(sold)
    assert service.live == {}


def test_finished_orders_move_to_the_archive_and_still_answer(monkeypatch):
    """Start-up reads only orders that can change: a failed order whose invoice has
    expired is archived, get_order and the operator view still find it, an HTLC for
    it is no longer ours (lightningd refuses the expired invoice)."""
    import lsps.orders.book as book
    import lsps.orders.retention as retention
    from lsps.lsps0.msgs import LspsError
    service, node, rpc = make_service()
    order = service.orders[place_order(service, refund=None)["order_id"]]
    order_id, payment_hash = order["order_id"], order["bolt11"]["payment_hash"]
    order["order_state"] = P.FAILED
    service._persist(order)
    service._archive()
    assert order_id in service.orders           # its invoice has not expired yet
    later = order["expires_ms"] + retention.ARCHIVE_AFTER_EXPIRY_MS
    monkeypatch.setattr(book, "now_ms", lambda: later)
    monkeypatch.setattr(retention, "now_ms", lambda: later)
    restarted, _, _ = make_service(node, rpc)
    restarted.workers.run_all()
    assert order_id not in restarted.orders and not restarted.owns_payment(
        htlc_event({}, payment_hash=payment_hash))
    assert Store(lambda: rpc).get(book.ORDERS, order_id) is None
    got = restarted._find(CLIENT, order_id, "lsps1")
    assert got["order_state"] == P.FAILED
    assert [o["order_id"] for o in restarted.list_orders(None, None)] == [order_id]
    # lsp-summary's row of it, from the archive, says what the listing says
    (listed,) = restarted.list_orders(None, None)
    (row,) = restarted.summary_rows()
    assert (row["kind"], row["order_state"], row["payment_states"], row["onchain_refund"]) == (
        "lsps1", listed["order_state"], {m: p["state"] for m, p in listed["payment"].items()},
        listed["onchain_refund"])
    with pytest.raises(LspsError):
        restarted._find("02" + "cd" * 32, order_id, "lsps1")   # not another peer's
    # forgotten after lsp-lsps1-prune-after, as before (on the day after it passed)
    monkeypatch.setattr(book, "now_ms", lambda: later + 2 * 86400_000 + 1)
    monkeypatch.setattr(retention, "now_ms", lambda: later + 2 * 86400_000 + 1)
    restarted._archive()
    assert Store(lambda: rpc).get(book.ORDERS_DONE, order_id) is None
    assert restarted.summary_rows() == []


def test_an_order_is_not_archived_while_lightningd_could_replay_one_of_its_htlcs(monkeypatch):
    """A restart between our `resolve` and lightningd's commit replays the HTLC: the
    order must still own its payment hash then, however long ago it expired."""
    import lsps.orders.book as book
    import lsps.orders.retention as retention
    service, node, rpc = make_service()
    order = service.orders[place_order(service, refund=None)["order_id"]]
    order.update(order_state=P.COMPLETED, channel_id="c", closed_at_block=120,
                 parts=[{"key": "a/1", "amount_msat": 1, "cltv_expiry": 300,
                         "arrived_ms": 0}])
    service._persist(order)
    monkeypatch.setattr(book, "now_ms", lambda: order["expires_ms"] + 10 * 3600_000)
    monkeypatch.setattr(retention, "now_ms", lambda: order["expires_ms"] + 10 * 3600_000)
    service.height = 300 + retention.ARCHIVE_MARGIN_BLOCKS - 1
    service._archive()
    assert order["order_id"] in service.orders and service.owns_payment(
        htlc_event({}, payment_hash=order["bolt11"]["payment_hash"]))
    service.height += 1
    service._archive()
    assert order["order_id"] not in service.orders

"""LSPS1 channel orders between real nodes, paid with the LSP's hold invoice."""
import hashlib
import os

import pytest
from pyln.client import RpcError
from pyln.testing.utils import only_one, sync_blockheight, wait_for
from rawpeer import RawPeer

FAKE_LSP = os.path.join(os.path.dirname(__file__), "plugins", "fake_lsp.py")
LSP_OPTS = {"lsp-service": None, "lsp-lsps1-fee-base-sat": 1000, "lsp-lsps1-fee-ppm": 2000,
            "lsp-lsps1-lease-ppm-per-block": 1, "lsp-lsps1-max-channel-expiry-blocks": 4320,
            "lsp-lsps7-max-extension-blocks": 4320}


# lightningd stopped while a peer's connection is busy (a held payment) may
# log this from connectd on its way down; it is CLN's shutdown, not ours.
SHUTDOWN_BROKEN = "Subd did not close, forcing close"


def order_topology(node_factory, plugin_path, lsp_opts=None, fund_lsp=True,
                   may_reconnect=False):
    """A client with an existing channel to the LSP (to pay over), wanting more inbound."""
    restarts = {"broken_log": SHUTDOWN_BROKEN} if may_reconnect else {}
    client, lsp = node_factory.get_nodes(2, opts=[
        {"plugin": plugin_path, "may_reconnect": may_reconnect},
        {"plugin": plugin_path, **LSP_OPTS, **(lsp_opts or {}), "may_reconnect": may_reconnect,
         **restarts}])
    node_factory.join_nodes([client, lsp], wait_for_announce=False)
    if fund_lsp:
        lsp.fundwallet(10**7)
    return client, lsp


def new_channels(client, lsp, before):
    return [c for c in client.rpc.listpeerchannels(lsp.info["id"])["channels"]
            if c["channel_id"] not in before]


@pytest.mark.parametrize("confirmations", [0, 1])
def test_order_paid_with_hold_invoice_opens_channel(node_factory, plugin_path, bitcoind,
                                                    confirmations):
    client, lsp = order_topology(node_factory, plugin_path)
    before = {c["channel_id"] for c in client.rpc.listpeerchannels()["channels"]}
    info = client.rpc.call("lsps1-getinfo", {"lsp_id": lsp.info["id"]})
    assert info["max_channel_expiry_blocks"] == 4320
    order = client.rpc.call("lsps1-createorder", {
        "lsp_id": lsp.info["id"], "lsp_balance_sat": 500_000, "client_balance_sat": 20_000,
        "channel_expiry_blocks": 1000, "required_channel_confirmations": confirmations})
    pay = order["payment"]["bolt11"]
    fee = 1000 + 1000 + 500
    assert (pay["state"], pay["fee_total_sat"], pay["order_total_sat"]) == (
        "EXPECT_PAYMENT", str(fee), str(fee + 20_000))
    assert order["order_state"] == "CREATED" and order["channel"] is None
    assert "onchain" not in order["payment"]

    client.rpc.xpay(invstring=pay["invoice"])
    got = client.rpc.call("lsps1-getorder", {"lsp_id": lsp.info["id"],
                                             "order_id": order["order_id"]})
    assert got["order_state"] == "COMPLETED"
    assert got["payment"]["bolt11"]["state"] == "PAID"
    assert got["channel"]["funding_outpoint"].count(":") == 1
    if confirmations:
        bitcoind.generate_block(1)
    channel = only_one(new_channels(client, lsp, before))
    wait_for(lambda: only_one(new_channels(client, lsp, before))["state"] == "CHANNELD_NORMAL")
    assert channel["total_msat"] == 520_000_000
    assert channel["to_us_msat"] == 20_000_000
    assert channel["private"] is True
    # Settled with the order's own preimage (`resolve`): the payer holds the proof.
    inv = only_one(lsp.rpc.listinvoices()["invoices"])
    paid = only_one(client.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"])
    assert paid["status"] == "complete"
    assert hashlib.sha256(bytes.fromhex(paid["payment_preimage"])).hexdigest() == \
        inv["payment_hash"]
    view = only_one(lsp.rpc.call("lsps1-service-orders", {})["orders"])
    assert view["lease_expiry_block"] == lsp.rpc.getinfo()["blockheight"] - confirmations + 1000
    listed = only_one(client.rpc.call("lsps1-listorders", {})["orders"])
    assert listed["order_state"] == "COMPLETED"


def test_refund_when_the_lsp_cannot_open(node_factory, plugin_path):
    client, lsp = order_topology(node_factory, plugin_path, fund_lsp=False)
    order = client.rpc.call("lsps1-createorder", {
        "lsp_id": lsp.info["id"], "lsp_balance_sat": 500_000, "channel_expiry_blocks": 100})
    with pytest.raises(RpcError):
        client.rpc.xpay(invstring=order["payment"]["bolt11"]["invoice"], retry_for=5)
    got = client.rpc.call("lsps1-getorder", {"lsp_id": lsp.info["id"],
                                             "order_id": order["order_id"]})
    assert got["order_state"] == "FAILED"
    assert got["payment"]["bolt11"]["state"] == "REFUNDED"
    assert only_one(lsp.rpc.listinvoices()["invoices"])["status"] == "unpaid"
    assert all(not c.get("htlcs") for c in lsp.rpc.listpeerchannels()["channels"])


def test_order_errors_on_the_wire(node_factory, plugin_path):
    raw, lsp, other = node_factory.get_nodes(3, opts=[
        {"plugin": FAKE_LSP},
        {"plugin": plugin_path, **LSP_OPTS, "lsp-lsps1-token": "vip"},
        {"plugin": plugin_path}])
    raw.connect(lsp)
    other.connect(lsp)
    ask = RawPeer(raw, lsp).ask

    base = {"lsp_balance_sat": "500000", "client_balance_sat": "0",
            "required_channel_confirmations": 0, "funding_confirms_within_blocks": 6,
            "channel_expiry_blocks": 1000, "announce_channel": False, "token": "vip"}
    info = ask("lsps1.get_info", {})["result"]
    assert info["min_initial_lsp_balance_sat"] == "100000" and "options" not in info
    e = ask("lsps1.create_order", dict(base, lsp_balance_sat="20000000"))["error"]
    assert e["code"] == 100 and e["data"]["property"] == "max_initial_lsp_balance_sat"
    e = ask("lsps1.create_order", dict(base, channel_expiry_blocks=5000))["error"]
    assert e["code"] == 100 and e["data"]["property"] == "max_channel_expiry_blocks"
    e = ask("lsps1.create_order", dict(base, announce_channel="no"))["error"]
    assert e["code"] == -32602 and e["data"]["property"] == "announce_channel"
    assert ask("lsps1.create_order", dict(base, token="nope"))["error"]["code"] == 102
    assert ask("lsps1.create_order", {k: v for k, v in base.items() if k != "token"})[
        "error"]["code"] == 102
    assert ask("lsps1.create_order", dict(base, extra=1))["error"]["data"][
        "unrecognized"] == ["extra"]
    order = ask("lsps1.create_order", base)["result"]
    assert order["token"] == "vip"
    assert ask("lsps1.get_order", {"order_id": order["order_id"]})["result"] == order
    assert ask("lsps1.get_order", {"order_id": "nope"})["error"]["code"] == 101
    # Another peer cannot read it.
    with pytest.raises(RpcError) as err:
        other.rpc.call("lsps1-getorder", {"lsp_id": lsp.info["id"],
                                          "order_id": order["order_id"]})
    assert err.value.error["data"]["code"] == 101
    assert client_checks_total(other)


def client_checks_total(node):
    """The client refuses an order whose totals do not add up (unit-tested
    against crafted orders); here: its own orders always add up."""
    return all(int(o["payment"]["bolt11"]["fee_total_sat"]) + int(o["client_balance_sat"])
               == int(o["payment"]["bolt11"]["order_total_sat"])
               for o in node.rpc.call("lsps1-listorders", {})["orders"])


def test_lsp_restart_while_payment_is_held(node_factory, plugin_path, executor):
    client, lsp = order_topology(node_factory, plugin_path, may_reconnect=True)
    # An open cut short by the restart leaves its inputs reserved in lightningd's
    # wallet (for 72 blocks): the resumed open needs a second output to spend.
    lsp.fundwallet(10**7)
    order = client.rpc.call("lsps1-createorder", {
        "lsp_id": lsp.info["id"], "lsp_balance_sat": 500_000, "channel_expiry_blocks": 100})
    # A second client connection is the new channel's peer: stop the LSP from
    # opening by restarting it as soon as the payment is held.
    fut = executor.submit(client.rpc.xpay, invstring=order["payment"]["bolt11"]["invoice"])
    wait_for(lambda: only_one(lsp.rpc.call("lsps1-service-orders", {})["orders"])[
        "payment"]["bolt11"]["state"] != "EXPECT_PAYMENT")
    lsp.restart()
    client.connect(lsp)
    fut.result(timeout=120)
    got = client.rpc.call("lsps1-getorder", {"lsp_id": lsp.info["id"],
                                             "order_id": order["order_id"]})
    assert got["order_state"] == "COMPLETED" and got["payment"]["bolt11"]["state"] == "PAID"
    # Exactly one channel bought: the paying one plus the ordered one.
    assert len(client.rpc.listpeerchannels(lsp.info["id"])["channels"]) == 2


def test_lsps7_extend_a_purchased_channel_twice(node_factory, plugin_path, bitcoind):
    client, lsp = order_topology(node_factory, plugin_path, may_reconnect=True)
    lsp_id = lsp.info["id"]
    assert client.rpc.call("lsps0-listprotocols", {"lsp_id": lsp_id}) == {
        "protocols": [1, 2, 5, 7]}
    order = client.rpc.call("lsps1-createorder", {
        "lsp_id": lsp_id, "lsp_balance_sat": 500_000, "client_balance_sat": 20_000,
        "channel_expiry_blocks": 1000})
    client.rpc.xpay(invstring=order["payment"]["bolt11"]["invoice"])
    opened_at = lsp.rpc.getinfo()["blockheight"]
    # Spend nothing from a zero-conf channel's pushed balance before both
    # nodes saw it confirm: CLN v26.06 aborts at lock-in otherwise
    # ("Unable to sub our_msat - push").
    bitcoind.generate_block(1)
    sync_blockheight(bitcoind, [client, lsp])
    wait_for(lambda: all(c.get("short_channel_id") for c in
                         client.rpc.listpeerchannels(lsp_id)["channels"]))
    wait_for(lambda: len(client.rpc.call("lsps7-getextendablechannels", {"lsp_id": lsp_id})[
        "extendable_channels"]) == 1)
    entry = only_one(client.rpc.call("lsps7-getextendablechannels", {"lsp_id": lsp_id})[
        "extendable_channels"])
    assert entry["original_order"] == {"id": order["order_id"], "service": "LSPS1"}
    assert entry["expiration_block"] == opened_at + 1000
    assert entry["extension_order_ids"] == []
    scid = entry["short_channel_id"]

    expected = entry["expiration_block"]
    ids = []
    for blocks in (100, 50):
        ext = client.rpc.call("lsps7-createorder", {
            "lsp_id": lsp_id, "short_channel_id": scid,
            "channel_extension_expiry_blocks": blocks})
        assert ext["new_channel_expiry_block"] == expected + blocks
        pay = ext["payment"]["bolt11"]
        assert pay["fee_total_sat"] == pay["order_total_sat"] == str(-(-520_000 * blocks // 10**6))
        client.rpc.xpay(invstring=pay["invoice"])
        done = client.rpc.call("lsps7-getorder", {"lsp_id": lsp_id, "order_id": ext["order_id"]})
        assert done["order_state"] == "COMPLETED" and done["payment"]["bolt11"]["state"] == "PAID"
        expected += blocks
        ids.append(ext["order_id"])
        assert done["new_channel_expiry_block"] == expected

    lsp.restart()
    client.connect(lsp)
    entry = only_one(client.rpc.call("lsps7-getextendablechannels", {"lsp_id": lsp_id})[
        "extendable_channels"])
    assert entry["expiration_block"] == opened_at + 1150
    assert entry["extension_order_ids"] == ids
    view = only_one(lsp.rpc.call("lsps1-service-orders", {})["orders"])
    assert view["lease_expiry_block"] == opened_at + 1150
    assert len(lsp.rpc.call("lsps7-service-orders", {})["orders"]) == 2

    for params, prop in ((dict(short_channel_id="1x1x1", channel_extension_expiry_blocks=10),
                          "short_channel_id"),
                         (dict(short_channel_id=scid, channel_extension_expiry_blocks=5000),
                          "max_channel_extension_expiry_blocks")):
        with pytest.raises(RpcError) as e:
            client.rpc.call("lsps7-createorder", {"lsp_id": lsp_id, **params})
        assert e.value.error["data"]["code"] == 100
        assert e.value.error["data"]["data"]["property"] == prop
    with pytest.raises(RpcError) as e:
        client.rpc.call("lsps7-getorder", {"lsp_id": lsp_id, "order_id": order["order_id"]})
    assert e.value.error["data"]["code"] == 101  # an LSPS1 order is no LSPS7 order


ONCHAIN_OPTS = {"lsp-lsps1-onchain": None, "lsp-lsps1-min-onchain-confirmations": 1}


def order_paid_onchain(client, lsp, bitcoind, client_balance_sat):
    """An order with a refund address, paid in full on-chain and mined."""
    client.fundwallet(10**6)
    refund_to = client.rpc.newaddr("p2tr")["p2tr"]
    order = client.rpc.call("lsps1-createorder", {
        "lsp_id": lsp.info["id"], "lsp_balance_sat": 500_000,
        "client_balance_sat": client_balance_sat, "channel_expiry_blocks": 100,
        "required_channel_confirmations": 1, "refund_onchain_address": refund_to})
    onchain = order["payment"]["onchain"]
    assert onchain["state"] == "EXPECT_PAYMENT"
    client.rpc.withdraw(onchain["address"], int(onchain["order_total_sat"]))
    bitcoind.generate_block(1, wait_for_mempool=1)
    return order, refund_to


def test_onchain_payment_opens_the_channel(node_factory, plugin_path, bitcoind):
    client, lsp = order_topology(node_factory, plugin_path, lsp_opts=ONCHAIN_OPTS)
    order, refund_to = order_paid_onchain(client, lsp, bitcoind, 20_000)
    onchain = order["payment"]["onchain"]
    assert onchain["refund_onchain_address"] == refund_to
    assert onchain["min_onchain_payment_confirmations"] == 1 and "min_fee_for_0conf" in onchain

    def state():
        return client.rpc.call("lsps1-getorder", {"lsp_id": lsp.info["id"],
                                                  "order_id": order["order_id"]})
    wait_for(lambda: state()["order_state"] == "COMPLETED")
    assert state()["payment"]["onchain"]["state"] == "PAID"
    assert state()["payment"]["bolt11"]["state"] == "EXPECT_PAYMENT"
    bitcoind.generate_block(1, wait_for_mempool=1)
    wait_for(lambda: any(c["total_msat"] == 520_000_000 and c["state"] == "CHANNELD_NORMAL"
                         for c in client.rpc.listpeerchannels(lsp.info["id"])["channels"]))


def test_onchain_refund_when_the_lsp_cannot_open(node_factory, plugin_path, bitcoind):
    client, lsp = order_topology(node_factory, plugin_path, lsp_opts=ONCHAIN_OPTS,
                                 fund_lsp=False)
    lsp.fundwallet(200_000)  # enough to refund from, not to open 500000 sat
    order, refund_to = order_paid_onchain(client, lsp, bitcoind, 100_000)
    onchain = order["payment"]["onchain"]

    def got():
        return client.rpc.call("lsps1-getorder", {"lsp_id": lsp.info["id"],
                                                  "order_id": order["order_id"]})
    wait_for(lambda: got()["order_state"] == "FAILED")
    wait_for(lambda: got()["payment"]["onchain"]["state"] == "REFUNDED")
    bitcoind.generate_block(1, wait_for_mempool=1)
    wait_for(lambda: any(o["address"] == refund_to and o["status"] == "confirmed"
                         for o in client.rpc.listfunds()["outputs"]))
    refund = next(o for o in client.rpc.listfunds()["outputs"] if o["address"] == refund_to)
    total = int(onchain["order_total_sat"]) * 1000
    assert total - 20_000_000 < refund["amount_msat"] < total  # minus the refund's fee


def test_expired_orders_pruned_and_late_payment_refunded(node_factory, plugin_path, bitcoind):
    client, lsp = order_topology(node_factory, plugin_path, lsp_opts={
        **ONCHAIN_OPTS, "lsp-lsps1-order-valid-for": 60, "lsp-lsps1-prune-after": 30})
    client.fundwallet(10**6)
    refund_to = client.rpc.newaddr("p2tr")["p2tr"]
    params = {"lsp_id": lsp.info["id"], "lsp_balance_sat": 500_000,
              "channel_expiry_blocks": 100, "refund_onchain_address": refund_to}
    unpaid = client.rpc.call("lsps1-createorder", params)
    late = client.rpc.call("lsps1-createorder", params)

    def get(order):
        return client.rpc.call("lsps1-getorder", {"lsp_id": lsp.info["id"],
                                                  "order_id": order["order_id"]})
    wait_for(lambda: get(late)["order_state"] == "FAILED", timeout=120)
    # Paid after it expired: sent back.
    client.rpc.withdraw(late["payment"]["onchain"]["address"], 50_000)
    bitcoind.generate_block(1, wait_for_mempool=1)
    wait_for(lambda: get(late)["payment"]["onchain"]["state"] == "REFUNDED")
    bitcoind.generate_block(1, wait_for_mempool=1)
    wait_for(lambda: any(o["address"] == refund_to for o in client.rpc.listfunds()["outputs"]))
    # Both are forgotten once prune-after has passed: 101.
    for order in (unpaid, late):
        with pytest.raises(RpcError) as e:
            wait_for(lambda o=order: get(o) is None, timeout=60)
        assert e.value.error["data"]["code"] == 101


def test_lease_expiry_closes_the_channel_when_asked(node_factory, plugin_path, bitcoind):
    client, lsp = order_topology(node_factory, plugin_path,
                                 lsp_opts={"lsp-lsps1-close-expired": None})
    order = client.rpc.call("lsps1-createorder", {
        "lsp_id": lsp.info["id"], "lsp_balance_sat": 500_000, "channel_expiry_blocks": 3,
        "required_channel_confirmations": 1})
    client.rpc.xpay(invstring=order["payment"]["bolt11"]["invoice"])
    view = only_one(lsp.rpc.call("lsps1-service-orders", {})["orders"])
    expiry = view["lease_expiry_block"]
    bitcoind.generate_block(expiry - lsp.rpc.getinfo()["blockheight"] - 1)
    sync_blockheight(bitcoind, [lsp])
    assert only_one(lsp.rpc.call("lsps1-service-orders", {})["orders"])[
        "closed_at_block"] is None
    bitcoind.generate_block(1)
    wait_for(lambda: only_one(lsp.rpc.call("lsps1-service-orders", {})["orders"])[
        "closed_at_block"] == expiry)
    wait_for(lambda: any(c["channel_id"] == view["channel_id"] and
                         c["state"] in ("CHANNELD_SHUTTING_DOWN", "CLOSINGD_SIGEXCHANGE",
                                        "CLOSINGD_COMPLETE", "FUNDING_SPEND_SEEN", "ONCHAIN")
                         for c in lsp.rpc.listpeerchannels()["channels"]))

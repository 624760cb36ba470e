"""payment.bolt12 (bLIP-51) between real nodes: LSPS1 and LSPS7 orders paid by the LSP's
offer with CLN's own fetchinvoice + xpay, and by our client when asked; held until the
channel is open (the lease extended), refunded when the open fails; a payment that is
not on the offer's blinded path opens nothing."""
import hashlib
import os

import pytest
from pyln.client import RpcError
from pyln.testing.utils import only_one, wait_for
from test_cli import cli
from test_lsps1 import new_channels, order_topology
from test_money_safety import direct_route


def order(client, lsp, **params):
    return client.rpc.call("lsps1-createorder", {
        "lsp_id": lsp.info["id"], "lsp_balance_sat": 500_000, "client_balance_sat": 20_000,
        "channel_expiry_blocks": 1000, "required_channel_confirmations": 0, **params})


def state_of(client, lsp, order_id):
    return client.rpc.call("lsps1-getorder", [lsp.info["id"], order_id])


def test_an_order_paid_by_its_offer_with_cln_fetchinvoice_and_xpay(node_factory, plugin_path):
    client, lsp = order_topology(node_factory, plugin_path)
    before = {c["channel_id"] for c in client.rpc.listpeerchannels()["channels"]}
    placed = order(client, lsp)
    offer = placed["payment"]["bolt12"]
    total = int(offer["order_total_sat"])
    assert offer["state"] == "EXPECT_PAYMENT" and len(offer["offer"]) <= 2048
    assert offer["order_total_sat"] == placed["payment"]["bolt11"]["order_total_sat"]
    decoded = client.rpc.decode(offer["offer"])
    assert decoded["valid"] and decoded["offer_amount_msat"] == total * 1000
    invoice = client.rpc.fetchinvoice(offer["offer"])["invoice"]
    assert client.rpc.decode(invoice)["invoice_amount_msat"] == total * 1000
    paid = client.rpc.xpay(invstring=invoice)
    assert paid["amount_msat"] == total * 1000
    got = state_of(client, lsp, placed["order_id"])
    assert got["order_state"] == "COMPLETED"
    assert got["payment"]["bolt12"]["state"] == "PAID"
    assert got["payment"]["bolt11"]["state"] == "EXPECT_PAYMENT"
    channel = only_one(new_channels(client, lsp, before))
    assert channel["total_msat"] == 520_000_000 and channel["to_us_msat"] == 20_000_000
    # settled with the order's own preimage: the payer holds the proof
    assert hashlib.sha256(bytes.fromhex(paid["payment_preimage"])).hexdigest() == \
        client.rpc.decode(invoice)["invoice_payment_hash"]
    view = only_one(cli(lsp, "lsps1-service-orders", placed["order_id"])["orders"])
    assert view["payment"]["bolt12"]["state"] == "PAID"
    # the bolt11 invoice of a completed order takes nothing more
    with pytest.raises(RpcError):
        client.rpc.xpay(invstring=placed["payment"]["bolt11"]["invoice"])
    assert len(new_channels(client, lsp, before)) == 1


def test_an_offer_payment_is_refunded_when_the_open_fails(node_factory, plugin_path):
    client, lsp = order_topology(node_factory, plugin_path, fund_lsp=False)
    placed = order(client, lsp)
    invoice = client.rpc.fetchinvoice(placed["payment"]["bolt12"]["offer"])["invoice"]
    with pytest.raises(RpcError):
        client.rpc.xpay(invstring=invoice)
    got = state_of(client, lsp, placed["order_id"])
    assert got["order_state"] == "FAILED" and got["payment"]["bolt12"]["state"] == "REFUNDED"
    assert len(client.rpc.listpeerchannels(lsp.info["id"])["channels"]) == 1
    # a failed order answers no more invoice_requests
    with pytest.raises(RpcError):
        client.rpc.fetchinvoice(placed["payment"]["bolt12"]["offer"], timeout=10)


def test_a_payment_off_the_offers_path_opens_nothing(node_factory, plugin_path):
    """The bolt12 payment hash paid as a plain (unblinded) payment with a made-up
    payment_secret: the LSP fails it at once and opens nothing."""
    client, lsp = order_topology(node_factory, plugin_path)
    before = {c["channel_id"] for c in client.rpc.listpeerchannels()["channels"]}
    placed = order(client, lsp)
    invoice = client.rpc.fetchinvoice(placed["payment"]["bolt12"]["offer"])["invoice"]
    payment_hash = client.rpc.decode(invoice)["invoice_payment_hash"]
    total = int(placed["payment"]["bolt12"]["order_total_sat"]) * 1000
    client.rpc.sendpay(direct_route(client, lsp, total, 60), payment_hash,
                       payment_secret=os.urandom(32).hex(), amount_msat=total)
    with pytest.raises(RpcError):
        client.rpc.waitsendpay(payment_hash, timeout=30)
    assert lsp.daemon.is_in_log("not on the order's blinded payment path")
    got = state_of(client, lsp, placed["order_id"])
    assert got["order_state"] == "CREATED" and got["payment"]["bolt12"]["state"] == \
        "EXPECT_PAYMENT"
    assert new_channels(client, lsp, before) == []
    # the honest payment still goes through
    wait_for(lambda: not any(p["status"] == "pending" for p in client.rpc.listsendpays(
        payment_hash=payment_hash)["payments"]))
    assert client.rpc.xpay(invstring=invoice)["amount_msat"] == total
    assert state_of(client, lsp, placed["order_id"])["order_state"] == "COMPLETED"


def test_our_client_pays_lsps1_and_lsps7_orders_by_bolt12_when_asked(node_factory,
                                                                      plugin_path, bitcoind):
    """lsps1-createorder ... bolt12 (positionally, as the README shows it) pays the order's
    offer and answers the completed order; lsps7-createorder pay=bolt12 (by name) extends
    the lease the same way."""
    client, lsp = order_topology(node_factory, plugin_path)
    lsp_id = lsp.info["id"]
    done = cli(client, "lsps1-createorder", lsp_id, 500000, 20000, 1000, 0, 6, "false",
               "null", "null", "bolt12")
    assert done["order_state"] == "COMPLETED" and done["payment"]["bolt12"]["state"] == "PAID"
    assert done["paid"]["method"] == "bolt12"
    assert done["paid"]["amount_msat"] == int(done["payment"]["bolt12"]["order_total_sat"]) * 1000
    opened_at = lsp.rpc.getinfo()["blockheight"]
    bitcoind.generate_block(1)   # (CLN: spend nothing of a zero-conf push before it confirms)
    wait_for(lambda: all(c.get("short_channel_id") for c in
                         client.rpc.listpeerchannels(lsp_id)["channels"]))
    wait_for(lambda: len(client.rpc.call("lsps7-getextendablechannels", [lsp_id])[
        "extendable_channels"]) == 1)
    scid = only_one(client.rpc.call("lsps7-getextendablechannels", [lsp_id])[
        "extendable_channels"])["short_channel_id"]
    extended = client.rpc.call("lsps7-createorder", {
        "lsp_id": lsp_id, "short_channel_id": scid, "channel_extension_expiry_blocks": 100,
        "pay": "bolt12"})
    assert extended["order_state"] == "COMPLETED" and extended["paid"]["method"] == "bolt12"
    assert extended["payment"]["bolt12"]["state"] == "PAID"
    assert extended["new_channel_expiry_block"] == opened_at + 1100
    view = only_one(lsp.rpc.call("lsps1-service-orders", {})["orders"])
    assert view["lease_expiry_block"] == opened_at + 1100
    # only bolt11 or bolt12
    with pytest.raises(RpcError) as e:
        client.rpc.call("lsps1-createorder", {"lsp_id": lsp_id, "lsp_balance_sat": 500_000,
                                              "pay": "onchain"})
    assert e.value.error["code"] == -32602


def test_an_lsp_restart_while_the_offers_payment_is_held_completes_the_order_once(
        node_factory, plugin_path, executor):
    """The LSP restarts as soon as the bolt12 payment is held: lightningd replays the
    HTLC, the plugin reads its blinded payload again, opens one channel and settles."""
    client, lsp = order_topology(node_factory, plugin_path, may_reconnect=True)
    lsp.fundwallet(10**7)   # an open cut short leaves its inputs reserved
    placed = order(client, lsp, channel_expiry_blocks=100, client_balance_sat=0)
    invoice = client.rpc.fetchinvoice(placed["payment"]["bolt12"]["offer"])["invoice"]
    paying = executor.submit(client.rpc.xpay, invstring=invoice)
    wait_for(lambda: only_one(lsp.rpc.call("lsps1-service-orders", {})["orders"])[
        "payment"]["bolt12"]["state"] != "EXPECT_PAYMENT")
    lsp.restart()
    client.connect(lsp)
    paying.result(timeout=120)
    got = state_of(client, lsp, placed["order_id"])
    assert got["order_state"] == "COMPLETED" and got["payment"]["bolt12"]["state"] == "PAID"
    assert len(client.rpc.listpeerchannels(lsp.info["id"])["channels"]) == 2

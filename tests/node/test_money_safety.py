"""Hostile peers against the LSP (issue 11): nothing is opened, pushed or waived
for money that does not arrive."""
import secrets
import time

import pytest
from pyln.client import RpcError
from pyln.testing.utils import only_one, sync_blockheight, wait_for
from test_lsps1 import LSP_OPTS as LSPS1_OPTS
from test_lsps1 import new_channels, order_topology


def service_order(lsp, order_id):
    return only_one(lsp.rpc.call("lsps1-service-orders", {"order_id": order_id})["orders"])


def direct_route(payer, peer, amount_msat, delay):
    channel = only_one([c for c in payer.rpc.listpeerchannels(peer.info["id"])["channels"]
                        if c["state"] == "CHANNELD_NORMAL"])
    return [{"id": peer.info["id"], "channel": channel["short_channel_id"],
             "direction": channel["direction"], "amount_msat": amount_msat, "delay": delay,
             "style": "tlv"}]


def test_lsps1_payment_with_a_wrong_secret_buys_nothing(node_factory, plugin_path):
    client, lsp = order_topology(node_factory, plugin_path)
    before = {c["channel_id"] for c in client.rpc.listpeerchannels()["channels"]}
    order = client.rpc.call("lsps1-createorder", [lsp.info["id"], 500_000, 20_000, 1000])
    bolt11 = order["payment"]["bolt11"]
    decoded = client.rpc.decode(bolt11["invoice"])
    total = int(bolt11["order_total_sat"]) * 1000
    route = direct_route(client, lsp, total, decoded["min_final_cltv_expiry"] + 5)
    client.rpc.sendpay(route, decoded["payment_hash"], payment_secret=secrets.token_hex(32),
                       amount_msat=total)
    with pytest.raises(RpcError) as err:
        client.rpc.waitsendpay(decoded["payment_hash"], timeout=60)
    assert err.value.error["data"]["failcodename"] == "WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS"
    view = service_order(lsp, order["order_id"])
    assert view["order_state"] == "CREATED" and view["payment"]["bolt11"]["state"] == \
        "EXPECT_PAYMENT" and view["parts"] == [] and view["channel_id"] is None
    assert new_channels(client, lsp, before) == []
    assert all(not c.get("htlcs") for c in lsp.rpc.listpeerchannels()["channels"])

    # The honest payment of a fresh order still completes, with one channel and its push.
    fresh = client.rpc.call("lsps1-createorder", {"lsp_id": lsp.info["id"],
                                                  "lsp_balance_sat": 500_000,
                                                  "client_balance_sat": 20_000,
                                                  "channel_expiry_blocks": 1000})
    client.rpc.xpay(invstring=fresh["payment"]["bolt11"]["invoice"])
    assert service_order(lsp, fresh["order_id"])["order_state"] == "COMPLETED"
    channel = only_one(new_channels(client, lsp, before))
    assert channel["total_msat"] == 520_000_000 and channel["to_us_msat"] == 20_000_000
    assert service_order(lsp, order["order_id"])["order_state"] == "CREATED"


def test_lsps1_refunded_order_never_opens_when_the_client_returns(node_factory, plugin_path,
                                                                  bitcoind):
    """Pay, the client is away, the held payment reaches its CLTV margin and goes
    back; the client reconnects: no channel."""
    payer, lsp, client = node_factory.get_nodes(3, opts=[
        {"may_reconnect": True},
        {"plugin": plugin_path, **LSPS1_OPTS, "may_reconnect": True},
        {"plugin": plugin_path, "may_reconnect": True}])
    node_factory.join_nodes([payer, lsp], wait_for_announce=False)
    lsp.fundwallet(10**7)
    client.connect(lsp)
    order = client.rpc.call("lsps1-createorder", {"lsp_id": lsp.info["id"],
                                                  "lsp_balance_sat": 500_000,
                                                  "channel_expiry_blocks": 1000})
    client.stop()
    invoice = order["payment"]["bolt11"]["invoice"]
    decoded = payer.rpc.decode(invoice)
    total = decoded["amount_msat"]
    payer.rpc.sendpay(direct_route(payer, lsp, total, decoded["min_final_cltv_expiry"]),
                      decoded["payment_hash"], payment_secret=decoded["payment_secret"],
                      amount_msat=total, bolt11=invoice)
    wait_for(lambda: service_order(lsp, order["order_id"])["payment"]["bolt11"]["state"]
             == "HOLD")
    # Held, waiting for the client; mine until the margin fails it back.
    for _ in range(decoded["min_final_cltv_expiry"]):
        if service_order(lsp, order["order_id"])["order_state"] == "FAILED":
            break
        bitcoind.generate_block(1)
        sync_blockheight(bitcoind, [lsp])
    wait_for(lambda: service_order(lsp, order["order_id"])["order_state"] == "FAILED")
    with pytest.raises(RpcError):
        payer.rpc.waitsendpay(decoded["payment_hash"], timeout=60)
    assert service_order(lsp, order["order_id"])["payment"]["bolt11"]["state"] == "REFUNDED"

    client.start()
    client.connect(lsp)
    wait_for(lambda: client.rpc.listpeers(lsp.info["id"])["peers"][0]["connected"])
    time.sleep(5)  # an (erroneous) open would start at once on the connect
    assert client.rpc.listpeerchannels(lsp.info["id"])["channels"] == []
    assert lsp.rpc.listpeerchannels(client.info["id"])["channels"] == []
    assert service_order(lsp, order["order_id"])["order_state"] == "FAILED"

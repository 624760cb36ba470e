"""Hostile peers against the LSP (issue 11): nothing is opened, pushed or waived
for money that does not arrive."""
import os
import secrets
import time

import pytest
from pyln.client import RpcError
from pyln.testing.utils import only_one, sync_blockheight, wait_for
from test_lsps1 import LSP_OPTS as LSPS1_OPTS
from test_lsps1 import new_channels, order_topology
from test_lsps2 import LSP_OPTS, client_channels, jit_topology, received_msat

import lsps.lsps2.msgs as P
from bolt12ext import payer as payer_lib
from bolt12ext import tlv
from bolt12ext.blinding import PaymentHop, PaymentRelay, payment_path


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


# --- LSPS2 ---------------------------------------------------------------------

PLUGINS = os.path.join(os.path.dirname(__file__), "plugins")


def jit_route(payer, lsp, client, buy, lsp_amount, forward_amount):
    """payer -> LSP -> jit scid -> client, as sendpay routes it."""
    decoded = client.rpc.decode(buy["bolt11"])
    first = only_one(payer.rpc.listpeerchannels(lsp.info["id"])["channels"])
    final_cltv = decoded["min_final_cltv_expiry"]
    return decoded, [
        {"id": lsp.info["id"], "channel": first["short_channel_id"],
         "direction": first["direction"], "amount_msat": lsp_amount,
         "delay": final_cltv + buy["lsp_cltv_expiry_delta"], "style": "tlv"},
        {"id": client.info["id"], "channel": buy["jit_channel_scid"], "direction": 0,
         "amount_msat": forward_amount, "delay": final_cltv, "style": "tlv"}]


def send_underpaying_onion(payer, lsp, client, buy, htlc_msat, claimed_msat):
    """An HTLC of htlc_msat to the LSP whose onion asks it to forward claimed_msat
    to the jit scid (createonion/sendonion: sendpay refuses such a route)."""
    decoded = client.rpc.decode(buy["bolt11"])
    height = payer.rpc.getinfo()["blockheight"]
    final_cltv = decoded["min_final_cltv_expiry"]
    scid = P.parse_scid(buy["jit_channel_scid"])
    to_lsp = tlv.serialize_stream({2: tlv.tu(claimed_msat), 4: tlv.tu(height + final_cltv),
                                   6: scid.to_bytes(8, "big")})
    to_client = tlv.serialize_stream({
        2: tlv.tu(claimed_msat), 4: tlv.tu(height + final_cltv),
        8: bytes.fromhex(decoded["payment_secret"]) + tlv.tu(claimed_msat)})
    onion = payer.rpc.createonion(hops=[
        {"pubkey": lsp.info["id"], "payload": (tlv.bigsize(len(to_lsp)) + to_lsp).hex()},
        {"pubkey": client.info["id"],
         "payload": (tlv.bigsize(len(to_client)) + to_client).hex()}],
        assocdata=buy["payment_hash"])
    payer.rpc.sendonion(onion=onion["onion"], first_hop={
        "id": lsp.info["id"], "amount_msat": htlc_msat,
        "delay": final_cltv + buy["lsp_cltv_expiry_delta"]},
        payment_hash=buy["payment_hash"], shared_secrets=onion["shared_secrets"])


def session_of(lsp, buy):
    return only_one(lsp.rpc.call("lsps2-service-sessions",
                                 {"jit_channel_scid": buy["jit_channel_scid"]})["sessions"])


def test_lsps2_htlc_claiming_more_than_it_carries_opens_nothing(node_factory, plugin_path):
    payer, lsp, client = jit_topology(node_factory, plugin_path)
    amount = 3_000_000
    buy = client.rpc.call("lsps2-buy", [lsp.info["id"], amount, "hostile", "hostile"])
    send_underpaying_onion(payer, lsp, client, buy, 1_000, amount)
    with pytest.raises(RpcError):
        payer.rpc.waitsendpay(buy["payment_hash"], timeout=60)
    assert not lsp.daemon.is_in_log(r"plugin-spenderp: mfc")  # no fundchannel ran
    assert client_channels(client, lsp) == []
    session = session_of(lsp, buy)
    assert session["state"] == "waiting" and session["parts"] == []
    # The honest payment of the same purchase opens exactly one channel.
    payer.rpc.xpay(invstring=buy["bolt11"])
    assert received_msat(client, "hostile") == ("paid", amount - buy["opening_fee_msat"])
    assert len(client_channels(client, lsp)) == 1


def test_lsps2_fee_stays_owed_when_the_client_fails_the_forward(node_factory, plugin_path):
    payer, lsp, client = jit_topology(
        node_factory, plugin_path,
        client_opts={"plugin": [plugin_path, os.path.join(PLUGINS, "fail_first_htlc.py")]})
    amount = 3_000_000
    buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"], "amount_msat": amount,
                                        "label": "retry"})
    fee = buy["opening_fee_msat"]
    decoded, route = jit_route(payer, lsp, client, buy, amount, amount)
    payer.rpc.sendpay(route, buy["payment_hash"], payment_secret=decoded["payment_secret"],
                      amount_msat=amount, partid=1, groupid=1, bolt11=buy["bolt11"])
    with pytest.raises(RpcError):
        payer.rpc.waitsendpay(buy["payment_hash"], partid=1, groupid=1, timeout=60)
    wait_for(lambda: session_of(lsp, buy)["state"] == "waiting")
    assert len(client_channels(client, lsp)) == 1
    # The payer retries: the fee is deducted again, over the same channel.
    _, route = jit_route(payer, lsp, client, buy, amount, amount)
    payer.rpc.sendpay(route, buy["payment_hash"], payment_secret=decoded["payment_secret"],
                      amount_msat=amount, partid=1, groupid=2, bolt11=buy["bolt11"])
    payer.rpc.waitsendpay(buy["payment_hash"], partid=1, groupid=2, timeout=60)
    assert received_msat(client, "retry") == ("paid", amount - fee)
    assert len(client_channels(client, lsp)) == 1
    wait_for(lambda: session_of(lsp, buy)["state"] == "done")


def test_lsps2_stalled_peers_do_not_stall_the_service(node_factory, plugin_path, bitcoind):
    """Four clients whose openchannel hook never answers; a fifth client still buys
    in seconds and is paid; the stalled opens end at their deadline."""
    # Their openingd dies on shutdown with the hook still unanswered.
    stall = {"plugin": [plugin_path, os.path.join(PLUGINS, "stall_open.py")],
             "may_fail": True, "broken_log": "STATUS_FAIL_MASTER_IO|openingd",
             "may_reconnect": True}
    nodes = node_factory.get_nodes(7, opts=[
        {}, {"plugin": plugin_path, **LSP_OPTS, "lsp-lsps2-open-timeout": 30},
        stall, stall, stall, stall, {"plugin": plugin_path}])
    payer, lsp, stalled, good = nodes[0], nodes[1], nodes[2:6], nodes[6]
    node_factory.join_nodes([payer, lsp], wait_for_announce=True)
    addr = lsp.rpc.newaddr("p2tr")["p2tr"]
    for _ in range(6):  # one wallet input per open: stalled opens reserve theirs
        bitcoind.rpc.sendtoaddress(addr, 0.05)
    bitcoind.generate_block(1)
    sync_blockheight(bitcoind, [lsp])
    wait_for(lambda: len(lsp.rpc.listfunds()["outputs"]) >= 6)
    futures = []
    for node in stalled + [good]:
        node.connect(lsp)
    for node in stalled:
        buy = node.rpc.call("lsps2-buy", [lsp.info["id"], 2_000_000])
        decoded, route = jit_route(payer, lsp, node, buy, 2_000_000, 2_000_000)
        payer.rpc.sendpay(route, buy["payment_hash"], payment_secret=decoded["payment_secret"],
                          amount_msat=2_000_000, partid=1, groupid=1, bolt11=buy["bolt11"])
        futures.append(buy)
    wait_for(lambda: lsp.daemon.is_in_log("lsps2") and all(
        session_of(lsp, b)["state"] == "opening" for b in futures))
    start = time.time()
    buy = good.rpc.call("lsps2-buy", [lsp.info["id"], 2_000_000, "good", "good"])
    assert time.time() - start < 10
    payer.rpc.xpay(invstring=buy["bolt11"])
    assert received_msat(good, "good") == ("paid", 2_000_000 - buy["opening_fee_msat"])
    # The stalled opens pass their deadline: cancelled, their payments failed back.
    for b in futures:
        with pytest.raises(RpcError):
            payer.rpc.waitsendpay(b["payment_hash"], partid=1, groupid=1, timeout=90)
    wait_for(lambda: all(session_of(lsp, b)["state"] == "waiting" for b in futures))
    assert all(not c.get("htlcs") for c in lsp.rpc.listpeerchannels()["channels"])


def pay_over_blinded_jit_path(payer, lsp, client, buy, amount, relay_fee_msat):
    """The payer pays through a blinded path [LSP --jit scid--> client] whose relay
    for the LSP's hop charges relay_fee_msat (what lightningd will skim)."""
    height = payer.rpc.getinfo()["blockheight"]
    hop = PaymentHop(bytes.fromhex(lsp.info["id"]), buy["jit_channel_scid"],
                     PaymentRelay(buy["lsp_cltv_expiry_delta"], 0, relay_fee_msat), 0)
    path, info = payment_path(os.urandom(32), [hop], bytes.fromhex(client.info["id"]),
                              os.urandom(32), height + 2000, 10**10, 18)
    final_cltv = height + 18
    hops = payer_lib.onion_hops([], path, amount, final_cltv)
    payment_hash = os.urandom(32)
    onion = payer.rpc.createonion(
        hops=[{"pubkey": k.hex(), "payload": (tlv.bigsize(len(p)) + p).hex()} for k, p in hops],
        assocdata=payment_hash.hex())
    # As the recipient would: the payer is told the hop is free (it pays `amount`), the
    # encrypted relay makes lightningd forward amount - relay_fee_msat.
    _, intro_cltv = payer_lib.at_introduction(amount, final_cltv, info)
    payer.rpc.sendonion(onion=onion["onion"], first_hop={
        "id": lsp.info["id"], "amount_msat": amount, "delay": intro_cltv - height},
        payment_hash=payment_hash.hex(), shared_secrets=onion["shared_secrets"])
    return payment_hash.hex()


def test_lsps2_blinded_htlc_opens_only_when_the_skim_pays_the_fee(node_factory, plugin_path):
    payer, lsp, client = jit_topology(node_factory, plugin_path)
    buy = client.rpc.call("lsps2-buy", [lsp.info["id"]])   # no-MPP: fee from the amount
    amount = 5_000_000
    fee = max(2000, -(-amount * 10_000 // 1_000_000))
    # A blinded path whose relay leaves the LSP nothing: failed, nothing opened.
    payment_hash = pay_over_blinded_jit_path(payer, lsp, client, buy, amount, 0)
    with pytest.raises(RpcError):
        payer.rpc.waitsendpay(payment_hash, timeout=60)
    assert not lsp.daemon.is_in_log(r"plugin-spenderp: mfc")  # no fundchannel ran
    assert client_channels(client, lsp) == []
    assert session_of(lsp, buy)["state"] == "waiting"
    # One whose relay leaves the fee: the LSP opens once and forwards it unchanged.
    payment_hash = pay_over_blinded_jit_path(payer, lsp, client, buy, amount, fee)
    wait_for(lambda: len(client_channels(client, lsp)) == 1)
    with pytest.raises(RpcError):   # the client cannot claim a path it never made
        payer.rpc.waitsendpay(payment_hash, timeout=60)
    assert len(client_channels(client, lsp)) == 1

"""LSPS2 JIT channels between real nodes: payer -- LSP -- client (no channel yet)."""
import pytest
from pyln.client import RpcError
from pyln.testing.utils import only_one, wait_for
from rawpeer import RawPeer

LSP_OPTS = {"lsp-service": None, "lsp-lsps2-min-fee-msat": 2000,
            "lsp-lsps2-proportional": 10000, "lsp-lsps2-cltv-expiry-delta": 40}


def jit_topology(node_factory, plugin_path, lsp_opts=None, client_opts=None, fund_lsp=True,
                 may_reconnect=False):
    payer, lsp, client = node_factory.get_nodes(3, opts=[
        {"may_reconnect": may_reconnect},
        {"plugin": plugin_path, **LSP_OPTS, **(lsp_opts or {}), "may_reconnect": may_reconnect},
        {"plugin": plugin_path, **(client_opts or {}), "may_reconnect": may_reconnect},
    ])
    node_factory.join_nodes([payer, lsp], wait_for_announce=True)
    if fund_lsp:
        lsp.fundwallet(10**7)
    client.connect(lsp)
    return payer, lsp, client


def send_jit_part(payer, lsp, client, buy, partid, part, total):
    """One part of an MPP payment to a JIT invoice, routed by hand with sendpay
    (payer -> LSP -> jit scid -> client) so that the set is really multi-part."""
    decoded = client.rpc.decode(buy["bolt11"])
    first = only_one(payer.rpc.listpeerchannels(lsp.info["id"])["channels"])
    final_cltv = decoded["min_final_cltv_expiry"]
    hops = [{"id": lsp.info["id"], "channel": first["short_channel_id"],
             "direction": first["direction"], "amount_msat": part,
             "delay": final_cltv + buy["lsp_cltv_expiry_delta"], "style": "tlv"},
            {"id": client.info["id"], "channel": buy["jit_channel_scid"], "direction": 0,
             "amount_msat": part, "delay": final_cltv, "style": "tlv"}]
    payer.rpc.sendpay(hops, buy["payment_hash"], payment_secret=decoded["payment_secret"],
                      amount_msat=total, partid=partid, groupid=1, bolt11=buy["bolt11"])


def received_msat(node, label):
    inv = only_one(node.rpc.listinvoices(label)["invoices"])
    return inv["status"], inv.get("amount_received_msat")


def client_channels(client, lsp):
    return client.rpc.listpeerchannels(lsp.info["id"])["channels"]


def test_getinfo_menu(node_factory, plugin_path):
    client, lsp = node_factory.get_nodes(2, opts=[
        {"plugin": plugin_path},
        {"plugin": plugin_path, **LSP_OPTS, "lsp-lsps2-menu-entry": "5000/20000"}])
    client.connect(lsp)
    assert client.rpc.call("lsps0-listprotocols", {"lsp_id": lsp.info["id"]}) == {
        "protocols": [1, 2, 5, 7]}
    menu = client.rpc.call("lsps2-getinfo", {"lsp_id": lsp.info["id"]})[
        "opening_fee_params_menu"]
    assert [(m["min_fee_msat"], m["proportional"]) for m in menu] == [(2000, 10000),
                                                                     (5000, 20000)]
    assert all(len(m["promise"]) == 64 and m["valid_until"].endswith("Z") for m in menu)


def test_no_mpp_variable_invoice_paid_with_xpay(node_factory, plugin_path):
    payer, lsp, client = jit_topology(node_factory, plugin_path)
    buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"], "label": "jit-var"})
    assert "opening_fee_msat" not in buy
    decoded = client.rpc.decode(buy["bolt11"])
    assert decoded["valid"]
    assert "amount_msat" not in decoded
    hop = only_one(only_one(decoded["routes"]))
    assert hop["pubkey"] == lsp.info["id"]
    assert hop["short_channel_id"] == buy["jit_channel_scid"]
    assert (hop["fee_base_msat"], hop["fee_proportional_millionths"],
            hop["cltv_expiry_delta"]) == (0, 0, 40)

    amount = 5_000_000
    payer.rpc.xpay(invstring=buy["bolt11"], amount_msat=amount)
    fee = max(2000, -(-amount * 10000 // 1_000_000))
    status, got = received_msat(client, "jit-var")
    assert status == "paid" and got == amount - fee
    channel = only_one(client_channels(client, lsp))
    assert channel["private"] is True
    wait_for(lambda: only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])[
        "state"] == "done")
    buys = client.rpc.call("lsps2-listbuys", {})["buys"]
    assert only_one(buys)["state"] == "paid"


def test_mpp_fixed_invoice_paid_in_parts(node_factory, plugin_path):
    payer, lsp, client = jit_topology(node_factory, plugin_path)
    amount = 3_000_000
    buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"], "amount_msat": amount,
                                        "label": "jit-fixed"})
    fee = buy["opening_fee_msat"]
    assert fee == 30_000
    decoded = client.rpc.decode(buy["bolt11"])
    assert decoded["amount_msat"] == amount
    parts = [1_000_000, 2_000_000]
    for i, part in enumerate(parts):
        send_jit_part(payer, lsp, client, buy, i + 1, part, amount)
    for i in range(len(parts)):
        payer.rpc.waitsendpay(buy["payment_hash"], partid=i + 1, groupid=1, timeout=120)
    status, got = received_msat(client, "jit-fixed")
    assert status == "paid" and got == amount - fee
    assert len(client_channels(client, lsp)) == 1
    session = only_one(lsp.rpc.call("lsps2-service-sessions",
                                    {"peer_id": client.info["id"]})["sessions"])
    assert len(session["parts"]) == 2
    assert sum(p["forward_msat"] - p["forwarded_msat"] for p in session["parts"]) == fee


SECRET = "11" * 32


def test_service_errors_on_the_wire(node_factory, plugin_path):
    """Every lsps2.get_info / lsps2.buy error code, from raw requests."""
    import os
    import time

    import lsps.lsps2.msgs as P

    fake = os.path.join(os.path.dirname(__file__), "plugins", "fake_lsp.py")
    raw, lsp = node_factory.get_nodes(2, opts=[
        {"plugin": fake},
        {"plugin": plugin_path, **LSP_OPTS, "lsp-lsps2-token": "gold",
         "lsp-lsps2-promise-secret": SECRET,
         "lsp-lsps2-min-payment-msat": 100_000, "lsp-lsps2-max-payment-msat": 10**9}])
    raw.connect(lsp)
    ask = RawPeer(raw, lsp).ask

    assert ask("lsps2.get_info", {})["error"]["code"] == 200
    assert ask("lsps2.get_info", {"token": "silver"})["error"]["code"] == 200
    assert ask("lsps2.get_info", {"token": "gold", "x": 1})["error"]["data"] == {
        "unrecognized": ["x"]}
    menu = ask("lsps2.get_info", {"token": "gold"})["result"]["opening_fee_params_menu"]
    params = menu[0]
    bought = ask("lsps2.buy", {"opening_fee_params": params})["result"]
    assert bought["lsp_cltv_expiry_delta"] == 40 and bought["client_trusts_lsp"] is False
    assert P.parse_scid(bought["jit_channel_scid"]) >> 40 >= 10_000_000

    def code(p, size):
        body = {"opening_fee_params": p}
        if size is not None:
            body["payment_size_msat"] = size
        return ask("lsps2.buy", body)["error"]["code"]

    assert code(dict(params, min_fee_msat="1"), "500000") == 201          # bad promise
    me = raw.info["id"]
    past = P.OpeningFeeParams(2000, 10000, (int(time.time()) - 10) * 1000, 1008, 2016,
                              100_000, 10**9)
    past_json = dict(past.to_json(), promise=P.make_promise(bytes.fromhex(SECRET), me, past))
    assert code(past_json, "500000") == 201                              # expired
    assert code(params, "99999") == 202                                  # below min
    assert code(params, str(10**9 + 1)) == 203                           # above max
    assert code(params, "1000000000000") == 203                          # above max / liquidity
    assert code(params, "abc") == -32602
    assert code({k: v for k, v in params.items() if k != "promise"}, "500000") == -32602
    assert ask("lsps2.buy", {})["error"]["code"] == -32602               # missing param
    # The LSP has no inbound liquidity at all here: a valid size is too large for it
    # (no-MPP buys, above, need no liquidity check at buy time).
    assert code(params, "500000") == 203
    # A peer may hold 20 unpaid purchases at once; the 21st is rejected (code 1).
    for _ in range(19):
        assert "result" in ask("lsps2.buy", {"opening_fee_params": params})
    assert code(params, None) == 1


def test_client_side_checks(node_factory, plugin_path):
    client, lsp = node_factory.get_nodes(2, opts=[
        {"plugin": plugin_path},
        {"plugin": plugin_path, **LSP_OPTS, "lsp-lsps2-min-payment-msat": 100_000,
         "lsp-lsps2-max-payment-msat": 10**9}])
    client.connect(lsp)
    lsp_id = lsp.info["id"]
    for amount in (50_000, 2 * 10**9):
        with pytest.raises(RpcError) as e:
            client.rpc.call("lsps2-buy", {"lsp_id": lsp_id, "amount_msat": amount})
        assert e.value.error["code"] == 1201
    with pytest.raises(RpcError) as e:
        client.rpc.call("lsps2-buy", {"lsp_id": lsp_id, "amount_msat": 500_000,
                                      "max_fee_msat": 10})
    assert e.value.error["code"] == 1202 and e.value.error["data"]["opening_fee_msat"] == 5000
    with pytest.raises(RpcError) as e:
        client.rpc.call("lsps2-buy", {"lsp_id": lsp_id, "amount_msat": "lots"})
    assert e.value.error["code"] == -32602


def test_client_without_purchase_refuses_zero_conf(node_factory, plugin_path):
    client, lsp = node_factory.get_nodes(2, opts=[{"plugin": plugin_path},
                                                 {"plugin": plugin_path, **LSP_OPTS}])
    lsp.fundwallet(10**7)
    lsp.connect(client)
    with pytest.raises(RpcError, match="zeroconf"):
        lsp.rpc.fundchannel(client.info["id"], 200_000, announce=False, mindepth=0,
                            channel_type=[12, 46, 50])
    assert client.rpc.listpeerchannels()["channels"] == []


def _payer_failure(payer, payment_hash):
    wait_for(lambda: only_one(payer.rpc.listsendpays(payment_hash=payment_hash)["payments"])[
        "status"] == "failed")


def test_lsp_without_funds_fails_parts_cleanly(node_factory, plugin_path):
    payer, lsp, client = jit_topology(node_factory, plugin_path, fund_lsp=False)
    buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"]})
    with pytest.raises(RpcError) as e:
        payer.rpc.xpay(invstring=buy["bolt11"], amount_msat=5_000_000, retry_for=5)
    assert "temporary_channel_failure" in e.value.error["message"]
    session = only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])
    assert session["state"] == "waiting" and session["parts"] == []
    assert "channel open failed" in session["failures"][0]["reason"]
    assert all(not c.get("htlcs") for c in lsp.rpc.listpeerchannels()["channels"])
    assert client.rpc.listpeerchannels()["channels"] == []


def test_mpp_collection_timeout(node_factory, plugin_path):
    payer, lsp, client = jit_topology(node_factory, plugin_path)
    amount = 3_000_000
    buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"], "amount_msat": amount})
    send_jit_part(payer, lsp, client, buy, 1, 1_000_000, amount)
    with pytest.raises(RpcError) as e:
        payer.rpc.waitsendpay(buy["payment_hash"], partid=1, groupid=1, timeout=180)
    assert e.value.error["data"]["failcode"] == 0x1007  # temporary_channel_failure
    session = only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])
    assert session["state"] == "waiting"
    assert "90 s" in session["failures"][0]["reason"]
    assert client.rpc.listpeerchannels()["channels"] == []


def test_client_offline_when_payment_arrives(node_factory, plugin_path, executor):
    payer, lsp, client = jit_topology(node_factory, plugin_path, may_reconnect=True)
    buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"], "label": "late"})
    client.rpc.disconnect(lsp.info["id"], force=True)
    fut = executor.submit(payer.rpc.xpay, invstring=buy["bolt11"], amount_msat=4_000_000)
    wait_for(lambda: only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])[
        "state"] == "collecting")
    client.connect(lsp)
    fut.result(timeout=120)
    assert received_msat(client, "late")[0] == "paid"
    assert len(client_channels(client, lsp)) == 1


def test_held_part_failed_before_cltv_expiry(node_factory, plugin_path, bitcoind, executor):
    payer, lsp, client = jit_topology(node_factory, plugin_path)
    buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"]})
    client.stop()  # never comes back
    fut = executor.submit(payer.rpc.xpay, invstring=buy["bolt11"], amount_msat=4_000_000,
                          retry_for=1)
    wait_for(lambda: only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])[
        "state"] == "collecting")
    part = only_one(only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])["parts"])
    height = lsp.rpc.getinfo()["blockheight"]
    # Mine to just before the margin (6 blocks): still held; one more: failed.
    bitcoind.generate_block(part["cltv_expiry"] - 7 - height)
    sync_heights = part["cltv_expiry"] - 7
    wait_for(lambda: lsp.rpc.getinfo()["blockheight"] == sync_heights)
    assert only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])["state"] == \
        "collecting"
    bitcoind.generate_block(1)
    with pytest.raises(RpcError):
        fut.result(timeout=60)
    session = only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])
    assert session["state"] == "waiting" and "CLTV" in session["failures"][0]["reason"]
    assert all(not c.get("htlcs") for c in lsp.rpc.listpeerchannels()["channels"])


def test_lsp_restart_while_collecting(node_factory, plugin_path):
    payer, lsp, client = jit_topology(node_factory, plugin_path, may_reconnect=True)
    amount = 3_000_000
    buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"], "amount_msat": amount,
                                        "label": "restart"})
    send_jit_part(payer, lsp, client, buy, 1, 1_000_000, amount)
    wait_for(lambda: only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])[
        "state"] == "collecting")
    lsp.restart()
    payer.connect(lsp)
    client.connect(lsp)
    wait_for(lambda: len(only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])[
        "parts"]) == 1)
    send_jit_part(payer, lsp, client, buy, 2, 2_000_000, amount)
    for partid in (1, 2):
        payer.rpc.waitsendpay(buy["payment_hash"], partid=partid, groupid=1, timeout=120)
    assert received_msat(client, "restart") == ("paid", amount - buy["opening_fee_msat"])
    assert len(client_channels(client, lsp)) == 1


def test_restarts_after_the_open_keep_one_channel_and_no_fee(node_factory, plugin_path):
    payer, lsp, client = jit_topology(node_factory, plugin_path, may_reconnect=True)
    buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"]})
    payer.rpc.xpay(invstring=buy["bolt11"], amount_msat=5_000_000)
    client.restart()
    lsp.restart()
    payer.connect(lsp)
    client.connect(lsp)
    session = only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])
    assert session["state"] == "done"
    wait_for(lambda: only_one(client_channels(client, lsp))["state"] == "CHANNELD_NORMAL")
    # A second payment to the jit scid before valid_until: through the channel, no fee.
    inv = client.rpc.invoice(1_000_000, "second", "second")
    route = [{"id": lsp.info["id"],
              "channel": only_one(payer.rpc.listpeerchannels(lsp.info["id"])["channels"])[
                  "short_channel_id"], "direction": 0, "amount_msat": 1_000_000,
              "delay": 60, "style": "tlv"},
             {"id": client.info["id"], "channel": buy["jit_channel_scid"], "direction": 0,
              "amount_msat": 1_000_000, "delay": 20, "style": "tlv"}]
    route[0]["direction"] = only_one(payer.rpc.listpeerchannels(lsp.info["id"])["channels"])[
        "direction"]
    payer.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    payer.rpc.waitsendpay(inv["payment_hash"], timeout=60)
    assert received_msat(client, "second") == ("paid", 1_000_000)
    assert len(client_channels(client, lsp)) == 1


def test_client_restart_keeps_purchase(node_factory, plugin_path):
    payer, lsp, client = jit_topology(node_factory, plugin_path, may_reconnect=True)
    buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"], "amount_msat": 2_000_000,
                                        "label": "after-restart"})
    client.restart()
    client.connect(lsp)
    assert only_one(client.rpc.call("lsps2-listbuys", {})["buys"])["state"] == "waiting"
    payer.rpc.xpay(invstring=buy["bolt11"])
    assert received_msat(client, "after-restart") == ("paid", 2_000_000 - 20_000)


def test_client_refusing_the_open_fails_unknown_next_peer(node_factory, plugin_path):
    payer, lsp, client = jit_topology(node_factory, plugin_path, may_reconnect=True)
    buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"]})
    # The client comes back without the plugin: plain CLN refuses zero-conf opens.
    client.stop()
    del client.daemon.opts["plugin"]
    client.start()
    client.connect(lsp)
    with pytest.raises(RpcError) as e:
        payer.rpc.xpay(invstring=buy["bolt11"], amount_msat=5_000_000, retry_for=5)
    assert "unknown_next_peer" in e.value.error["message"]
    failed = payer.rpc.listsendpays(payment_hash=buy["payment_hash"])["payments"]
    assert failed and all(p["status"] == "failed" for p in failed)
    session = only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])
    assert session["state"] == "waiting"
    assert "channel open failed" in session["failures"][0]["reason"]
    assert client.rpc.listpeerchannels()["channels"] == []
    assert all(not c.get("htlcs") for c in lsp.rpc.listpeerchannels()["channels"])


def test_lsp_crash_as_the_open_starts(node_factory, plugin_path, executor):
    """Kill the LSP the moment its session leaves `collecting` (opening, or
    just past it): after the restart the payment completes over one channel."""
    payer, lsp, client = jit_topology(node_factory, plugin_path, may_reconnect=True)
    lsp.may_fail = True
    buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"], "label": "crash"})
    client.rpc.disconnect(lsp.info["id"], force=True)
    fut = executor.submit(payer.rpc.xpay, invstring=buy["bolt11"], amount_msat=4_000_000)
    wait_for(lambda: only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])[
        "state"] == "collecting")
    client.connect(lsp)  # completes the set: the LSP starts opening
    # Seen here: killed in `opening` before fundchannel stored anything, so the
    # restarted LSP opens again (a channel already made would be adopted).
    while only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])[
            "state"] == "collecting":
        pass
    lsp.daemon.kill()
    lsp.start()
    lsp.connect(payer)
    lsp.connect(client)
    fut.result(timeout=120)
    assert received_msat(client, "crash")[0] == "paid"
    assert len(client_channels(client, lsp)) == 1
    assert only_one(lsp.rpc.call("lsps2-service-sessions", {})["sessions"])["state"] == "done"

"""lsp-summary and the Prometheus metrics agree with the listing commands on real nodes,
after an async payment (held, then claimed), a JIT payment and a channel order.

S — L1 — L2 — R as in test_asyncflow (L1 holds S's HTLCs, L2 serves R's static
invoices), L2 also sells JIT channels and channel orders and serves metrics, and C, a
client with no channel, is connected to L2."""
import socket
import urllib.request

from pyln.testing.utils import only_one, wait_for
from test_asyncflow import held_at, make_offer
from test_cli import cli

L2_SALES = {"lsp-lsps2-min-fee-msat": 2000, "lsp-lsps2-proportional": 10000,
            "lsp-lsps1-fee-base-sat": 1000, "lsp-lsps1-fee-ppm": 2000,
            "lsp-lsps1-lease-ppm-per-block": 1, "lsp-lsps1-max-channel-expiry-blocks": 4320}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary(node, *args):
    return cli(node, "lsp-summary", *args)


def scrape(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.decode().splitlines() if line and not line.startswith("#")}


def test_summary_and_metrics_agree_with_the_listings(node_factory, plugin_path):
    port = free_port()
    opts = [{"plugin": plugin_path, "may_reconnect": True},
            {"plugin": plugin_path, "may_reconnect": True, "lsp-service": None,
             "lsp-asyncpay-hold": None},
            {"plugin": plugin_path, "may_reconnect": True, "lsp-service": None,
             "lsp-asyncpay-server": None, "lsp-metrics-port": port, **L2_SALES},
            {"plugin": plugin_path, "may_reconnect": True}]
    s, l1, l2, r = node_factory.line_graph(4, opts=opts, wait_for_announce=True)
    c = node_factory.get_node(options={"plugin": plugin_path})
    l2.fundwallet(10**7)
    c.connect(l2)
    lsp_id = l2.info["id"]

    # An async payment, held at L1 while R is away.
    offer = make_offer(r, l2)
    r.stop()
    paid = s.rpc.call("asyncpay-pay", {"offer": offer["offer"]})
    wait_for(lambda: held_at(l1, paid["payment_hash"]) and
             held_at(l1, paid["payment_hash"])[0]["htlcs"])
    (hold,) = held_at(l1, paid["payment_hash"])
    held = summary(l1)["asyncpay_hold"]
    assert held["holds_by_state"]["held"] == 1 and held["held_htlcs"] == len(hold["htlcs"])
    assert held["held_amount_msat"] == sum(h["amount_msat"] for h in hold["htlcs"])
    assert held["nearest_expiry_at"] == hold["expires_at"]
    assert held["nearest_cltv_expiry"] == min(h["cltv_expiry"] for h in hold["htlcs"])
    wait_for(lambda: l2.rpc.call("asyncpay-messages")["mailbox"]["waiting"] >= 1)
    server = summary(l2)["asyncpay_server"]
    assert server["static_invoices"] == len(l2.rpc.call("asyncpay-invoices")["invoices"]) == 1
    assert server["mailbox_waiting"] == l2.rpc.call("asyncpay-messages")["mailbox"]["waiting"]

    # A JIT payment to C through L2.
    buy = c.rpc.call("lsps2-buy", {"lsp_id": lsp_id, "label": "jit"})
    s.rpc.xpay(invstring=buy["bolt11"], amount_msat=5_000_000)
    wait_for(lambda: only_one(l2.rpc.call("lsps2-service-sessions")["sessions"])["state"]
             == "done")
    session = only_one(l2.rpc.call("lsps2-service-sessions")["sessions"])
    jit = only_one(c.rpc.listpeerchannels(lsp_id)["channels"])

    # A channel order from C, paid by S.
    order = c.rpc.call("lsps1-createorder", {"lsp_id": lsp_id, "lsp_balance_sat": 500_000,
                                             "channel_expiry_blocks": 1000})
    s.rpc.xpay(invstring=order["payment"]["bolt11"]["invoice"])
    wait_for(lambda: only_one(l2.rpc.call("lsps1-service-orders")["orders"])["order_state"]
             == "COMPLETED")
    listed = only_one(l2.rpc.call("lsps1-service-orders")["orders"])
    height = l2.rpc.getinfo()["blockheight"]

    got = summary(l2, 5000)   # positionally: expiring_within_blocks
    assert got["blockheight"] == height
    lsps2 = got["lsps2"]
    assert lsps2["sessions_by_state"]["done"] == 1
    assert sum(lsps2["sessions_by_state"].values()) == 1
    day = lsps2["jit_channels"]["last_24h"]
    assert day == lsps2["jit_channels"]["all_time"]
    assert day["count"] == 1 and day["capacity_sat"] == jit["total_msat"] // 1000
    assert day["capacity_sat"] == session["channel_sat"]
    assert day["opening_fees_earned_msat"] == session["opening_fee_earned_msat"] == \
        max(2000, 5_000_000 * 10_000 // 1_000_000)
    assert 0 < day["onchain_fee_sat"] == session["funding_fee_sat"] < 50_000
    assert day["onchain_fee_unknown"] == 0
    lsps1 = got["lsps1"]
    assert lsps1["orders_by_state"] == {"CREATED": 0, "COMPLETED": 1, "FAILED": 0}
    assert lsps1["leases_open"] == lsps1["leases_expiring"] == 1
    assert lsps1["nearest_lease_expiry_block"] == listed["lease_expiry_block"]
    assert summary(l2, 10)["lsps1"]["leases_expiring"] == 0
    assert l2.rpc.call("lsp-summary", {"expiring_within_blocks": 10})["lsps1"][
        "leases_expiring_within_blocks"] == 10
    served = got["lsps0"]["requests_served"]
    assert served["lsps2.buy"] == served["lsps1.create_order"] == 1
    assert got["lsps0"]["rejected_requests"] == 0
    assert got["lsps7"]["orders_by_state"]["CREATED"] == 0
    client = summary(c)["client"]
    assert client["lsps2_buys_by_state"]["paid"] == 1
    assert client["lsps1_orders_by_state"][
        only_one(c.rpc.call("lsps1-listorders")["orders"])["order_state"]] == 1
    assert summary(c)["lsps2"] is None   # a client sells nothing

    metrics = scrape(port)
    assert metrics['clnlsp_lsps2_sessions_by_state{state="done"}'] == 1
    assert metrics['clnlsp_lsps2_jit_channels_count{window="all_time"}'] == 1
    assert metrics['clnlsp_lsps2_jit_channels_capacity_sat{window="last_7d"}'] == \
        day["capacity_sat"]
    assert metrics['clnlsp_lsps2_jit_channels_opening_fees_earned_msat{window="last_24h"}'] \
        == day["opening_fees_earned_msat"]
    assert metrics['clnlsp_lsps1_orders_by_state{state="COMPLETED"}'] == 1
    assert metrics['clnlsp_lsps0_requests_served{method="lsps2.buy"}'] == 1
    assert metrics["clnlsp_lsps2_open_to_forward_seconds_count"] == 1
    assert metrics['clnlsp_lsps2_open_to_forward_seconds_bucket{le="+Inf"}'] == 1
    assert metrics["clnlsp_lsps2_open_to_forward_seconds_sum"] * 1000 == \
        session["open_to_forward_ms"]

    # R comes back and claims: the hold is released, S's payment complete.
    r.start()
    wait_for(lambda: held_at(l1, paid["payment_hash"])[0]["state"] == "released", timeout=90)
    after = summary(l1)["asyncpay_hold"]
    assert after["holds_by_state"]["released"] == 1 and after["held_htlcs"] == 0
    wait_for(lambda: summary(s)["client"]["async_payments_sent_by_state"]["complete"] == 1,
             timeout=60)
    assert summary(r)["client"]["async_payments_received"] == 1

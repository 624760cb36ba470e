"""lsp-summary's sums (lsps/summary.py) and their Prometheus form (lsps/metrics.py),
from listings shaped as the listing commands return them."""
import socket
import urllib.request

import pytest

import lsps.metrics as metrics
import lsps.summary as summary
from lsps.options import OptionError

NOW = 1_800_000_000
DAY = 86_400


def session(state, forwarded_at=None, channel_sat=None, fee_sat=None, earned=0, parts=0,
            latency_ms=None):
    """A session's row (lsps/lsps2/listing.py summary_row)."""
    return {"state": state, "forwarded_at": forwarded_at, "channel_sat": channel_sat,
            "funding_fee_sat": fee_sat, "opening_fee_earned_msat": earned,
            "held_parts": parts, "open_to_forward_ms": latency_ms}


def test_jit_channels_are_added_up_per_window_of_their_forward():
    sessions = [session("done", NOW - 60, 100_000, 300, 5_000, latency_ms=1_500),
                session("done", NOW - 3 * DAY, 200_000, None, 7_000, latency_ms=40_000),
                session("forwarding", NOW - 30 * DAY, 50_000, 100, 0),
                session("collecting", parts=2), session("waiting"), session("failed")]
    got = summary.lsps2(sessions, NOW)
    assert got["sessions_by_state"] == {"waiting": 1, "collecting": 1, "opening": 0,
                                        "forwarding": 1, "done": 2, "failed": 1}
    assert got["held_parts"] == 2
    assert got["jit_channels"] == {
        "last_24h": {"count": 1, "capacity_sat": 100_000, "onchain_fee_sat": 300,
                     "onchain_fee_unknown": 0, "opening_fees_earned_msat": 5_000},
        "last_7d": {"count": 2, "capacity_sat": 300_000, "onchain_fee_sat": 300,
                    "onchain_fee_unknown": 1, "opening_fees_earned_msat": 12_000},
        "all_time": {"count": 3, "capacity_sat": 350_000, "onchain_fee_sat": 400,
                     "onchain_fee_unknown": 1, "opening_fees_earned_msat": 12_000}}
    assert metrics.open_to_forward(sessions) == (
        [("0.5", 0), ("1", 0), ("2", 1), ("5", 1), ("10", 1), ("20", 1), ("30", 1),
         ("60", 2), ("120", 2), ("300", 2), ("+Inf", 2)], 41.5)
    assert metrics.open_to_forward(None) is None


def order(state, payment=None, lease_expiry=None, closed=None, refund=None):
    """An order's row (lsps/orders/payment.py summary_row)."""
    return {"kind": "lsps1", "order_state": state, "payment_states": payment or {},
            "lease_expiry_block": lease_expiry, "closed_at_block": closed,
            "onchain_refund": refund}


def test_orders_leases_and_refunds():
    orders = [order("COMPLETED", lease_expiry=1_100), order("COMPLETED", lease_expiry=5_000),
              order("COMPLETED", lease_expiry=900, closed=950),
              order("FAILED", {"bolt11": "REFUNDED"}),
              order("FAILED", {"bolt12": "REFUNDED"},
                    refund={"refunded_sat": 0, "pending_sat": 0, "txid": None}),
              order("FAILED", {"onchain": "REFUNDED"},
                    refund={"refunded_sat": 60_000, "pending_sat": 0, "txid": "ab"}),
              order("FAILED", refund={"refunded_sat": 0, "pending_sat": 20_000, "txid": None}),
              order("CREATED", {"bolt11": "EXPECT_PAYMENT"})]
    got = summary.lsps1(orders, 1_000, 144)
    assert got == {"orders_by_state": {"CREATED": 1, "COMPLETED": 3, "FAILED": 4},
                   "leases_open": 2, "leases_expiring": 1, "leases_expiring_within_blocks": 144,
                   "nearest_lease_expiry_block": 1_100,
                   "refunds": {"lightning_refunded": 2, "onchain_refunded": 1,
                               "onchain_refunded_sat": 60_000, "onchain_pending": 1,
                               "onchain_pending_sat": 20_000}}
    assert summary.lsps1(orders, None, 144)["leases_expiring"] == 0   # height unknown
    assert summary.lsps7([])["orders_by_state"] == {"CREATED": 0, "COMPLETED": 0, "FAILED": 0}


def test_held_htlcs_static_invoices_lsps0_lsps5_and_the_client():
    holds = [{"state": "held", "expires_at": NOW + 50, "htlcs": [
                 {"amount_msat": 1_000, "cltv_expiry": 300}, {"amount_msat": 2_000,
                                                              "cltv_expiry": 290}]},
             {"state": "waiting_htlc", "expires_at": NOW + 10, "htlcs": []},
             {"state": "released", "expires_at": NOW - 10, "htlcs": [
                 {"amount_msat": 9_000, "cltv_expiry": 10}]}]
    assert summary.held_htlcs(holds) == {
        "holds_by_state": {"waiting_htlc": 1, "held": 1, "released": 1, "failed": 0},
        "held_htlcs": 2, "held_amount_msat": 3_000, "nearest_expiry_at": NOW + 10,
        "nearest_cltv_expiry": 290}
    invoices = [{"recipient_id": "r1", "invoice_bytes": 300, "expires_at": NOW + 9},
                {"recipient_id": "r1", "invoice_bytes": 200, "expires_at": NOW + 5}]
    assert summary.static_invoices(invoices, {"waiting": 2, "capacity": 1000, "stored": 3,
                                              "delivered": 1}) == {
        "static_invoices": 2, "recipients": 1, "static_invoice_bytes": 500,
        "nearest_invoice_expiry_at": NOW + 5, "mailbox_waiting": 2, "mailbox_capacity": 1000,
        "mailbox_counts": {"delivered": 1, "stored": 3}}
    assert summary.lsps0({"lsps2.buy": 2, "lsps0.list_protocols": 1}, {-32602: 1, 201: 2}) == {
        "requests_served": {"lsps0.list_protocols": 1, "lsps2.buy": 2}, "served_requests": 3,
        "requests_rejected": {"-32602": 1, "201": 2}, "rejected_requests": 3}
    assert summary.lsps5({"clients": [{"webhooks": [1, 2]}, {"webhooks": []}],
                          "notifications_sent": {"lsps5.payment_incoming": 1}}) == {
        "clients": 2, "webhooks": 2, "notifications_sent": {"lsps5.payment_incoming": 1}}
    offers = [{"payments": [{"amount_msat": 5_000}, {"amount_msat": 6_000}]}, {"payments": []}]
    got = summary.client([{"state": "paid"}, {"state": "expired"}],
                         [{"order_state": "COMPLETED"}], offers,
                         [{"state": "complete"}, {"state": "pending"}])
    assert got == {"lsps2_buys_by_state": {"waiting": 0, "paid": 1, "expired": 1},
                   "lsps1_orders_by_state": {"CREATED": 0, "COMPLETED": 1, "FAILED": 0},
                   "async_offers": 2, "async_payments_received": 2,
                   "async_received_msat": 11_000,
                   "async_payments_sent_by_state": {"pending": 1, "complete": 1, "failed": 0}}


def test_samples_name_each_figure_by_its_path_and_tables_by_label():
    got = metrics.samples({
        "at": NOW, "blockheight": 120, "lsps7": None,
        "lsps2": {"sessions_by_state": {"done": 2},
                  "jit_channels": {"all_time": {"count": 3, "capacity_sat": 9}}},
        "lsps0": {"requests_rejected": {"-32602": 1}, "served_requests": 4},
        "lsps1": {"refunds": {"onchain_pending_sat": 7}, "nearest_lease_expiry_block": None}})
    assert got == [
        ("clnlsp_blockheight", {}, 120),
        ("clnlsp_lsps2_sessions_by_state", {"state": "done"}, 2),
        ("clnlsp_lsps2_jit_channels_count", {"window": "all_time"}, 3),
        ("clnlsp_lsps2_jit_channels_capacity_sat", {"window": "all_time"}, 9),
        ("clnlsp_lsps0_requests_rejected", {"code": "-32602"}, 1),
        ("clnlsp_lsps0_served_requests", {}, 4),
        ("clnlsp_lsps1_refunds_onchain_pending_sat", {}, 7)]


def test_the_port_option():
    assert metrics.port(lambda name: 0) is None
    assert metrics.port(lambda name: 9900) == 9900
    with pytest.raises(OptionError, match="lsp-metrics-port"):
        metrics.port(lambda name: 70000)


class FakeOverview:
    def __init__(self):
        self.scrapes = 0

    def listings(self):
        self.scrapes += 1
        return {"lsps2_sessions": [session("done", NOW, 100, 1, 5, latency_ms=800)]}

    def summary(self, listings):
        return {"at": NOW, "lsps2": summary.lsps2(listings["lsps2_sessions"], NOW)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_exporter_serves_prometheus_text_on_loopback_and_reads_afresh_each_scrape():
    overview, port = FakeOverview(), free_port()
    server = metrics.serve(port, overview)
    try:
        assert overview.scrapes == 0   # nothing read before the first scrape
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert 'clnlsp_lsps2_sessions_by_state{state="done"} 1.0' in text
        assert 'clnlsp_lsps2_jit_channels_opening_fees_earned_msat{window="last_24h"} 5.0' \
            in text
        assert 'clnlsp_lsps2_open_to_forward_seconds_bucket{le="1"} 1.0' in text
        assert "clnlsp_lsps2_open_to_forward_seconds_count 1.0" in text
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read()
        assert overview.scrapes == 2
        with pytest.raises(OptionError, match="cannot listen"):
            metrics.serve(port, overview)   # the port is taken
    finally:
        server.shutdown()

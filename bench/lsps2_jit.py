#!/usr/bin/env python3
"""LSPS2 on real nodes: JIT payment latency, and the plugin's cost on ordinary forwards.

Run:  python bench/lsps2_jit.py [--rounds N] [--payments N]
Prints one JSON object and writes it to bench/results/lsps2_jit.json.

(a) JIT: payer `xpay`s a client's LSPS2 invoice (buy done beforehand) until
    it has the preimage; floor: the LSP opens a zero-conf channel to a plain
    node (`fundchannel` ... mindepth=0), waits for it to be usable, and the
    payer pays that node over it. Medians over N rounds, each with a fresh
    client. Target ratio jit/floor <= 1.3.
    BOLT12 JIT: the payer `fetchinvoice`s a fresh client's `lsps2-buyoffer` offer
    (made beforehand; the JIT purchase happens inside, per invoice_request) and
    `xpay`s the invoice until it has the preimage. Target ratio BOLT12/BOLT11 <= 1.2.
(b) Forwards: payer -> LSP -> receiver over announced channels, N payments
    in a row, once with clnlsp loaded on the LSP (lsp-service on) and once
    without, same run. Target ratio with/without >= 0.9.
"""
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

ROOT = os.path.dirname(HERE)
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PAYMENTS = int(os.environ.get("BENCH_PAYMENTS", "40"))
PLUGIN = os.path.join(ROOT, "plugin.py")
ACCEPTOR = os.path.join(HERE, "zeroconf_acceptor.py")
LSP_OPTS = {"plugin": PLUGIN, "lsp-service": None, "lsp-lsps2-cltv-expiry-delta": 40}


sys.path.insert(0, ROOT)
import lsps.bolt11 as bolt11  # noqa: E402
from lsps.lsps2.msgs import parse_scid  # noqa: E402


def _wait_normal(lsp, peer_id, channel_id, timeout=60):
    end = time.time() + timeout
    while not any(c["channel_id"] == channel_id and c["state"] == "CHANNELD_NORMAL"
                  for c in lsp.rpc.listpeerchannels(peer_id)["channels"]):
        if time.time() > end:
            raise TimeoutError("channel not usable")
        time.sleep(0.02)


def _jit_rounds(node_factory):
    payer, lsp = node_factory.get_nodes(2, opts=[{}, LSP_OPTS])
    node_factory.join_nodes([payer, lsp], wait_for_announce=True, fundamount=10**7)
    for _ in range(3 * ROUNDS + 1):  # one confirmed UTXO per channel open
        lsp.fundwallet(10**7)
    clients = node_factory.get_nodes(ROUNDS, opts={"plugin": PLUGIN})
    plain = node_factory.get_nodes(ROUNDS, opts={"plugin": ACCEPTOR})
    offer_clients = node_factory.get_nodes(ROUNDS, opts={"plugin": PLUGIN})
    jit, floor, bolt12 = [], [], []
    amount = 5_000_000
    for client, other, receiver in zip(clients, plain, offer_clients, strict=True):
        client.connect(lsp)
        other.connect(lsp)
        receiver.connect(lsp)
        offer = receiver.rpc.call("lsps2-buyoffer", {"lsp_id": lsp.info["id"]})["offer"]
        t0 = time.perf_counter()
        invoice = payer.rpc.fetchinvoice(offer=offer, amount_msat=amount)["invoice"]
        payer.rpc.xpay(invstring=invoice)
        bolt12.append(time.perf_counter() - t0)

        buy = client.rpc.call("lsps2-buy", {"lsp_id": lsp.info["id"]})
        t0 = time.perf_counter()
        payer.rpc.xpay(invstring=buy["bolt11"], amount_msat=amount)
        jit.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        res = lsp.rpc.fundchannel(other.info["id"], 100_000, announce=False, mindepth=0,
                                  channel_type=[12, 46, 50])
        _wait_normal(lsp, other.info["id"], res["channel_id"])
        # Like the JIT invoice, the floor's carries one route hint via the
        # LSP, here on the fresh channel's alias.
        chan = lsp.rpc.listpeerchannels(other.info["id"])["channels"][0]
        inv = other.rpc.invoice(amount, f"floor-{len(floor)}", "floor")
        raw = bolt11.decode(inv["bolt11"])
        raw.replace(bolt11.TAG_ROUTE, [bolt11.route_hint_words(
            lsp.info["id"], parse_scid(chan["alias"]["local"]), chan["fee_base_msat"],
            chan["fee_proportional_millionths"], 40)])
        signed = other.rpc.signinvoice(bolt11.encode_unsigned(raw))["bolt11"]
        payer.rpc.xpay(invstring=signed)
        floor.append(time.perf_counter() - t0)
    return jit, floor, bolt12


def _forward_rate(node_factory, lsp_opts):
    payer, lsp, receiver = node_factory.line_graph(3, wait_for_announce=True,
                                                   opts=[{}, lsp_opts, {}])
    invoices = [receiver.rpc.invoice(10_000, f"f{i}", "f")["bolt11"] for i in range(PAYMENTS)]
    payer.rpc.xpay(invstring=receiver.rpc.invoice(10_000, "warm", "w")["bolt11"])
    t0 = time.perf_counter()
    for invstring in invoices:
        payer.rpc.xpay(invstring=invstring)
    return PAYMENTS / (time.perf_counter() - t0)


def test_bench_lsps2_jit(node_factory):
    jit, floor, bolt12 = _jit_rounds(node_factory)
    with_plugin = _forward_rate(node_factory, LSP_OPTS)
    without = _forward_rate(node_factory, {})
    jit_ms = round(statistics.median(jit) * 1000, 1)
    floor_ms = round(statistics.median(floor) * 1000, 1)
    bolt12_ms = round(statistics.median(bolt12) * 1000, 1)
    out = {
        "benchmark": "lsps2_jit",
        "jit_payment": {"rounds": ROUNDS, "median_ms": jit_ms,
                        "all_ms": [round(x * 1000, 1) for x in jit]},
        "floor_zeroconf_open_and_pay": {"rounds": ROUNDS, "median_ms": floor_ms,
                                        "all_ms": [round(x * 1000, 1) for x in floor]},
        "jit_ratio": round(jit_ms / floor_ms, 3), "jit_target_max": 1.3,
        "bolt12_jit_payment": {"rounds": ROUNDS, "median_ms": bolt12_ms,
                               "all_ms": [round(x * 1000, 1) for x in bolt12]},
        "bolt12_vs_bolt11_ratio": round(bolt12_ms / jit_ms, 3), "bolt12_target_max": 1.2,
        "forwards": {"payments": PAYMENTS,
                     "with_plugin_per_s": round(with_plugin, 2),
                     "without_plugin_per_s": round(without, 2),
                     "ratio": round(with_plugin / without, 3), "target_min": 0.9},
        "machine": {"cpus": os.cpu_count()},
    }
    out["meets_targets"] = (out["jit_ratio"] <= 1.3 and out["forwards"]["ratio"] >= 0.9
                            and out["bolt12_vs_bolt11_ratio"] <= 1.2)
    harness.write_result("lsps2_jit", out)


if __name__ == "__main__":
    harness.main(__file__, "lsps2_jit",
                 {"--rounds": "BENCH_ROUNDS", "--payments": "BENCH_PAYMENTS"})

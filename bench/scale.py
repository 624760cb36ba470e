#!/usr/bin/env python3
"""Cost that does not grow with history, on a real LSP node.

Run:  python bench/scale.py [--sizes 10,1000,100000] [--calls N]
Prints one JSON object and writes it to bench/results/scale.json.

The LSP's datastore is filled straight through `datastore` with finished records
(half LSPS2 sessions, half LSPS1 orders, made from the v1 fixtures), to each size in
turn, where the plugin keeps them: in the archive areas its hourly sweep moves them to
(lsps2-sessions-done, lsps1-orders-done). At each size the LSP is restarted and we measure:
- start-up: the plugin's own `init` time (it logs "clnlsp ready ... in N ms");
- lsps2.buy: median latency of `lsps2-buy` from a fresh client (N calls);
- an unrelated forward: median `xpay` time payer -> LSP -> receiver (N payments),
  so the htlc_accepted hook's cost on ordinary traffic;
- lsp-summary: the first call after the restart (it lists the archive once, for the
  rows it keeps) and the median of the next N (adds up every archived row in memory:
  reported, not a target).
Targets: each latency's ratio largest/smallest size <= 1.2; start-up <= 5 s at the
largest size.
"""
import json
import os
import re
import secrets
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

ROOT = os.path.dirname(HERE)
PLUGIN = os.path.join(ROOT, "plugin.py")
SIZES = [int(x) for x in os.environ.get("BENCH_SIZES", "10,1000,100000").split(",")]
CALLS = int(os.environ.get("BENCH_CALLS", "15"))
FIXTURES = os.path.join(ROOT, "tests", "unit", "fixtures", "v1_records.json")
WRITERS = 4

sys.path.insert(0, ROOT)
from lsps.lsps2.service_handler import SESSIONS_DONE as _SESSIONS_DONE  # noqa: E402
from lsps.orders.book import ORDERS_DONE as _ORDERS_DONE  # noqa: E402

SESSIONS_DONE, ORDERS_DONE = _SESSIONS_DONE.name, _ORDERS_DONE.name


def _templates():
    with open(FIXTURES) as f:
        fixtures = json.load(f)
    session = next(json.loads(e["string"]) for e in fixtures["lsps2-sessions"]
                   if json.loads(e["string"])["state"] == "failed")
    order = next(json.loads(e["string"]) for e in fixtures["lsps1-orders"]
                 if json.loads(e["string"])["order_state"] == "FAILED"
                 and not json.loads(e["string"])["onchain"])
    return session, order


def _records(first, count):
    """(area, key, json) of `count` finished records, numbered from `first`."""
    session, order = _templates()
    for i in range(first, first + count):
        if i % 2 == 0:
            scid = f"{20_000_000 + i}x{i % 1000}x0"
            yield SESSIONS_DONE, scid, json.dumps({**session, "scid": scid})
        else:
            order_id = f"bench-{i:08d}"
            bolt11 = {**order["bolt11"], "payment_hash": secrets.token_hex(32),
                      "label": f"clnlsp-lsps1-{order_id}"}
            yield ORDERS_DONE, order_id, json.dumps({**order, "order_id": order_id,
                                                     "bolt11": bolt11})


def _fill(lsp, records):
    from pyln.client import LightningRpc
    records = list(records)
    chunks = [records[i::WRITERS] for i in range(WRITERS)]

    def write(chunk):
        rpc = LightningRpc(lsp.rpc.socket_path)
        for area, key, value in chunk:
            rpc.call("datastore", {"key": ["clnlsp", area, key], "string": value})
    threads = [threading.Thread(target=write, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _startup_ms(lsp):
    start = len(lsp.daemon.logs)
    lsp.restart()   # the ready line may come before lightningd's own "Server started"
    ready = re.compile(r"clnlsp ready .* in (\d+) ms")
    end = time.time() + 120
    while time.time() < end:
        lsp.daemon.logs_catchup()
        for line in lsp.daemon.logs[start:]:
            found = ready.search(line)
            if found:
                return int(found.group(1))
        time.sleep(0.1)
    raise TimeoutError("the plugin never logged it was ready")


def _median_ms(fn, calls):
    times = []
    for i in range(calls):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def test_bench_scale(node_factory, bitcoind):
    payer, lsp, receiver = node_factory.line_graph(
        3, wait_for_announce=True, fundamount=10**7,
        opts=[{"may_reconnect": True},
              {"plugin": PLUGIN, "lsp-service": None, "may_reconnect": True},
              {"may_reconnect": True}])
    clients = node_factory.get_nodes(len(SIZES), opts={"plugin": PLUGIN, "may_reconnect": True})
    results, stored = {}, 0
    for size, client in zip(SIZES, clients, strict=True):
        _fill(lsp, _records(stored, size - stored))
        stored = size
        startup = _startup_ms(lsp)
        for node in (payer, receiver, client):
            node.connect(lsp)
        lsp_id = lsp.info["id"]
        client.rpc.call("lsps2-buy", {"lsp_id": lsp_id})   # warm up
        buy = _median_ms(lambda i, c=client, to=lsp_id: c.rpc.call("lsps2-buy", {"lsp_id": to}),
                         CALLS)
        payer.rpc.xpay(receiver.rpc.invoice(1000, f"warm{size}", "w")["bolt11"])

        def forward(i, size=size):
            payer.rpc.xpay(receiver.rpc.invoice(1000, f"f{size}-{i}", "f")["bolt11"])
        fwd = _median_ms(forward, CALLS)
        first_summary = _median_ms(lambda i: lsp.rpc.call("lsp-summary"), 1)
        summary = _median_ms(lambda i: lsp.rpc.call("lsp-summary"), CALLS)
        results[str(size)] = {"records": size, "startup_ms": startup,
                              "lsps2_buy_median_ms": buy, "forward_median_ms": fwd,
                              "lsp_summary_first_ms": first_summary,
                              "lsp_summary_median_ms": summary}
    first, last = results[str(SIZES[0])], results[str(SIZES[-1])]
    ratios = {k: round(last[k] / first[k], 3)
              for k in ("lsps2_buy_median_ms", "forward_median_ms")}
    out = {"benchmark": "scale", "calls": CALLS, "sizes": results,
           f"ratio_{SIZES[-1]}_vs_{SIZES[0]}": ratios,
           # in memory over every archived row: reported, not a target
           "lsp_summary_median_ratio": round(last["lsp_summary_median_ms"]
                                             / first["lsp_summary_median_ms"], 3),
           "target_ratio_max": 1.2, "target_startup_ms_max": 5000,
           "meets_target": all(r <= 1.2 for r in ratios.values())
           and last["startup_ms"] <= 5000,
           "machine": {"cpus": os.cpu_count()}}
    harness.write_result("scale", out)


if __name__ == "__main__":
    harness.main(__file__, "scale", {"--sizes": "BENCH_SIZES", "--calls": "BENCH_CALLS"})

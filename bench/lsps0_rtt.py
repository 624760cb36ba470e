#!/usr/bin/env python3
"""LSPS0 round trip on two real nodes, next to a bare custommsg ping-pong floor.

Run:  python bench/lsps0_rtt.py [--calls N]
Prints one JSON object and writes it to bench/results/lsps0_rtt.json.

Both paths run in the same pytest session on the same two regtest nodes:
`lsps0-listprotocols` (client plugin -> LSP plugin -> back) and `benchping`
(bench/pingpong_plugin.py on both nodes). Each is measured sequentially and
with 8 concurrent callers. ratio = lsps0 / floor (median latency for the
sequential run, throughput for the concurrent one, inverted so that higher
than 1 always means "slower than the floor"). Target: ratio <= 1.5.
"""
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

ROOT = os.path.dirname(HERE)
CALLS = int(os.environ.get("BENCH_CALLS", "300"))
CONCURRENCY = 8


def _percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _measure(make_rpc, call, calls, workers):
    latencies = []
    lock = threading.Lock()
    per_worker = calls // workers

    def run():
        rpc = make_rpc()
        mine = []
        for _ in range(per_worker):
            t0 = time.perf_counter()
            call(rpc)
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(workers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {
        "calls": len(latencies),
        "median_ms": round(statistics.median(latencies) * 1000, 3),
        "p95_ms": round(_percentile(latencies, 0.95) * 1000, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1),
    }


def test_bench_lsps0_rtt(node_factory):
    from pyln.client import LightningRpc

    pingpong = os.path.join(HERE, "pingpong_plugin.py")
    plugin = os.path.join(ROOT, "plugin.py")
    client, lsp = node_factory.get_nodes(2, opts=[
        {"plugin": [plugin, pingpong]},
        {"plugin": [plugin, pingpong], "lsp-service": None},
    ])
    client.connect(lsp)
    lsp_id = lsp.info["id"]
    socket = client.rpc.socket_path

    def lsps0_call(rpc):
        rpc.call("lsps0-listprotocols", {"lsp_id": lsp_id})

    def floor_call(rpc):
        rpc.call("benchping", {"peer_id": lsp_id})

    def make_rpc():
        return LightningRpc(socket)

    # Warm up both paths (first calls pay for imports and connections).
    for _ in range(20):
        lsps0_call(client.rpc)
        floor_call(client.rpc)

    results = {}
    # Interleave the rounds so machine noise hits both paths alike.
    for name, workers in (("sequential", 1), ("concurrent_8", CONCURRENCY)):
        floor = _measure(make_rpc, floor_call, CALLS, workers)
        lsps0 = _measure(make_rpc, lsps0_call, CALLS, workers)
        if workers == 1:
            ratio = lsps0["median_ms"] / floor["median_ms"]
        else:
            ratio = floor["requests_per_s"] / lsps0["requests_per_s"]
        results[name] = {"lsps0": lsps0, "floor_custommsg_pingpong": floor,
                         "ratio": round(ratio, 3)}

    out = {"benchmark": "lsps0_rtt", "target_ratio_max": 1.5, **results,
           "meets_target": all(r["ratio"] <= 1.5 for r in results.values()),
           "machine": {"cpus": os.cpu_count()}}
    harness.write_result("lsps0_rtt", out)


if __name__ == "__main__":
    harness.main(__file__, "lsps0_rtt", {"--calls": "BENCH_CALLS"})

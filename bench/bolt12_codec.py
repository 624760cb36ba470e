#!/usr/bin/env python3
"""bolt12ext codec throughput, with CLN's `decode` RPC on the same objects as reference.

Run:  python bench/bolt12_codec.py [--iterations N]
Prints one JSON object and writes it to bench/results/bolt12_codec.json.

Two regtest nodes (pyln-testing): the offer and the invoice are made by CLN (`offer`,
`fetchinvoice`), a second offer with a blinded path by the library. Measured in one run:
- library decode (+ BIP340 verification for signed objects) per second, per object;
- CLN `decode` RPC calls per second on the same strings (sequential, one connection);
- library build + sign of static invoices per second, and their decode + verify;
- onion messages: build (1300-byte packet, 2-hop blinded path) and peel per second.
`ratio_lib_vs_cln` > 1 means the library is faster than a `decode` round trip.
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
ITERATIONS = int(os.environ.get("BENCH_ITERATIONS", "2000"))


def _rate(fn, n):
    fn()  # warm up
    start = time.perf_counter()
    for _ in range(n):
        fn()
    elapsed = time.perf_counter() - start
    return round(n / elapsed, 1)


def test_bench_bolt12_codec(node_factory):
    from bolt12ext import blinding, build, encoding, messages, onionmsg
    from bolt12ext.blinding import PaymentHop, PaymentRelay
    from bolt12ext.sphinx import pubkey

    l1, l2 = node_factory.line_graph(2, wait_for_announce=True)
    issuer = os.urandom(32)
    l1_id = bytes.fromhex(l1.info["id"])
    msg_path = blinding.message_path(os.urandom(32), [l1_id, pubkey(issuer)], os.urandom(32))
    objects = {
        "cln_offer": l2.rpc.offer(amount="5000msat", description="bench")["bolt12"],
        "library_offer_with_path": build.offer_string(build.offer(
            offer_issuer_id=pubkey(issuer), offer_paths=[msg_path],
            offer_description="bench")),
    }
    objects["cln_invoice"] = l1.rpc.fetchinvoice(objects["cln_offer"])["invoice"]

    results = {}
    for name, string in objects.items():
        assert messages.decode(string)["valid"] and l1.rpc.decode(string)["valid"]
        lib = _rate(lambda s=string: messages.decode(s), ITERATIONS)
        cln = _rate(lambda s=string: l1.rpc.decode(s), max(ITERATIONS // 4, 50))
        results[name] = {"library_decode_per_s": lib, "cln_decode_rpc_per_s": cln,
                         "ratio_lib_vs_cln": round(lib / cln, 2)}

    hop = PaymentHop(l1_id, "103x1x0", PaymentRelay(40, 1000, 1000))
    pay_path, payinfo = blinding.payment_path(os.urandom(32), [hop], pubkey(issuer),
                                              os.urandom(32), max_cltv_expiry=900_000,
                                              htlc_maximum_msat=10**10)
    offer_data = encoding.decode(objects["library_offer_with_path"])[1]

    def make_static():
        return build.static_invoice(offer_data, issuer, invoice_paths=[pay_path],
                                    invoice_blindedpay=[payinfo],
                                    invoice_created_at=int(time.time()),
                                    invoice_held_htlc_available_paths=[msg_path])
    static = make_static()
    results["static_invoice"] = {
        "bytes": len(static),
        "library_build_sign_per_s": _rate(make_static, ITERATIONS // 2),
        "library_decode_verify_per_s": _rate(lambda: messages.decode_static_invoice(static),
                                             ITERATIONS),
    }

    secret = os.urandom(32)
    path = blinding.message_path(os.urandom(32), [pubkey(secret), pubkey(issuer)], b"p" * 32)
    om = onionmsg.build(os.urandom(32), path, {onionmsg.STATIC_INVOICE: static})
    results["onion_message"] = {
        "payload_bytes": len(static),
        "packet_bytes": len(om.packet),
        "build_per_s": _rate(lambda: onionmsg.build(os.urandom(32), path,
                                                    {onionmsg.STATIC_INVOICE: static}),
                             ITERATIONS // 4),
        "peel_per_s": _rate(lambda: onionmsg.peel(secret, om), ITERATIONS // 4),
    }
    out = {"benchmark": "bolt12_codec", "iterations": ITERATIONS, **results,
           "machine": {"cpus": os.cpu_count()}}
    harness.write_result("bolt12_codec", out)


if __name__ == "__main__":
    harness.main(__file__, "bolt12_codec", {"--iterations": "BENCH_ITERATIONS"})

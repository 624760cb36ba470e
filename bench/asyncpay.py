#!/usr/bin/env python3
"""Onion-message round trips through the plugin's virtual node vs CLN's own, and how
many static invoice requests the server's code serves per second.

Run:  python bench/asyncpay.py [--rounds N] [--requests M]
Prints one JSON object and writes it to bench/results/asyncpay.json.

Two regtest nodes: l1 runs clnlsp as static invoice server; l2 plays the payer with the
bolt12ext library (messages injected at l2, answers caught behind l2 by the om_sink test
plugin, polled every 2 ms). The same payer measures, one request at a time:
- virtual node: an invoice_request on an offer path of l1's server (it ends at l1's
  virtual node and is read from `onionmessage_forward_fail`) until the static invoice
  is back;
- CLN native: an invoice_request for l1's own CLN offer until CLN's invoice is back.
Rounds are 300 ms apart: CLN rate-limits onion messages to one per 250 ms per peer
(it answers faster senders with a warning and drops the message), which also caps what
one peer link can carry. So server capacity is measured in process: for each request,
what the plugin does between lightningd's notification and its two injectonionmessage
calls (peel at the virtual node, path context check, ServerCore.handle, building the
static-invoice reply and the forwarded invoice_request).
"""
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "300"))
RATE_LIMIT_GAP_S = 0.3


def _arrived(node, keys):
    from bolt12ext.sphinx import pubkey
    wanted = {pubkey(k).hex() for k in keys}
    failed = node.rpc.call("om-sink-list")["failed"]
    return {f["next_node_id"] for f in failed if f.get("next_node_id") in wanted}


def _wait_all(node, keys, timeout=60):
    deadline = time.perf_counter() + timeout
    while len(_arrived(node, keys)) < len(keys):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{len(keys) - len(_arrived(node, keys))} answers missing")
        time.sleep(0.002)


def _round_trips(player, path, invreq, rounds):
    from bolt12ext import onionmsg
    times = []
    for _ in range(rounds):
        key, reply = player.reply_path()
        start = time.perf_counter()
        if path.first_node_id == player.node_id:   # CLN may introduce its path by us
            msg = onionmsg.build(os.urandom(32), path, {onionmsg.INVOICE_REQUEST: invreq},
                                 reply)
            player.node.rpc.injectonionmessage(path_key=msg.path_key.hex(),
                                               message=msg.packet.hex())
        else:
            player.send(path, {onionmsg.INVOICE_REQUEST: invreq}, reply)
        _wait_all(player.node, [key])
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(RATE_LIMIT_GAP_S)
    return {"rounds": rounds, "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(sorted(times)[int(0.9 * (len(times) - 1))], 2),
            "min_ms": round(min(times), 2)}


def _server_capacity(requests):
    """Requests per second through the server's code path, in this process."""
    from bolt12ext import asyncmsg, blinding, build, onionmsg, server
    from bolt12ext.blinding import PaymentHop, PaymentRelay
    from bolt12ext.contexts import PathBook
    from bolt12ext.sphinx import pubkey

    now = int(time.time())
    node, issuer = os.urandom(32), os.urandom(32)
    book = PathBook(pubkey(node), os.urandom(32))
    core = server.ServerCore(book)
    somewhere = blinding.message_path(os.urandom(32), [pubkey(os.urandom(32))], b"r" * 32)
    _, rid, rctx = core.recipient_paths("bench", now)
    ask = asyncmsg.OfferPathsRequest(0)
    out = core.handle(rctx, onionmsg.Received(bytes.fromhex(rid), {ask.TYPE: ask.encode()},
                                              somewhere), now, {})
    contexts = dict(out.new_paths)
    offer_paths = asyncmsg.OfferPaths.decode(out.sends[0].contents[onionmsg.OFFER_PATHS])
    offer = build.offer(offer_issuer_id=pubkey(issuer), offer_paths=offer_paths.paths,
                        offer_description="bench")
    hop = PaymentHop(pubkey(node), "103x1x0", PaymentRelay(40, 1000, 1000))
    pay_path, payinfo = blinding.payment_path(os.urandom(32), [hop], pubkey(issuer),
                                              os.urandom(32), 900_000, 10**10)
    inv = build.static_invoice(offer, issuer, invoice_paths=[pay_path],
                               invoice_blindedpay=[payinfo], invoice_created_at=now)
    serve_id = next(k for k, c in contexts.items() if c.purpose == server.SERVE)
    serve = asyncmsg.ServeStaticInvoice(inv, somewhere)
    stored = core.handle(contexts[serve_id], onionmsg.Received(
        bytes.fromhex(serve_id), {serve.TYPE: serve.encode()}, somewhere), now, {}).invoice
    invoices = {stored[0]: stored[1]}

    invreq = build.invoice_request(offer, os.urandom(32), invreq_metadata=b"m" * 16,
                                   invreq_amount_msat=1000)
    arriving = []
    for _ in range(requests):   # what lightningd hands over: the layer for the virtual node
        msg = onionmsg.build(os.urandom(32), offer_paths.paths[0],
                             {onionmsg.INVOICE_REQUEST: invreq}, somewhere)
        arriving.append(onionmsg.peel(node, msg).message)

    start = time.perf_counter()
    for msg in arriving:
        got = onionmsg.peel(book.virtual_secret, msg)
        ctx, why = PathBook.check(contexts, got.path_id, now, server.PURPOSES)
        answer = core.handle(ctx, got, now, invoices)
        assert not why and len(answer.sends) == 2
        for send in answer.sends:
            onionmsg.build(os.urandom(32), send.path, send.contents, send.reply_path)
    elapsed = time.perf_counter() - start
    return {"requests": requests, "served_per_s": round(requests / elapsed, 1)}


def test_bench_asyncpay(node_factory):
    from bolt12ext import blinding, build, encoding
    from bolt12ext.offer import decode_offer
    from bolt12ext.tlv import records
    from tests.node.test_asyncpay import SINK, Player, offer_paths_dance

    l1, l2 = node_factory.line_graph(2, opts=[
        {"plugin": os.path.join(ROOT, "plugin.py"), "lsp-asyncpay-server": None,
         "allow_warning": True},
        {"plugin": SINK, "allow_warning": True}],
        wait_for_announce=True)
    player = Player(l2)
    offer, inv, _, _, persisted_key, _ = offer_paths_dance(l1, player)
    _wait_all(l2, [persisted_key])
    server_path = blinding.parse_paths(dict((t, v) for t, v, _ in records(offer))[16])[0]
    server_invreq = build.invoice_request(offer, os.urandom(32), invreq_metadata=b"b" * 16,
                                          invreq_amount_msat=1000)

    cln_offer = l1.rpc.offer(amount="1000msat", description="bench")["bolt12"]
    fields = decode_offer(cln_offer)
    cln_data = encoding.decode(cln_offer)[1]
    paths = dict((t, v) for t, v, _ in records(cln_data)).get(16)
    if paths:
        cln_path = blinding.parse_paths(paths)[0]
    else:  # CLN's offer names l1 itself: a one-hop path to it, no path_id
        cln_path = blinding.blind(os.urandom(32), [(bytes.fromhex(l1.info["id"]), b"")])
    chains = fields.get("offer_chains")
    cln_invreq = build.invoice_request(cln_data, os.urandom(32), invreq_metadata=b"c" * 16,
                                       invreq_chain=chains[0] if chains else None)

    results = {
        "virtual_node_round_trip": _round_trips(player, server_path, server_invreq, ROUNDS),
        "cln_native_round_trip": _round_trips(player, cln_path, cln_invreq, ROUNDS),
    }
    results["virtual_vs_native_median"] = round(
        results["virtual_node_round_trip"]["median_ms"]
        / results["cln_native_round_trip"]["median_ms"], 2)

    results["static_invoice_requests"] = _server_capacity(REQUESTS)
    results["static_invoice_requests"]["static_invoice_bytes"] = len(inv)
    out = {"benchmark": "asyncpay", **results, "machine": {"cpus": os.cpu_count()}}
    harness.write_result("asyncpay", out)


if __name__ == "__main__":
    harness.main(__file__, "asyncpay", {"--rounds": "BENCH_ROUNDS",
                                        "--requests": "BENCH_REQUESTS"})

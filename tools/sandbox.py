#!/usr/bin/env python3
"""A regtest sandbox for clnlsp: bitcoind and four lightningd nodes running the plugin,
the product's main flows run once with their timings, then the nodes left running for
you to drive with lightning-cli until Ctrl-C.

    python3 tools/sandbox.py            # set up, run the flows, keep running
    python3 tools/sandbox.py --once     # set up, run the flows, clean up (0: all ok)

Nodes: `lsp` (every service on), `client` (a mobile wallet: no channel at start),
`payer` (a channel to the LSP, pays) and `recipient` (an async recipient with a channel
from the LSP, often offline). The flows use only clnlsp's public commands and Core
Lightning's own: read them as examples."""
import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(REPO, "plugin.py")
BINARIES = ("lightningd", "lightning-cli", "bitcoind", "bitcoin-cli")
INSTALL = ("install Core Lightning v26.06 (see https://docs.corelightning.org/docs/installation)"
           " and Bitcoin Core v30 or newer (https://bitcoincore.org/en/download/), then put "
           "lightningd, lightning-cli, bitcoind and bitcoin-cli on PATH")
AMOUNT = 5_000_000   # msat the payer sends in the JIT flows


def check_prerequisites() -> None:
    """Exit 2 with what to install, before anything beyond the stdlib is imported."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        print(f"sandbox: {', '.join(missing)} not found on PATH: {INSTALL}.", file=sys.stderr)
        sys.exit(2)
    try:
        import pyln.client  # noqa: F401
    except ImportError:
        print("sandbox: pyln-client is not installed (a runtime dependency of clnlsp): "
              "pip install -r requirements.txt", file=sys.stderr)
        sys.exit(2)


def load_libraries() -> None:
    """The process helpers (pyln-client) and the README's LSPS5 notification verifier,
    imported once check_prerequisites() has passed."""
    global Bitcoind, Node, SandboxError, WebhookReceiver, free_port, wait_until
    global verify_notification
    sys.path.insert(0, REPO)
    from sandbox_nodes import Bitcoind, Node, SandboxError, WebhookReceiver, free_port, wait_until

    from lsps.lsps5.client import verify_notification


class Sandbox:
    """The directory, bitcoind, the four nodes and the webhook receiver."""

    def __init__(self, root: str):
        self.root, self.nodes, self.order = root, {}, None
        self.bitcoind = self.hooks = self.metrics_port = None
        self.lsp = self.client = self.payer = self.recipient = None


# --- set-up ----------------------------------------------------------------------------

def start_bitcoind(sb) -> str:
    sb.bitcoind = Bitcoind(os.path.join(sb.root, "bitcoind"))
    sb.bitcoind.start()
    return f"block {sb.bitcoind.mine(101)}"   # 101: the first coinbase is spendable


def lsp_options(ca_file: str, metrics_port: int) -> dict:
    return {"lsp-service": None,           # answer LSPS0/1/2/5/7, feature bit 729
            "lsp-asyncpay-server": None,   # keep recipients' static invoices and mailbox
            "lsp-asyncpay-hold": None,     # hold payers' async HTLCs until released
            "lsp-lsps5-ca-file": ca_file,  # trust the sandbox's own webhook CA
            "lsp-metrics-port": metrics_port}   # Prometheus metrics on 127.0.0.1


def start_nodes(sb) -> str:
    sb.hooks = WebhookReceiver(os.path.join(sb.root, "webhook"))
    sb.metrics_port = free_port()
    options = {"lsp": lsp_options(sb.hooks.ca_file, sb.metrics_port), "client": {},
               "payer": {}, "recipient": {}}
    for name, opts in options.items():
        sb.nodes[name] = Node(name, sb.root, sb.bitcoind, PLUGIN, opts)
        setattr(sb, name, sb.nodes[name])
    with ThreadPoolExecutor(len(sb.nodes)) as pool:
        list(pool.map(lambda node: node.start(), sb.nodes.values()))
    return ", ".join(f"{n.name} {n.id[:12]}..." for n in sb.nodes.values())


def synced(sb) -> bool:
    height = sb.bitcoind.height()
    return all(n.rpc.getinfo()["blockheight"] == height for n in sb.nodes.values())


def confirmed_outputs(node) -> int:
    return sum(o["status"] == "confirmed" for o in node.rpc.listfunds()["outputs"])


def fund_and_open_channels(sb) -> str:
    lsp, payer, recipient = sb.lsp, sb.payer, sb.recipient
    # Every open the LSP makes (JIT channels, orders) spends a confirmed output of its own.
    outputs = {lsp.rpc.newaddr("bech32")["bech32"]: 0.05 for _ in range(8)}
    outputs[payer.rpc.newaddr("bech32")["bech32"]] = 0.02
    sb.bitcoind.cli("sendmany", "", json.dumps(outputs))
    sb.bitcoind.mine(1)
    wait_until("the nodes to see their funds", lambda: synced(sb) and confirmed_outputs(
        lsp) == 8 and confirmed_outputs(payer) == 1)
    for node in (payer, sb.client, recipient):
        node.connect(lsp)
    payer.rpc.fundchannel(lsp.id, 1_000_000)
    lsp.rpc.fundchannel(recipient.id, 500_000)   # the async recipient's inbound liquidity
    wait_until("both funding transactions in the mempool",
               lambda: len(sb.bitcoind.cli("getrawmempool")) >= 2)
    sb.bitcoind.mine(1)
    for a, b in ((payer, lsp), (lsp, recipient)):
        wait_until(f"{a.name}-{b.name} channel CHANNELD_NORMAL", lambda a=a, b=b: any(
            c["state"] == "CHANNELD_NORMAL" for c in a.channels_with(b)))
    sb.bitcoind.mine(5)   # announcement depth: payers find the LSP in the graph
    for node in (payer, lsp, recipient):
        wait_until(f"{node.name} to learn both channels from gossip",
                   lambda node=node: len(node.rpc.listchannels()["channels"]) == 4, timeout=90)
    return "payer -> lsp 1000000 sat, lsp -> recipient 500000 sat"


# --- flows -----------------------------------------------------------------------------

def having(result: dict, key: str, value):
    """`result` when its `key` is `value` (for wait_until), else None."""
    return result if result.get(key) == value else None


def claimed_payments(node, offer_id: str) -> list:
    return [p for o in node.call("asyncpay-listoffers")["offers"] if o["offer_id"] == offer_id
            for p in o["payments"] if p["state"] == "claimed"]


def new_channels(node, peer, before: set) -> list:
    return [c for c in node.channels_with(peer) if c["channel_id"] not in before]


def channel_ids(node, peer) -> set:
    return {c["channel_id"] for c in node.channels_with(peer)}


def jit_offer_payment(sb) -> str:
    """LSPS2 over BOLT12: the client, without any channel, hands out an offer; the payer
    pays it with CLN's fetchinvoice + xpay; the LSP opens a JIT channel on the way."""
    lsp, client, payer = sb.lsp, sb.client, sb.payer
    made = client.call("lsps2-buyoffer", {"lsp_id": lsp.id, "description": "sandbox tip"})
    invoice = payer.rpc.fetchinvoice(offer=made["offer"], amount_msat=AMOUNT)["invoice"]
    payer.rpc.xpay(invstring=invoice)
    (payment,) = wait_until("the client to claim the offer's payment",
                            lambda: claimed_payments(client, made["offer_id"]))
    (channel,) = client.channels_with(lsp)
    return (f"{AMOUNT} msat sent, {payment['amount_msat']} received, opening fee "
            f"{payment.get('fee_msat', 0)} msat, JIT channel {channel['total_msat'] // 1000} sat")


def jit_invoice_payment(sb) -> str:
    """LSPS2 with a BOLT11 invoice (no-MPP, any amount): lsps2-buy, the payer's xpay."""
    lsp, client = sb.lsp, sb.client
    before = channel_ids(client, lsp)
    buy = client.call("lsps2-buy", {"lsp_id": lsp.id, "description": "sandbox coffee",
                                    "label": "sandbox-jit"})
    sb.payer.rpc.xpay(invstring=buy["bolt11"], amount_msat=AMOUNT)
    (invoice,) = client.rpc.listinvoices(label="sandbox-jit")["invoices"]
    if invoice["status"] != "paid":
        raise SandboxError(f"the client's invoice is {invoice['status']}, not paid")
    (channel,) = wait_until("the JIT channel", lambda: new_channels(client, lsp, before))
    got = invoice["amount_received_msat"]
    return (f"{AMOUNT} msat sent, {got} received, opening fee {AMOUNT - got} msat, "
            f"JIT channel {channel['total_msat'] // 1000} sat")


def lsps1_order(sb) -> str:
    """LSPS1: the client orders 500000 sat of inbound; the order's hold invoice is paid
    (here by the payer; a wallet would pass pay=bolt11); the LSP opens, then settles."""
    lsp, client = sb.lsp, sb.client
    before = channel_ids(client, lsp)
    order = client.call("lsps1-createorder", {"lsp_id": lsp.id, "lsp_balance_sat": 500_000,
                                              "channel_expiry_blocks": 1000,
                                              "required_channel_confirmations": 0})
    sb.payer.rpc.xpay(invstring=order["payment"]["bolt11"]["invoice"])
    ask = {"lsp_id": lsp.id, "order_id": order["order_id"]}
    wait_until("the order to be COMPLETED", lambda: client.call(
        "lsps1-getorder", ask)["order_state"] == "COMPLETED")
    sb.bitcoind.mine(1)   # zero-conf; LSPS7 extends channels with a short_channel_id
    (channel,) = wait_until("the ordered channel to confirm", lambda: [
        c for c in new_channels(client, lsp, before)
        if c.get("short_channel_id") and c["state"] == "CHANNELD_NORMAL"])
    (view,) = lsp.call("lsps1-service-orders", {"order_id": order["order_id"]})["orders"]
    sb.order = {**order, "short_channel_id": channel["short_channel_id"]}
    return (f"fee {order['payment']['bolt11']['fee_total_sat']} sat, channel "
            f"{channel['short_channel_id']} of {channel['total_msat'] // 1000} sat, "
            f"lease until block {view['lease_expiry_block']}")


def lsps7_extension(sb) -> str:
    """LSPS7: the client extends that channel's lease by 144 blocks; the order's BOLT12
    offer is paid with CLN's fetchinvoice + xpay."""
    lsp, client, payer = sb.lsp, sb.client, sb.payer
    if sb.order is None:
        raise SandboxError("no LSPS1 channel to extend (the LSPS1 flow did not run)")
    # Until the LSP has seen the funding confirm it lists the channel under its alias.
    (entry,) = wait_until("the LSP to list the channel as extendable", lambda: [
        c for c in client.call("lsps7-getextendablechannels", {"lsp_id": lsp.id})[
            "extendable_channels"] if c["short_channel_id"] == sb.order["short_channel_id"]])
    ext = client.call("lsps7-createorder", {"lsp_id": lsp.id,
                                            "short_channel_id": entry["short_channel_id"],
                                            "channel_extension_expiry_blocks": 144})
    invoice = payer.rpc.fetchinvoice(offer=ext["payment"]["bolt12"]["offer"])["invoice"]
    payer.rpc.xpay(invstring=invoice)
    ask = {"lsp_id": lsp.id, "order_id": ext["order_id"]}
    done = wait_until("the extension to be COMPLETED", lambda: having(
        client.call("lsps7-getorder", ask), "order_state", "COMPLETED"))
    if done["new_channel_expiry_block"] != entry["expiration_block"] + 144:
        raise SandboxError(f"lease ends at {done['new_channel_expiry_block']}, expected "
                           f"{entry['expiration_block'] + 144}")
    return (f"lease of {entry['short_channel_id']} from block {entry['expiration_block']} to "
            f"{done['new_channel_expiry_block']}, fee "
            f"{ext['payment']['bolt12']['fee_total_sat']} sat")


def async_payment(sb) -> str:
    """BOLT12 async payment: the recipient leaves an offer with the LSP (its static
    invoice server) and goes offline; the payer's asyncpay-pay is held at the LSP (the
    payer's first hop) until the recipient, back, releases and claims it."""
    lsp, payer, recipient = sb.lsp, sb.payer, sb.recipient
    made = recipient.call("asyncpay-offer", {"server_id": lsp.id, "description": "sandbox tea",
                                             "amount_msat": 100_000})
    recipient.stop()
    wait_until("the LSP to see the recipient gone", lambda: not lsp.connected_to(recipient))
    paid = payer.call("asyncpay-pay", {"offer": made["offer"]})
    if (paid["kind"], paid["state"], paid["held_by"]) != ("static", "pending", lsp.id):
        raise SandboxError(f"expected a static invoice's payment held by the LSP, got {paid}")
    payment_hash = paid["payment_hash"]
    wait_until("the LSP to hold the HTLC", lambda: [
        h for h in lsp.call("asyncpay-held")["held"]
        if h["payment_hash"] == payment_hash and h["htlcs"]])
    wait_until("the LSP's mailbox to keep a message for the recipient",
               lambda: lsp.call("asyncpay-messages")["mailbox"]["waiting"] >= 1)
    held_at = time.monotonic()
    recipient.start()
    wait_until("the recipient, back online, to claim it",
               lambda: claimed_payments(recipient, made["offer_id"]), timeout=90)
    held_for = time.monotonic() - held_at
    status = wait_until("the payer to see the payment complete", lambda: having(
        payer.call("asyncpay-status", {"payment_hash": payment_hash}), "state", "complete"),
        timeout=60)
    return (f"100000 msat held at the LSP, released and claimed {held_for:.1f} s after the "
            f"recipient's restart, preimage {status['payment_preimage'][:16]}...")


def verified_notification(sb, path: str, method: str):
    """A POST of `method` to `path`, checked as a push service would (README, LSPS5)."""
    for p, headers, body in sb.hooks.posts:
        if p == path and json.loads(body)["method"] == method:
            return verify_notification(sb.lsp.id, headers["x-lsps5-timestamp"],
                                       headers["x-lsps5-signature"], body,
                                       int(time.time() * 1000))
    return None


def lsps5_wake(sb) -> str:
    """LSPS5: the client registers a webhook and goes offline; a JIT payment for it
    arrives; the LSP POSTs lsps5.payment_incoming; the sandbox (the push service) starts
    the client again and the held payment completes."""
    lsp, client, path = sb.lsp, sb.client, "/wake/client"
    before = channel_ids(client, lsp)
    buy = client.call("lsps2-buy", {"lsp_id": lsp.id, "amount_msat": 3_000_000,
                                    "description": "sandbox wake-up", "label": "sandbox-wake"})
    client.call("lsps5-setwebhook", {"lsp_id": lsp.id, "app_name": "sandbox wallet",
                                     "webhook": sb.hooks.url(path)})
    wait_until("lsps5.webhook_registered", lambda: verified_notification(
        sb, path, "lsps5.webhook_registered"), timeout=30)
    client.stop()   # the phone is asleep
    wait_until("the LSP to see the client gone", lambda: not lsp.connected_to(client))
    result = {}

    def pay():
        try:
            result["paid"] = sb.payer.rpc.xpay(invstring=buy["bolt11"])
        except Exception as e:   # reported by the main thread
            result["error"] = e
    paying = threading.Thread(target=pay, daemon=True)
    paying.start()
    wait_until("the LSP to POST a signed lsps5.payment_incoming", lambda: verified_notification(
        sb, path, "lsps5.payment_incoming"), timeout=60)
    woken_at = time.monotonic()
    client.start()   # woken: the wallet starts and reconnects
    if not client.connected_to(lsp):
        client.connect(lsp)
    paying.join(timeout=120)
    if paying.is_alive():
        raise SandboxError("the payer's xpay was still running 120 s after the wake-up")
    if "error" in result:
        raise result["error"]
    (invoice,) = client.rpc.listinvoices(label="sandbox-wake")["invoices"]
    if invoice["status"] != "paid":
        raise SandboxError(f"the client's invoice is {invoice['status']}, not paid")
    wait_until("the JIT channel", lambda: new_channels(client, lsp, before))
    return (f"woken by a signed lsps5.payment_incoming, 3000000 msat paid "
            f"{time.monotonic() - woken_at:.1f} s later through a new JIT channel")


def operator_overview(sb) -> str:
    """The LSP operator's view of all that: lsp-summary, and the same figures as a
    Prometheus scrape of lsp-metrics-port."""
    got = sb.lsp.call("lsp-summary")
    jit = got["lsps2"]["jit_channels"]["last_24h"]
    completed = (got["lsps1"]["orders_by_state"]["COMPLETED"],
                 got["lsps7"]["orders_by_state"]["COMPLETED"])
    released = got["asyncpay_hold"]["holds_by_state"]["released"]
    if (jit["count"], completed, released) != (3, (1, 1), 1):
        raise SandboxError(f"lsp-summary disagrees with the flows: {json.dumps(got)}")
    url = f"http://127.0.0.1:{sb.metrics_port}/metrics"
    scraped = urllib.request.urlopen(url, timeout=30).read().decode()
    line = f'clnlsp_lsps2_jit_channels_count{{window="last_24h"}} {float(jit["count"])}'
    if line not in scraped:
        raise SandboxError(f"{url} lacks {line!r}")
    return (f"{jit['count']} JIT channels ({jit['capacity_sat']} sat, on-chain fees "
            f"{jit['onchain_fee_sat']} sat, opening fees earned "
            f"{jit['opening_fees_earned_msat']} msat), 1 order and 1 extension completed, "
            f"1 async HTLC released; {url} agrees")


SETUP = [("Start bitcoind (regtest), mine 101 blocks", start_bitcoind),
         ("Start four lightningd with clnlsp", start_nodes),
         ("Fund wallets, open and announce channels", fund_and_open_channels)]
# BOLT12 JIT first: the client still has no channel, so its offer needs one.
FLOWS = [("LSPS2 JIT payment (BOLT12 offer)", jit_offer_payment),
         ("LSPS2 JIT payment (BOLT11)", jit_invoice_payment),
         ("LSPS1 channel order paid and opened", lsps1_order),
         ("LSPS7 lease extension (paid by offer)", lsps7_extension),
         ("Async payment to an offline recipient", async_payment),
         ("LSPS5 wake-up of an offline client", lsps5_wake),
         ("Operator overview: lsp-summary, metrics", operator_overview)]


def run_steps(sb, steps) -> bool:
    for i, (title, step) in enumerate(steps, 1):
        print(f"[{i:>2}/{len(steps)}] {title} {'.' * (46 - len(title))} ", end="", flush=True)
        started = time.monotonic()
        try:
            detail = step(sb)
        except Exception as e:
            print(f"FAILED {time.monotonic() - started:5.1f} s\n    {type(e).__name__}: {e}",
                  flush=True)
            return False
        print(f"ok {time.monotonic() - started:5.1f} s  {detail}", flush=True)
    return True


def print_how_to_drive(sb) -> None:
    print(f"\nThe sandbox runs in {sb.root} (regtest). Drive each node with:")
    for node in sb.nodes.values():
        print(f"  {node.name:<10} {node.id}\n             {node.cli_line} getinfo")
    print(f"  {'bitcoind':<10} {sb.bitcoind.cli_line} -generate 1")
    print("For example, a JIT invoice the payer pays (and the LSP's view of it):\n"
          f"  {sb.client.cli_line} lsps2-buy {sb.lsp.id}\n"
          f"  {sb.payer.cli_line} xpay <bolt11> 2000000\n"
          f"  {sb.lsp.cli_line} lsps2-service-sessions\n"
          f"How the LSP is doing: {sb.lsp.cli_line} lsp-summary\n"
          f"  and its metrics: curl -s http://127.0.0.1:{sb.metrics_port}/metrics\n"
          f"Logs: {sb.root}/<node>/log. Ctrl-C stops every node.", flush=True)


def clean_up(sb, remove: bool) -> None:
    with ThreadPoolExecutor(max(1, len(sb.nodes))) as pool:
        list(pool.map(lambda node: node.stop(), sb.nodes.values()))
    if sb.bitcoind:
        sb.bitcoind.stop()
    if sb.hooks:
        sb.hooks.close()
    if remove:
        shutil.rmtree(sb.root, ignore_errors=True)
    print(f"Stopped; {sb.root} {'deleted' if remove else 'kept'}.", flush=True)


def interrupted(signum, frame):
    raise KeyboardInterrupt   # SIGINT and SIGTERM: clean up, as after --once


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true",
                        help="exit (cleaning up) right after the flows; 0 when all passed")
    parser.add_argument("--dir", help="work in DIR (new or empty; kept) instead of a fresh "
                                      "temporary directory")
    parser.add_argument("--keep", action="store_true",
                        help="keep the directory (logs, datadirs) at the end")
    args = parser.parse_args(argv)
    check_prerequisites()
    load_libraries()
    if args.dir:
        if os.path.exists(args.dir) and os.listdir(args.dir):
            print(f"sandbox: --dir {args.dir} is not empty", file=sys.stderr)
            return 2
        os.makedirs(args.dir, exist_ok=True)
    root = os.path.abspath(args.dir or tempfile.mkdtemp(prefix="clnlsp-sandbox-"))
    remove = not (args.keep or args.dir)
    for signum in (signal.SIGINT, signal.SIGTERM):   # also when started with SIGINT ignored
        signal.signal(signum, interrupted)
    sb = Sandbox(root)
    ok = False
    try:
        print(f"clnlsp sandbox in {root}", flush=True)
        ok = run_steps(sb, SETUP + FLOWS)
        if not ok:
            print(f"Node logs: {root}/<node>/log"
                  + ("" if not remove else " (rerun with --keep to read them)"), flush=True)
        elif not args.once:
            print_how_to_drive(sb)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("\nInterrupted.", flush=True)
        ok = ok and not args.once
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # let the clean-up finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        clean_up(sb, remove)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

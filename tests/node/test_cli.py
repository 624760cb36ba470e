"""Every command called as the README shows it: lightning-cli with positional
arguments (pyln binds them by position), and the same commands by name elsewhere."""
import json
import subprocess

from pyln.testing.utils import only_one, wait_for
from test_asyncflow import make_offer, topology


def cli(node, *args):
    """lightning-cli <command> <positional args...>, as an operator types it."""
    out = subprocess.run(["lightning-cli", f"--lightning-dir={node.daemon.lightning_dir}",
                          "--network=regtest", *[str(a) for a in args]],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return json.loads(out.stdout)


def test_lsps_commands_positionally(node_factory, plugin_path):
    client, lsp = node_factory.get_nodes(2, opts=[
        {"plugin": plugin_path},
        {"plugin": plugin_path, "lsp-service": None, "lsp-lsps7-extend-any-channel": None}])
    node_factory.join_nodes([client, lsp], wait_for_announce=False)
    lsp_id = lsp.info["id"]

    assert cli(client, "lsps0-listprotocols", lsp_id) == {"protocols": [1, 2, 5, 7]}
    assert "max_channel_expiry_blocks" in cli(client, "lsps1-getinfo", lsp_id)
    order = cli(client, "lsps1-createorder", lsp_id, 500000, 20000, 1000)
    assert (order["lsp_balance_sat"], order["client_balance_sat"],
            order["channel_expiry_blocks"]) == ("500000", "20000", 1000)
    assert cli(client, "lsps1-getorder", lsp_id, order["order_id"])["order_id"] == \
        order["order_id"]
    assert only_one(cli(client, "lsps1-listorders", lsp_id)["orders"])["order_id"] == \
        order["order_id"]
    view = cli(lsp, "lsps1-service-orders", order["order_id"], client.info["id"])
    assert only_one(view["orders"])["peer_id"] == client.info["id"]

    channel = only_one(cli(client, "lsps7-getextendablechannels", lsp_id)[
        "extendable_channels"])
    extension = cli(client, "lsps7-createorder", lsp_id, channel["short_channel_id"], 100)
    assert extension["channel_extension_expiry_blocks"] == 100
    assert cli(client, "lsps7-getorder", lsp_id, extension["order_id"])["order_id"] == \
        extension["order_id"]
    assert only_one(cli(lsp, "lsps7-service-orders", extension["order_id"])["orders"])

    menu = cli(client, "lsps2-getinfo", lsp_id)["opening_fee_params_menu"]
    assert menu and all("promise" in m for m in menu)
    buy = cli(client, "lsps2-buy", lsp_id, 3000000, "coffee", "positional")
    assert buy["label"] == "positional" and buy["opening_fee_msat"] > 0
    decoded = client.rpc.decode(buy["bolt11"])
    assert decoded["amount_msat"] == 3_000_000 and decoded["description"] == "coffee"
    # the invoice handed out is the one lightningd keeps
    assert only_one(client.rpc.listinvoices(invstring=buy["bolt11"])["invoices"])[
        "label"] == "positional"
    assert only_one(cli(client, "lsps2-listbuys")["buys"])["label"] == "positional"
    sessions = cli(lsp, "lsps2-service-sessions", client.info["id"], buy["jit_channel_scid"])
    assert only_one(sessions["sessions"])["jit_channel_scid"] == buy["jit_channel_scid"]
    assert cli(lsp, "lsps2-service-sessions")["sessions"]
    decoded_offer = cli(client, "bolt12ext-decode", client.rpc.offer("1000msat", "x")["bolt12"])
    assert decoded_offer["type"] == "bolt12 offer"


def test_async_commands_positionally(node_factory, plugin_path):
    s, l1, l2, r = topology(node_factory, plugin_path)
    paths = cli(l2, "asyncpay-serverpaths", "someone")
    assert paths["paths"]
    made = cli(r, "asyncpay-offer", l2.info["id"], "tea", 30000)
    assert made["state"] == "ready"
    assert only_one(cli(r, "asyncpay-listoffers")["offers"])["offer_id"] == made["offer_id"]
    assert only_one(cli(l2, "asyncpay-invoices", r.info["id"])["invoices"])["offer"] == \
        made["offer"]
    paid = cli(s, "asyncpay-pay", made["offer"], 30000, "thanks")
    assert paid["state"] == "complete", paid
    assert cli(s, "asyncpay-status", paid["payment_hash"])["state"] == "complete"
    assert "held" in cli(l1, "asyncpay-held")
    assert "virtual_node_id" in cli(l2, "asyncpay-messages")
    cli(r, "asyncpay-forgetoffer", made["offer_id"])
    wait_for(lambda: cli(r, "asyncpay-listoffers")["offers"] == [])
    second = make_offer(r, l2, amount_msat=10_000)
    slot = only_one(cli(l2, "asyncpay-invoices", r.info["id"])["invoices"])["slot"]
    cli(l2, "asyncpay-forget", r.info["id"], slot)
    assert cli(l2, "asyncpay-invoices", r.info["id"])["invoices"] == []
    assert second["offer"].startswith("lno1")

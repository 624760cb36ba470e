"""LSPS2 over BOLT12 on real nodes: JIT channels behind offers.

P (stock CLN, the payer) — L (the LSP) — C (our client, connected to L, no channel).
C's offer is paid by CLN's own tools, `fetchinvoice` then `xpay`. The opening fee
sits in the encrypted relay of L's hop (../shared/notes/lsps2-bolt12.md)."""
import time

import pytest
from pyln.client import RpcError
from pyln.testing.utils import only_one, wait_for
from test_cli import cli
from test_lsps2 import LSP_OPTS, client_channels, jit_topology
from test_money_safety import pay_over_blinded_jit_path

from tests.webhooks import HttpsHooks

FEE_MIN, FEE_PPM = 2000, 10_000   # test_lsps2.LSP_OPTS


def opening_fee(amount):
    return max(FEE_MIN, -(-amount * FEE_PPM // 1_000_000))


def pay_offer(payer, offer, amount=None):
    params = {"offer": offer} if amount is None else {"offer": offer, "amount_msat": amount}
    invoice = payer.rpc.fetchinvoice(**params)["invoice"]
    return payer.rpc.xpay(invstring=invoice), payer.rpc.decode(invoice)


def received(client, offer_id):
    offer = only_one([o for o in client.rpc.call("asyncpay-listoffers")["offers"]
                      if o["offer_id"] == offer_id])
    return offer, [p for p in offer["payments"] if p["state"] == "claimed"]


def test_offer_paid_with_no_channel_opens_one_then_pays_through_it(node_factory, plugin_path):
    payer, lsp, client = jit_topology(node_factory, plugin_path)
    made = cli(client, "lsps2-buyoffer", lsp.info["id"])   # as the README shows it
    assert made["offer"].startswith("lno1") and made["jit"] is True
    assert made["lsp_id"] == lsp.info["id"] and made["purchases"] == []
    assert payer.rpc.decode(made["offer"])["valid"]

    amount = 5_000_000
    paid, invoice = pay_offer(payer, made["offer"], amount)
    assert paid["amount_msat"] == amount
    # The payer was told the path is free; the LSP kept the fee of its relay.
    (path,) = invoice["invoice_paths"]
    assert (path["payinfo"]["fee_base_msat"], path["payinfo"]["fee_proportional_millionths"]) \
        == (0, 0)
    fee = opening_fee(amount)
    (channel,) = client_channels(client, lsp)
    wait_for(lambda: client_channels(client, lsp)[0]["to_us_msat"] == amount - fee)
    offer, (payment,) = received(client, made["offer_id"])
    assert (payment["amount_msat"], payment["fee_msat"]) == (amount - fee, fee)
    (purchase,) = offer["purchases"]
    assert purchase["state"] == "paid" and purchase["opening_fee_msat"] == fee
    assert purchase["jit_channel_id"] == channel["channel_id"]
    (session,) = lsp.rpc.call("lsps2-service-sessions", [client.info["id"]])["sessions"]
    assert session["kind"] == "bolt12" and session["state"] == "done"
    assert session["opening_fee_msat"] == fee
    buys = client.rpc.call("lsps2-listbuys")["buys"]
    assert [(b["kind"], b["offer_id"]) for b in buys] == [("bolt12", made["offer_id"])]

    # The same offer again: through the channel, no fee, no second channel.
    second = 1_000_000
    pay_offer(payer, made["offer"], second)
    wait_for(lambda: len(received(client, made["offer_id"])[1]) == 2)
    _, payments = received(client, made["offer_id"])
    assert payments[1]["amount_msat"] == second and "fee_msat" not in payments[1]
    assert len(client_channels(client, lsp)) == 1
    assert len(received(client, made["offer_id"])[0]["purchases"]) == 1


def test_fixed_amount_offer_by_name(node_factory, plugin_path):
    payer, lsp, client = jit_topology(node_factory, plugin_path)
    amount = 3_000_000
    made = client.rpc.call("lsps2-buyoffer", {"lsp_id": lsp.info["id"], "amount_msat": amount,
                                              "description": "coffee",
                                              "max_fee_msat": opening_fee(amount)})
    decoded = payer.rpc.decode(made["offer"])
    assert decoded["offer_amount_msat"] == amount and decoded["offer_description"] == "coffee"
    pay_offer(payer, made["offer"])
    wait_for(lambda: received(client, made["offer_id"])[1])
    _, (payment,) = received(client, made["offer_id"])
    assert payment["amount_msat"] == amount - opening_fee(amount)


def test_an_htlc_whose_skim_is_below_the_fee_opens_nothing(node_factory, plugin_path):
    """A payer (or a client that built its own path) whose relay leaves the LSP less
    than the opening fee: failed at the LSP, no channel; the honest invoice still pays."""
    payer, lsp, client = jit_topology(node_factory, plugin_path)
    made = cli(client, "lsps2-buyoffer", lsp.info["id"])
    amount = 5_000_000
    invoice = payer.rpc.fetchinvoice(offer=made["offer"], amount_msat=amount)["invoice"]
    (purchase,) = client.rpc.call("lsps2-listbuys")["buys"]
    payment_hash = pay_over_blinded_jit_path(payer, lsp, client, purchase, amount,
                                             opening_fee(amount) - 1)
    with pytest.raises(RpcError):
        payer.rpc.waitsendpay(payment_hash, timeout=60)
    assert not lsp.daemon.is_in_log(r"plugin-spenderp: mfc")   # no fundchannel ran
    assert client_channels(client, lsp) == []
    (session,) = lsp.rpc.call("lsps2-service-sessions")["sessions"]
    assert session["state"] == "waiting"
    assert payer.rpc.xpay(invstring=invoice)["amount_msat"] == amount
    assert len(client_channels(client, lsp)) == 1


def test_a_purchase_too_old_for_an_invoice_is_replaced_by_a_fresh_one(node_factory, plugin_path):
    # valid_until 125 s ahead: an invoice lives 65 s and a purchase with less than
    # 120 s left is not used for another one.
    payer, lsp, client = jit_topology(node_factory, plugin_path,
                                      lsp_opts={"lsp-lsps2-valid-for": 125})
    made = cli(client, "lsps2-buyoffer", lsp.info["id"], 2_000_000)
    first = payer.rpc.fetchinvoice(offer=made["offer"])["invoice"]
    (old,) = client.rpc.call("lsps2-listbuys")["buys"]
    time.sleep(payer.rpc.decode(first)["invoice_relative_expiry"] + 1)   # never paid
    pay_offer(payer, made["offer"])
    wait_for(lambda: received(client, made["offer_id"])[1])
    purchases = received(client, made["offer_id"])[0]["purchases"]
    assert [p["jit_channel_scid"] == old["jit_channel_scid"] for p in purchases] == \
        [True, False]
    assert [p["state"] for p in purchases] == ["waiting", "paid"]
    assert len(client_channels(client, lsp)) == 1


def async_jit_topology(node_factory, plugin_path, ca_file=None):
    """S — L1 — L2 with channels; R is connected to L2 only (no channel at all). L1 holds
    S's HTLCs; L2 keeps R's static invoice and mailbox and sells JIT channels."""
    s, l1, l2, r = node_factory.get_nodes(4, opts=[
        {"plugin": plugin_path, "may_reconnect": True},
        {"plugin": plugin_path, "may_reconnect": True, "lsp-service": None,
         "lsp-asyncpay-hold": None},
        {"plugin": plugin_path, "may_reconnect": True, "lsp-asyncpay-server": None,
         **LSP_OPTS, "lsp-lsps2-valid-for": 86400,
         **({"lsp-lsps5-ca-file": ca_file} if ca_file else {})},
        {"plugin": plugin_path, "may_reconnect": True}])
    node_factory.join_nodes([s, l1, l2], wait_for_announce=True)
    l2.fundwallet(10**7)
    r.connect(l2)
    wait_for(lambda: len(r.rpc.listchannels()["channels"]) == 4)   # R knows the graph
    return s, l1, l2, r


def test_offline_recipient_without_a_channel_is_paid_through_a_jit_channel(node_factory,
                                                                         plugin_path,
                                                                         tmp_path):
    hooks = HttpsHooks(tmp_path)   # R's wallet asks L2 to wake it (LSPS5)
    s, l1, l2, r = async_jit_topology(node_factory, plugin_path, hooks.ca_file)
    r.rpc.call("lsps5-setwebhook", [l2.info["id"], "wallet", hooks.url("/r")])
    made = r.rpc.call("asyncpay-offer", [l2.info["id"], "coffee"])   # no amount: any
    assert made["state"] == "ready" and made["jit"] is True
    (purchase,) = made["purchases"]
    assert purchase["state"] == "waiting"
    (stored,) = l2.rpc.call("asyncpay-invoices", [r.info["id"]])["invoices"]
    invoice = l2.rpc.call("bolt12ext-decode", [stored["invoice"]])
    # one path per fee segment, the payer told each is free
    assert [(p["fee_base_msat"], p["fee_proportional_millionths"])
            for p in invoice["invoice_blindedpay"]] == [(0, 0), (0, 0)]
    r.stop()

    amount = 5_000_000
    paid = s.rpc.call("asyncpay-pay", {"offer": made["offer"], "amount_msat": amount})
    assert paid["kind"] == "static" and paid["held_by"] == l1.info["id"]
    payment_hash = paid["payment_hash"]
    wait_for(lambda: l2.rpc.call("asyncpay-messages")["mailbox"]["waiting"] >= 1)
    wait_for(lambda: "lsps5.onion_message_incoming" in hooks.methods())
    hooks.close()
    l2.restart()   # the LSP restarts while the payment is held
    assert l2.rpc.call("asyncpay-messages")["mailbox"]["waiting"] >= 1

    r.start()   # reconnects to L2, gets the held_htlc_available, releases
    wait_for(lambda: received(r, made["offer_id"])[1], timeout=90)
    _, (payment,) = received(r, made["offer_id"])
    fee = opening_fee(amount)
    # A static invoice's relay covers the fee of any amount: the LSP keeps its fee and
    # at most 1 ppm of the amount and 3 msat more.
    assert payment["kind"] == "static"
    assert fee <= payment["fee_msat"] <= fee + amount // 1_000_000 + 3
    assert payment["amount_msat"] == amount - payment["fee_msat"]
    # (lightningd shows the balance once the commitment is done, after the claim)
    wait_for(lambda: only_one(client_channels(r, l2))["to_us_msat"] == payment["amount_msat"])
    (session,) = l2.rpc.call("lsps2-service-sessions", [r.info["id"]])["sessions"]
    assert session["kind"] == "bolt12" and session["opening_fee_msat"] == fee
    wait_for(lambda: s.rpc.call("asyncpay-status", [payment_hash])["state"] == "complete")


def test_our_async_payer_pays_a_jit_offer_too(node_factory, plugin_path):
    payer, lsp, client = node_factory.get_nodes(3, opts=[
        {"plugin": plugin_path}, {"plugin": plugin_path, **LSP_OPTS}, {"plugin": plugin_path}])
    node_factory.join_nodes([payer, lsp], wait_for_announce=True)
    lsp.fundwallet(10**7)
    client.connect(lsp)
    made = client.rpc.call("lsps2-buyoffer", [lsp.info["id"], 2_000_000, "tea"])
    paid = payer.rpc.call("asyncpay-pay", [made["offer"]])
    assert paid["kind"] == "invoice" and paid["state"] == "complete", paid
    _, (payment,) = received(client, made["offer_id"])
    assert payment["amount_msat"] == 2_000_000 - opening_fee(2_000_000)
    assert len(client_channels(client, lsp)) == 1

"""Async payments end to end on real nodes: S — L1 — L2 — R, all running clnlsp.

S pays; L1 is S's LSP and holds HTLCs (--lsp-asyncpay-hold); L2 is R's LSP and keeps
R's static invoices and mailbox (--lsp-asyncpay-server); R is the often-offline
recipient. Channels are funded left to right, so payments flow from S to R."""
import hashlib

import pytest
from pyln.client import RpcError
from pyln.testing.utils import wait_for

from bolt12ext import build


def topology(node_factory, plugin_path, hold_margin=12):
    opts = [
        {"plugin": plugin_path, "may_reconnect": True},
        {"plugin": plugin_path, "may_reconnect": True, "lsp-service": None,
         "lsp-asyncpay-hold": None, "lsp-asyncpay-hold-margin": hold_margin},
        {"plugin": plugin_path, "may_reconnect": True, "lsp-service": None,
         "lsp-asyncpay-server": None},
        {"plugin": plugin_path, "may_reconnect": True},
    ]
    return node_factory.line_graph(4, opts=opts, wait_for_announce=True)


def make_offer(r, l2, amount_msat=100_000):
    made = r.rpc.call("asyncpay-offer", {"server_id": l2.info["id"],
                                         "description": "coffee", "amount_msat": amount_msat})
    assert made["state"] == "ready" and made["offer"].startswith("lno1")
    (stored,) = l2.rpc.call("asyncpay-invoices", {"recipient_id": r.info["id"]})["invoices"]
    assert stored["offer"] == made["offer"]
    return made


def held_at(l1, payment_hash):
    return [h for h in l1.rpc.call("asyncpay-held")["held"]
            if h["payment_hash"] == payment_hash]


def test_recipient_offline_payment_held_released_and_claimed(node_factory, plugin_path):
    s, l1, l2, r = topology(node_factory, plugin_path)
    offer = make_offer(r, l2)
    # CLN itself reads the offer the recipient built.
    decoded = s.rpc.decode(offer["offer"])
    assert decoded["valid"] and decoded["offer_amount_msat"] == 100_000
    r.stop()

    paid = s.rpc.call("asyncpay-pay", {"offer": offer["offer"]})
    assert paid["kind"] == "static" and paid["state"] == "pending"
    assert paid["held_by"] == l1.info["id"] and paid["held_htlc_available_sent"] >= 1
    payment_hash = paid["payment_hash"]
    wait_for(lambda: held_at(l1, payment_hash) and held_at(l1, payment_hash)[0]["htlcs"])
    (hold,) = held_at(l1, payment_hash)
    assert hold["state"] == "held" and hold["peer_id"] == s.info["id"]
    assert hold["htlcs"][0]["amount_msat"] > 100_000
    wait_for(lambda: l2.rpc.call("asyncpay-messages")["mailbox"]["waiting"] >= 1)

    # The sender goes away; its LSP and the recipient's LSP restart with everything pending.
    s.stop()
    l1.restart()
    l2.restart()
    wait_for(lambda: held_at(l1, payment_hash)[0]["htlcs"])
    assert l2.rpc.call("asyncpay-messages")["mailbox"]["waiting"] >= 1

    # The recipient comes back: the mailbox delivers, R releases, L1 forwards, R claims.
    r.start()
    wait_for(lambda: any(p["state"] == "claimed" for o in
                         r.rpc.call("asyncpay-listoffers")["offers"] for p in o["payments"]),
             timeout=90)
    (mine,) = r.rpc.call("asyncpay-listoffers")["offers"]
    assert mine["releases_sent"] >= 1
    assert mine["payments"][0]["kind"] == "static"
    wait_for(lambda: held_at(l1, payment_hash)[0]["state"] == "released")
    wait_for(lambda: l1.rpc.listforwards(status="settled")["forwards"])

    # The sender comes back and learns the payment is done, with its preimage.
    s.start()
    wait_for(lambda: s.rpc.call("asyncpay-status",
                                {"payment_hash": payment_hash})["state"] == "complete",
             timeout=60)
    status = s.rpc.call("asyncpay-status", {"payment_hash": payment_hash})
    assert hashlib.sha256(bytes.fromhex(status["payment_preimage"])).hexdigest() == payment_hash


def test_online_recipient_answers_with_a_normal_invoice(node_factory, plugin_path):
    s, l1, l2, r = topology(node_factory, plugin_path)
    offer = make_offer(r, l2, amount_msat=50_000)
    paid = s.rpc.call("asyncpay-pay", {"offer": offer["offer"], "payer_note": "thanks"})
    assert paid["kind"] == "invoice", paid
    assert paid["state"] == "complete" and paid["held_by"] is None
    assert hashlib.sha256(bytes.fromhex(paid["payment_preimage"])).hexdigest() \
        == paid["payment_hash"]
    (mine,) = r.rpc.call("asyncpay-listoffers")["offers"]
    assert mine["invoices_issued"] >= 1
    assert [p["state"] for p in mine["payments"]] == ["claimed"]
    assert held_at(l1, paid["payment_hash"]) == []


def test_held_payment_failed_before_expiry_when_recipient_never_returns(node_factory,
                                                                        plugin_path,
                                                                        bitcoind):
    s, l1, l2, r = topology(node_factory, plugin_path, hold_margin=150)
    offer = make_offer(r, l2)
    r.stop()
    paid = s.rpc.call("asyncpay-pay", {"offer": offer["offer"]})
    payment_hash = paid["payment_hash"]
    wait_for(lambda: held_at(l1, payment_hash) and held_at(l1, payment_hash)[0]["htlcs"])
    expiry = held_at(l1, payment_hash)[0]["htlcs"][0]["cltv_expiry"]
    height = l1.rpc.getinfo()["blockheight"]
    assert expiry - 150 > height
    bitcoind.generate_block(expiry - 150 - height)
    wait_for(lambda: held_at(l1, payment_hash)[0]["state"] == "failed")
    wait_for(lambda: s.rpc.call("asyncpay-status",
                                {"payment_hash": payment_hash})["state"] == "failed")
    # Nothing stuck: no HTLC left on L1's channels, the channels still up.
    wait_for(lambda: all(not c["htlcs"] for c in l1.rpc.listpeerchannels()["channels"]))
    assert all(c["state"] == "CHANNELD_NORMAL" for c in l1.rpc.listpeerchannels()["channels"])


def test_async_commands_check_their_parameters(node_factory, plugin_path):
    s, l1, l2, r = topology(node_factory, plugin_path)
    for method, params in (("asyncpay-offer", {"server_id": "02ab"}),
                           ("asyncpay-offer", {"server_id": l2.info["id"], "amount_msat": 0}),
                           ("asyncpay-pay", {"offer": "lnbc1xyz"}),
                           ("asyncpay-status", {"payment_hash": "00" * 32}),
                           ("asyncpay-forgetoffer", {"offer_id": "nope"})):
        with pytest.raises(RpcError) as err:
            s.rpc.call(method, params)
        assert err.value.error["code"] == -32602, (method, err.value.error)
    with pytest.raises(RpcError) as err:
        s.rpc.call("asyncpay-held")
    assert err.value.error["code"] == 1602
    # A server that does not serve static invoices says so over LSPS0.
    with pytest.raises(RpcError) as err:
        s.rpc.call("asyncpay-offer", {"server_id": l1.info["id"]})
    assert "method not found" in err.value.error["message"], err.value.error
    # An offer without blinded paths is refused with a clear error.
    plain = build.offer_string(build.offer(offer_issuer_id=bytes.fromhex(r.info["id"]),
                                           offer_description="no paths",
                                           offer_amount_msat=1000))
    with pytest.raises(RpcError) as err:
        s.rpc.call("asyncpay-pay", {"offer": plain})
    assert err.value.error["code"] == 1601 and "blinded paths" in err.value.error["message"]


def test_paying_a_cln_offer(node_factory, plugin_path):
    """The payer speaks plain BOLT12 too: CLN's own offer, CLN's invoice, our onion."""
    s, l1, l2, r = topology(node_factory, plugin_path)
    offer = r.rpc.offer("20000msat", "cln offer")
    paid = s.rpc.call("asyncpay-pay", {"offer": offer["bolt12"]})
    assert paid["kind"] == "invoice" and paid["state"] == "complete", paid
    (invoice,) = r.rpc.listinvoices(offer_id=offer["offer_id"])["invoices"]
    assert invoice["status"] == "paid" and invoice["payment_hash"] == paid["payment_hash"]

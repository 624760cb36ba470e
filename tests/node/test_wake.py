"""LSPS5 on real nodes: webhooks set, replaced, listed and removed over LSPS0 with every
error; notifications POSTed over real HTTPS (a test CA the LSP is told of), signed by
the LSP's node key (CLN's checkmessage agrees); a client that is away is woken when a
JIT payment for it arrives, once per cooldown, and the payment completes when it comes
back."""
import json
import threading
import time

import pytest
from pyln.client import RpcError
from pyln.testing.utils import only_one, sync_blockheight, wait_for
from test_asyncflow import held_at, make_offer
from test_cli import cli
from test_lsps2 import LSP_OPTS, client_channels, received_msat

from lsps.lsps5 import msgs as M
from lsps.lsps5.client import cln_signed, signer_of, verify_notification
from tests.webhooks import HttpsHooks


@pytest.fixture
def hooks(tmp_path):
    made = HttpsHooks(tmp_path)
    yield made
    made.close()


def lsps5_pair(node_factory, plugin_path, hooks, **lsp_opts):
    payer, lsp, client = node_factory.get_nodes(3, opts=[
        {"may_reconnect": True},
        {"plugin": plugin_path, **LSP_OPTS, "lsp-lsps5-ca-file": hooks.ca_file,
         "may_reconnect": True, **lsp_opts},
        {"plugin": plugin_path, "may_reconnect": True}])
    node_factory.join_nodes([payer, lsp], wait_for_announce=True)
    for _ in range(2):   # one confirmed input per JIT open
        lsp.fundwallet(10**7)
    client.connect(lsp)
    return payer, lsp, client


def lsps5_error(client, method, params):
    with pytest.raises(RpcError) as e:
        client.rpc.call(method, params)
    assert e.value.error["code"] == 1003, e.value.error   # the LSP answered an error
    return e.value.error["data"]


def test_webhooks_set_replace_list_remove_and_every_error(node_factory, plugin_path, hooks):
    _, lsp, client = lsps5_pair(node_factory, plugin_path, hooks, **{"lsp-lsps5-max-webhooks": 2})
    lsp_id = lsp.info["id"]
    assert 5 in cli(client, "lsps0-listprotocols", lsp_id)["protocols"]
    url = hooks.url("/push?c=1")
    assert cli(client, "lsps5-setwebhook", lsp_id, "wallet", url) == {
        "num_webhooks": 1, "max_webhooks": 2, "no_change": False}
    assert cli(client, "lsps5-setwebhook", lsp_id, "wallet", url)["no_change"] is True
    client.rpc.call("lsps5-setwebhook", {"lsp_id": lsp_id, "app_name": "other",
                                         "webhook": hooks.url("/other")})
    assert lsps5_error(client, "lsps5-setwebhook", [lsp_id, "third", url])["code"] == \
        M.TOO_MANY_WEBHOOKS
    for name, webhook, code in (("x" * 65, url, M.TOO_LONG),
                                ("wallet", "http://127.0.0.1/", M.UNSUPPORTED_PROTOCOL),
                                ("wallet", "not a url", M.URL_PARSE_ERROR)):
        assert lsps5_error(client, "lsps5-setwebhook", [lsp_id, name, webhook])["code"] == code
    assert cli(client, "lsps5-listwebhooks", lsp_id) == {"app_names": ["other", "wallet"],
                                                         "max_webhooks": 2}
    assert lsps5_error(client, "lsps5-removewebhook", [lsp_id, "nope"])["code"] == \
        M.APP_NAME_NOT_FOUND
    assert cli(client, "lsps5-removewebhook", lsp_id, "other") == {"removed": "other"}
    lsp.restart()   # persisted
    client.connect(lsp)
    assert client.rpc.call("lsps5-listwebhooks", [lsp_id])["app_names"] == ["wallet"]
    view = cli(lsp, "lsps5-service-webhooks", client.info["id"])
    assert only_one(view["clients"])["webhooks"] == [{"app_name": "wallet", "webhook": url}]
    # the two new webhooks got lsps5.webhook_registered, once each, and nothing else
    wait_for(lambda: len(hooks.seen) == 2)
    assert sorted(p for _, p, _, _ in hooks.seen) == ["/other", "/push?c=1"]
    assert hooks.methods() == [M.WEBHOOK_REGISTERED] * 2


def test_notifications_are_signed_by_the_lsp_node_key(node_factory, plugin_path, hooks):
    _, lsp, client = lsps5_pair(node_factory, plugin_path, hooks)
    client.rpc.call("lsps5-setwebhook", [lsp.info["id"], "wallet", hooks.url("/w")])
    wait_for(lambda: hooks.seen)
    ((method, path, headers, body),) = hooks.seen
    assert method == "POST" and body == M.notification(M.WEBHOOK_REGISTERED)
    stamp, signature = headers[M.TIMESTAMP_HEADER], headers[M.SIGNATURE_HEADER]
    checked = client.rpc.checkmessage(M.signed_message(stamp, body), signature,
                                      lsp.info["id"])
    assert checked["verified"] is True
    assert verify_notification(lsp.info["id"], stamp, signature, body,
                               int(time.time() * 1000))["method"] == M.WEBHOOK_REGISTERED
    # The CLN trap (README "LSPS5 signatures"): signmessage signed the JSON-escaped text,
    # not the bLIP-55 bytes. When this fails, CLN signs the spec's message: drop the
    # escaped form.
    message = M.signed_message(stamp, body)
    assert signer_of(cln_signed(message), signature).hex() == lsp.info["id"]
    assert signer_of(message, signature).hex() != lsp.info["id"]


def test_a_client_that_is_away_is_woken_once_and_paid_when_it_returns(node_factory,
                                                                   plugin_path, hooks):
    payer, lsp, client = lsps5_pair(node_factory, plugin_path, hooks)
    lsp_id = lsp.info["id"]
    first = client.rpc.call("lsps2-buy", [lsp_id, None, "one", "one"])
    second = client.rpc.call("lsps2-buy", [lsp_id, None, "two", "two"])
    client.rpc.call("lsps5-setwebhook", [lsp_id, "wallet", hooks.url("/wake")])
    wait_for(lambda: hooks.methods() == [M.WEBHOOK_REGISTERED])
    client.rpc.disconnect(lsp_id, force=True)
    wait_for(lambda: not lsp.rpc.listpeers(client.info["id"])["peers"]
             or not only_one(lsp.rpc.listpeers(client.info["id"])["peers"])["connected"])

    results = []
    threads = [threading.Thread(target=lambda b=b: results.append(
        payer.rpc.xpay(invstring=b["bolt11"], amount_msat=3_000_000))) for b in (first, second)]
    threads[0].start()
    wait_for(lambda: hooks.methods() == [M.WEBHOOK_REGISTERED, M.PAYMENT_INCOMING])
    threads[1].start()   # another payment within the cooldown: no second notification
    wait_for(lambda: lsp.daemon.is_in_log(r"lsps2: .*" + second["jit_channel_scid"])
             or len(lsp.rpc.call("lsps2-service-sessions", [client.info["id"]])["sessions"]) == 2)
    time.sleep(2)
    assert hooks.methods() == [M.WEBHOOK_REGISTERED, M.PAYMENT_INCOMING]
    client.connect(lsp)   # the wallet, woken, comes back: the held payments go through
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 2
    assert received_msat(client, "one")[0] == "paid" and received_msat(client, "two")[0] == "paid"
    assert len(client_channels(client, lsp)) == 2
    view = lsp.rpc.call("lsps5-service-webhooks")
    assert view["notifications_sent"] == {M.WEBHOOK_REGISTERED: 1, M.PAYMENT_INCOMING: 1}
    assert view["deliveries"]["delivered"] == 2


def test_an_absent_sender_is_warned_before_its_held_htlc_expires(node_factory, plugin_path,
                                                                  hooks, bitcoind):
    """S's async payment is held at its LSP L1 (R is away); S goes away too. Within 24
    blocks of the held HTLC's expiry L1 wakes S with lsps5.expiry_soon."""
    opts = [{"plugin": plugin_path, "may_reconnect": True},
            {"plugin": plugin_path, "may_reconnect": True, "lsp-service": None,
             "lsp-asyncpay-hold": None, "lsp-asyncpay-hold-margin": 12,
             "lsp-lsps5-ca-file": hooks.ca_file},
            {"plugin": plugin_path, "may_reconnect": True, "lsp-service": None,
             "lsp-asyncpay-server": None},
            {"plugin": plugin_path, "may_reconnect": True}]
    s, l1, l2, r = node_factory.line_graph(4, opts=opts, wait_for_announce=True)
    offer = make_offer(r, l2)
    r.stop()
    s.rpc.call("lsps5-setwebhook", [l1.info["id"], "wallet", hooks.url("/s")])
    wait_for(lambda: hooks.methods() == [M.WEBHOOK_REGISTERED])
    paid = s.rpc.call("asyncpay-pay", {"offer": offer["offer"]})
    wait_for(lambda: held_at(l1, paid["payment_hash"])
             and held_at(l1, paid["payment_hash"])[0]["htlcs"])
    expiry = held_at(l1, paid["payment_hash"])[0]["htlcs"][0]["cltv_expiry"]
    s.stop()
    height = l1.rpc.getinfo()["blockheight"]
    bitcoind.generate_block(expiry - 25 - height)
    sync_blockheight(bitcoind, [l1])
    time.sleep(2)
    assert hooks.methods() == [M.WEBHOOK_REGISTERED]   # 25 blocks left: not yet
    bitcoind.generate_block(1)
    wait_for(lambda: hooks.methods() == [M.WEBHOOK_REGISTERED, M.EXPIRY_SOON])
    _, _, _, body = hooks.seen[-1]
    assert json.loads(body)["params"] == {"timeout": expiry}


def test_a_webhook_that_never_answers_delays_nobody(node_factory, plugin_path, hooks):
    """Client A's webhook accepts the connection and never answers; A is away and a JIT
    payment for it is held. Client B's payment goes through meanwhile, and B's own
    notification is delivered, while A's POST still hangs."""
    import socket
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)   # the TLS handshake never completes
    payer, lsp, a = lsps5_pair(node_factory, plugin_path, hooks,
                               **{"lsp-lsps5-timeout": 120})
    b = node_factory.get_node(may_reconnect=True, options={"plugin": plugin_path})
    b.connect(lsp)
    lsp_id = lsp.info["id"]
    held = a.rpc.call("lsps2-buy", [lsp_id, None, "a", "a"])
    a.rpc.call("lsps5-setwebhook",
               [lsp_id, "wallet", f"https://127.0.0.1:{silent.getsockname()[1]}/a"])
    a.rpc.disconnect(lsp_id, force=True)
    def pay_held():   # never completes here: A does not come back
        try:
            payer.rpc.xpay(invstring=held["bolt11"], amount_msat=2_000_000)
        except RpcError:
            pass
    threading.Thread(target=pay_held, daemon=True).start()
    wait_for(lambda: lsp.rpc.call("lsps5-service-webhooks")["notifications_sent"].get(
        M.PAYMENT_INCOMING) == 1)
    quick = b.rpc.call("lsps2-buy", [lsp_id, 2_000_000, "b", "b"])
    b.rpc.call("lsps5-setwebhook", [lsp_id, "wallet", hooks.url("/b")])
    assert payer.rpc.xpay(invstring=quick["bolt11"])["amount_msat"] == 2_000_000
    wait_for(lambda: hooks.methods("/b") == [M.WEBHOOK_REGISTERED])
    deliveries = lsp.rpc.call("lsps5-service-webhooks")["deliveries"]
    assert deliveries.get("failed", 0) == 0   # A's first POST still hangs
    silent.close()


def test_a_woken_client_that_does_not_come_back_in_the_wake_timeout_gets_nothing_opened(
        node_factory, plugin_path, hooks):
    """lsp-lsps5-wake-timeout 5: the away client is woken, stays away; the held payment
    is failed back after the wake timeout (the payer's xpay fails) and no channel opens.
    Back, its next payment goes through."""
    payer, lsp, client = lsps5_pair(node_factory, plugin_path, hooks,
                                    **{"lsp-lsps5-wake-timeout": 5})
    lsp_id = lsp.info["id"]
    bought = client.rpc.call("lsps2-buy", [lsp_id, 2_000_000, "late", "late"])
    client.rpc.call("lsps5-setwebhook", [lsp_id, "wallet", hooks.url("/wake")])
    client.rpc.disconnect(lsp_id, force=True)
    wait_for(lambda: not lsp.rpc.listpeers(client.info["id"])["peers"]
             or not only_one(lsp.rpc.listpeers(client.info["id"])["peers"])["connected"])
    with pytest.raises(RpcError):
        payer.rpc.xpay(invstring=bought["bolt11"], retry_for=12)
    session = only_one(lsp.rpc.call("lsps2-service-sessions", [client.info["id"]])["sessions"])
    assert "wake timeout" in session["failures"][0]["reason"]
    assert M.PAYMENT_INCOMING in hooks.methods()
    assert client_channels(client, lsp) == []
    client.connect(lsp)
    again = client.rpc.call("lsps2-buy", [lsp_id, 2_000_000, "back", "back"])
    assert payer.rpc.xpay(invstring=again["bolt11"])["amount_msat"] == 2_000_000

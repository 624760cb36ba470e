"""LSPS5 at run time: webhooks persisted before the answer, webhook_registered to the
new webhook only and first, notifications only to clients that are away, once per
method per cooldown, retention, and the HTTPS delivery itself (a real TLS server on
127.0.0.1 with a test CA): headers, exact body, signature, no redirects, a dead or
slow webhook delaying only itself."""
import http.server
import json
import ssl
import threading
import time

import pytest
import trustme
from fakes import MemoryRpc
from fakes_orders import Call, stored
from test_lsps5 import LSP_ID, SECRET, ln_sign

import lsps.lsps5.msgs as M
import lsps.lsps5.service as S
import lsps.lsps5.service_handler as handler
from lsps.lsps0.msgs import LspsError
from lsps.lsps0.service import Dispatcher
from lsps.lsps5.client import verify_notification
from lsps.lsps5.delivery import Delivery
from lsps.lsps5.service_handler import WEBHOOKS, Lsps5Service
from lsps.node.store import Store
from tests.webhooks import HttpsHooks

CLIENT = "02" + "ab" * 32
URL = "https://hooks.example/push?c=1"


class Posts:
    """A Delivery stand-in: what would be POSTed, in order."""

    def __init__(self):
        self.sent = []

    def post(self, url, body, peer_id):
        self.sent.append((url, json.loads(body)["method"], peer_id))
        return True

    def stats(self):
        return {"queued": 0}


class Node:
    def __init__(self):
        self.channel_list = []

    def channels(self, peer_id=None):
        return [c for c in self.channel_list if peer_id in (None, c["peer_id"])]


POLICY = S.Policy(max_webhooks=2, cooldown_s=600)


def make(connected=(), rpc=None, policy=POLICY):
    rpc = rpc or MemoryRpc()
    dispatcher = Dispatcher(lambda peer, payload: None)
    posts = Posts()
    svc = Lsps5Service(Node(), Store(lambda: rpc), dispatcher, lambda p: p in connected,
                       policy, posts, lambda m, lvl: None)
    svc.start()
    return svc, posts, rpc, dispatcher


def call(dispatcher, method, peer=CLIENT, **params):
    c = Call(peer, params, method)
    try:
        c.respond(dispatcher._methods[method].handler(c))
    except LspsError as e:   # as the dispatcher answers it
        c.fail(e)
    return c


@pytest.fixture
def clock(monkeypatch):
    t = {"ms": 1_800_000_000_000}
    monkeypatch.setattr(handler, "now_ms", lambda: t["ms"])
    return t


def test_lsps0_lists_protocol_5_and_the_three_methods():
    _, _, _, dispatcher = make()
    assert dispatcher.protocols() == [5]
    assert {M.SET_WEBHOOK, M.LIST_WEBHOOKS, M.REMOVE_WEBHOOK} <= set(dispatcher._methods)


def test_set_is_stored_before_the_answer_and_announced_to_the_new_webhook_only(clock):
    svc, posts, rpc, d = make()
    first = call(d, M.SET_WEBHOOK, app_name="a", webhook=URL)
    assert first.result == {"num_webhooks": 1, "max_webhooks": 2, "no_change": False}
    assert stored(rpc, WEBHOOKS, CLIENT)["webhooks"] == {"a": URL}
    call(d, M.SET_WEBHOOK, app_name="b", webhook=URL + "b")
    assert call(d, M.SET_WEBHOOK, app_name="a", webhook=URL).result["no_change"] is True
    assert posts.sent == [(URL, M.WEBHOOK_REGISTERED, CLIENT),
                          (URL + "b", M.WEBHOOK_REGISTERED, CLIENT)]   # not again for "a"
    assert call(d, M.SET_WEBHOOK, app_name="c", webhook=URL).error_code == M.TOO_MANY_WEBHOOKS
    assert call(d, M.LIST_WEBHOOKS).result == {"app_names": ["a", "b"], "max_webhooks": 2}
    assert call(d, M.REMOVE_WEBHOOK, app_name="zz").error_code == M.APP_NAME_NOT_FOUND
    assert call(d, M.REMOVE_WEBHOOK, app_name="b").result == {}
    assert stored(rpc, WEBHOOKS, CLIENT)["webhooks"] == {"a": URL}
    # a restart reads them back
    again, _, _, d2 = make(rpc=rpc)
    assert call(d2, M.LIST_WEBHOOKS).result["app_names"] == ["a"]


def test_bad_webhooks_get_the_spec_errors_and_nothing_is_stored(clock):
    svc, posts, rpc, d = make()
    for params, code in ((dict(app_name="a" * 65, webhook=URL), M.TOO_LONG),
                         (dict(app_name="a", webhook="http://x.example/"),
                          M.UNSUPPORTED_PROTOCOL),
                         (dict(app_name="a", webhook="no url"), M.URL_PARSE_ERROR)):
        assert call(d, M.SET_WEBHOOK, **params).error_code == code
    assert stored(rpc, WEBHOOKS, CLIENT) is None and posts.sent == []


def test_notifications_go_to_every_webhook_of_an_absent_client_once_per_cooldown(clock):
    connected = set()
    svc, posts, _, d = make(connected=connected)
    call(d, M.SET_WEBHOOK, app_name="a", webhook=URL)
    call(d, M.SET_WEBHOOK, app_name="b", webhook=URL + "b")
    posts.sent.clear()
    connected.add(CLIENT)
    assert svc.notify(CLIENT, M.PAYMENT_INCOMING) is False    # here: nothing to wake
    connected.clear()
    assert svc.notify(CLIENT, M.PAYMENT_INCOMING) is True
    assert svc.notify(CLIENT, M.PAYMENT_INCOMING) is False    # the storm: one
    assert svc.notify(CLIENT, M.ONION_MESSAGE_INCOMING) is True
    assert sorted(posts.sent) == sorted([
        (URL, M.PAYMENT_INCOMING, CLIENT), (URL + "b", M.PAYMENT_INCOMING, CLIENT),
        (URL, M.ONION_MESSAGE_INCOMING, CLIENT), (URL + "b", M.ONION_MESSAGE_INCOMING, CLIENT)])
    clock["ms"] += 600_000
    assert svc.notify(CLIENT, M.PAYMENT_INCOMING) is True     # still away after the cooldown
    svc.on_connect(CLIENT)                                    # back, then away again
    assert svc.notify(CLIENT, M.PAYMENT_INCOMING) is True
    assert svc.notify("02" + "cd" * 32, M.PAYMENT_INCOMING) is False   # no webhooks
    assert svc.view(CLIENT)["notifications_sent"][M.PAYMENT_INCOMING] == 6


def test_a_client_is_being_woken_while_away_from_its_wake_through_the_cooldown(clock):
    connected = set()
    svc, posts, _, d = make(connected=connected)
    assert svc.wake(CLIENT, M.PAYMENT_INCOMING) is False       # no webhooks: cannot wake
    call(d, M.SET_WEBHOOK, app_name="a", webhook=URL)
    posts.sent.clear()
    assert svc.wake(CLIENT, M.PAYMENT_INCOMING) is True        # notified now
    assert svc.wake(CLIENT, M.PAYMENT_INCOMING) is True        # within the cooldown: still
    assert posts.sent == [(URL, M.PAYMENT_INCOMING, CLIENT)]   # one POST
    connected.add(CLIENT)
    assert svc.wake(CLIENT, M.PAYMENT_INCOMING) is False       # here: nothing to wait for


def test_webhooks_go_seven_days_after_the_last_channel(clock):
    svc, _, rpc, d = make()
    call(d, M.SET_WEBHOOK, app_name="a", webhook=URL)
    svc.node.channel_list = [{"peer_id": CLIENT, "state": "CHANNELD_NORMAL"}]
    clock["ms"] += S.KEEP_WITHOUT_CHANNEL_MS
    svc.on_block(1)
    assert stored(rpc, WEBHOOKS, CLIENT) is not None     # a channel: kept, seen now
    svc.node.channel_list = []
    clock["ms"] += S.KEEP_WITHOUT_CHANNEL_MS - handler.PRUNE_EVERY_MS
    svc.on_block(2)
    assert stored(rpc, WEBHOOKS, CLIENT) is not None
    clock["ms"] += handler.PRUNE_EVERY_MS - 1
    svc.on_block(3)                                      # within the hour: no sweep
    clock["ms"] += 1
    svc.on_block(4)
    assert stored(rpc, WEBHOOKS, CLIENT) is None and svc.view(None)["clients"] == []


def test_peers_without_a_channel_share_half_of_the_clients(clock, monkeypatch):
    monkeypatch.setattr(handler, "MAX_CLIENTS", 4)
    svc, _, _, d = make()
    for n in range(2):
        assert call(d, M.SET_WEBHOOK, peer=f"02{n:02x}" + "00" * 31, app_name="a",
                    webhook=URL).results
    refused = call(d, M.SET_WEBHOOK, peer="02" + "ff" * 32, app_name="a", webhook=URL)
    assert refused.error_code == M.TOO_MANY_WEBHOOKS
    svc.node.channel_list = [{"peer_id": "02" + "ff" * 32, "state": "CHANNELD_NORMAL"}]
    assert call(d, M.SET_WEBHOOK, peer="02" + "ff" * 32, app_name="a", webhook=URL).results


# ---- delivery over real HTTPS ---------------------------------------------------------------

@pytest.fixture
def https(tmp_path):
    hooks = HttpsHooks(tmp_path)
    yield hooks
    hooks.close()


def wait(predicate, timeout=10):
    end = time.time() + timeout
    while not predicate():
        assert time.time() < end, "timed out"
        time.sleep(0.02)


def test_a_notification_is_posted_signed_with_the_exact_body(https):
    delivery = Delivery(lambda message: ln_sign(SECRET, message), lambda m, lvl: None,
                        timeout_s=5, ca_file=https.ca_file)
    body = M.notification(M.EXPIRY_SOON, {"timeout": 850_000})
    assert delivery.post(https.url("/push?l=lsp&c=best"), body, CLIENT)
    wait(lambda: delivery.stats().get("delivered") == 1)
    ((method, path, headers, got),) = https.seen
    assert (method, path, got) == ("POST", "/push?l=lsp&c=best", body)
    note = verify_notification(LSP_ID, headers[M.TIMESTAMP_HEADER],
                               headers[M.SIGNATURE_HEADER], got, int(time.time() * 1000))
    assert note["params"] == {"timeout": 850_000}


def test_untrusted_certificates_redirects_and_errors_are_counted_not_followed(https):
    untrusting = Delivery(lambda m: ln_sign(SECRET, m), lambda m, lvl: None, timeout_s=5)
    untrusting.post(https.url("/x"), M.notification(M.PAYMENT_INCOMING), CLIENT)
    wait(lambda: untrusting.stats().get("failed") == 1)
    assert https.seen == []   # the TLS handshake failed: nothing was sent
    https.status = 302
    trusting = Delivery(lambda m: ln_sign(SECRET, m), lambda m, lvl: None, timeout_s=5,
                        ca_file=https.ca_file)
    trusting.post(https.url("/x"), M.notification(M.PAYMENT_INCOMING), CLIENT)
    wait(lambda: trusting.stats().get("http 302") == 1)
    assert [p for _, p, _, _ in https.seen] == ["/x"]    # never the redirect's target


def test_a_slow_webhook_delays_only_itself_and_one_url_keeps_its_order(https):
    delivery = Delivery(lambda m: ln_sign(SECRET, m), lambda m, lvl: None, timeout_s=1,
                        ca_file=https.ca_file)
    dead = "https://127.0.0.1:9/never"   # nobody listens
    for _ in range(3):
        delivery.post(dead, M.notification(M.PAYMENT_INCOMING), "02" + "11" * 32)
    delivery.post(https.url("/a"), M.notification(M.WEBHOOK_REGISTERED), CLIENT)
    delivery.post(https.url("/a"), M.notification(M.PAYMENT_INCOMING), CLIENT)
    wait(lambda: delivery.stats().get("delivered") == 2)
    assert https.methods("/a") == [M.WEBHOOK_REGISTERED, M.PAYMENT_INCOMING]
    wait(lambda: delivery.stats().get("failed") == 3)


def test_an_absent_client_with_an_htlc_near_its_expiry_is_warned(clock):
    connected = set()
    svc, posts, _, d = make(connected=connected)
    call(d, M.SET_WEBHOOK, app_name="a", webhook=URL)
    posts.sent.clear()
    svc.node.channel_list = [
        {"peer_id": CLIENT, "state": "CHANNELD_NORMAL", "htlc_expiries": [900, 830]},
        {"peer_id": "02" + "cd" * 32, "state": "CHANNELD_NORMAL", "htlc_expiries": [801]}]
    svc.on_block(805)                       # 830 - 805 = 25 blocks: not yet
    assert posts.sent == []
    svc.on_block(806)
    assert posts.sent == [(URL, M.EXPIRY_SOON, CLIENT)]   # (the other has no webhook)
    svc.on_block(807)                       # within the cooldown: once
    assert len(posts.sent) == 1


def test_the_timeout_is_the_soonest_expiry(clock, monkeypatch):
    svc, _, _, d = make()
    call(d, M.SET_WEBHOOK, app_name="a", webhook=URL)
    told = []
    monkeypatch.setattr(svc, "notify", lambda peer, method, params=None: told.append(
        (peer, method, params)))
    svc.node.channel_list = [
        {"peer_id": CLIENT, "state": "CHANNELD_NORMAL", "htlc_expiries": [820, 812]},
        {"peer_id": CLIENT, "state": "CHANNELD_NORMAL", "htlc_expiries": [815]}]
    svc.on_block(800)
    assert told == [(CLIENT, M.EXPIRY_SOON, {"timeout": 812})]

"""The composition: the HTLC claim order, one branch per test, and events handed to
each service on its own. Issue 11 item 6: an HTLC a service owns is failed on an
error, never let through (`continue` would settle an order's invoice, no channel)."""
from fakes import htlc_event

from bolt12ext import asyncmsg
from lsps.app import App

ONION = {"payload": ""}
HTLC = {"amount_msat": 5000, "cltv_expiry": 150, "cltv_expiry_relative": 50,
        "payment_hash": "aa" * 32, "short_channel_id": "1x1x1", "id": 1}
HOLD_TLVS = asyncmsg.hold_htlc_tlvs().hex()


class Service:
    """Claims nothing unless told; records what reached it."""

    def __init__(self, claims=False, error=None, answer=None):
        self.claims, self.error, self.answer, self.seen = claims, error, answer, []

    def _maybe_fail(self):
        if self.error:
            raise self.error

    # holder
    def flagged(self, htlc):
        return bool(htlc.extra_tlvs)

    def on_htlc(self, *args):
        self.seen.append(args)
        respond = args[-1]
        if callable(respond):
            if self.answer:
                respond(self.answer)
            self._maybe_fail()
            return self.claims
        self._maybe_fail()
        return self.answer

    # recipient
    def context_of(self, htlc):
        return ({"payload": 1}, {"ctx": 1}) if self.claims else None

    # jit service / orders
    def owns(self, scid):
        return self.claims

    def owns_payment(self, htlc):
        return self.claims


def route(services, onion=ONION, **htlc):
    answers, logs = [], []
    app = App(services, lambda message, level="info": logs.append(message))
    app.on_htlc_accepted(onion, {**HTLC, **htlc}, "02" + "11" * 32, answers.append)
    return answers, logs


def test_nobody_claims_it_then_lightningd_decides():
    assert route({})[0] == [{"result": "continue"}]
    client = Service(answer=None)
    assert route({"lsps2_client": client})[0] == [{"result": "continue"}]
    assert client.seen[0][0].payment_hash == "aa" * 32   # typed, read once


def test_the_holder_comes_first_and_answers_itself():
    holder = Service(claims=True, answer={"result": "fail", "failure_message": "2002"})
    orders = Service(claims=True)
    assert route({"holder": holder, "lsps1_service": orders})[0] == [
        {"result": "fail", "failure_message": "2002"}]
    assert orders.seen == []


def test_an_unflagged_htlc_the_holder_does_not_take_goes_on():
    holder, orders = Service(claims=False), Service(claims=True, answer={"result": "x"})
    assert route({"holder": holder, "lsps1_service": orders})[0] == [{"result": "x"}]


def test_a_holder_error_on_a_flagged_htlc_fails_it():
    answers, logs = route({"holder": Service(error=RuntimeError("boom"))},
                          extra_tlvs=HOLD_TLVS)
    assert answers == [{"result": "fail", "failure_message": "2002"}] and "holder" in logs[0]


def test_a_holder_error_on_an_unflagged_htlc_lets_it_through():
    assert route({"holder": Service(error=RuntimeError("boom"))})[0] == [
        {"result": "continue"}]


def test_our_async_payment_paths_come_before_jit_and_orders():
    recipient = Service(claims=True, answer={"result": "resolve", "payment_key": "00"})
    jit = Service(claims=True)
    assert route({"async_recipient": recipient, "lsps2_service": jit})[0] == [
        {"result": "resolve", "payment_key": "00"}]
    assert jit.seen == []


def test_an_error_on_our_async_payment_fails_it_as_the_final_node():
    answers, _ = route({"async_recipient": Service(claims=True, error=KeyError("x"))})
    assert answers[0]["failure_message"].startswith("400f")


def test_a_jit_scid_goes_to_the_lsps2_service_and_its_error_is_temporary_node_failure():
    jit = Service(claims=True, answer={"result": "continue", "forward_to": "c"})
    assert route({"lsps2_service": jit, "lsps1_service": Service(claims=True)},
                 onion={"payload": "", "short_channel_id": "9x9x9"})[0] == [
        {"result": "continue", "forward_to": "c"}]
    assert route({"lsps2_service": Service(claims=True, error=ValueError("x"))})[0] == [
        {"result": "fail", "failure_message": "2002"}]


def test_an_error_on_an_owned_order_htlc_fails_it_never_continues():
    answers, _ = route({"lsps1_service": Service(claims=True, error=KeyError("boom"))})
    (answer,) = answers
    assert answer["result"] == "fail" and answer["failure_message"].startswith("400f")
    assert int(answer["failure_message"][4:20], 16) == 5000      # htlc_msat
    assert int(answer["failure_message"][20:], 16) == 100         # height


def test_a_jit_payment_to_us_is_taken_by_the_lsps2_client():
    client = Service(answer={"result": "continue", "payload": "ab"})
    assert route({"lsps2_client": client})[0] == [{"result": "continue", "payload": "ab"}]


def test_a_service_that_answered_before_failing_is_not_answered_twice():
    orders = Service(claims=True, answer={"result": "fail", "failure_message": "x"},
                     error=RuntimeError("after"))
    assert route({"lsps1_service": orders})[0] == [{"result": "fail", "failure_message": "x"}]


def test_an_unreadable_payload_is_let_through():
    answers, logs = route({}, cltv_expiry=None)
    assert answers == [{"result": "continue"}] and "not understood" in logs[0]
    assert route({}, **{"id": 1})[0] == [{"result": "continue"}]
    assert htlc_event().height == 100


def test_a_failing_service_does_not_keep_the_others_from_a_block():
    seen = []

    class Broken:
        def on_block(self, height):
            raise RuntimeError("boom")

    class Fine:
        def on_block(self, height):
            seen.append(height)

    app = App({"holder": Broken(), "lsps1_service": Broken(), "lsps2_service": Fine()},
              lambda *a: None)
    app.on_block(123)
    app.on_block(None)
    assert seen == [123]


def test_events_reach_only_the_services_that_take_them():
    calls = []

    class Recorder:
        def __getattr__(self, name):
            return lambda *args: calls.append((name, args))

    app = App({name: Recorder() for name in ("lsps0", "lsps1_service", "lsps2_service",
                                             "messenger", "lsps2_client")}, lambda *a: None)
    app.on_connect("p")
    app.on_connect(None)
    app.on_disconnect("p")
    app.on_custommsg("p", "abcd")
    app.on_channel_state_changed({"channel_id": "c", "new_state": "CHANNELD_NORMAL"})
    app.on_forward_event({"out_channel": "o", "in_channel": "i", "in_htlc_id": 1,
                          "status": "settled"})
    app.on_invoice_payment({"label": "l"})
    app.on_onionmessage_forward_fail({"x": 1})
    assert calls == [
        ("on_connect", ("p",)), ("on_connect", ("p",)), ("on_connect", ("p",)),
        ("on_connect", ("p",)), ("on_disconnect", ("p",)), ("on_custommsg", ("p", "abcd")),
        ("on_channel_state", ("c", "CHANNELD_NORMAL")),
        ("on_forward_event", ("o", "i", 1, "settled")), ("on_invoice_paid", ("l",)),
        ("on_forward_fail", ({"x": 1},))]


def test_zeroconf_only_from_an_lsp_we_ordered_that_way_from():
    class Client:
        def __init__(self, peers):
            self.peers = peers

        def accepts_zeroconf_from(self, peer):
            return peer in self.peers

    app = App({"lsps1_client": Client({"a"}), "lsps2_client": Client({"b"})}, lambda *a: None)
    assert app.on_openchannel({"id": "a"}) == {"result": "continue", "mindepth": 0}
    assert app.on_openchannel({"id": "b"}) == {"result": "continue", "mindepth": 0}
    assert app.on_openchannel({"id": "c"}) == {"result": "continue"}
    assert app.on_openchannel({}) == {"result": "continue"}   # logged, never an error


def test_onion_messages_are_ours_only_when_the_messenger_says_so():
    class Messenger:
        def on_cln_message(self, message):
            if message.get("boom"):
                raise ValueError("boom")
            return message.get("ours", False)

    app = App({"messenger": Messenger()}, lambda *a: None)
    assert app.on_onion_message_recv_secret({"ours": True}) == {"result": "resolve"}
    assert app.on_onion_message_recv_secret({}) == {"result": "continue"}
    assert app.on_onion_message_recv_secret({"boom": 1}) == {"result": "continue"}
    assert App({}, lambda *a: None).on_onion_message_recv_secret(None) == {
        "result": "continue"}


def test_an_unreadable_payload_that_may_be_ours_is_failed_not_let_through():
    class Orders(Service):
        by_hash = {"aa" * 32: "order"}
    answers, _ = route({"lsps1_service": Orders()}, cltv_expiry=None)
    assert answers == [{"result": "fail", "failure_message": "2002"}]
    jit = Service(claims=True)
    answers, _ = route({"lsps2_service": jit}, onion={"payload": "", "short_channel_id": "9x9x9"},
                       cltv_expiry=None)
    assert answers == [{"result": "fail", "failure_message": "2002"}]
    answers, _ = route({"holder": Service()}, cltv_expiry=None, extra_tlvs=HOLD_TLVS)
    assert answers == [{"result": "fail", "failure_message": "2002"}]

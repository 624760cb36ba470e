"""The RPC commands: operator argument checks (-32602), the error codes when a role is
off, and async answers written from a worker (fail_request keeps `data`). Requests are
pyln's own Request over a plugin stand-in that records what is written."""
import pytest
from fakes import Workers
from pyln.client import RpcException
from pyln.client.plugin import Request, RequestState

import lsps.commands as C
import lsps.node.commands as N
from lsps.asyncpay.payer import PayError
from lsps.asyncpay.recipient import RecipientError
from lsps.lsps0.client import ClientError

LSP = "02" + "ab" * 32
OFFER = "lno1zcss9mk8y3wkklfvevcrszlmu23kfrxh49px20665dqwmn4p72pksese"


class Plugin:
    def __init__(self):
        self.written = []

    def _write_locked(self, obj):
        self.written.append(obj)


def request(method="lsps-test"):
    return Request(Plugin(), 7, method, {})


def written(req):
    [out] = req.plugin.written
    return out


def error_of(req):
    out = written(req)
    assert out["jsonrpc"] == "2.0" and out["id"] == 7 and "result" not in out
    assert req.state == RequestState.FAILED
    return out["error"]


def result_of(req):
    out = written(req)
    assert req.state == RequestState.FINISHED
    return out["result"]


def invalid(fn, *args):
    with pytest.raises(RpcException) as e:
        fn(*args)
    assert e.value.code == -32602
    return e.value.message


def off(fn, *args):
    with pytest.raises(RpcException) as e:
        fn(*args)
    return e.value.code, e.value.message


class Recorder:
    """A service or client: each method records its arguments and returns `answer`
    (or raises it when it is an exception)."""

    def __init__(self, answer=None):
        self.answer, self.calls = answer, []

    def __getattr__(self, name):
        def method(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer
        return method


def commands(**services):
    workers = Workers()
    return C.Commands({"client_workers": workers, **services}), workers


# --- lsps/node/commands.py: argument checks -----------------------------------------


def test_require_node_id_lowercases():
    assert N.require_node_id(LSP.upper(), "lsp_id") == LSP


@pytest.mark.parametrize("value", [None, 5, "", "04" + "ab" * 32, "02" + "ab" * 31,
                                   "02" + "ab" * 32 + "00", "02" + "zz" * 32])
def test_require_node_id_refuses_what_is_not_a_node_id(value):
    assert invalid(N.require_node_id, value, "lsp_id") == (
        f"lsp_id: expected a 33-byte node id in hex, got {value!r}")


@pytest.mark.parametrize("value,amount", [(None, None), (0, 0), (5, 5), ("5", 5),
                                          ("5msat", 5), (2**64 - 1, 2**64 - 1)])
def test_optional_amount_takes_integers_and_msat_strings(value, amount):
    assert N.optional_amount(value, "amount_msat") == amount


@pytest.mark.parametrize("value", [True, False, -1, "-1", "1.5", "5sat", "msat", 2**64, "x"])
def test_optional_amount_refuses_the_rest(value):
    assert invalid(N.optional_amount, value, "amount_msat") == (
        f"amount_msat: expected an amount in msat, got {value!r}")


@pytest.mark.parametrize("value,minimum,number", [(None, 0, None), (0, 0, 0), ("7", 1, 7),
                                                  (60, 60, 60)])
def test_optional_int(value, minimum, number):
    assert N.optional_int(value, "n", minimum) == number


@pytest.mark.parametrize("value,minimum", [(True, 0), (-1, 0), ("x", 0), ("1.0", 0), (0, 1),
                                           (59, 60)])
def test_optional_int_refuses_non_integers_and_small_ones(value, minimum):
    assert invalid(N.optional_int, value, "n", minimum) == (
        f"n: expected an integer of at least {minimum}, got {value!r}")


@pytest.mark.parametrize("check", [N.optional_int, N.optional_amount])
def test_a_superscript_digit_is_invalid_params(check):
    invalid(check, "\u00b2", "n")


# --- fail_request and run_in_worker -------------------------------------------------


def test_fail_request_writes_the_error_with_data():
    req = request()
    N.fail_request(req, 1, "no", {"why": "because"})
    assert error_of(req) == {"code": 1, "message": "no", "data": {"why": "because"}}
    assert req.termination_tb == "clnlsp fail_request"


def test_fail_request_without_data_has_no_data_key():
    req = request()
    N.fail_request(req, 1, "no")
    assert error_of(req) == {"code": 1, "message": "no"}


def test_fail_request_on_an_answered_request_does_nothing():
    req = request()
    req.set_result({"ok": True})
    N.fail_request(req, 1, "no")
    assert req.plugin.written == [{"jsonrpc": "2.0", "id": 7, "result": {"ok": True}}]
    assert req.state == RequestState.FINISHED


def test_run_in_worker_answers_from_the_worker():
    req, pool = request(), Workers()
    N.run_in_worker(pool, req, lambda: {"done": 1})
    assert req.plugin.written == [] and req.state == RequestState.PENDING
    pool.run_all()
    assert result_of(req) == {"done": 1}


def test_run_in_worker_keeps_a_client_errors_code_and_data():
    req, pool = request(), Workers()

    def work():
        raise ClientError(3, "peer error", {"code": -1})
    N.run_in_worker(pool, req, work)
    pool.run_all()
    assert error_of(req) == {"code": 3, "message": "peer error", "data": {"code": -1}}


def test_run_in_worker_keeps_an_rpc_exceptions_code():
    req, pool = request(), Workers()

    def work():
        raise RpcException("bad", 1234)
    N.run_in_worker(pool, req, work)
    pool.run_all()
    assert error_of(req) == {"code": 1234, "message": "bad"}


def test_run_in_worker_reports_anything_else_as_internal_error():
    req, pool = request("lsps-lsps2-buy"), Workers()

    def work():
        raise KeyError("boom")
    N.run_in_worker(pool, req, work)
    pool.run_all()
    assert error_of(req) == {"code": -32603, "message": "lsps-lsps2-buy failed: 'boom'"}


# --- LSPS0 --------------------------------------------------------------------------


class Lsps0:
    def __init__(self):
        self.calls = []

    def call(self, peer, method, params, done):
        self.calls.append((peer, method, params, done))


def listed(outcome):
    lsps0 = Lsps0()
    cmd, _ = commands(lsps0=lsps0)
    req = request()
    cmd.list_protocols(req, LSP.upper())
    [(peer, method, params, done)] = lsps0.calls
    assert (peer, method, params) == (LSP, "lsps0.list_protocols", {})
    done(outcome)
    return req


def test_list_protocols_answers_sorted_and_deduplicated():
    assert result_of(listed({"protocols": [2, 1, 2], "extra": 1})) == {"protocols": [1, 2]}


def test_list_protocols_passes_on_a_client_error():
    assert error_of(listed(ClientError(1, "timeout", {"x": 1}))) == {
        "code": 1, "message": "timeout", "data": {"x": 1}}


def test_list_protocols_refuses_an_invalid_answer_with_it_as_data():
    err = error_of(listed({"protocols": ["one"]}))
    assert err["message"] == f"{LSP} sent an invalid list_protocols result"
    assert err["data"] == {"result": {"protocols": ["one"]}}


def test_list_protocols_checks_lsp_id():
    cmd, _ = commands(lsps0=Lsps0())
    assert invalid(cmd.list_protocols, request(), "nope").startswith("lsp_id: ")


# --- LSPS1 / LSPS7 ------------------------------------------------------------------


def order(announce="false", **changes):
    client = Recorder({"order_id": "o1"})
    cmd, pool = commands(lsps1_client=client)
    req = request()
    args = dict(lsp_id=LSP, lsp_balance_sat=100_000, client_balance_sat=None,
                channel_expiry_blocks="144", required_channel_confirmations=0,
                funding_confirms_within_blocks=6, announce_channel=announce, token=None,
                refund_onchain_address=None)
    args.update(changes)
    cmd.lsps1_order(req, **args)
    pool.run_all()
    return req, client


def test_lsps1_order_asks_the_lsp_with_checked_values():
    req, client = order(token=5, refund_onchain_address="bcrt1q")
    assert result_of(req) == {"order_id": "o1"}
    assert client.calls == [("order", (LSP, {
        "lsp_balance_sat": 100_000, "client_balance_sat": None, "channel_expiry_blocks": 144,
        "required_channel_confirmations": 0, "funding_confirms_within_blocks": 6,
        "announce_channel": False, "token": "5", "refund_onchain_address": "bcrt1q"}, None),
        {})]


@pytest.mark.parametrize("pay", ["bolt11", "bolt12"])
def test_lsps1_order_can_be_paid_as_it_is_placed(pay):
    _, client = order(pay=pay)
    assert client.calls[0][1][2] == pay


@pytest.mark.parametrize("pay", ["onchain", "BOLT12", 12])
def test_an_order_is_paid_only_by_bolt11_or_bolt12(pay):
    cmd, pool = commands(lsps1_client=Recorder(), lsps7_client=Recorder())
    for place in (lambda: cmd.lsps1_order(request(), LSP, 1, None, None, None, None, False,
                                          None, None, pay),
                  lambda: cmd.lsps7_order(request(), LSP, "1x2x3", 1, None, None, pay)):
        assert invalid(place) == f"pay: expected one of bolt11, bolt12, got {pay!r}"
    assert pool.jobs == []


@pytest.mark.parametrize("announce,wanted", [(True, True), (False, False), ("true", True),
                                             ("YES", True), ("1", True), ("0", False),
                                             ("no", False)])
def test_lsps1_order_announce_channel_from_the_command_line(announce, wanted):
    _, client = order(announce=announce)
    assert client.calls[0][1][1]["announce_channel"] is wanted


@pytest.mark.parametrize("name,value,minimum", [("lsp_balance_sat", 0, 1),
                                                ("channel_expiry_blocks", 0, 1),
                                                ("client_balance_sat", -1, 0),
                                                ("required_channel_confirmations", "x", 0),
                                                ("funding_confirms_within_blocks", True, 0)])
def test_lsps1_order_argument_checks(name, value, minimum):
    cmd, pool = commands(lsps1_client=Recorder())
    args = dict(lsp_id=LSP, lsp_balance_sat=1, client_balance_sat=None,
                channel_expiry_blocks=None, required_channel_confirmations=None,
                funding_confirms_within_blocks=None, announce_channel=False, token=None,
                refund_onchain_address=None)
    args[name] = value
    assert invalid(lambda: cmd.lsps1_order(request(), **args)) == (
        f"{name}: expected an integer of at least {minimum}, got {value!r}")
    assert pool.jobs == []


def test_lsps7_order_builds_the_extension_params():
    client = Recorder({"order_id": "x1"})
    cmd, pool = commands(lsps7_client=client)
    req = request()
    cmd.lsps7_order(req, LSP, "1x2x3", "100", "tok", "bcrt1q")
    pool.run_all()
    assert result_of(req) == {"order_id": "x1"}
    assert client.calls == [("create_extension", (LSP, {
        "short_channel_id": "1x2x3", "channel_extension_expiry_blocks": 100, "token": "tok",
        "refund_onchain_address": "bcrt1q"}, None), {})]


def test_lsps7_order_without_token_or_refund_address_leaves_them_out():
    client = Recorder({})
    cmd, pool = commands(lsps7_client=client)
    cmd.lsps7_order(request(), LSP, "1x2x3", 1, None, None)
    pool.run_all()
    assert client.calls[0][1][1] == {"short_channel_id": "1x2x3",
                                     "channel_extension_expiry_blocks": 1}


def test_lsps7_order_needs_at_least_one_block():
    cmd, _ = commands(lsps7_client=Recorder())
    assert invalid(cmd.lsps7_order, request(), LSP, "1x2x3", 0, None, None).startswith(
        "channel_extension_expiry_blocks: expected an integer of at least 1")


def test_client_orders_for_one_lsp_or_all():
    client = Recorder([{"order_id": "o1"}])
    cmd, _ = commands(lsps1_client=client)
    assert cmd.client_orders(None) == {"orders": [{"order_id": "o1"}]}
    cmd.client_orders(LSP.upper())
    assert [c[1] for c in client.calls] == [(None,), (LSP,)]
    assert invalid(cmd.client_orders, "x").startswith("lsp_id: ")


@pytest.mark.parametrize("kind,what", [("lsps1", "sells no channels"),
                                       ("lsps7", "extends no leases")])
def test_service_orders_when_lsp_service_is_off(kind, what):
    cmd, _ = commands()
    assert off(cmd.service_orders, None, None, kind) == (
        1200, f"lsp-service is off: this node {what}")


def test_service_orders_filters_by_order_and_peer():
    service = Recorder([])
    cmd, _ = commands(lsps1_service=service)
    assert cmd.service_orders("o1", LSP.upper(), "lsps7") == {"orders": []}
    assert service.calls == [("list_orders", ("o1", LSP), {"kind": "lsps7"})]
    assert invalid(cmd.service_orders, None, "x", "lsps1").startswith("peer_id: ")


# --- LSPS2 --------------------------------------------------------------------------


def test_lsps2_buy_passes_checked_arguments():
    client = Recorder({"bolt11": "lnbc"})
    cmd, pool = commands(lsps2_client=client)
    req = request()
    cmd.lsps2_buy(req, LSP, "5000msat", 7, "lbl", "tok", {"p": 1}, "100", "600")
    pool.run_all()
    assert result_of(req) == {"bolt11": "lnbc"}
    assert client.calls == [("buy", (LSP, 5000, "7", "lbl", "tok", {"p": 1}, 100, 600), {})]


@pytest.mark.parametrize("args,message", [
    (("x", None, None), "amount_msat: expected an amount in msat, got 'x'"),
    ((None, "x", None), "max_fee_msat: expected an amount in msat, got 'x'"),
    ((None, None, 59), "expiry: expected an integer of at least 60, got 59"),
])
def test_lsps2_buy_argument_checks(args, message):
    amount, max_fee, expiry = args
    cmd, _ = commands(lsps2_client=Recorder())
    assert invalid(cmd.lsps2_buy, request(), LSP, amount, "d", None, None, None, max_fee,
                   expiry) == message


def test_lsps2_buy_checks_lsp_id():
    cmd, pool = commands(lsps2_client=Recorder())
    assert invalid(cmd.lsps2_buy, request(), "0", None, "d", None, None, None, None,
                   None) == "lsp_id: expected a 33-byte node id in hex, got '0'"
    assert pool.jobs == []


def test_lsps2_sessions_when_lsp_service_is_off():
    cmd, _ = commands()
    assert off(cmd.lsps2_sessions, None, None) == (
        1200, "lsp-service is off: this node sells no JIT channels")


def test_lsps2_sessions_filters_by_peer_and_scid():
    service = Recorder([{"scid": "1x2x3"}])
    cmd, _ = commands(lsps2_service=service)
    assert cmd.lsps2_sessions(LSP, "1x2x3") == {"sessions": [{"scid": "1x2x3"}]}
    assert service.calls == [("list_sessions", (LSP, "1x2x3"), {})]


# --- async payments -----------------------------------------------------------------

SERVER_OFF = (1600, "the static invoice server is off (start lightningd with "
              "--lsp-asyncpay-server)")


def test_server_paths_and_forget_invoices_when_the_server_is_off():
    cmd, _ = commands()
    assert off(cmd.server_paths, None) == SERVER_OFF
    assert off(cmd.forget_invoices, "r", None) == SERVER_OFF
    # a bad argument is answered as such even with the server off (as lightningd does)
    assert invalid(cmd.forget_invoices, "r", "one").startswith("slot: ")


@pytest.mark.parametrize("recipient", ["", 5, "r" * 67])
def test_server_paths_recipient_id_checks(recipient):
    cmd, _ = commands(asyncpay_server=Recorder())
    assert invalid(cmd.server_paths, recipient) == (
        "recipient_id must be a non-empty string of at most 66 characters")


def test_server_paths_and_forget_invoices_reach_the_server():
    server = Recorder({"ok": 1})
    cmd, _ = commands(asyncpay_server=server)
    assert cmd.server_paths("r" * 66) == {"ok": 1}
    assert cmd.server_paths(None) == {"ok": 1}
    assert cmd.forget_invoices("r", "2") == {"ok": 1}
    assert server.calls == [("server_paths", ("r" * 66,), {}), ("server_paths", (None,), {}),
                            ("forget", ("r", 2), {})]
    assert invalid(cmd.forget_invoices, "r", "x").startswith("slot: ")


def asyncpay_offer(answer, amount=None):
    recipient = Recorder(answer)
    cmd, pool = commands(async_recipient=recipient)
    req = request()
    cmd.asyncpay_offer(req, LSP.upper(), 42, amount)
    pool.run_all()
    return req, recipient


def test_asyncpay_offer_asks_the_recipient():
    req, recipient = asyncpay_offer({"offer": "lno1"}, "1000msat")
    assert result_of(req) == {"offer": "lno1"}
    assert recipient.calls == [("create_offer", (LSP, "42", 1000), {})]


def test_asyncpay_offer_failure_is_error_1601():
    req, _ = asyncpay_offer(RecipientError("server did not answer"))
    assert error_of(req) == {"code": 1601, "message": "server did not answer"}


def test_asyncpay_offer_argument_checks():
    cmd, _ = commands(async_recipient=Recorder())
    assert invalid(cmd.asyncpay_offer, request(), LSP, "d", 0) == "amount_msat must be positive"
    assert invalid(cmd.asyncpay_offer, request(), "x", "d", None).startswith("server_id: ")


def test_forget_offer():
    recipient = Recorder({"forgotten": True})
    cmd, _ = commands(async_recipient=recipient)
    assert cmd.forget_offer(12) == {"forgotten": True}
    assert recipient.calls == [("forget", ("12",), {})]
    recipient.answer = RecipientError("no such offer")
    assert invalid(cmd.forget_offer, "x") == "no such offer"


def test_asyncpay_pay_asks_the_payer():
    payer = Recorder({"status": "pending"})
    cmd, pool = commands(async_payer=payer)
    req = request()
    cmd.asyncpay_pay(req, OFFER, "5", 7, None)
    pool.run_all()
    assert result_of(req) == {"status": "pending"}
    assert payer.calls == [("pay", (OFFER, 5, "7", None), {})]


def test_asyncpay_pay_failure_is_error_1601():
    cmd, pool = commands(async_payer=Recorder(PayError("no path")))
    req = request()
    cmd.asyncpay_pay(req, OFFER.upper(), None, None, "10")
    pool.run_all()
    assert error_of(req) == {"code": 1601, "message": "no path"}


@pytest.mark.parametrize("offer", [None, 5, "lnbc1", "lni1"])
def test_asyncpay_pay_needs_an_offer(offer):
    cmd, _ = commands(async_payer=Recorder())
    assert invalid(cmd.asyncpay_pay, request(), offer, None, None, None) == (
        "offer: expected a BOLT12 offer (lno1…)")


def test_asyncpay_pay_checks_amounts():
    cmd, _ = commands(async_payer=Recorder())
    assert invalid(cmd.asyncpay_pay, request(), OFFER, None, None, "x").startswith(
        "maxfee_msat: ")


def test_asyncpay_status_lists_or_looks_up_lowercased():
    payer = Recorder({"payments": []})
    cmd, _ = commands(async_payer=payer)
    assert cmd.asyncpay_status(None) == {"payments": []}
    cmd.asyncpay_status("AB" * 32)
    assert payer.calls == [("list", (), {}), ("status", ("ab" * 32,), {})]
    payer.answer = PayError("unknown payment")
    assert invalid(cmd.asyncpay_status, "cd") == "unknown payment"


def test_held_when_holding_is_off():
    cmd, _ = commands()
    assert off(cmd.held) == (1602, "HTLC holding is off (start lightningd with "
                                   "--lsp-asyncpay-hold)")


def test_held_lists_the_holder():
    cmd, _ = commands(holder=Recorder({"held": []}))
    assert cmd.held() == {"held": []}


def test_bolt12_decode():
    assert C.Commands.bolt12_decode(OFFER)["type"] == "bolt12 offer"


@pytest.mark.parametrize("text", ["lno1", "lnbc1xyz", "not bolt12"])
def test_bolt12_decode_of_garbage_is_invalid_params(text):
    assert invalid(C.Commands.bolt12_decode, text).startswith("invalid BOLT12 object: ")


@pytest.mark.parametrize("within", ["abc", -1, True])
def test_summary_refuses_a_bad_expiring_within_blocks(within):
    cmd, _ = commands()
    assert "expiring_within_blocks" in invalid(cmd.summary, request(), within)


def test_summary_of_a_client_only_node_has_null_lsp_roles():
    cmd, pool = commands(lsps2_client=Recorder([]), lsps1_client=Recorder([]),
                         async_recipient=Recorder({"offers": []}),
                         async_payer=Recorder({"payments": []}))
    req = request("lsp-summary")
    cmd.summary(req, None)
    pool.run_all()
    got = result_of(req)
    assert {k for k, v in got.items() if v is None} == {
        "blockheight", "lsps0", "lsps2", "lsps1", "lsps7", "lsps5", "asyncpay_hold",
        "asyncpay_server"}
    assert got["client"]["lsps2_buys_by_state"] == {"waiting": 0, "paid": 0, "expired": 0}

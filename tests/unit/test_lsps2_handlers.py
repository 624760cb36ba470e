"""LSPS2 at run time: the LSP's lsps2.* methods and JIT sessions driven by HTLCs,
opens and channel events (answers given after the session is written, one channel
per purchase); and the wallet's purchases and the JIT parts it accepts."""
import types

import pytest
from fakes import MemoryRpc, Workers, htlc_event
from fakes_orders import INVOICE_250K_SAT, LSP, NOW, OTHER, Call, Clock, stored

import lsps.lsps2.client as C
import lsps.lsps2.client_handler as client_handler
import lsps.lsps2.opening as opening
import lsps.lsps2.service as S
import lsps.lsps2.service_handler as handler
from lsps.htlc import TEMPORARY_CHANNEL_FAILURE, UNKNOWN_NEXT_PEER
from lsps.lsps0.client import BAD_RESPONSE, ClientError
from lsps.lsps0.msgs import LspsError
from lsps.lsps2.client_handler import PURCHASES, Lsps2Client
from lsps.lsps2.msgs import (
    EXTRA_FEE_TLV,
    OpeningFeeParams,
    parse_tlv_stream,
    read_tu64,
    serialize_tlv_stream,
    tu64,
)
from lsps.lsps2.service_handler import SESSIONS, Lsps2Service
from lsps.node.rpc import FundingError
from lsps.node.store import Store

CLIENT = "02" + "ab" * 32
POLICY = S.Policy(fees=((2000, 10_000),), valid_for_s=600, min_lifetime=1008,
                  max_client_to_self_delay=2016, min_payment_size_msat=10_000,
                  max_payment_size_msat=10**9, cltv_expiry_delta=144, min_channel_sat=100_000)


class JitNode:
    """What Lsps2Service asks of lightningd."""

    def __init__(self):
        self.channel_list = [{"channel_id": "inbound", "peer_id": OTHER, "opener": "remote",
                              "state": "CHANNELD_NORMAL", "scids": ["5x5x5"],
                              "receivable_msat": 10**8, "peer_connected": True,
                              "htlc_minimum_msat": 1}]
        self.fundings, self.fees, self.cancelled = [], [], []
        self.fund_error = self.fee_error = self.channels_error = None
        self.on_fund = None

    def channels(self, peer_id=None):
        if self.channels_error:
            raise self.channels_error
        return [c for c in self.channel_list if peer_id in (None, c["peer_id"])]

    def fund_channel(self, peer_id, amount_sat, announce, mindepth, push_msat=0):
        if self.on_fund:
            self.on_fund()
        if self.fund_error:
            raise self.fund_error
        self.fundings.append((peer_id, amount_sat, announce, mindepth))
        cid = f"jit{len(self.fundings)}"
        self.channel_list.append({"channel_id": cid, "peer_id": peer_id, "opener": "local",
                                  "state": "CHANNELD_AWAITING_LOCKIN", "scids": [],
                                  "receivable_msat": 0, "peer_connected": True,
                                  "htlc_minimum_msat": 1})
        return {"channel_id": cid, "funding_outpoint": "f:0"}

    def funding_fee_sat(self, txid):
        return 153

    def set_channel_fee(self, channel_id, base, ppm):
        if self.fee_error:
            raise self.fee_error
        self.fees.append((channel_id, base, ppm))

    def default_channel_fee(self):
        return (1000, 10)

    def cancel_open(self, peer_id):
        self.cancelled.append(peer_id)


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch, handler, client_handler, opening)


def make_service(rpc=None, node=None, connected=True, policy=POLICY):
    rpc, node = rpc or MemoryRpc(), node or JitNode()
    timers = []
    from fakes import Dispatcher
    svc = Lsps2Service(node, Store(lambda: rpc), S.Service(policy, bytes(32)), Dispatcher(),
                       lambda delay, fn: timers.append((delay, fn)),
                       lambda peer: peer in connected if isinstance(connected, set)
                       else connected, lambda m, lvl: None)
    svc.workers = svc.openers = Workers()
    svc.timers = timers
    svc.start()
    return svc, node, rpc


def menu(svc, peer=CLIENT, **params):
    return svc._get_info(Call(peer, params))["opening_fee_params_menu"]


def buy(svc, size=None, peer=CLIENT, params=None):
    c = Call(peer, {"opening_fee_params": params or menu(svc, peer)[0],
                    **({"payment_size_msat": str(size)} if size is not None else {})})
    svc._buy(c)
    svc.workers.run_all()
    return c


def payload(amount, cltv=356, blinded=False):
    records = {2: tu64(amount), 4: tu64(cltv)}
    if blinded:
        records[10] = b"\x01" * 20
    body = serialize_tlv_stream(records)
    return (bytes([len(body)]) + body).hex()


def send(svc, scid, amount, htlc_id=1, forward=None, blinded=False, cltv=500, height=100,
         payment_hash="aa" * 32, respond=None):
    """An HTLC to the JIT scid; the answers it got."""
    forward = amount if forward is None else forward
    answers = []
    svc.on_htlc(htlc_event({"short_channel_id": scid, "forward_msat": forward,
                            "outgoing_cltv_value": cltv - 144,
                            "payload": payload(forward, cltv - 144, blinded)},
                           short_channel_id="9x9x9", id=htlc_id, amount_msat=amount,
                           cltv_expiry=cltv, cltv_expiry_relative=cltv - height,
                           payment_hash=payment_hash), respond or answers.append)
    return answers


def forwarded(answer):
    """(amount in the rewritten onion, extra fee TLV) of a `continue` answer (its
    payload without the length prefix: lightningd adds it)."""
    records = parse_tlv_stream(bytes.fromhex(answer["payload"]))
    extra = parse_tlv_stream(bytes.fromhex(answer["extra_tlvs"])) if "extra_tlvs" in answer \
        else {}
    fee = int.from_bytes(extra[EXTRA_FEE_TLV], "big") if EXTRA_FEE_TLV in extra else 0
    return read_tu64(records[2]), fee


def time_passes(svc, clock, to_ms):
    """The clock reaches to_ms: every timer armed so far fires (each checks the time)."""
    clock.t = to_ms
    timers, svc.timers[:] = list(svc.timers), []
    for _, fn in timers:
        fn()


def ready(svc, node, channel_id="jit1"):
    next(c for c in node.channel_list if c["channel_id"] == channel_id)["state"] = \
        "CHANNELD_NORMAL"
    svc.on_channel_state(channel_id, "CHANNELD_NORMAL")
    svc.workers.run_all()


# --- lsps2.get_info / lsps2.buy ------------------------------------------------------

def test_menu_entries_carry_a_promise_bound_to_the_peer(clock):
    svc, _, _ = make_service()
    mine = menu(svc)
    assert [(e["min_fee_msat"], e["proportional"]) for e in mine] == [("2000", 10_000)]
    assert OpeningFeeParams.from_json(mine[0]).valid_until_ms == NOW + 600_000
    assert menu(svc, OTHER)[0]["promise"] != mine[0]["promise"]


def test_a_token_gated_menu_refuses_a_wrong_token_with_200():
    import dataclasses
    svc, _, _ = make_service(policy=dataclasses.replace(POLICY, tokens=frozenset({"t"})))
    with pytest.raises(LspsError) as e:
        menu(svc, token="x")
    assert e.value.code == 200
    assert menu(svc, token="t")


def test_buy_answers_a_fresh_scid_and_stores_the_session_first(clock):
    svc, _, rpc = make_service()
    result = buy(svc, 1_000_000).result
    assert result["lsp_cltv_expiry_delta"] == 144 and result["client_trusts_lsp"] is False
    scid = result["jit_channel_scid"]
    record = stored(rpc, SESSIONS, scid)
    assert record["state"] == S.WAITING and record["client_id"] == CLIENT
    assert (record["payment_size_msat"], record["opening_fee_msat"]) == (1_000_000, 10_000)
    assert svc.owns(scid) and not svc.owns("1x1x1") and not svc.owns(None)


def test_buy_without_a_size_is_no_mpp(clock):
    svc, _, rpc = make_service()
    scid = buy(svc).result["jit_channel_scid"]
    assert stored(rpc, SESSIONS, scid)["payment_size_msat"] is None


def test_buy_with_params_promised_to_another_peer_is_201(clock):
    svc, _, rpc = make_service()
    assert buy(svc, params=menu(svc, OTHER)[0]).error_code == 201
    assert rpc.data == {}


def test_buy_with_params_past_valid_until_is_201(clock):
    svc, _, _ = make_service()
    stale = menu(svc)[0]
    clock.advance(600_000)
    assert buy(svc, params=stale).error_code == 201


@pytest.mark.parametrize("size,code", [(5_000, 202), (10**9 + 1, 203), (10**8 + 1, 203)])
def test_buy_refuses_sizes_outside_the_limits_or_our_inbound_liquidity(clock, size, code):
    svc, _, rpc = make_service()
    assert buy(svc, size).error_code == code
    assert rpc.data == {}


def test_a_peer_holding_twenty_unpaid_purchases_is_refused(clock):
    svc, _, _ = make_service()
    for _ in range(handler.MAX_ACTIVE_SESSIONS_PER_PEER):
        assert buy(svc).result["jit_channel_scid"]
    assert buy(svc).error_code == 1
    assert buy(svc, peer=OTHER).result


def test_an_unexpected_failure_in_buy_is_internal_error(clock):
    svc, node, rpc = make_service()
    params = menu(svc)[0]
    node.channels_error = RuntimeError("rpc down")
    assert buy(svc, params=params).error_code == -32603
    assert rpc.data == {}


# --- JIT sessions -------------------------------------------------------------------------

def test_a_complete_payment_opens_one_channel_and_is_forwarded_minus_the_fee(clock):
    svc, node, rpc = make_service()
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    marks = []
    node.on_fund = lambda: marks.append(stored(rpc, SESSIONS, scid)["pre_channels"])
    first = send(svc, scid, 400_000, htlc_id=1)
    assert stored(rpc, SESSIONS, scid)["state"] == S.COLLECTING and node.fundings == []
    second = send(svc, scid, 600_000, htlc_id=2)
    svc.workers.run_all()
    assert marks == [[]]  # the open was marked before fundchannel
    assert node.fundings == [(CLIENT, 100_000, False, 0)]  # zero-conf, unannounced
    assert stored(rpc, SESSIONS, scid)["opening_channel_id"] == "jit1"
    assert first == second == []  # held until the channel is ready
    ready(svc, node)
    assert node.fees == [("jit1", 0, 0)]
    assert first[0]["forward_to"] == second[0]["forward_to"] == "jit1"
    assert forwarded(first[0]) == (390_000, 10_000) and forwarded(second[0]) == (600_000, 0)
    assert stored(rpc, SESSIONS, scid)["state"] == S.FORWARDING


def test_settled_then_expired_the_session_is_done_and_fees_restored(clock):
    svc, node, rpc = make_service()
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    send(svc, scid, 1_000_000)
    svc.workers.run_all()
    ready(svc, node)
    svc.on_forward_event(scid, "9x9x9", 1, "offered")  # not an outcome
    assert stored(rpc, SESSIONS, scid)["state"] == S.FORWARDING
    svc.on_forward_event(scid, "9x9x9", 1, "settled")
    assert stored(rpc, SESSIONS, scid)["state"] == S.DONE
    # later payments over the JIT channel pay no opening fee: forwarded as they came
    later = send(svc, scid, 50_000, htlc_id=7, payment_hash="bb" * 32)
    assert later == [{"result": "continue", "forward_to": "jit1"}]
    time_passes(svc, clock, NOW + 600_000 - 1)
    assert node.fees == [("jit1", 0, 0)]
    time_passes(svc, clock, NOW + 600_000)  # valid_until
    assert node.fees[-1] == ("jit1", 1000, 10)
    assert stored(rpc, SESSIONS, scid)["fees_restored"] is True
    assert scid in svc.live   # forward outcomes still reach it until it is archived


def test_fees_not_restored_are_tried_again_at_the_next_deadline(clock):
    svc, node, rpc = make_service()
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    send(svc, scid, 1_000_000)
    svc.workers.run_all()
    node.fee_error = RuntimeError("setchannel failed")
    ready(svc, node)  # zeroing failed too: logged, forwarded anyway
    assert node.fees == []
    svc.on_forward_event(scid, "9x9x9", 1, "settled")
    time_passes(svc, clock, NOW + 600_000)
    assert "fees_restored" not in stored(rpc, SESSIONS, scid) and scid in svc.live
    node.fee_error = None
    time_passes(svc, clock, NOW + 600_001)  # the deadline was armed again
    assert node.fees == [("jit1", 1000, 10)] and stored(rpc, SESSIONS, scid)["fees_restored"]


def test_a_part_failed_downstream_leaves_the_fee_owed(clock):
    svc, node, rpc = make_service()
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    send(svc, scid, 1_000_000)
    svc.workers.run_all()
    ready(svc, node)
    svc.on_forward_event(scid, "9x9x9", 1, "failed")
    record = stored(rpc, SESSIONS, scid)
    assert record["state"] == S.WAITING and record["channel_id"] == "jit1"
    again = send(svc, scid, 1_000_000, htlc_id=2, payment_hash="bb" * 32)
    svc.workers.run_all()
    assert len(node.fundings) == 1  # the channel made is reused
    assert forwarded(again[0]) == (990_000, 10_000)


@pytest.mark.parametrize("error,code", [
    (FundingError("refused", refused_by_peer=True), UNKNOWN_NEXT_PEER),
    (FundingError("no funds", refused_by_peer=False), TEMPORARY_CHANNEL_FAILURE),
    (RuntimeError("rpc gone"), TEMPORARY_CHANNEL_FAILURE),
])
def test_a_failed_open_fails_the_parts_back(clock, error, code):
    svc, node, rpc = make_service()
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    node.fund_error = error
    answers = send(svc, scid, 1_000_000)
    svc.workers.run_all()
    assert answers == [{"result": "fail", "failure_message": code}]
    record = stored(rpc, SESSIONS, scid)
    assert record["state"] == S.WAITING and "open failed" in record["failures"][0]["reason"]


def test_an_open_still_stuck_at_its_deadline_is_cancelled(clock):
    svc, node, _ = make_service()
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]

    def deadline_passes():
        delay, fn = svc.timers[-1]
        assert delay == POLICY.open_timeout_s
        fn()
    node.on_fund = deadline_passes
    node.fund_error = FundingError("cancelled", refused_by_peer=True)
    send(svc, scid, 1_000_000)
    svc.workers.run_all()
    assert node.cancelled == [CLIENT]


def test_an_open_that_finished_is_not_cancelled_at_its_deadline(clock):
    svc, node, _ = make_service()
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    send(svc, scid, 1_000_000)
    svc.workers.run_all()
    for delay, fn in list(svc.timers):
        if delay == POLICY.open_timeout_s:
            fn()
    assert node.cancelled == []


def test_a_channel_not_ready_in_time_fails_the_parts_and_is_reused(clock):
    svc, node, rpc = make_service()
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    answers = send(svc, scid, 1_000_000)
    svc.workers.run_all()
    svc.on_channel_state("jit1", "CHANNELD_AWAITING_LOCKIN")  # not ready yet: ignored
    svc.workers.run_all()
    assert answers == []
    svc.timers[-1][1]()  # the ready timeout
    assert answers == [{"result": "fail", "failure_message": TEMPORARY_CHANNEL_FAILURE}]
    svc.timers[-1][1]()  # a second timeout for the same wait does nothing
    assert len(answers) == 1
    ready(svc, node)  # ready late: no parts left to forward
    assert stored(rpc, SESSIONS, scid)["state"] == S.WAITING


def test_one_open_per_peer_at_a_time_the_next_queued(clock):
    svc, node, rpc = make_service()
    first = buy(svc, 1_000_000).result["jit_channel_scid"]
    second = buy(svc, 1_000_000).result["jit_channel_scid"]
    order = []
    node.on_fund = lambda: order.append(sorted(svc.funding.items()))
    send(svc, first, 1_000_000, htlc_id=1)
    send(svc, second, 1_000_000, htlc_id=2, payment_hash="bb" * 32)
    assert svc.queued == {CLIENT: [second]}
    svc.workers.run_all()
    assert order == [[(CLIENT, first)], [(CLIENT, second)]]
    assert stored(rpc, SESSIONS, first)["opening_channel_id"] == "jit1"
    assert stored(rpc, SESSIONS, second)["opening_channel_id"] == "jit2"
    assert svc.queued == {} and svc.funding == {}


def test_a_complete_set_waits_for_an_offline_client(clock):
    connected = set()
    svc, node, _ = make_service(connected=connected)
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    send(svc, scid, 1_000_000)
    svc.workers.run_all()
    assert node.fundings == []
    connected.add(CLIENT)
    svc.on_connect(CLIENT)
    svc.workers.run_all()
    assert len(node.fundings) == 1


def test_a_woken_client_has_the_wake_timeout_to_come_back(clock):
    connected, woken = set(), []
    svc, node, rpc = make_service(connected=connected)
    svc.wake, svc.wake_timeout_s = lambda peer: woken.append(peer) or True, 30
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    answers = send(svc, scid, 1_000_000)
    assert woken == [CLIENT] and stored(rpc, SESSIONS, scid)["wake_until_ms"] == \
        clock.t + 30_000
    clock.advance(30_000)
    svc.timers[-1][1]()
    assert answers == [{"result": "fail", "failure_message": TEMPORARY_CHANNEL_FAILURE}]
    svc.workers.run_all()
    assert node.fundings == []


def test_a_client_that_cannot_be_woken_keeps_the_collection_window(clock):
    svc, _, rpc = make_service(connected=set())
    svc.wake = lambda peer: False
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    send(svc, scid, 1_000_000)
    assert "wake_until_ms" not in stored(rpc, SESSIONS, scid)


def test_held_parts_are_failed_before_their_cltv_expiry(clock):
    connected = set()
    svc, _, rpc = make_service(connected=connected)
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    answers = send(svc, scid, 1_000_000, cltv=500)
    svc.on_block(493)
    assert answers == []
    svc.on_block(494)  # 500 - 494 <= margin 6
    assert answers == [{"result": "fail", "failure_message": TEMPORARY_CHANNEL_FAILURE}]
    assert stored(rpc, SESSIONS, scid)["parts"] == []


def test_parts_not_complete_in_90s_are_failed_back(clock):
    svc, _, rpc = make_service()
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    answers = send(svc, scid, 400_000)
    clock.advance(S.MPP_COLLECTION_MS)
    svc.timers[-1][1]()
    assert answers == [{"result": "fail", "failure_message": TEMPORARY_CHANNEL_FAILURE}]
    assert stored(rpc, SESSIONS, scid)["state"] == S.WAITING


def test_a_part_that_cannot_pay_the_fee_path_is_refused_at_once(clock):
    svc, node, _ = make_service()
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    answers = send(svc, scid, 1_000_000, cltv=250)  # 250 - 100 <= 144 + 6
    assert answers == [{"result": "fail", "failure_message": UNKNOWN_NEXT_PEER}]
    svc.workers.run_all()
    assert node.fundings == []


def test_a_blinded_no_mpp_part_is_forwarded_as_lightningd_decrypted_it(clock):
    svc, node, rpc = make_service()
    scid = buy(svc).result["jit_channel_scid"]
    answers = send(svc, scid, 1_020_000, forward=1_000_000, blinded=True)
    svc.workers.run_all()
    ready(svc, node)
    assert answers == [{"result": "continue", "forward_to": "jit1"}]
    assert stored(rpc, SESSIONS, scid)["forwards"] == {"9x9x9/1": [1_000_000, 20_000]}


def test_a_restart_answers_a_replayed_part_as_decided(clock):
    rpc, node = MemoryRpc(), JitNode()
    svc, _, _ = make_service(rpc, node)
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    send(svc, scid, 1_000_000)
    svc.workers.run_all()
    ready(svc, node)
    restarted, _, _ = make_service(rpc, node)
    again = send(restarted, scid, 1_000_000)
    assert again[0]["forward_to"] == "jit1" and forwarded(again[0]) == (990_000, 10_000)
    assert len(node.fundings) == 1


def test_finished_sessions_are_pruned_after_the_retention(clock):
    rpc = MemoryRpc()
    svc, _, _ = make_service(rpc)
    scid = buy(svc).result["jit_channel_scid"]
    clock.advance(600_000)
    svc.timers[-1][1]()  # valid_until passed unpaid
    assert stored(rpc, SESSIONS, scid)["state"] == S.FAILED
    restarted, _, _ = make_service(rpc)       # the start-up sweep archives it
    restarted.workers.run_all()
    assert stored(rpc, SESSIONS, scid) is None and scid not in restarted.sessions
    assert stored(rpc, handler.SESSIONS_DONE, scid)["state"] == S.FAILED
    assert [s["jit_channel_scid"] for s in restarted.list_sessions(None, None)] == [scid]
    live = buy(restarted).result["jit_channel_scid"]
    listed = {s["jit_channel_scid"]: s for s in restarted.list_sessions(None, None)}
    assert set(listed) == {scid, live}
    assert sorted(r["state"] for r in restarted.summary_rows()) == sorted(
        s["state"] for s in listed.values()) == [S.FAILED, S.WAITING]
    assert restarted.list_sessions(None, scid)[0]["state"] == S.FAILED
    clock.advance(handler.SESSION_RETENTION_MS + 86_400_000 + 1)  # the day after retention
    make_service(rpc)[0].workers.run_all()
    assert stored(rpc, handler.SESSIONS_DONE, scid) is None


def test_operator_list_shows_sessions_with_their_parts(clock):
    svc, node, _ = make_service()
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    send(svc, scid, 1_000_000)
    svc.workers.run_all()
    ready(svc, node)
    listed = svc.list_sessions(CLIENT, None)
    assert [(s["jit_channel_scid"], s["state"], s["channel_id"]) for s in listed] == [
        (scid, S.FORWARDING, "jit1")]
    assert listed[0]["parts"] == [{"htlc": "9x9x9/1", "amount_msat": 1_000_000,
                                   "forward_msat": 1_000_000, "cltv_expiry": 500,
                                   "arrived_at": NOW // 1000, "forwarded_msat": 990_000}]
    assert svc.list_sessions(OTHER, None) == [] and svc.list_sessions(None, "1x1x1") == []
    assert svc.claims("jit1") and not svc.claims("inbound")


def test_operator_list_reports_the_open_and_the_fee_earned_once_settled(clock):
    """What lsp-summary adds up: the channel's size and on-chain fee, when it opened
    and forwarded, and the opening fee only once a forwarded part settled."""
    svc, node, _ = make_service()
    scid = buy(svc, 1_000_000).result["jit_channel_scid"]
    send(svc, scid, 1_000_000)
    svc.workers.run_all()
    clock.t = NOW + 2_500
    ready(svc, node)
    [listed] = svc.list_sessions(CLIENT, None)
    assert (listed["channel_sat"], listed["funding_fee_sat"], listed["opened_at"],
            listed["forwarded_at"], listed["open_to_forward_ms"]) == (
        100_000, 153, NOW // 1000, (NOW + 2_500) // 1000, 2_500)
    assert listed["opening_fee_earned_msat"] == 0   # forwarded, not yet paid
    svc.on_forward_event(scid, "9x9x9", 1, "settled")
    assert svc.list_sessions(CLIENT, None)[0]["opening_fee_earned_msat"] == 10_000


# --- the wallet (client) ----------------------------------------------------------------

class Wallet:
    """What Lsps2Client asks of lightningd."""

    def __init__(self):
        self.channel_list, self.invoices, self.replaced = [], [], []

    def config(self, name):
        return {"watchtime-blocks": 144}.get(name)

    def channels(self, peer_id=None):
        return [c for c in self.channel_list if peer_id in (None, c["peer_id"])]

    def create_invoice(self, amount_msat, label, description, expiry_s, preimage=None,
                       cltv=None):
        self.invoices.append((amount_msat, label, description, expiry_s))
        return {"bolt11": INVOICE_250K_SAT, "payment_hash": "ph" + label[-4:],
                "expires_at": NOW // 1000 + expiry_s}

    def replace_invoice(self, label, unsigned, preimage):
        self.replaced.append((label, unsigned))
        return "lnbc-signed-" + label


def lsp_entry(valid_for_ms=600_000, **changes):
    e = OpeningFeeParams(2000, 10_000, NOW + valid_for_ms, 1008, 2016, 10_000, 10**9,
                         "pp").to_json()
    e.update(changes)
    return e


class Lsp:
    def __init__(self, **answers):
        self.answers, self.asked = answers, []

    def __call__(self, lsp, method, params):
        self.asked.append((method, params))
        return self.answers[method.split(".")[1]]


BOUGHT = {"jit_channel_scid": "900000x1x0", "lsp_cltv_expiry_delta": 144}


def wallet(lsp, monkeypatch, rpc=None):
    rpc = rpc or MemoryRpc()
    node = Wallet()
    c = Lsps2Client(node, Store(lambda: rpc), lsp, lambda m, lvl: None)
    c.start()
    monkeypatch.setattr(client_handler, "time", types.SimpleNamespace(time=lambda: NOW / 1000))
    return c, node, rpc


def test_wallet_get_info_gives_integer_msat_and_the_entry_verbatim(clock, monkeypatch):
    lsp = Lsp(get_info={"opening_fee_params_menu": [lsp_entry()]})
    c, _, _ = wallet(lsp, monkeypatch)
    got = c.get_info(LSP, "tok")["opening_fee_params_menu"][0]
    assert got["min_fee_msat"] == 2000 and got["promise"] == "pp"
    assert got["valid_until"] == lsp_entry()["valid_until"]
    assert lsp.asked == [("lsps2.get_info", {"token": "tok"})]


def test_wallet_buy_records_the_purchase_and_hands_out_the_jit_invoice(clock, monkeypatch):
    lsp = Lsp(get_info={"opening_fee_params_menu": [lsp_entry()]}, buy=BOUGHT)
    c, node, rpc = wallet(lsp, monkeypatch)
    out = c.buy(LSP, 1_000_000, "coffee", "lbl", None, None, None, None)
    assert lsp.asked[1] == ("lsps2.buy", {"opening_fee_params": lsp_entry(),
                                          "payment_size_msat": "1000000"})
    assert out["bolt11"] == "lnbc-signed-lbl" and out["opening_fee_msat"] == 10_000
    assert out["jit_channel_scid"] == "900000x1x0"
    assert node.invoices == [(1_000_000, "lbl", "coffee", 600 - 60)]  # before valid_until
    record = stored(rpc, PURCHASES, out["payment_hash"])
    assert record["state"] == C.WAITING and record["bolt11"] == out["bolt11"]
    assert record["pre_channels"] == []
    assert c.accepts_zeroconf_from(LSP) and not c.accepts_zeroconf_from(OTHER)
    assert [b["payment_hash"] for b in c.list_buys()] == [out["payment_hash"]]


def test_wallet_buy_with_given_params_skips_get_info(clock, monkeypatch):
    lsp = Lsp(buy=BOUGHT)
    c, _, _ = wallet(lsp, monkeypatch)
    out = c.buy(LSP, None, "any", None, None, lsp_entry(), None, 3600)
    assert [m for m, _ in lsp.asked] == ["lsps2.buy"]
    assert "opening_fee_msat" not in out and out["label"].startswith("clnlsp-lsps2-")


def test_wallet_buy_refuses_bad_params_given_by_the_operator(clock, monkeypatch):
    c, _, rpc = wallet(Lsp(), monkeypatch)
    with pytest.raises(ClientError) as e:
        c.buy(LSP, None, "x", None, None, {"min_fee_msat": "1"}, None, None)
    assert e.value.code == C.BAD_ARGUMENT and rpc.data == {}


def test_wallet_buy_over_the_fee_cap_never_asks_to_buy(clock, monkeypatch):
    lsp = Lsp(get_info={"opening_fee_params_menu": [lsp_entry()]})
    c, node, rpc = wallet(lsp, monkeypatch)
    with pytest.raises(ClientError) as e:
        c.buy(LSP, 1_000_000, "x", None, None, None, 9_999, None)
    assert e.value.code == C.FEE_TOO_HIGH
    assert [m for m, _ in lsp.asked] == ["lsps2.get_info"] and node.invoices == []


def test_wallet_buy_with_a_malformed_lsp_answer_makes_no_invoice(clock, monkeypatch):
    lsp = Lsp(get_info={"opening_fee_params_menu": [lsp_entry()]},
              buy={"jit_channel_scid": "nonsense", "lsp_cltv_expiry_delta": 144})
    c, node, rpc = wallet(lsp, monkeypatch)
    with pytest.raises(ClientError) as e:
        c.buy(LSP, 1_000_000, "x", None, None, None, None, None)
    assert e.value.code == BAD_RESPONSE and node.invoices == [] and rpc.data == {}


def test_wallet_purchase_paid_is_recorded_once_and_no_longer_zeroconf(clock, monkeypatch):
    lsp = Lsp(buy=BOUGHT)
    c, _, rpc = wallet(lsp, monkeypatch)
    out = c.buy(LSP, None, "x", "lbl", None, lsp_entry(), None, None)
    c.on_invoice_paid("other-label")
    assert stored(rpc, PURCHASES, out["payment_hash"])["state"] == C.WAITING
    c.on_invoice_paid("lbl")
    record = stored(rpc, PURCHASES, out["payment_hash"])
    assert record["state"] == C.PAID and record["paid_at"] == NOW // 1000
    rpc.data.clear()
    c.on_invoice_paid("lbl")
    assert rpc.data == {}  # paid already: nothing written again
    assert not c.accepts_zeroconf_from(LSP)


def test_wallet_lists_an_unpaid_purchase_past_valid_until_as_expired(clock, monkeypatch):
    lsp = Lsp(buy=BOUGHT)
    c, _, rpc = wallet(lsp, monkeypatch)
    c.buy(LSP, None, "x", "lbl", None, lsp_entry(), None, None)
    monkeypatch.setattr(client_handler, "time",
                        types.SimpleNamespace(time=lambda: NOW / 1000 + 600))
    assert [b["state"] for b in c.list_buys()] == [C.EXPIRED]
    assert not c.accepts_zeroconf_from(LSP)
    restarted, _, _ = wallet(lsp, monkeypatch, rpc)
    assert [b["label"] for b in restarted.list_buys()] == ["lbl"]


def jit_onion(amount, total):
    body = serialize_tlv_stream({2: tu64(amount), 4: tu64(500), 8: b"\x07" * 32 + tu64(total)})
    return (bytes([len(body)]) + body).hex()


def test_wallet_takes_a_jit_part_with_the_promised_fee_and_refuses_a_bigger_one(
        clock, monkeypatch):
    c, node, _ = wallet(Lsp(), monkeypatch)
    node.channel_list = [{"channel_id": "jit", "peer_id": LSP, "scids": ["3x3x3"],
                          "opener": "remote"}]
    c.purchases["ab"] = {"lsp_id": LSP, "payment_hash": "ab", "opening_fee_params": lsp_entry(),
                         "payment_size_msat": 1_000_000, "opening_fee_msat": 10_000,
                         "max_fee_msat": None, "jit_channel_id": "jit"}
    fee = serialize_tlv_stream({EXTRA_FEE_TLV: (10_000).to_bytes(8, "big")}).hex()
    answer = c.on_htlc(htlc_event({"payload": jit_onion(1_000_000, 1_000_000)}, LSP,
                                  payment_hash="ab", short_channel_id="3x3x3", id=1,
                                  amount_msat=990_000, extra_tlvs=fee))
    assert answer["result"] == "continue" and answer["invoice_msat"] == 990_000
    more = serialize_tlv_stream({EXTRA_FEE_TLV: (10_001).to_bytes(8, "big")}).hex()
    assert c.on_htlc(htlc_event({"payload": jit_onion(1_000_000, 1_000_000)}, LSP,
                                payment_hash="ab", short_channel_id="3x3x3", id=2,
                                amount_msat=989_999, extra_tlvs=more)) is None
    # not a JIT invoice of ours, or a forward: lightningd's own rules
    assert c.on_htlc(htlc_event({}, LSP, payment_hash="cd")) is None
    assert c.on_htlc(htlc_event({"short_channel_id": "1x1x1"}, LSP, payment_hash="ab")) is None


def test_wallet_jit_channel_bound_is_the_only_one_taking_fees(clock, monkeypatch):
    c, node, _ = wallet(Lsp(), monkeypatch)
    node.channel_list = [{"channel_id": "jit", "peer_id": LSP, "scids": ["3x3x3"],
                          "opener": "remote"},
                         {"channel_id": "later", "peer_id": LSP, "scids": ["4x4x4"],
                          "opener": "remote"}]
    purchase = {"lsp_id": LSP, "jit_channel_id": "jit"}
    assert c._jit_channel(purchase, "3x3x3") and not c._jit_channel(purchase, "4x4x4")
    assert not c._jit_channel(purchase, "7x7x7")
    assert c._jit_channel({"lsp_id": LSP}, "4x4x4")  # a purchase from before the binding

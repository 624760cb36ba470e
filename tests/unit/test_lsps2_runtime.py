"""Lsps2Service against a fake node: one purchase funds at most one channel, across
restarts, timeouts and CLTV failures (issue 11 item 9)."""
from fakes import Dispatcher, MemoryRpc, Workers

import lsps.lsps2.service as S
from lsps.lsps2.msgs import OpeningFeeParams
from lsps.lsps2.service_handler import SESSIONS, Lsps2Service
from lsps.node.store import Store

CLIENT = "02" + "ab" * 32
NOW_FAR = 2**42


class FakeNode:
    def __init__(self):
        self.channel_list = []
        self.fundings = []

    def channels(self, peer_id=None):
        return [c for c in self.channel_list if peer_id in (None, c["peer_id"])]

    def fund_channel(self, peer_id, amount_sat, announce, mindepth, push_msat=0):
        self.fundings.append((peer_id, amount_sat))
        cid = f"funded{len(self.fundings)}"
        self.channel_list.append({"channel_id": cid, "peer_id": peer_id, "opener": "local",
                                  "state": "CHANNELD_AWAITING_LOCKIN", "scids": [],
                                  "htlc_minimum_msat": 1})
        return {"channel_id": cid, "funding_outpoint": "f:0"}

    def funding_fee_sat(self, txid):
        return 153

    def set_channel_fee(self, *a):
        pass

    def cancel_open(self, peer):
        pass


def service(rpc, node, connected=True):
    policy = S.Policy(fees=((2000, 10_000),), valid_for_s=600, min_lifetime=1008,
                      max_client_to_self_delay=2016, min_payment_size_msat=10_000,
                      max_payment_size_msat=10**9, cltv_expiry_delta=144,
                      min_channel_sat=100_000)
    timers = []
    svc = Lsps2Service(node, Store(lambda: rpc), S.Service(policy, bytes(32)), Dispatcher(),
                       lambda delay, fn: timers.append(fn), lambda peer: connected,
                       lambda m, lvl: None)
    svc.workers = svc.openers = Workers()
    return svc, timers


def opening_session(rpc, **extra):
    params = OpeningFeeParams(2000, 10_000, NOW_FAR, 1008, 2016, 10_000, 10**9, "x")
    session = S.new_session("900000x1x0", CLIENT, params, 100_000, 2000, 0)
    session.update(state=S.OPENING, payment_hash="aa", first_part_ms=0,
                   parts=[{"key": "1x1x1/1", "payment_hash": "aa", "amount_msat": 100_000,
                           "forward_msat": 100_000, "cltv_expiry": 900, "outgoing_cltv": 756,
                           "height": 100, "blinded": False, "payload": None,
                           "arrived_ms": 0}], **extra)
    Store(lambda: rpc).put(SESSIONS, session["scid"], session)
    return session


def test_restart_with_a_recorded_channel_never_funds_again():
    rpc, node = MemoryRpc(), FakeNode()
    opening_session(rpc, pre_channels=[], opening_channel_id="funded-before")
    node.channel_list.append({"channel_id": "funded-before", "peer_id": CLIENT,
                              "opener": "local", "state": "CHANNELD_NORMAL", "scids": [],
                              "htlc_minimum_msat": 1})
    svc, _ = service(rpc, node)
    svc.start()
    svc.workers.run_all()
    assert node.fundings == []
    assert svc.sessions["900000x1x0"]["state"] == S.FORWARDING
    assert svc.sessions["900000x1x0"]["channel_id"] == "funded-before"


def test_restart_after_the_mark_adopts_the_channel_the_open_made():
    rpc, node = MemoryRpc(), FakeNode()
    opening_session(rpc, pre_channels=["old"])
    node.channel_list += [
        {"channel_id": "old", "peer_id": CLIENT, "opener": "local", "state": "CHANNELD_NORMAL",
         "scids": [], "htlc_minimum_msat": 1},
        {"channel_id": "made", "peer_id": CLIENT, "opener": "local",
         "state": "CHANNELD_AWAITING_LOCKIN", "scids": [], "htlc_minimum_msat": 1}]
    svc, _ = service(rpc, node)
    svc.start()
    svc.workers.run_all()
    assert node.fundings == []
    assert svc.sessions["900000x1x0"]["opening_channel_id"] == "made"


def test_no_second_fundchannel_after_a_ready_timeout():
    rpc, node = MemoryRpc(), FakeNode()
    opening_session(rpc)
    svc, timers = service(rpc, node)
    svc.start()
    svc.workers.run_all()
    assert len(node.fundings) == 1
    # the channel never got ready in time: the parts are failed back
    for fn in list(timers):
        fn()
    session = svc.sessions["900000x1x0"]
    assert session["state"] == S.WAITING and session["opening_channel_id"] == "funded1"
    # the payer retries: the same channel is awaited, none funded
    part = {"key": "1x1x1/2", "payment_hash": "bb", "amount_msat": 100_000,
            "forward_msat": 100_000, "cltv_expiry": 900, "outgoing_cltv": 756, "height": 100,
            "blinded": False, "payload": None}
    with svc.lock:
        svc._apply(session, S.on_htlc(session, part, 1, True, 144, 6))
    svc.workers.run_all()
    assert len(node.fundings) == 1


def test_a_client_offline_at_start_resumes_on_connect():
    rpc, node = MemoryRpc(), FakeNode()
    opening_session(rpc)
    svc, _ = service(rpc, node, connected=False)
    svc.start()
    svc.workers.run_all()
    assert node.fundings == []
    svc.on_connect(CLIENT)
    svc.workers.run_all()
    assert len(node.fundings) == 1


def stored(rpc, scid, state, **extra):
    params = OpeningFeeParams(2000, 10_000, NOW_FAR, 1008, 2016, 10_000, 10**9, "x")
    session = S.new_session(scid, CLIENT, params, 100_000, 2000, 0)
    session.update(state=state, **extra)
    Store(lambda: rpc).put(SESSIONS, scid, session)
    return session


def test_finished_sessions_are_kept_but_out_of_every_per_event_walk():
    """Cost that does not grow with history: blocks, connects and forward events walk
    only sessions that can still change; channels are found by index."""
    rpc, node = MemoryRpc(), FakeNode()
    stored(rpc, "900000x1x1", S.FAILED)
    stored(rpc, "900000x1x2", S.DONE, fees_restored=True, channel_id="paid-channel")
    stored(rpc, "900000x1x3", S.WAITING)
    svc, _ = service(rpc, node)
    svc.start()
    assert set(svc.sessions) == {"900000x1x1", "900000x1x2", "900000x1x3"}
    assert set(svc.live) == {"900000x1x2", "900000x1x3"}   # a paid one until archived
    assert svc.claims("paid-channel") and not svc.claims("other")
    seen = []
    S_on_block = S.on_block
    try:
        S.on_block = lambda session, *a: seen.append(session["scid"]) or S.Decision()
        svc.on_block(500)
    finally:
        S.on_block = S_on_block
    assert sorted(seen) == ["900000x1x2", "900000x1x3"]
    # a session that fails leaves the live set when it is persisted
    session = svc.sessions["900000x1x3"]
    session["state"] = S.FAILED
    svc._persist(session)
    assert set(svc.live) == {"900000x1x2"}


def test_a_new_scid_never_repeats_a_stored_session():
    rpc, node = MemoryRpc(), FakeNode()
    svc, _ = service(rpc, node)
    made = {svc._new_scid() for _ in range(200)}
    assert len(made) == 200
    svc.sessions = {scid: {} for scid in made}
    assert svc._new_scid() not in made


def test_a_paid_session_is_not_archived_while_its_htlcs_could_be_replayed():
    rpc, node = MemoryRpc(), FakeNode()
    part = {"key": "1x1x1/1", "payment_hash": "aa", "amount_msat": 100_000,
            "forward_msat": 100_000, "cltv_expiry": 900, "outgoing_cltv": 756, "height": 100,
            "blinded": False, "payload": None, "arrived_ms": 0}
    stored(rpc, "900000x1x5", S.DONE, fees_restored=True, channel_id="c", parts=[part],
           valid_until_ms=0)
    svc, _ = service(rpc, node)
    svc.start()
    svc.workers.run_all()
    assert svc.owns("900000x1x5")            # height 0: before the first block, keep all
    svc.on_block(905)
    svc._archive()
    assert svc.owns("900000x1x5")            # 900 + 6 > 905
    svc.on_block(906)
    svc._archive()
    assert not svc.owns("900000x1x5") and "900000x1x5" not in svc.sessions

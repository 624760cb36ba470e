"""HtlcHolder at run time: holds asked for over LSPS0 or by hold_htlc, HTLCs kept back
until release_held_htlc arrives on a release path, failed before their expiry, and the
persisted state after a restart."""
import json

import pytest
from fakes import Dispatcher, MemoryRpc, htlc_event
from fakes_onion import NOW, PEER, Logs, OnionNode, arrive, channel, make_messenger

from bolt12ext import asyncmsg, onionmsg
from bolt12ext.blinding import BlindedPath
from bolt12ext.hold import FAILED, HELD, RELEASED, WAITING, Limits, hold_key
from bolt12ext.tlv import record
from lsps.asyncpay.holder import (
    HOLD_METHOD,
    HOLD_REFUSED,
    HOLDS,
    HtlcHolder,
    forward_released,
)
from lsps.asyncpay.messenger import PATHS
from lsps.htlc import TEMPORARY_NODE_FAILURE
from lsps.lsps0.msgs import INVALID_PARAMS, LspsError
from lsps.lsps0.service import Call
from lsps.node.replies import htlc_fail

HASH = "ab" * 32
ME = PEER.hex()
HOLD_TLV = asyncmsg.hold_htlc_tlvs().hex()
RELEASE = {onionmsg.RELEASE_HELD_HTLC: b""}
LIMITS = Limits(expiry_margin_blocks=10)


class Answers(list):
    """An HTLC's responder: the answers it got."""

    def __call__(self, result):
        self.append(result)


def make_holder(monkeypatch, rpc=None, limits=LIMITS, channels=()):
    node = OnionNode(channels=channels, connected=[ME])
    m = make_messenger(monkeypatch, node=node, rpc=rpc)
    m.start()
    holder = HtlcHolder(m.store, m, limits, Logs())
    dispatcher = Dispatcher()
    holder.start(dispatcher)
    holder.dispatcher = dispatcher
    return holder


def ask(holder, payment_hash=HASH, peer=ME):
    return holder.on_hold_request(Call(None, peer, 1, HOLD_METHOD,
                                       {"payment_hash": payment_hash}))


def htlc(payment_hash=HASH, peer=ME, key_id=1, cltv=500, flagged=False, extra=""):
    tlvs = extra + (HOLD_TLV if flagged else "")
    return htlc_event(peer_id=peer, payment_hash=payment_hash, id=key_id, cltv_expiry=cltv,
                      cltv_expiry_relative=cltv - 100, amount_msat=5000,
                      extra_tlvs=tlvs)   # judged at height 100


def stored(holder, payment_hash=HASH, peer=ME):
    return holder.store.get(HOLDS, hold_key(peer, payment_hash))


def release(holder, answer):
    path = BlindedPath.parse(bytes.fromhex(answer["release_paths"][0]))[0]
    arrive(holder.messenger, path, RELEASE)


# ---- the LSPS0 extension -------------------------------------------------------------------

def test_hold_method_is_registered_with_payment_hash_required(monkeypatch):
    holder = make_holder(monkeypatch)
    spec = holder.dispatcher.methods[HOLD_METHOD]
    assert spec.required == frozenset({"payment_hash"})


@pytest.mark.parametrize("bad", ["AB" * 32, "ab" * 31, "zz" * 32, 7])
def test_hold_request_with_a_bad_payment_hash_is_invalid_params(monkeypatch, bad):
    holder = make_holder(monkeypatch)
    with pytest.raises(LspsError) as e:
        ask(holder, bad)
    assert e.value.code == INVALID_PARAMS
    assert holder.messenger.rpc.data == {}


def test_hold_request_answers_a_release_path_persisted_with_its_context(monkeypatch):
    holder = make_holder(monkeypatch)
    answer = ask(holder)
    assert answer["expires_at"] == NOW + Limits().ttl_s
    record_ = stored(holder)
    assert record_["state"] == WAITING and len(record_["release_path_ids"]) == 1
    (path_id,) = record_["release_path_ids"]
    ctx = holder.store.get(PATHS, path_id)
    assert ctx["purpose"] == "hold_release" and ctx["peer"] == ME
    assert ctx["data"] == {"payment_hash": HASH} and ctx["expires_at"] == answer["expires_at"]
    path = BlindedPath.parse(bytes.fromhex(answer["release_paths"][0]))[0]
    assert path.first_node_id == bytes.fromhex(holder.messenger.node.node_id())


def test_hold_request_beyond_the_peer_limit_is_refused(monkeypatch):
    holder = make_holder(monkeypatch, limits=Limits(per_peer=1))
    ask(holder, "01" * 32)
    with pytest.raises(LspsError) as e:
        ask(holder, "02" * 32)
    assert e.value.code == HOLD_REFUSED and "this peer" in e.value.message
    assert stored(holder, "02" * 32) is None


def test_peers_without_a_channel_share_half_the_holds(monkeypatch):
    holder = make_holder(monkeypatch, limits=Limits(total=2), channels=[channel("friend")])
    ask(holder, "01" * 32, peer="stranger1")
    with pytest.raises(LspsError, match="without a channel"):
        ask(holder, "02" * 32, peer="stranger2")
    assert ask(holder, "03" * 32, peer="friend")["release_paths"]


# ---- HTLCs ---------------------------------------------------------------------------------

def test_htlc_without_a_hold_is_not_ours(monkeypatch):
    holder = make_holder(monkeypatch)
    answers = Answers()
    assert holder.on_htlc(htlc(), answers) is False
    assert answers == [] and holder.messenger.rpc.data == {}


def test_flagged_htlc_is_held_and_persisted_without_an_answer(monkeypatch):
    holder = make_holder(monkeypatch)
    answers = Answers()
    assert holder.on_htlc(htlc(flagged=True), answers) is True
    assert answers == []
    rec = stored(holder)
    assert rec["state"] == HELD and rec["htlcs"] == {
        "1x1x1/1": {"amount_msat": 5000, "cltv_expiry": 500, "since": NOW}}


def test_htlc_of_a_requested_hold_is_held_even_unflagged(monkeypatch):
    holder = make_holder(monkeypatch)
    ask(holder)
    answers = Answers()
    assert holder.on_htlc(htlc(), answers) is True and answers == []
    assert stored(holder)["state"] == HELD


def test_release_forwards_held_htlcs_without_hold_htlc_after_persisting(monkeypatch):
    holder = make_holder(monkeypatch)
    answer = ask(holder)
    other = record(65537, b"\x01").hex()
    seen = []

    def respond(result):
        seen.append((result, stored(holder)))
    holder.on_htlc(htlc(key_id=1, flagged=True, extra=other), respond)
    holder.on_htlc(htlc(key_id=2), respond)
    release(holder, answer)
    assert [r for r, _ in seen] == [{"result": "continue", "extra_tlvs": other},
                                    {"result": "continue"}]   # the second had no records
    for _, rec in seen:      # the release was stored before either HTLC went on
        assert rec["state"] == RELEASED and rec["htlcs"] == {}
        assert rec["released_at"] == NOW
    assert holder.messenger.received["hold_release"] == 1


def test_release_arriving_twice_forwards_once(monkeypatch):
    holder = make_holder(monkeypatch)
    answer = ask(holder)
    answers = Answers()
    holder.on_htlc(htlc(), answers)
    release(holder, answer)
    release(holder, answer)
    assert answers == [{"result": "continue"}]


def test_release_before_the_htlc_forwards_it_on_arrival(monkeypatch):
    holder = make_holder(monkeypatch)
    release(holder, ask(holder))
    answers = Answers()
    assert holder.on_htlc(htlc(flagged=True), answers) is True
    assert answers == [{"result": "continue", "extra_tlvs": ""}]   # 75537 taken off


def test_other_message_on_a_release_path_is_dropped(monkeypatch):
    holder = make_holder(monkeypatch)
    answer = ask(holder)
    answers = Answers()
    holder.on_htlc(htlc(), answers)
    path = BlindedPath.parse(bytes.fromhex(answer["release_paths"][0]))[0]
    arrive(holder.messenger, path, {onionmsg.HELD_HTLC_AVAILABLE: b""})
    assert answers == [] and stored(holder)["state"] == HELD
    assert holder.messenger.dropped["release_held_htlc expected on a release path"] == 1


def test_release_after_the_hold_was_forgotten_does_nothing(monkeypatch):
    holder = make_holder(monkeypatch)
    answer = ask(holder)
    holder.messenger.clock.now += Limits().ttl_s
    holder.on_block(100)                   # unused past its TTL: forgotten
    assert stored(holder) is None and holder.list() == {"held": []}
    holder.messenger.clock.now -= 1        # the release path itself is still valid
    release(holder, answer)
    assert holder.list() == {"held": []}


def test_htlc_too_close_to_its_expiry_is_failed_at_once(monkeypatch):
    holder = make_holder(monkeypatch)
    answers = Answers()
    assert holder.on_htlc(htlc(cltv=110, flagged=True), answers) is True   # 110 - 10 <= 100
    assert answers == [htlc_fail(TEMPORARY_NODE_FAILURE)]


def test_flagged_htlc_beyond_the_limits_is_failed_not_forwarded(monkeypatch):
    holder = make_holder(monkeypatch, limits=Limits(per_peer=1))
    ask(holder, "01" * 32)
    answers = Answers()
    assert holder.on_htlc(htlc("02" * 32, flagged=True), answers) is True
    assert answers == [htlc_fail(TEMPORARY_NODE_FAILURE)]
    assert stored(holder, "02" * 32) is None


def test_block_fails_held_htlcs_near_expiry_after_persisting(monkeypatch):
    holder = make_holder(monkeypatch)
    seen = []
    holder.on_htlc(htlc(key_id=1, cltv=150, flagged=True),
                   lambda r: seen.append((1, r, stored(holder))))
    holder.on_htlc(htlc(key_id=2, cltv=300, flagged=True),
                   lambda r: seen.append((2, r, stored(holder))))
    holder.on_block(139)
    assert seen == []
    holder.on_block(140)                   # 150 - 10
    ((which, result, rec),) = seen
    assert which == 1 and result == htlc_fail(TEMPORARY_NODE_FAILURE)
    assert rec["state"] == HELD and list(rec["htlcs"]) == ["1x1x1/2"]
    holder.on_block(290)
    assert [w for w, _, _ in seen] == [1, 2]
    assert stored(holder)["state"] == FAILED and stored(holder)["why"] == "CLTV expiry close"
    assert "failed 1 held HTLC(s)" in holder.log.text()


def test_block_forgets_stale_holds_but_keeps_held_htlcs(monkeypatch):
    holder = make_holder(monkeypatch)
    ask(holder, "01" * 32)
    holder.on_htlc(htlc("02" * 32, cltv=10**6, flagged=True), Answers())
    holder.messenger.clock.now += Limits().ttl_s
    holder.on_block(100)
    assert stored(holder, "01" * 32) is None
    assert stored(holder, "02" * 32)["state"] == HELD


# ---- restart -------------------------------------------------------------------------------

def test_replayed_htlc_is_held_again_and_released_after_a_restart(monkeypatch):
    rpc = MemoryRpc()
    holder = make_holder(monkeypatch, rpc=rpc)
    answer = ask(holder)
    holder.on_htlc(htlc(), Answers())
    again = make_holder(monkeypatch, rpc=rpc)        # lightningd replays the HTLC
    answers = Answers()
    assert again.on_htlc(htlc(), answers) is True and answers == []
    release(again, answer)
    assert answers == [{"result": "continue"}]


def test_htlc_replayed_after_its_release_is_forwarded(monkeypatch):
    rpc = MemoryRpc()
    holder = make_holder(monkeypatch, rpc=rpc)
    answer = ask(holder)
    holder.on_htlc(htlc(), lambda r: None)
    release(holder, answer)
    answers = Answers()
    assert make_holder(monkeypatch, rpc=rpc).on_htlc(htlc(), answers) is True
    assert answers == [{"result": "continue"}]


def test_start_skips_records_that_are_not_holds(monkeypatch):
    rpc = MemoryRpc()
    rpc.data[("clnlsp", HOLDS.name, "junk")] = json.dumps({"v": 1, "peer": ME})
    holder = make_holder(monkeypatch, rpc=rpc)
    assert holder.book.holds == {}


def test_list_shows_holds_oldest_first(monkeypatch):
    holder = make_holder(monkeypatch)
    ask(holder, "02" * 32)
    holder.messenger.clock.now += 5
    holder.on_htlc(htlc("01" * 32, flagged=True), Answers())
    held = holder.list()["held"]
    assert [h["payment_hash"] for h in held] == ["02" * 32, "01" * 32]
    first, second = held
    assert first["state"] == WAITING and len(first["release_path_ids"]) == 1
    assert first["why"] is None and first["htlcs"] == []
    assert second["state"] == HELD and second["release_path_ids"] == []
    assert second["htlcs"] == [{"htlc": "1x1x1/1", "amount_msat": 5000, "cltv_expiry": 500,
                                "since": NOW + 5}]


# ---- hold_htlc (75537) ---------------------------------------------------------------------

def test_flagged_reads_hold_htlc_and_ignores_garbage():
    assert HtlcHolder.flagged(htlc(flagged=True))
    assert not HtlcHolder.flagged(htlc())
    assert not HtlcHolder.flagged(htlc(extra=record(65537, b"\x01").hex()))
    assert not HtlcHolder.flagged(htlc(extra="zz"))
    assert not HtlcHolder.flagged(htlc(extra="fe"))      # truncated TLV


def test_forward_released_without_records_is_a_plain_continue():
    assert forward_released("") == {"result": "continue"}
    assert forward_released("zz") == {"result": "continue"}
    assert forward_released(HOLD_TLV) == {"result": "continue", "extra_tlvs": ""}



def test_asking_again_for_the_same_hold_does_not_grow_the_store(monkeypatch):
    holder = make_holder(monkeypatch)
    for _ in range(50):
        ask(holder)
    assert len(holder.store.list(PATHS)) <= 10
    assert len(stored(holder)["release_path_ids"]) <= 10

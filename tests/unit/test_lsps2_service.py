import pytest

import lsps.lsps2.service as S
from lsps.htlc import TEMPORARY_CHANNEL_FAILURE, UNKNOWN_NEXT_PEER
from lsps.lsps0.msgs import LspsError
from lsps.lsps2.msgs import OpeningFeeParams

CLIENT = "02" + "ab" * 32
OTHER = "03" + "cd" * 32
NOW = 1_800_000_000_000
POLICY = S.Policy(fees=((2000, 10_000), (5000, 20_000)), valid_for_s=600, min_lifetime=1008,
                  max_client_to_self_delay=2016, min_payment_size_msat=10_000,
                  max_payment_size_msat=1_000_000_000, cltv_expiry_delta=144,
                  min_channel_sat=100_000)


def service(**kw):
    import dataclasses
    return S.Service(dataclasses.replace(POLICY, **kw), bytes(32))


class TestMenuAndBuy:
    def test_menu_entries_verify_and_are_ordered(self):
        menu = service().menu(CLIENT, NOW, None)
        assert [m["min_fee_msat"] for m in menu] == ["2000", "5000"]
        assert menu[0]["valid_until"] == "2027-01-15T08:10:00.000Z"
        for m in menu:
            params, size, fee = service().check_buy(CLIENT, m, None, NOW, None)
            assert size is None and fee is None

    def test_token_required(self):
        s = service(tokens=frozenset({"gold"}))
        assert s.menu(CLIENT, NOW, "gold")
        for token in (None, "silver"):
            with pytest.raises(LspsError) as e:
                s.menu(CLIENT, NOW, token)
            assert e.value.code == 200

    def test_token_type(self):
        with pytest.raises(LspsError) as e:
            service().menu(CLIENT, NOW, 5)
        assert e.value.code == -32602

    def buy(self, size, params=None, now=NOW, client=CLIENT, inbound=None):
        m = params or service().menu(CLIENT, NOW, None)[0]
        return service().check_buy(client, m, size, now, inbound)

    def test_fixed_mode_fee(self):
        _, size, fee = self.buy("1000000")
        assert size == 1_000_000 and fee == 10_000

    @pytest.mark.parametrize("case,code", [
        (dict(client=OTHER), 201),
        (dict(now=NOW + 600_000), 201),
        (dict(size="9999"), 202),
        (dict(size="10000"), 202),          # fee 2000 < 10000, but min fee? -> ok below
        (dict(size="1000000001"), 203),
        (dict(size="500000", inbound=400_000), 203),
        (dict(size="-5"), -32602),
        (dict(size="abc"), -32602),
    ])
    def test_errors(self, case, code):
        if case.get("size") == "10000":
            _, size, fee = self.buy("10000")
            assert fee == 2000  # allowed: fee < size
            return
        kw = {"size": "100000", **case}
        with pytest.raises(LspsError) as e:
            self.buy(kw.pop("size"), **kw)
        assert e.value.code == code

    def test_fee_equal_to_size_is_too_small(self):
        s = service(fees=((50_000, 0),))
        m = s.menu(CLIENT, NOW, None)[0]
        with pytest.raises(LspsError) as e:
            s.check_buy(CLIENT, m, "50000", NOW, None)
        assert e.value.code == 202

    def test_overflow_is_too_large(self):
        s = service(fees=((0, 4_000_000_000),), max_payment_size_msat=2**64 - 1)
        m = s.menu(CLIENT, NOW, None)[0]
        with pytest.raises(LspsError) as e:
            s.check_buy(CLIENT, m, str(2**63), NOW, None)
        assert e.value.code == 203

    def test_tampered_params(self):
        m = service().menu(CLIENT, NOW, None)[0]
        m["min_fee_msat"] = "1"
        with pytest.raises(LspsError) as e:
            self.buy("100000", params=m)
        assert e.value.code == 201
        m.pop("promise")
        with pytest.raises(LspsError) as e:
            self.buy("100000", params=m)
        assert e.value.code == -32602

    def test_policy_checks(self):
        assert POLICY.check() is None
        assert "fee entries" in S.Policy(**{**POLICY.__dict__, "fees": ((5, 5), (4, 6))}).check()
        assert S.Policy(**{**POLICY.__dict__, "fees": ()}).check()


def session(size=None, fee=None, valid_for_ms=600_000):
    p = OpeningFeeParams(2000, 10_000, NOW + valid_for_ms, 1008, 2016, 10_000, 10**9, "x")
    return S.new_session("900000x1x0", CLIENT, p, size, fee, NOW)


DELTA, MARGIN = 144, 6


def part(n, forward=60_000, hash_="aa", cltv=500, **changes):
    """An honest HTLC to the jit scid (as lightningd parsed it), at height 100."""
    return {"key": f"1x1x1/{n}", "payment_hash": hash_, "amount_msat": forward + 100,
            "forward_msat": forward, "cltv_expiry": cltv, "outgoing_cltv": cltv - DELTA,
            "height": 100, "blinded": False, **changes}


class TestMppSession:
    def test_collect_then_open_then_forward_with_fee_split(self):
        s = session(size=100_000, fee=2000)
        d = S.on_htlc(s, part(1), NOW, True, DELTA, MARGIN)
        assert d.hold == ["1x1x1/1"] and not d.open and s["state"] == S.COLLECTING
        d = S.on_htlc(s, part(2, forward=40_000), NOW + 1000, True, DELTA, MARGIN)
        assert d.open and s["state"] == S.OPENING
        d = S.on_channel_ready(s, "cid", 1, NOW + 2000)
        assert d.forward == {"1x1x1/1": (58_000, 2000), "1x1x1/2": (40_000, 0)}
        assert s["state"] == S.FORWARDING and s["channel_id"] == "cid"
        assert S.on_part_resolved(s, "1x1x1/1", True, NOW + 3000) and s["state"] == S.DONE

    def test_replayed_part_is_held_or_reforwarded(self):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1), NOW, True, DELTA, MARGIN)
        assert S.on_htlc(s, part(1), NOW, True, DELTA, MARGIN).hold == ["1x1x1/1"]
        assert len(s["parts"]) == 1
        S.on_htlc(s, part(2, forward=40_000), NOW, True, DELTA, MARGIN)
        S.on_channel_ready(s, "cid", 1, NOW)
        assert S.on_htlc(s, part(1), NOW, True, DELTA, MARGIN).forward == {
            "1x1x1/1": (58_000, 2000)}

    def test_90s_timeout_fails_temporarily_and_resets(self):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1), NOW, True, DELTA, MARGIN)
        assert S.on_tick(s, NOW + 89_999).fail == {}
        d = S.on_tick(s, NOW + 90_000)
        assert d.fail == {"1x1x1/1": TEMPORARY_CHANNEL_FAILURE}
        assert s["state"] == S.WAITING and s["parts"] == [] and s["failures"]
        # a new part starts a new set
        assert S.on_htlc(s, part(3), NOW + 91_000, True, DELTA, MARGIN).hold

    def test_valid_until_fails_unknown_next_peer(self):
        s = session(size=100_000, fee=2000, valid_for_ms=30_000)
        S.on_htlc(s, part(1), NOW, True, DELTA, MARGIN)
        d = S.on_tick(s, NOW + 30_000)
        assert d.fail == {"1x1x1/1": UNKNOWN_NEXT_PEER} and s["state"] == S.FAILED
        assert S.on_htlc(s, part(2), NOW + 31_000, True, DELTA, MARGIN).fail == {
            "1x1x1/2": UNKNOWN_NEXT_PEER}

    def test_waiting_session_expires(self):
        s = session(size=100_000, fee=2000)
        assert S.on_tick(s, NOW + 600_000).changed and s["state"] == S.FAILED

    def test_other_payment_hash_refused_while_collecting(self):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1), NOW, True, DELTA, MARGIN)
        assert S.on_htlc(s, part(2, hash_="bb"), NOW, True, DELTA, MARGIN).fail == {
            "1x1x1/2": UNKNOWN_NEXT_PEER}

    def test_client_offline_waits_then_opens_on_connect(self):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1), NOW, False, DELTA, MARGIN)
        assert not S.on_htlc(s, part(2, forward=40_000), NOW, False, DELTA, MARGIN).open
        assert s["state"] == S.COLLECTING
        assert S.on_client_connected(s, NOW + 5000).open and s["state"] == S.OPENING

    def test_a_complete_set_for_a_woken_client_waits_the_wake_timeout(self):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1), NOW, False, DELTA, MARGIN)
        assert S.on_woken(s, NOW, 60_000).changed and s["wake_until_ms"] == NOW + 60_000
        assert not S.on_woken(s, NOW + 5000, 60_000).changed   # counted from the first wake
        # incomplete: the collection window still applies
        assert S.deadline_ms(s) == NOW + S.MPP_COLLECTION_MS
        S.on_htlc(s, part(2, forward=40_000), NOW + 1000, False, DELTA, MARGIN)
        assert S.deadline_ms(s) == NOW + 60_000
        assert S.on_tick(s, NOW + 59_999).fail == {}
        d = S.on_tick(s, NOW + 60_000)
        assert set(d.fail.values()) == {TEMPORARY_CHANNEL_FAILURE} and len(d.fail) == 2
        assert s["state"] == S.WAITING and "wake_until_ms" not in s
        assert "wake timeout" in s["failures"][-1]["reason"]

    def test_a_wake_timeout_longer_than_the_window_holds_a_complete_set_longer(self):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1, forward=100_000), NOW, False, DELTA, MARGIN)
        S.on_woken(s, NOW, 120_000)
        assert S.on_tick(s, NOW + 90_000).fail == {}
        assert S.on_client_connected(s, NOW + 100_000).open

    def test_the_wake_deadline_never_passes_valid_until(self):
        s = session(size=100_000, fee=2000, valid_for_ms=30_000)
        S.on_htlc(s, part(1, forward=100_000), NOW, False, DELTA, MARGIN)
        S.on_woken(s, NOW, 60_000)
        assert S.deadline_ms(s) == NOW + 30_000

    def test_no_wake_for_a_session_not_collecting(self):
        assert not S.on_woken(session(size=100_000, fee=2000), NOW, 60_000).changed

    def test_cltv_margin(self):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1, cltv=300), NOW, True, DELTA, MARGIN)
        assert S.on_block(s, 293, 6, NOW).fail == {}
        assert S.on_block(s, 294, 6, NOW).fail == {"1x1x1/1": TEMPORARY_CHANNEL_FAILURE}

    @pytest.mark.parametrize("refused,code", [(True, UNKNOWN_NEXT_PEER),
                                              (False, TEMPORARY_CHANNEL_FAILURE)])
    def test_open_failure(self, refused, code):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1, forward=100_000), NOW, True, DELTA, MARGIN)
        d = S.on_open_failed(s, refused, "nope", NOW)
        assert d.fail == {"1x1x1/1": code} and s["state"] == S.WAITING

    def test_too_many_parts_for_fee(self):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1, forward=50_000), NOW, True, DELTA, MARGIN)
        S.on_htlc(s, part(2, forward=50_000), NOW, True, DELTA, MARGIN)
        d = S.on_channel_ready(s, "cid", 49_500, NOW)
        assert set(d.fail.values()) == {UNKNOWN_NEXT_PEER}

    def test_after_success_no_fee_until_valid_until(self):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1, forward=100_000), NOW, True, DELTA, MARGIN)
        S.on_channel_ready(s, "cid", 1, NOW)
        S.on_part_resolved(s, "1x1x1/1", True, NOW)
        assert S.on_htlc(s, part(9, hash_="cc"), NOW + 1, True, DELTA, MARGIN).forward == {
            "1x1x1/9": (60_000, 0)}
        assert S.on_htlc(s, part(10, hash_="dd"), NOW + 600_000, True, DELTA, MARGIN).fail


class TestNoMppSession:
    def test_fee_from_first_htlc(self):
        s = session()
        d = S.on_htlc(s, part(1, forward=500_000), NOW, True, DELTA, MARGIN)
        assert d.open and s["opening_fee_msat"] == 5000
        assert S.on_channel_ready(s, "cid", 1, NOW).forward == {"1x1x1/1": (495_000, 5000)}

    def test_second_part_refused(self):
        s = session()
        S.on_htlc(s, part(1, forward=500_000), NOW, False, DELTA, MARGIN)
        assert S.on_htlc(s, part(2), NOW, False, DELTA, MARGIN).fail == {
            "1x1x1/2": UNKNOWN_NEXT_PEER}

    @pytest.mark.parametrize("forward", [2000, 9999, 10**9 + 1])
    def test_size_rules(self, forward):
        s = session()
        assert S.on_htlc(s, part(1, forward=forward), NOW, True, DELTA, MARGIN).fail == {
            "1x1x1/1": UNKNOWN_NEXT_PEER}

    def test_fee_reset_after_failed_attempt(self):
        s = session()
        S.on_htlc(s, part(1, forward=500_000), NOW, True, DELTA, MARGIN)
        S.on_open_failed(s, False, "x", NOW)
        assert s["opening_fee_msat"] is None


@pytest.mark.parametrize("amounts,fee,minimum,shares", [
    ([100, 100], 50, 1, [50, 0]),
    ([30, 100], 50, 1, [29, 21]),
    ([10, 10], 50, 1, None),
    ([100], 0, 1, [0]),
])
def test_split_fee(amounts, fee, minimum, shares):
    assert S.split_fee(amounts, fee, minimum) == shares


class TestMoneyThatArrives:
    """Issue 11 item 7 and 8: only money that arrives counts; the fee stays owed until
    a fee-bearing forward settles."""

    def test_underpaying_htlc_claiming_the_full_size_opens_nothing(self):
        s = session(size=100_000, fee=2000)
        d = S.on_htlc(s, part(1, forward=100_000, amount_msat=1_000), NOW, True, DELTA, MARGIN)
        assert d.fail == {"1x1x1/1": UNKNOWN_NEXT_PEER} and not d.open and s["parts"] == []
        assert "carries 1000 msat" in S.refusal(s, part(1, forward=100_000, amount_msat=1_000),
                                                DELTA, MARGIN)
        # the honest payment still opens
        assert S.on_htlc(s, part(2, forward=100_000), NOW, True, DELTA, MARGIN).open

    @pytest.mark.parametrize("changes,why", [
        ({"outgoing_cltv": 500 - 143}, "CLTV delta"),
        ({"cltv_expiry": 250, "outgoing_cltv": 100}, "too close"),
    ])
    def test_cltv_without_room_is_refused(self, changes, why):
        s = session(size=100_000, fee=2000)
        assert why in S.refusal(s, part(1, **changes), DELTA, MARGIN)
        assert S.on_htlc(s, part(1, **changes), NOW, True, DELTA, MARGIN).fail

    def test_parts_beyond_the_payment_size_are_refused(self):
        s = session(size=100_000, fee=2000)
        assert S.on_htlc(s, part(1, forward=100_001), NOW, True, DELTA, MARGIN).fail
        S.on_htlc(s, part(2, forward=60_000), NOW, True, DELTA, MARGIN)
        assert S.on_htlc(s, part(3, forward=40_001), NOW, True, DELTA, MARGIN).fail
        assert S.on_htlc(s, part(4, forward=40_000), NOW, True, DELTA, MARGIN).open

    def test_no_mpp_part_above_the_maximum_is_refused(self):
        s = session()
        assert S.on_htlc(s, part(1, forward=10**9 + 1), NOW, True, DELTA, MARGIN).fail

    def test_blinded_part_must_leave_the_fee_to_us(self):
        s = session()
        # lightningd's relay left 100 msat, the fee for 500,000 is 5,000: nothing opens
        thin = part(1, forward=499_900, amount_msat=500_000, blinded=True)
        assert S.on_htlc(s, thin, NOW, True, DELTA, MARGIN).fail and s["parts"] == []
        fat = part(2, forward=495_000, amount_msat=500_000, blinded=True)
        assert S.on_htlc(s, fat, NOW, True, DELTA, MARGIN).open
        d = S.on_channel_ready(s, "cid", 1, NOW)
        assert d.forward == {"1x1x1/2": (495_000, 5000)}  # unchanged: lightningd's amount

    def test_blinded_mpp_set_short_of_the_fee_is_failed_before_any_open(self):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1, forward=49_500, amount_msat=50_000, blinded=True), NOW, True,
                  DELTA, MARGIN)
        d = S.on_htlc(s, part(2, forward=49_600, amount_msat=50_000, blinded=True), NOW, True,
                      DELTA, MARGIN)
        assert not d.open and set(d.fail) == {"1x1x1/1", "1x1x1/2"}

    def test_plain_and_blinded_parts_do_not_mix(self):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1), NOW, True, DELTA, MARGIN)
        assert S.on_htlc(s, part(2, blinded=True), NOW, True, DELTA, MARGIN).fail

    def test_fee_stays_owed_when_the_client_fails_the_forward(self):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1, forward=100_000), NOW, True, DELTA, MARGIN)
        assert S.on_channel_ready(s, "cid", 1, NOW).forward == {"1x1x1/1": (98_000, 2000)}
        assert S.on_part_resolved(s, "1x1x1/1", False, NOW + 1)
        assert s["state"] == S.WAITING and s["channel_id"] == "cid"
        # the payer retries: fee deducted again, over the same channel (no second open
        # of a new channel: the runtime reuses channel_id)
        d = S.on_htlc(s, part(2, forward=100_000), NOW + 2, True, DELTA, MARGIN)
        assert d.open and s["state"] == S.OPENING
        assert S.on_channel_ready(s, "cid", 1, NOW + 3).forward == {"1x1x1/2": (98_000, 2000)}
        assert S.on_part_resolved(s, "1x1x1/2", True, NOW + 4) and s["state"] == S.DONE

    def test_extra_parts_while_a_set_is_forwarded_are_failed(self):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1, forward=100_000), NOW, True, DELTA, MARGIN)
        S.on_channel_ready(s, "cid", 1, NOW)
        assert S.on_htlc(s, part(2, hash_="cc"), NOW, True, DELTA, MARGIN).fail == {
            "1x1x1/2": TEMPORARY_CHANNEL_FAILURE}

    def test_after_the_fee_is_paid_underpaying_forwards_are_refused_too(self):
        s = session(size=100_000, fee=2000)
        S.on_htlc(s, part(1, forward=100_000), NOW, True, DELTA, MARGIN)
        S.on_channel_ready(s, "cid", 1, NOW)
        S.on_part_resolved(s, "1x1x1/1", True, NOW)
        assert S.on_htlc(s, part(9, hash_="cc", amount_msat=10), NOW, True, DELTA,
                         MARGIN).fail

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lsps.lsps2.msgs as P
from lsps.lsps2.msgs import OpeningFeeParams, ProtocolError

CLIENT = "02" + "ab" * 32
OTHER = "03" + "cd" * 32
SECRET = bytes(range(32))


def params(**kw):
    base = dict(min_fee_msat=546000, proportional=1200, valid_until_ms=1677142050511,
                min_lifetime=1008, max_client_to_self_delay=2016,
                min_payment_size_msat=1000, max_payment_size_msat=1000000)
    base.update(kw)
    return OpeningFeeParams(**base)


class TestFee:
    @pytest.mark.parametrize("size,min_fee,prop,fee", [
        (42000, 546000, 1200, 546000),            # min fee wins
        (1_000_000_000, 0, 1200, 1_200_000),      # exact
        (1_000_001, 0, 1, 2),                     # rounds up
        (999_999, 0, 1, 1),
        (1_000_000, 0, 1, 1),
        (0, 5, 1000, 5),
        (0, 0, 0, 0),
    ])
    def test_values(self, size, min_fee, prop, fee):
        assert P.compute_opening_fee(size, min_fee, prop) == fee

    def test_multiplication_overflow(self):
        assert P.compute_opening_fee(2**64 - 1, 0, 2) is None

    def test_addition_overflow(self):
        # product fits, + 999999 does not
        size = (2**64 - 1) // 3
        assert size * 3 <= 2**64 - 1 and size * 3 + 999_999 > 2**64 - 1
        assert P.compute_opening_fee(size, 0, 3) is None

    @given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1))
    def test_matches_reference(self, size, min_fee, prop):
        fee = P.compute_opening_fee(size, min_fee, prop)
        if size * prop + 999_999 > 2**64 - 1:
            assert fee is None
        else:
            assert fee == max(min_fee, -(-size * prop // 1_000_000))


class TestParams:
    def test_json_round_trip_strict_out(self):
        p = params(promise="ab")
        j = p.to_json()
        assert j == {"min_fee_msat": "546000", "proportional": 1200,
                     "valid_until": "2023-02-23T08:47:30.511Z", "min_lifetime": 1008,
                     "max_client_to_self_delay": 2016, "min_payment_size_msat": "1000",
                     "max_payment_size_msat": "1000000", "promise": "ab"}
        assert OpeningFeeParams.from_json(j) == p

    def test_lenient_numbers_and_offsets(self):
        j = params(promise="x").to_json()
        j["min_fee_msat"] = 546000
        j["valid_until"] = "2023-02-23T08:47:30.511+00:00"
        assert OpeningFeeParams.from_json(j) == params(promise="x")
        j["valid_until"] = "2023-02-23T09:47:30+01:00"
        assert OpeningFeeParams.from_json(j).valid_until_ms == 1677142050000

    @pytest.mark.parametrize("mutate", [
        lambda j: j.update(extra=1),
        lambda j: j.pop("promise"),
        lambda j: j.update(promise="x" * 513),
        lambda j: j.update(min_fee_msat="-1"),
        lambda j: j.update(min_fee_msat=str(2**64)),
        lambda j: j.update(proportional="1200"),
        lambda j: j.update(proportional=True),
        lambda j: j.update(valid_until="yesterday"),
        lambda j: j.update(valid_until="2023-02-30T00:00:00Z"),
        lambda j: j.update(min_lifetime=-1),
    ])
    def test_rejects(self, mutate):
        j = params(promise="p").to_json()
        mutate(j)
        with pytest.raises(ProtocolError):
            OpeningFeeParams.from_json(j)

    def test_not_an_object(self):
        with pytest.raises(ProtocolError):
            OpeningFeeParams.from_json([1])


class TestPromise:
    def test_verifies_and_is_bound_to_client(self):
        p = params()
        promise = P.make_promise(SECRET, CLIENT, p)
        assert len(promise) == 64 and promise == promise.lower()
        signed = OpeningFeeParams(**{**p.__dict__, "promise": promise})
        assert P.verify_promise(SECRET, CLIENT, signed)
        assert not P.verify_promise(SECRET, OTHER, signed)
        assert not P.verify_promise(bytes(32), CLIENT, signed)

    @pytest.mark.parametrize("field", ["min_fee_msat", "proportional", "valid_until_ms",
                                       "min_lifetime", "max_client_to_self_delay",
                                       "min_payment_size_msat", "max_payment_size_msat"])
    def test_commits_to_every_field(self, field):
        p = params()
        signed = OpeningFeeParams(**{**p.__dict__, "promise": P.make_promise(SECRET, CLIENT, p)})
        changed = OpeningFeeParams(**{**signed.__dict__, field: getattr(p, field) + 1})
        assert not P.verify_promise(SECRET, CLIENT, changed)


def test_menu_ordering():
    a, b = params(min_fee_msat=1, proportional=1), params(min_fee_msat=2, proportional=1)
    c = params(min_fee_msat=2, proportional=2)
    assert P.menu_is_ordered([a, b, c]) and P.menu_is_ordered([a, c]) and P.menu_is_ordered([])
    assert not P.menu_is_ordered([b, a])
    assert not P.menu_is_ordered([a, a])
    assert not P.menu_is_ordered([params(min_fee_msat=3, proportional=1),
                                  params(min_fee_msat=2, proportional=5)])


def test_scid():
    assert P.parse_scid("29451x4815x1") == 29451 << 40 | 4815 << 16 | 1
    assert P.format_scid(P.parse_scid("29451x4815x1")) == "29451x4815x1"
    for bad in ("1x2", "16777216x0x0", "1x2x65536", 5, "ax1x1"):
        with pytest.raises(ProtocolError):
            P.parse_scid(bad)


def test_tlv_stream_round_trip_and_rules():
    records = {2: P.tu64(1000), 4: P.tu64(144), 65537: (5).to_bytes(8, "big")}
    data = P.serialize_tlv_stream(records)
    assert P.parse_tlv_stream(data) == records
    with pytest.raises(ProtocolError):
        P.parse_tlv_stream(bytes([4, 1, 0, 2, 1, 0]))  # out of order
    with pytest.raises(ProtocolError):
        P.parse_tlv_stream(bytes([2, 5, 0]))  # truncated
    with pytest.raises(ProtocolError):
        P.parse_tlv_stream(bytes([0xfd, 0, 1, 0]))  # non-minimal bigsize
    assert P.read_tu64(P.tu64(0)) == 0 and P.read_tu64(P.tu64(2**64 - 1)) == 2**64 - 1
    with pytest.raises(ProtocolError):
        P.read_tu64(b"\x00\x01")
    assert P.strip_length_prefix(bytes([3, 2, 1, 7])) == bytes([2, 1, 7])

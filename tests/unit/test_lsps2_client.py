import pytest
from fakes import htlc_event

import lsps.lsps2.client as C
from lsps.lsps0.client import BAD_RESPONSE, ClientError
from lsps.lsps2.msgs import (
    OpeningFeeParams,
    parse_tlv_stream,
    read_tu64,
    serialize_tlv_stream,
    strip_length_prefix,
    tu64,
)

LSP = "02" + "11" * 32
NOW = 1_800_000_000_000


def entry(min_fee=2000, prop=10_000, valid_for_ms=3_600_000, **kw):
    p = OpeningFeeParams(min_fee, prop, NOW + valid_for_ms, 1008, kw.pop("ctsd", 2016),
                         kw.pop("min_size", 10_000), kw.pop("max_size", 10**9), "pp")
    return p.to_json()


class TestMenu:
    def test_parse_keeps_raw_for_verbatim_return(self):
        raw = dict(entry(), valid_until="2027-01-15T09:00:00.000+00:00")
        menu = C.parse_menu(LSP, {"opening_fee_params_menu": [raw], "extra": 1})
        assert menu[0].wire() == raw

    @pytest.mark.parametrize("result", [None, {}, {"opening_fee_params_menu": "x"},
                                        {"opening_fee_params_menu": [dict(entry(), more=1)]},
                                        {"opening_fee_params_menu": [
                                            dict(entry(), promise="p" * 513)]}])
    def test_bad_menus_abort(self, result):
        with pytest.raises(ClientError) as e:
            C.parse_menu(LSP, result)
        assert e.value.code == BAD_RESPONSE

    def menu(self, *entries):
        return C.parse_menu(LSP, {"opening_fee_params_menu": list(entries)})

    def test_choose_cheapest_fitting(self):
        menu = self.menu(entry(2000, 10_000), entry(5000, 20_000))
        c = C.choose(menu, 1_000_000, NOW, 144, None)
        assert c.params.min_fee_msat == 2000 and c.fee_msat == 10_000

    def test_choose_skips_unfit_entries(self):
        menu = self.menu(entry(2000, 10_000, valid_for_ms=30_000),  # expires too soon
                         entry(3000, 10_000, ctsd=100),             # our delay too big
                         entry(4000, 10_000, max_size=500_000),     # too small max
                         entry(5000, 20_000))
        c = C.choose(menu, 1_000_000, NOW, 144, None)
        assert c.params.min_fee_msat == 5000

    def test_nothing_fits(self):
        with pytest.raises(ClientError) as e:
            C.choose(self.menu(entry(min_size=10**6)), 500, NOW, 144, None)
        assert e.value.code == C.NO_SUITABLE_PARAMS
        with pytest.raises(ClientError) as e:
            C.choose([], 500, NOW, 144, None)
        assert "empty" in e.value.message

    def test_fee_cap(self):
        with pytest.raises(ClientError) as e:
            C.choose(self.menu(entry()), 1_000_000, NOW, 144, 9_999)
        assert e.value.code == C.FEE_TOO_HIGH
        assert C.choose(self.menu(entry()), 1_000_000, NOW, 144, 10_000).fee_msat == 10_000
        with pytest.raises(ClientError):
            C.choose(self.menu(entry()), None, NOW, 144, 1999)  # variable: min fee counts

    def test_fee_not_below_size(self):
        with pytest.raises(ClientError):
            C.choose(self.menu(entry(50_000, 0, min_size=1)), 50_000, NOW, 144, None)


@pytest.mark.parametrize("result", [None, {},
                                    {"jit_channel_scid": "1x1", "lsp_cltv_expiry_delta": 1},
                                    {"jit_channel_scid": "1x1x1", "lsp_cltv_expiry_delta": -1},
                                    {"jit_channel_scid": "1x1x1", "lsp_cltv_expiry_delta": 144,
                                     "client_trusts_lsp": "no"}])
def test_bad_buy_results(result):
    with pytest.raises(ClientError):
        C.parse_buy_result(LSP, result)


def test_buy_result_defaults():
    assert C.parse_buy_result(LSP, {"jit_channel_scid": "1x2x3", "lsp_cltv_expiry_delta": 144})[
        "client_trusts_lsp"] is False


def onion(amount, total=None, secret=b"\x07" * 32):
    records = {2: tu64(amount), 4: tu64(500)}
    if total is not None:
        records[8] = secret + tu64(total)
    body = serialize_tlv_stream(records)
    return (bytes([len(body)]) + body).hex()


def fee_tlv(fee):
    return serialize_tlv_stream({65537: fee.to_bytes(8, "big")}).hex()


def decoded(payload_hex):
    return parse_tlv_stream(bytes.fromhex(payload_hex))


class TestJitHtlc:
    fixed = {"opening_fee_params": entry(), "payment_size_msat": 3_000_000,
             "opening_fee_msat": 30_000}
    variable = {"opening_fee_params": entry(), "payment_size_msat": None,
                "opening_fee_msat": None}

    def test_fixed_parts_rewritten_to_reduced_total(self):
        seen = {}
        v1 = C.check_jit_htlc(self.fixed, "a/1", 970_000, onion(1_000_000, 3_000_000),
                              fee_tlv(30_000), seen, NOW)
        assert v1.accept and v1.invoice_msat == 2_970_000
        rec = decoded(v1.payload)
        assert read_tu64(rec[2]) == 970_000 and read_tu64(rec[8][32:]) == 2_970_000
        assert rec[8][:32] == b"\x07" * 32 and read_tu64(rec[4]) == 500
        v2 = C.check_jit_htlc(self.fixed, "a/2", 2_000_000, onion(2_000_000, 3_000_000),
                              None, seen, NOW)
        assert v2.accept and v2.invoice_msat == 2_970_000

    def test_fees_above_promise_refused(self):
        seen = {}
        assert C.check_jit_htlc(self.fixed, "a/1", 980_000, onion(1_000_000, 3_000_000),
                                fee_tlv(20_000), seen, NOW).accept
        v = C.check_jit_htlc(self.fixed, "a/2", 1_980_000, onion(2_000_000, 3_000_000),
                             fee_tlv(20_000), seen, NOW)
        assert not v.accept and "exceed" in v.reason
        # a replay of the first part does not count twice
        assert C.check_jit_htlc(self.fixed, "a/1", 980_000, onion(1_000_000, 3_000_000),
                                fee_tlv(20_000), seen, NOW).accept

    def test_old_attempts_forgotten(self):
        seen = {}
        C.check_jit_htlc(self.fixed, "a/1", 970_000, onion(1_000_000, 3_000_000),
                         fee_tlv(30_000), seen, NOW)
        assert C.check_jit_htlc(self.fixed, "b/1", 970_000, onion(1_000_000, 3_000_000),
                                fee_tlv(30_000), seen, NOW + C.FEE_MEMORY_MS + 1).accept

    def test_amount_must_match_onion_minus_fee(self):
        v = C.check_jit_htlc(self.fixed, "a/1", 960_000, onion(1_000_000, 3_000_000),
                             fee_tlv(30_000), {}, NOW)
        assert not v.accept

    def test_variable_fee_from_onion_amount(self):
        v = C.check_jit_htlc(self.variable, "a/1", 4_950_000, onion(5_000_000, 5_000_000),
                             fee_tlv(50_000), {}, NOW)
        assert v.accept and v.invoice_msat is None
        rec = decoded(v.payload)
        assert read_tu64(rec[2]) == 4_950_000 and read_tu64(rec[8][32:]) == 4_950_000
        assert not C.check_jit_htlc(self.variable, "a/1", 4_949_999,
                                    onion(5_000_000, 5_000_000), fee_tlv(50_001), {}, NOW).accept

    @pytest.mark.parametrize("payload,tlvs", [
        ("zz", None), (onion(10), "ff"), (onion(1000), serialize_tlv_stream(
            {65537: b"\x01"}).hex())])
    def test_garbage_is_refused_not_raised(self, payload, tlvs):
        assert not C.check_jit_htlc(self.fixed, "a/1", 1000, payload, tlvs, {}, NOW).accept

    def test_fixed_needs_payment_data(self):
        assert not C.check_jit_htlc(self.fixed, "a/1", 1_000_000, onion(1_000_000), None,
                                    {}, NOW).accept


def test_strip_length_prefix_of_real_shape():
    body = strip_length_prefix(bytes.fromhex(onion(5)))
    assert read_tu64(parse_tlv_stream(body)[2]) == 5


def test_invoice_expiry_ends_before_valid_until():
    p = OpeningFeeParams.from_json(entry(valid_for_ms=600_000))
    assert C.invoice_expiry(p, NOW, None) == 540
    assert C.invoice_expiry(p, NOW, 100) == 100
    # choose() never picks an entry that leaves less than the minimum
    late = OpeningFeeParams.from_json(entry(valid_for_ms=119_000))
    with pytest.raises(ClientError):
        C.choose([late], None, NOW, 144, None)
    assert C.invoice_expiry(OpeningFeeParams.from_json(entry(valid_for_ms=121_000)),
                            NOW, None) == 61


class TestJitHtlcFromWhom:
    """Issue 11 item 11: a fee-deducted HTLC only within max_fee_msat and only over
    the channel the LSP opened for the purchase."""

    def test_fee_above_max_fee_refused_in_both_modes(self):
        fixed = dict(TestJitHtlc.fixed, max_fee_msat=29_999)
        assert "max_fee_msat" in C.check_jit_htlc(
            fixed, "a/1", 970_000, onion(1_000_000, 3_000_000), fee_tlv(30_000), {},
            NOW).reason
        variable = dict(TestJitHtlc.variable, max_fee_msat=49_999)
        assert not C.check_jit_htlc(variable, "a/1", 4_950_000, onion(5_000_000, 5_000_000),
                                    fee_tlv(50_000), {}, NOW).accept
        variable["max_fee_msat"] = 50_000
        assert C.check_jit_htlc(variable, "a/1", 4_950_000, onion(5_000_000, 5_000_000),
                                fee_tlv(50_000), {}, NOW).accept

    def test_fee_over_another_channel_refused(self):
        v = C.check_jit_htlc(TestJitHtlc.fixed, "a/1", 970_000, onion(1_000_000, 3_000_000),
                             fee_tlv(30_000), {}, NOW, over_jit_channel=lambda: False)
        assert not v.accept and "did not open" in v.reason
        # a part with no fee taken needs no such channel
        assert C.check_jit_htlc(TestJitHtlc.fixed, "a/2", 2_000_000,
                                onion(2_000_000, 3_000_000), None, {}, NOW,
                                over_jit_channel=lambda: False).accept


class _Node:
    def __init__(self, channels):
        self.list = channels

    def channels(self, peer_id=None):
        return self.list


def test_runtime_takes_jit_parts_only_from_the_lsp_over_its_new_channel():
    from fakes import MemoryRpc

    from lsps.lsps2.client_handler import Lsps2Client
    from lsps.node.store import Store
    lsp = "03" + "11" * 32
    node = _Node([{"channel_id": "old", "scids": ["1x1x1"], "opener": "remote"},
                  {"channel_id": "mine", "scids": ["2x2x2"], "opener": "local"},
                  {"channel_id": "jit", "scids": ["3x3x3"], "opener": "remote"}])
    client = Lsps2Client(node, Store(lambda: MemoryRpc()), None, lambda m, lvl: None)
    purchase = dict(TestJitHtlc.fixed, lsp_id=lsp, payment_hash="ab", pre_channels=["old"],
                    jit_channel_id=None)
    client.purchases["ab"] = purchase
    htlc = {"payment_hash": "ab", "id": 1, "amount_msat": 970_000,
            "extra_tlvs": fee_tlv(30_000)}
    payload = {"payload": onion(1_000_000, 3_000_000)}
    assert client.on_htlc(htlc_event(payload, "02" + "22" * 32, **dict(
        htlc, short_channel_id="3x3x3"))) is None  # not from the LSP
    assert client.on_htlc(htlc_event(payload, lsp, **dict(htlc, short_channel_id="1x1x1"))) \
        is None
    assert client.on_htlc(htlc_event(payload, lsp, **dict(htlc, short_channel_id="2x2x2"))) \
        is None
    answer = client.on_htlc(htlc_event(payload, lsp, **dict(htlc, short_channel_id="3x3x3")))
    assert answer["result"] == "continue" and purchase["jit_channel_id"] == "jit"

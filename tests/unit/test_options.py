"""The option tables and their policies: every default builds a valid policy, and each
value the plugin cannot run with is refused with the reason lightningd shows."""
import pytest

import lsps.asyncpay.options as asyncpay
import lsps.lsps0.options as lsps0
import lsps.lsps1.options as lsps1
import lsps.lsps2.options as lsps2
import lsps.lsps7.options as lsps7
from lsps.app import OPTIONS
from lsps.options import OptionError

DEFAULTS = {o.name: o.default for o in OPTIONS}
CLTV_DELTA = 34


def getter(**changes):
    values = {**DEFAULTS, **{k.replace("_", "-"): v for k, v in changes.items()}}
    return values.__getitem__


def refused(make, *args, **changes) -> str:
    with pytest.raises(OptionError) as e:
        make(getter(**changes), *args)
    return str(e.value)


def test_option_names_are_unique_and_prefixed():
    names = [o.name for o in OPTIONS]
    assert len(names) == len(set(names))
    assert all(n.startswith("lsp-") for n in names)


# --- LSPS0 --------------------------------------------------------------------------


def test_lsps0_defaults():
    timeout, limits = lsps0.transport(getter())
    assert timeout == 60.0 and isinstance(timeout, float)
    assert (limits.per_peer, limits.total) == (10, 1000)


@pytest.mark.parametrize("name", ["lsp-request-timeout", "lsp-max-pending-per-peer",
                                  "lsp-max-pending-total"])
def test_lsps0_values_below_one_are_refused(name):
    assert refused(lsps0.transport, **{name: 0}) == f"{name} must be at least 1, got 0"


# --- LSPS2 --------------------------------------------------------------------------


def test_lsps2_defaults_build_a_one_entry_menu():
    made = lsps2.policy(getter(), CLTV_DELTA)
    assert made.fees == ((10000, 10000),)
    assert (made.valid_for_s, made.min_lifetime, made.max_client_to_self_delay) == (
        3600, 1008, 2016)
    assert (made.min_payment_size_msat, made.max_payment_size_msat) == (10000, 4_000_000_000)
    assert (made.cltv_expiry_delta, made.min_channel_sat, made.htlc_expiry_margin,
            made.open_timeout_s) == (144, 100000, 6, 60)
    assert made.tokens == frozenset()


def test_lsps2_menu_entries_and_tokens():
    made = lsps2.policy(getter(lsp_lsps2_menu_entry=["20000/20000", "30000/30000"],
                               lsp_lsps2_token=["a", "b", "a"]), CLTV_DELTA)
    assert made.fees == ((10000, 10000), (20000, 20000), (30000, 30000))
    assert made.tokens == frozenset({"a", "b"})


@pytest.mark.parametrize("entry", ["20000", "x/1", "1/2/3", ""])
def test_lsps2_a_malformed_menu_entry_is_refused(entry):
    assert refused(lsps2.policy, CLTV_DELTA, lsp_lsps2_menu_entry=[entry]) == (
        f"lsp-lsps2-menu-entry {entry!r}: expected MIN_FEE_MSAT/PPM")


@pytest.mark.parametrize("name", lsps2._UINTS)
def test_lsps2_negative_values_are_refused(name):
    assert refused(lsps2.policy, CLTV_DELTA, **{name: -1}) == f"{name} must not be negative"


@pytest.mark.parametrize("changes", [
    {"lsp-lsps2-min-fee-msat": -1}, {"lsp-lsps2-proportional": -1},
    {"lsp-lsps2-proportional": 2**32}, {"lsp-lsps2-menu-entry": ["20000/-1"]}])
def test_lsps2_fees_must_be_non_negative_and_proportional_a_u32(changes):
    assert refused(lsps2.policy, CLTV_DELTA, **changes) == (
        "LSPS2 fees must be non-negative (proportional a u32)")


def test_lsps2_proportional_may_be_the_largest_u32():
    made = lsps2.policy(getter(lsp_lsps2_proportional=2**32 - 1), CLTV_DELTA)
    assert made.fees == ((10000, 2**32 - 1),)


def test_lsps2_cltv_expiry_delta_below_lightningds_is_refused():
    assert refused(lsps2.policy, 145) == (
        "lsp-lsps2-cltv-expiry-delta must be at least lightningd's cltv-delta (145)")
    assert lsps2.policy(getter(), 144).cltv_expiry_delta == 144


@pytest.mark.parametrize("changes,why", [
    ({"lsp-lsps2-menu-entry": ["5000/20000"]},
     "fee entries must each raise min_fee_msat or proportional and lower neither"),
    ({"lsp-lsps2-min-payment-msat": 5, "lsp-lsps2-max-payment-msat": 4},
     "min payment size above max payment size"),
    ({"lsp-lsps2-valid-for": 59}, "valid-for must be at least 60 seconds"),
])
def test_lsps2_an_unusable_policy_says_why(changes, why):
    assert refused(lsps2.policy, CLTV_DELTA, **changes) == f"LSPS2 policy: {why}"


def test_lsps2_promise_secret_absent_is_derived_later():
    assert lsps2.promise_secret(getter()) is None
    assert lsps2.promise_secret(getter(lsp_lsps2_promise_secret="")) is None


def test_lsps2_promise_secret_from_hex():
    assert lsps2.promise_secret(getter(lsp_lsps2_promise_secret="Ab" * 32)) == b"\xab" * 32


@pytest.mark.parametrize("secret", ["ab" * 31, "ab" * 33, "zz" * 32, "abc"])
def test_lsps2_promise_secret_must_be_64_hex_characters(secret):
    assert refused(lsps2.promise_secret, lsp_lsps2_promise_secret=secret) == (
        "lsp-lsps2-promise-secret must be 64 hex characters")


# --- LSPS1 --------------------------------------------------------------------------


def test_lsps1_defaults():
    made = lsps1.policy(getter())
    assert made.check() is None
    assert {field: getattr(made, field) for field in lsps1.POLICY_FIELDS.values()} == {
        field: DEFAULTS[name] for name, field in lsps1.POLICY_FIELDS.items()}
    assert (made.onchain, made.min_onchain_payment_confirmations, made.min_fee_for_0conf,
            made.tokens) == (False, 1, 253, frozenset())


def test_lsps1_onchain_and_tokens():
    made = lsps1.policy(getter(lsp_lsps1_onchain=True, lsp_lsps1_token=["t"]))
    assert made.onchain is True and made.tokens == frozenset({"t"})


@pytest.mark.parametrize("changes,why", [
    ({"lsp-lsps1-min-client-balance-sat": 2, "lsp-lsps1-max-client-balance-sat": 1},
     "min_initial_client_balance_sat is above max_initial_client_balance_sat"),
    ({"lsp-lsps1-min-lsp-balance-sat": 2, "lsp-lsps1-max-lsp-balance-sat": 1},
     "min_initial_lsp_balance_sat is above max_initial_lsp_balance_sat"),
    ({"lsp-lsps1-min-channel-sat": 2, "lsp-lsps1-max-channel-sat": 1},
     "min_channel_balance_sat is above max_channel_balance_sat"),
    ({"lsp-lsps1-min-funding-confirms-within-blocks": 0},
     "min_funding_confirms_within_blocks must be at least 1"),
    ({"lsp-lsps1-max-channel-expiry-blocks": 0},
     "max_channel_expiry_blocks must be at least 1"),
    ({"lsp-lsps1-order-valid-for": 59}, "orders must stay valid for at least 60 seconds"),
    ({"lsp-lsps1-min-onchain-confirmations": 0},
     "on-chain payments need at least 1 confirmation (no zero-conf payments)"),
])
def test_lsps1_an_unusable_policy_says_why(changes, why):
    assert refused(lsps1.policy, **changes) == f"LSPS1 policy: {why}"


@pytest.mark.parametrize("name", ["lsp-lsps1-fee-base-sat", "lsp-lsps1-fee-ppm",
                                  "lsp-lsps1-lease-ppm-per-block",
                                  "lsp-lsps1-min-required-channel-confirmations",
                                  "lsp-lsps1-min-client-balance-sat"])
def test_lsps1_negative_values_are_refused(name):
    assert refused(lsps1.policy, **{name: -1}) == "LSPS1 policy: values must not be negative"


# --- LSPS7 --------------------------------------------------------------------------


def test_lsps7_defaults_take_lsps1s_validity_and_tokens():
    orders = lsps1.policy(getter(lsp_lsps1_order_valid_for=600, lsp_lsps1_token=["t"]))
    made = lsps7.policy(getter(), orders)
    assert (made.max_extension_blocks, made.fee_base_sat, made.fee_ppm_per_block,
            made.extend_any_channel) == (13140, 0, 1, False)
    assert (made.order_valid_for_s, made.tokens) == (600, frozenset({"t"}))


def test_lsps7_extend_any_channel():
    made = lsps7.policy(getter(lsp_lsps7_extend_any_channel=True), lsps1.policy(getter()))
    assert made.extend_any_channel is True


@pytest.mark.parametrize("name", ["lsp-lsps7-max-extension-blocks", "lsp-lsps7-fee-base-sat",
                                  "lsp-lsps7-fee-ppm-per-block"])
def test_lsps7_negative_values_are_refused(name):
    assert refused(lsps7.policy, lsps1.policy(getter()), **{name: -1}) == (
        "LSPS7 options must not be negative")


# --- async payments -----------------------------------------------------------------


def test_asyncpay_defaults():
    get = getter()
    server = asyncpay.server_limits(get)
    assert (server.max_slots_per_recipient, server.max_recipients) == (10, 1000)
    box = asyncpay.mailbox_limits(get)
    assert (box.per_peer, box.total, box.ttl_s) == (50, 1000, 86400)
    hold = asyncpay.hold_limits(get)
    assert (hold.per_peer, hold.expiry_margin_blocks) == (20, 12)
    assert asyncpay.refresh_interval(get) == 7200


@pytest.mark.parametrize("name", ["lsp-asyncpay-max-slots", "lsp-asyncpay-max-recipients"])
def test_asyncpay_server_limits_below_one_are_refused(name):
    assert refused(asyncpay.server_limits, **{name: 0}) == (
        "lsp-asyncpay-max-slots and lsp-asyncpay-max-recipients must be at least 1")


@pytest.mark.parametrize("name", ["lsp-asyncpay-mailbox-per-peer", "lsp-asyncpay-mailbox-total",
                                  "lsp-asyncpay-mailbox-ttl"])
def test_asyncpay_mailbox_limits_below_one_are_refused(name):
    assert refused(asyncpay.mailbox_limits, **{name: 0}) == (
        "lsp-asyncpay-mailbox-* must be at least 1")


@pytest.mark.parametrize("name", ["lsp-asyncpay-hold-per-peer", "lsp-asyncpay-hold-margin"])
def test_asyncpay_hold_limits_below_one_are_refused(name):
    assert refused(asyncpay.hold_limits, **{name: 0}) == (
        "lsp-asyncpay-hold-per-peer and -margin must be at least 1")


def test_asyncpay_refresh_interval_under_a_minute_is_refused():
    assert refused(asyncpay.refresh_interval, lsp_asyncpay_refresh_interval=59) == (
        "lsp-asyncpay-refresh-interval must be at least 60")
    assert asyncpay.refresh_interval(getter(lsp_asyncpay_refresh_interval=60)) == 60

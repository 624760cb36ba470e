"""LSPS1 service options (bLIP-51 get_info values, fees, on-chain payment). Pure."""

from __future__ import annotations

from lsps.lsps1.service import Policy
from lsps.options import Get, Option, OptionError, flag

# Integer options that are Policy fields, in the order lightningd lists them.
POLICY_FIELDS = {
    "lsp-lsps1-min-required-channel-confirmations": "min_required_channel_confirmations",
    "lsp-lsps1-min-funding-confirms-within-blocks": "min_funding_confirms_within_blocks",
    "lsp-lsps1-max-channel-expiry-blocks": "max_channel_expiry_blocks",
    "lsp-lsps1-min-client-balance-sat": "min_initial_client_balance_sat",
    "lsp-lsps1-max-client-balance-sat": "max_initial_client_balance_sat",
    "lsp-lsps1-min-lsp-balance-sat": "min_initial_lsp_balance_sat",
    "lsp-lsps1-max-lsp-balance-sat": "max_initial_lsp_balance_sat",
    "lsp-lsps1-min-channel-sat": "min_channel_balance_sat",
    "lsp-lsps1-max-channel-sat": "max_channel_balance_sat",
    "lsp-lsps1-fee-base-sat": "fee_base_sat",
    "lsp-lsps1-fee-ppm": "fee_ppm",
    "lsp-lsps1-lease-ppm-per-block": "lease_ppm_per_block",
    "lsp-lsps1-order-valid-for": "order_valid_for_s",
}

OPTIONS = (
    Option("lsp-lsps1-min-required-channel-confirmations", 0,
           "LSPS1: fewest confirmations a client may ask for (0 allows zero-conf channels)."),
    Option("lsp-lsps1-min-funding-confirms-within-blocks", 6,
           "LSPS1: fastest funding confirmation target a client may ask for (blocks)."),
    Option("lsp-lsps1-max-channel-expiry-blocks", 13140, "LSPS1: longest lease (blocks)."),
    Option("lsp-lsps1-min-client-balance-sat", 0, "LSPS1: smallest client_balance_sat."),
    Option("lsp-lsps1-max-client-balance-sat", 1_000_000, "LSPS1: largest client_balance_sat."),
    Option("lsp-lsps1-min-lsp-balance-sat", 100_000, "LSPS1: smallest lsp_balance_sat."),
    Option("lsp-lsps1-max-lsp-balance-sat", 10_000_000, "LSPS1: largest lsp_balance_sat."),
    Option("lsp-lsps1-min-channel-sat", 100_000, "LSPS1: smallest channel (both balances)."),
    Option("lsp-lsps1-max-channel-sat", 11_000_000, "LSPS1: largest channel (both balances)."),
    Option("lsp-lsps1-fee-base-sat", 1000, "LSPS1: fixed part of the fee (sat)."),
    Option("lsp-lsps1-fee-ppm", 2000, "LSPS1: fee per million of lsp_balance_sat."),
    Option("lsp-lsps1-lease-ppm-per-block", 0,
           "LSPS1: fee per million of lsp_balance_sat for each block of channel_expiry_blocks."),
    Option("lsp-lsps1-order-valid-for", 3600,
           "LSPS1: seconds an order (and its invoice) waits for payment."),
    flag("lsp-lsps1-onchain",
         "LSPS1: accept on-chain payment (only from clients that give a "
         "refund_onchain_address)."),
    flag("lsp-lsps1-no-bolt12",
         "LSPS1/LSPS7: offer no payment.bolt12 (an offer per order, its payment held "
         "like the bolt11 invoice's)."),
    Option("lsp-lsps1-min-onchain-confirmations", 1,
           "LSPS1: confirmations an on-chain payment needs (at least 1)."),
    Option("lsp-lsps1-min-fee-for-0conf", 253,
           "LSPS1: min_fee_for_0conf advertised (sat per 1000 weight units); "
           "unconfirmed payments are not accepted."),
    Option("lsp-lsps1-prune-after", 86400,
           "LSPS1: seconds after which a failed order with nothing left to refund is "
           "forgotten (lsps1.get_order then answers 101)."),
    flag("lsp-lsps1-close-expired",
         "LSPS1: close a sold channel once its lease (with LSPS7 extensions) has expired."),
    Option("lsp-lsps1-token", None,
           "LSPS1: a token clients must present; without any, no token is needed.",
           "string", multi=True),
    Option("lsp-lsps1-htlc-expiry-margin", 6,
           "LSPS1: fail a held order payment this many blocks before its CLTV expiry."),
)


def policy(get: Get) -> Policy:
    made = Policy(**{field: get(name) for name, field in POLICY_FIELDS.items()},
                  tokens=frozenset(get("lsp-lsps1-token") or []),
                  onchain=bool(get("lsp-lsps1-onchain")),
                  min_onchain_payment_confirmations=get("lsp-lsps1-min-onchain-confirmations"),
                  min_fee_for_0conf=get("lsp-lsps1-min-fee-for-0conf"))
    why = made.check()
    if why or any(get(name) < 0 for name in POLICY_FIELDS):
        raise OptionError(f"LSPS1 policy: {why or 'values must not be negative'}")
    return made

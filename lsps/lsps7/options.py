"""LSPS7 service options (lease extensions). Pure."""

from __future__ import annotations

import lsps.lsps1.service as lsps1
from lsps.lsps7.service import Policy
from lsps.options import Get, Option, OptionError, flag

OPTIONS = (
    Option("lsp-lsps7-max-extension-blocks", 13140,
           "LSPS7: most blocks one order may extend a lease by."),
    Option("lsp-lsps7-fee-base-sat", 0, "LSPS7: fixed part of the fee (sat)."),
    Option("lsp-lsps7-fee-ppm-per-block", 1,
           "LSPS7: fee per million of the channel capacity, per block extended."),
    flag("lsp-lsps7-extend-any-channel",
         "LSPS7: also extend channels not bought through LSPS1 (their lease starts at the "
         "current block)."),
)


def policy(get: Get, orders: lsps1.Policy) -> Policy:
    """Orders are valid as long as LSPS1's, with LSPS1's tokens."""
    made = Policy(max_extension_blocks=get("lsp-lsps7-max-extension-blocks"),
                  fee_base_sat=get("lsp-lsps7-fee-base-sat"),
                  fee_ppm_per_block=get("lsp-lsps7-fee-ppm-per-block"),
                  order_valid_for_s=orders.order_valid_for_s,
                  extend_any_channel=bool(get("lsp-lsps7-extend-any-channel")),
                  tokens=orders.tokens)
    if min(made.max_extension_blocks, made.fee_base_sat, made.fee_ppm_per_block) < 0:
        raise OptionError("LSPS7 options must not be negative")
    return made

"""LSPS1 (bLIP-51) on the wire: methods, their parameters, error codes. Pure.

Order and payment states and the order's payment object are shared with LSPS7:
lsps/orders/payment.py."""

from lsps.orders.payment import ORDER_NOT_FOUND, UNRECOGNIZED_TOKEN  # noqa: F401  (LSPS1's codes)

GET_INFO, CREATE_ORDER, GET_ORDER = "lsps1.get_info", "lsps1.create_order", "lsps1.get_order"
OPTION_MISMATCH = 100
CREATE_ORDER_REQUIRED = frozenset({"lsp_balance_sat", "client_balance_sat",
                                   "required_channel_confirmations",
                                   "funding_confirms_within_blocks", "channel_expiry_blocks",
                                   "announce_channel"})
CREATE_ORDER_OPTIONAL = frozenset({"token", "refund_onchain_address"})

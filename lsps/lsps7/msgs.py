"""LSPS7 (draft bLIP-57) on the wire: methods and their parameters. Pure. Its error
codes are LSPS1's (lsps/lsps1/msgs.py) and its orders are paid like LSPS1's."""

GET_EXTENDABLE_CHANNELS = "lsps7.get_extendable_channels"
CREATE_ORDER, GET_ORDER = "lsps7.create_order", "lsps7.get_order"
CREATE_ORDER_REQUIRED = frozenset({"short_channel_id", "channel_extension_expiry_blocks"})
CREATE_ORDER_OPTIONAL = frozenset({"token", "refund_onchain_address"})

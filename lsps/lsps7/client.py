"""LSPS7 client core: checking an LSP's extension orders against what we asked. Pure."""

from __future__ import annotations

from typing import Any, Optional

import lsps.orders.payment as P
from lsps.lsps0.client import BAD_RESPONSE, ClientError
from lsps.lsps1.client import EXTENSION_MISMATCH, check_invoice_amount, check_order_result
from lsps.lsps2.msgs import ProtocolError, parse_uint


def check_extension(lsp_id: str, order: Any, asked: Optional[int]) -> dict:
    """expiration_block + extension == new_channel_expiry_block (draft bLIP-57);
    the fee total is checked like LSPS1's with no client balance."""
    if not isinstance(order, dict) or not isinstance(order.get("order_id"), str):
        raise ClientError(BAD_RESPONSE, f"{lsp_id} sent an extension order without order_id",
                          {"result": order})
    check_order_result(lsp_id, {**order, "client_balance_sat": "0"})
    check_invoice_amount(lsp_id, order, EXTENSION_MISMATCH)
    try:
        blocks = parse_uint(order.get("channel_extension_expiry_blocks"),
                            "channel_extension_expiry_blocks", 0xFFFFFFFF)
        new = order.get("new_channel_expiry_block", order.get("new_channel_expiry_blocks"))
        new = parse_uint(new, "new_channel_expiry_block", 0xFFFFFFFF)
        channel = order.get("channel") if isinstance(order.get("channel"), dict) else {}
        expiration = parse_uint(channel.get("expiration_block"), "channel.expiration_block",
                                0xFFFFFFFF)
    except ProtocolError as e:
        raise ClientError(BAD_RESPONSE, f"{lsp_id}: invalid extension order: {e}",
                          {"result": order}) from None
    if asked is not None and blocks != asked:
        raise ClientError(EXTENSION_MISMATCH, f"{lsp_id} extends by {blocks} blocks, "
                          f"not the {asked} asked for", {"order": order})
    # Before payment the channel shows the current expiry; once the lease is
    # extended it already includes this extension.
    if order.get("order_state") == P.CREATED and expiration + blocks != new:
        raise ClientError(EXTENSION_MISMATCH,
                          f"{lsp_id}: expiration_block {expiration} + {blocks} != "
                          f"new_channel_expiry_block {new}", {"order": order})
    return order

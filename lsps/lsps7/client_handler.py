"""LSPS7 client at run time: asking an LSP which channels it extends, ordering
extensions; the answers are checked by lsps7/client.py."""

from __future__ import annotations

from typing import Any, Callable, Optional

import lsps.lsps7.msgs as M7
from lsps.lsps0.client import BAD_RESPONSE, ClientError
from lsps.lsps7.client import check_extension


class Lsps7Client:
    def __init__(self, request: Callable[[str, str, dict], Any],
                 pay: Optional[Callable[[str, dict, str], dict]] = None):
        """`request(lsp, method, params)` blocks for the LSP's answer (or raises);
        `pay(lsp, order, method)` pays a checked order (the LSPS1 client's)."""
        self.request = request
        self.pay = pay

    def get_extendable_channels(self, lsp_id: str) -> dict:
        result = self.request(lsp_id, M7.GET_EXTENDABLE_CHANNELS, {})
        channels = result.get("extendable_channels") if isinstance(result, dict) else None
        if not isinstance(channels, list) or not all(isinstance(c, dict) for c in channels):
            raise ClientError(BAD_RESPONSE, f"{lsp_id} sent an invalid extendable channel list",
                              {"result": result})
        return {"extendable_channels": channels}

    def create_extension(self, lsp_id: str, params: dict, pay: Optional[str] = None) -> dict:
        """lsps7.create_order, checked; `pay` ("bolt11", "bolt12"): then pay it that way
        and answer its new state."""
        order = check_extension(lsp_id, self.request(lsp_id, M7.CREATE_ORDER, params),
                                params["channel_extension_expiry_blocks"])
        if pay is None or self.pay is None:
            return order
        paid = self.pay(lsp_id, order, pay)
        return {**self.get_extension(lsp_id, order["order_id"]), "paid": paid}

    def get_extension(self, lsp_id: str, order_id: str) -> dict:
        return check_extension(lsp_id, self.request(lsp_id, M7.GET_ORDER,
                                                    {"order_id": order_id}), None)

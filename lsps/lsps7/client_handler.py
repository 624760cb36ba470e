"""LSPS7 client at run time: asking an LSP which channels it extends, ordering
extensions; the answers are checked by lsps7/client.py."""

from __future__ import annotations

from typing import Any, Callable

import lsps.lsps7.msgs as M7
from lsps.lsps0.client import BAD_RESPONSE, ClientError
from lsps.lsps7.client import check_extension


class Lsps7Client:
    def __init__(self, request: Callable[[str, str, dict], Any]):
        """`request(lsp, method, params)` blocks for the LSP's answer (or raises)."""
        self.request = request

    def get_extendable_channels(self, lsp_id: str) -> dict:
        result = self.request(lsp_id, M7.GET_EXTENDABLE_CHANNELS, {})
        channels = result.get("extendable_channels") if isinstance(result, dict) else None
        if not isinstance(channels, list) or not all(isinstance(c, dict) for c in channels):
            raise ClientError(BAD_RESPONSE, f"{lsp_id} sent an invalid extendable channel list",
                              {"result": result})
        return {"extendable_channels": channels}

    def create_extension(self, lsp_id: str, params: dict) -> dict:
        return check_extension(lsp_id, self.request(lsp_id, M7.CREATE_ORDER, params),
                               params["channel_extension_expiry_blocks"])

    def get_extension(self, lsp_id: str, order_id: str) -> dict:
        return check_extension(lsp_id, self.request(lsp_id, M7.GET_ORDER,
                                                    {"order_id": order_id}), None)

"""LSPS5 client at run time: registering, listing and removing our webhooks at an LSP
(the LSP keeps them; nothing is stored here)."""

from __future__ import annotations

from typing import Any, Callable

import lsps.lsps5.client as C
import lsps.lsps5.msgs as M


class Lsps5Client:
    def __init__(self, request: Callable[[str, str, dict], Any]):
        """`request(lsp, method, params)` blocks for the LSP's answer (or raises)."""
        self._request = request

    def set_webhook(self, lsp_id: str, app_name: str, webhook: str) -> dict:
        return C.parse_set_result(lsp_id, self._request(
            lsp_id, M.SET_WEBHOOK, {"app_name": app_name, "webhook": webhook}))

    def list_webhooks(self, lsp_id: str) -> dict:
        return C.parse_list_result(lsp_id, self._request(lsp_id, M.LIST_WEBHOOKS, {}))

    def remove_webhook(self, lsp_id: str, app_name: str) -> dict:
        self._request(lsp_id, M.REMOVE_WEBHOOK, {"app_name": app_name})
        return {"removed": app_name}

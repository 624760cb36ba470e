"""LSPS0's own method, lsps0.list_protocols, for both roles."""

from __future__ import annotations

from typing import Any

from lsps.lsps0.client import BAD_RESPONSE, ClientError
from lsps.lsps0.service import Dispatcher, MethodSpec

LIST_PROTOCOLS = "lsps0.list_protocols"


def register_service(dispatcher: Dispatcher) -> None:
    dispatcher.register(MethodSpec(
        name=LIST_PROTOCOLS, protocol=0,
        handler=lambda call: {"protocols": dispatcher.protocols()}))


def parse_list_protocols(peer_id: str, result: Any) -> dict:
    """Validate an LSP's answer; extra keys are ignored as bLIP-50 says."""
    protocols = result.get("protocols") if isinstance(result, dict) else None
    if not isinstance(protocols, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 65535
            for p in protocols):
        raise ClientError(BAD_RESPONSE, f"{peer_id} sent an invalid list_protocols result",
                          {"result": result})
    return {"protocols": sorted(set(protocols))}

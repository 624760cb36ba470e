"""Helpers for our RPC commands: operator input checks and error replies."""

from __future__ import annotations

import re
from typing import Any, Optional

from pyln.client import RpcException
from pyln.client.plugin import RequestState

# JSON-RPC "invalid params", what lightningd itself uses for bad arguments.
INVALID_PARAMS = -32602

_NODE_ID = re.compile(r"^0[23][0-9a-f]{64}$")


def require_node_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _NODE_ID.match(value.lower()):
        raise RpcException(f"{name}: expected a 33-byte node id in hex, got {value!r}",
                           INVALID_PARAMS)
    return value.lower()


def fail_request(request, code: int, message: str, data: Optional[dict] = None) -> None:
    """Answer an async RPC request with an error that keeps `data`.

    pyln's set_exception has no `data` and adds a traceback; we write the
    JSON-RPC error ourselves and mark the request done the same way."""
    if request.state != RequestState.PENDING:
        return
    error: dict = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    request.state = RequestState.FAILED
    request.termination_tb = "clnlsp fail_request"
    request._write_result({"jsonrpc": "2.0", "id": request.id, "error": error})

"""RPC command plumbing: operator input checks, error replies, answering from a
worker thread. `CommandError(message, code)` is the RPC error a command raises."""

from __future__ import annotations

import re
from typing import Any, Optional

from pyln.client import RpcException
from pyln.client import RpcException as CommandError  # noqa: F401  (re-exported)
from pyln.client.plugin import RequestState

# JSON-RPC "invalid params", what lightningd itself uses for bad arguments.
INVALID_PARAMS = -32602

_NODE_ID = re.compile(r"^0[23][0-9a-f]{64}$")


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes superscripts, which int() refuses."""
    return text.isascii() and text.isdigit()


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


def optional_amount(value: Any, name: str) -> Optional[int]:
    """An msat amount from the command line: integer, "123" or "123msat"."""
    if value is None:
        return None
    text = str(value)
    if text.endswith("msat"):
        text = text[:-4]
    if isinstance(value, bool) or not _digits(text) or int(text) > 2**64 - 1:
        raise RpcException(f"{name}: expected an amount in msat, got {value!r}", INVALID_PARAMS)
    return int(text)


def optional_int(value: Any, name: str, minimum: int = 0) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not _digits(str(value)) or int(value) < minimum:
        raise RpcException(f"{name}: expected an integer of at least {minimum}, got {value!r}",
                           INVALID_PARAMS)
    return int(value)


def run_in_worker(pool, request, work) -> None:
    """Answer an async RPC request with work() done on a worker thread.

    An error that carries a JSON-RPC `code` (our ClientError, pyln's RpcException)
    keeps its code, message and data; anything else is an internal error with its
    message. (By its attributes: the adapter does not import the protocols.)"""
    def run():
        try:
            request.set_result(work())
        except Exception as e:
            code = getattr(e, "code", None)
            if isinstance(code, int) and not isinstance(code, bool):
                fail_request(request, code, getattr(e, "message", str(e)),
                             getattr(e, "data", None))
            else:
                fail_request(request, -32603, f"{request.method} failed: {e}")
    pool.submit(run)

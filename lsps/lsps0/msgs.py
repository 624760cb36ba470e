"""LSPS0 framing (bLIP-50): JSON-RPC 2.0 objects carried in custom message 37913.

Pure code: bytes in, typed messages out, and back. No I/O, no clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional, Union

LSPS0_MESSAGE_TYPE = 37913
# BOLT8 caps a message at 65535 bytes, two of which are the type.
MAX_PAYLOAD_BYTES = 65533
# Longest request id we echo back: longer ones could not fit in an answer.
MAX_ID_CHARS = 1024

# JSON-RPC 2.0 standard codes and LSPS0's code 1.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
CLIENT_REJECTED = 1

RequestId = Union[str, int]


@dataclass(frozen=True)
class Request:
    id: RequestId
    method: str
    params: dict


@dataclass(frozen=True)
class Notification:
    method: str
    params: dict


@dataclass(frozen=True)
class ErrorObject:
    code: int
    message: str
    data: Any = None


@dataclass(frozen=True)
class Response:
    id: RequestId
    result: Optional[dict] = None
    error: Optional[ErrorObject] = None


@dataclass(frozen=True)
class Malformed:
    """A message that is not what the receiving role accepts.

    `code` is the error a service answers with and `id` the id to answer to
    (None means JSON null, as bLIP-50 requires for a parse error)."""
    reason: str
    code: int = PARSE_ERROR
    id: Optional[RequestId] = None
    # Set when the object looked like a response; a client uses it to tell
    # a broken answer from unrelated garbage.
    looked_like_response: bool = False


Message = Union[Request, Notification, Response, Malformed]


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _load_object(payload: bytes) -> Union[dict, Malformed]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Malformed(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if b"\x00" in payload:
        return Malformed("payload contains a NUL byte")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Malformed("payload is not UTF-8")
    try:
        # json.loads rejects trailing data, so "{} {}" is caught here too.
        obj = json.loads(text, object_pairs_hook=_no_duplicates,
                         parse_constant=_reject_constant)
    except _DuplicateKey as e:
        return Malformed(f"duplicate key {str(e)[:64]!r}")
    except (ValueError, RecursionError):
        return Malformed("payload is not a single JSON value")
    if not isinstance(obj, dict):
        return Malformed("payload is not a JSON object")
    return obj


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return len(value) <= MAX_ID_CHARS
    return isinstance(value, int)


def _parse_error_object(value: Any) -> Optional[ErrorObject]:
    if not isinstance(value, dict):
        return None
    code, message = value.get("code"), value.get("message")
    if isinstance(code, bool) or not isinstance(code, int):
        return None
    if not isinstance(message, str):
        return None
    # bLIP-50 says data is an object; LDK sends a string. Accept any JSON.
    return ErrorObject(code, message, value.get("data"))


def decode(payload: bytes) -> Message:
    """Classify one 37913 payload. Never raises."""
    obj = _load_object(payload)
    if isinstance(obj, Malformed):
        return obj

    if "method" in obj:
        return _decode_call(obj)
    if "result" in obj or "error" in obj:
        return _decode_response(obj)
    return Malformed("object is neither a request nor a response")


def _decode_call(obj: dict) -> Message:
    method = obj["method"]
    if "id" not in obj:
        params = obj.get("params", {})
        if (obj.get("jsonrpc") != "2.0" or not isinstance(method, str)
                or not isinstance(params, dict)):
            return Malformed("malformed notification")
        return Notification(method, params)

    raw_id = obj["id"]
    if not _valid_id(raw_id):
        return Malformed("request id must be a string of at most "
                         f"{MAX_ID_CHARS} characters or an integer",
                         code=INVALID_REQUEST)
    if obj.get("jsonrpc") != "2.0":
        return Malformed('"jsonrpc" must be "2.0"', INVALID_REQUEST, raw_id)
    if not isinstance(method, str):
        return Malformed('"method" must be a string', INVALID_REQUEST, raw_id)
    params = obj.get("params", {})
    if not isinstance(params, dict):
        return Malformed('"params" must be an object (by-name parameters)',
                         INVALID_REQUEST, raw_id)
    return Request(raw_id, method, params)


def _decode_response(obj: dict) -> Message:
    raw_id = obj.get("id")

    def bad(reason: str) -> Malformed:
        return Malformed(reason, looked_like_response=True)

    if obj.get("jsonrpc") != "2.0":
        return bad('"jsonrpc" must be "2.0"')
    if "result" in obj and "error" in obj:
        return bad("response has both result and error")
    if "error" in obj:
        # An error about an unparseable request carries id null.
        if raw_id is not None and not _valid_id(raw_id):
            return bad("invalid response id")
        error = _parse_error_object(obj["error"])
        if error is None:
            return bad("malformed error object")
        return Response(raw_id, error=error)
    if not _valid_id(raw_id):
        return bad("invalid response id")
    result = obj["result"]
    if not isinstance(result, dict):
        return bad("result is not an object")
    return Response(raw_id, result=result)


def _dump(obj: dict) -> bytes:
    # bLIP-50 wants characters written directly, not as \u escapes; only lone
    # surrogates (which a peer can smuggle in through "\ud800") cannot be.
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def encode_request(request: Request) -> bytes:
    data = _dump({"jsonrpc": "2.0", "id": request.id, "method": request.method,
                  "params": request.params})
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"request of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return data


def encode_result(request_id: RequestId, result: dict) -> bytes:
    data = _dump({"jsonrpc": "2.0", "id": request_id, "result": result})
    if len(data) <= MAX_PAYLOAD_BYTES:
        return data
    return encode_error(request_id, INTERNAL_ERROR, "response too large")


def encode_error(request_id: Optional[RequestId], code: int, message: str,
                 data: Optional[dict] = None) -> bytes:
    """An error response, always within MAX_PAYLOAD_BYTES.

    Oversized answers first lose `data`'s bulk, then the message, so that a
    peer echoing a huge id or naming huge parameters cannot make us emit a
    message connectd would choke on."""
    error: dict = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    out = _dump({"jsonrpc": "2.0", "id": request_id, "error": error})
    if len(out) <= MAX_PAYLOAD_BYTES:
        return out
    if data is not None:
        error["data"] = _shrink_data(data)
        out = _dump({"jsonrpc": "2.0", "id": request_id, "error": error})
        if len(out) <= MAX_PAYLOAD_BYTES:
            return out
    error["message"] = message[:256]
    out = _dump({"jsonrpc": "2.0", "id": request_id, "error": error})
    if len(out) <= MAX_PAYLOAD_BYTES:
        return out
    error.pop("data", None)
    return _dump({"jsonrpc": "2.0", "id": request_id, "error": error})


def _shrink_data(data: dict) -> dict:
    """Keep the keys, cut every string and list so the whole stays small."""
    def cut(value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return value[:128]
        if isinstance(value, list):
            return [cut(v, depth + 1) for v in value[:32]]
        if isinstance(value, dict) and depth < 4:
            return {str(k)[:128]: cut(v, depth + 1) for k, v in list(value.items())[:32]}
        if isinstance(value, dict):
            return {}
        return value
    return cut(data)


def encode_notification(method: str, params: dict) -> bytes:
    data = _dump({"jsonrpc": "2.0", "method": method, "params": params})
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"notification of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return data


@dataclass
class LspsError(Exception):
    """An error a service method answers with (spec code, message, data)."""
    code: int
    message: str
    data: Optional[dict] = field(default=None)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

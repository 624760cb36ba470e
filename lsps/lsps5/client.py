"""LSPS5 client, pure: reading the LSP's answers, and what a notification delivery
service needs to trust a webhook call: the timestamp, the LSP's signature over the
bLIP-55 template (LSPS0 ln_signature: zbase32 of a recoverable signature over
sha256d("Lightning Signed Message:" + message), as CLN's signmessage makes it) and the
body, a JSON-RPC notification.

    from lsps.lsps5.client import verify_notification
    note = verify_notification(lsp_id, headers["x-lsps5-timestamp"],
                               headers["x-lsps5-signature"], body, now_ms)
    note["method"]   # e.g. "lsps5.payment_incoming"
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import coincurve

import lsps.lsps5.msgs as M
from lsps.lsps0.client import BAD_RESPONSE, ClientError
from lsps.lsps2.msgs import ProtocolError, parse_datetime_ms

ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"
SIGNED_MESSAGE_PREFIX = b"Lightning Signed Message:"
TIMESTAMP_WINDOW_S = 600   # a notification older (or newer) than this is refused


class VerifyError(Exception):
    pass


def zbase32_decode(text: str) -> bytes:
    bits = 0
    value = 0
    out = bytearray()
    for ch in text:
        index = ZBASE32.find(ch)
        if index < 0:
            raise VerifyError(f"not zbase32: {ch!r}")
        value = (value << 5) | index
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((value >> bits) & 0xFF)
    return bytes(out)


def signer_of(message: str, zbase: str) -> bytes:
    """The 33-byte node id whose ln_signature `zbase` is over `message`."""
    raw = zbase32_decode(zbase)
    if len(raw) != 65 or not 31 <= raw[0] <= 34:
        raise VerifyError("not a 65-byte compressed-key recoverable signature")
    digest = hashlib.sha256(hashlib.sha256(SIGNED_MESSAGE_PREFIX + message.encode())
                            .digest()).digest()
    try:
        key = coincurve.PublicKey.from_signature_and_message(
            raw[1:] + bytes([raw[0] - 31]), digest, hasher=None)
    except ValueError as e:
        raise VerifyError(f"signature does not recover a key: {e}") from e
    return key.format()


def cln_signed(message: str) -> str:
    """What CLN's `signmessage` really signs for `message`: the JSON-escaped text (v26.06
    hands the RPC parameter on without unescaping it, so every `"` of a notification body
    is signed as `\\"`). LSPs on CLN can only make such signatures; bLIP-55 wants the
    unescaped bytes. We accept both (lenient in); see README, "LSPS5 signatures"."""
    return json.dumps(message)[1:-1]


def verify_notification(lsp_id: str, timestamp: str, signature: str, body: bytes,
                        now_ms: int, window_s: int = TIMESTAMP_WINDOW_S) -> dict:
    """The notification, when `body` was signed at `timestamp` by node `lsp_id` (over
    bLIP-55's message, or over the form a CLN LSP's signmessage signs) and the
    timestamp is within `window_s` of now; else VerifyError saying why."""
    try:
        at_ms = parse_datetime_ms(timestamp, M.TIMESTAMP_HEADER)
    except ProtocolError as e:
        raise VerifyError(str(e)) from e
    if abs(now_ms - at_ms) > window_s * 1000:
        raise VerifyError(f"timestamp {timestamp} is more than {window_s} s away")
    message = M.signed_message(timestamp, body)
    if lsp_id.lower() not in {signer_of(m, signature).hex() for m in (message,
                                                                       cln_signed(message))}:
        raise VerifyError("not signed by the LSP")
    try:
        note = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise VerifyError(f"body is not JSON: {e}") from e
    if not isinstance(note, dict) or note.get("jsonrpc") != "2.0" or "id" in note \
            or not isinstance(note.get("method"), str) \
            or not isinstance(note.get("params"), dict):
        raise VerifyError("body is not a JSON-RPC 2.0 notification")
    return note


def parse_set_result(lsp_id: str, result: Any) -> dict:
    ok = isinstance(result, dict) and all(
        isinstance(result.get(k), int) and not isinstance(result.get(k), bool)
        and result[k] >= 0 for k in ("num_webhooks", "max_webhooks")) \
        and isinstance(result.get("no_change"), bool)
    if not ok:
        raise ClientError(BAD_RESPONSE, f"{lsp_id} sent an invalid set_webhook result",
                          {"result": result})
    return {k: result[k] for k in ("num_webhooks", "max_webhooks", "no_change")}


def parse_list_result(lsp_id: str, result: Any) -> dict:
    names = result.get("app_names") if isinstance(result, dict) else None
    most = result.get("max_webhooks") if isinstance(result, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) \
            or not isinstance(most, int) or isinstance(most, bool) or most < 0:
        raise ClientError(BAD_RESPONSE, f"{lsp_id} sent an invalid list_webhooks result",
                          {"result": result})
    return {"app_names": names, "max_webhooks": most}

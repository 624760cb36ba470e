"""LSPS5 wire rules (bLIP-55): method names, error codes, limits, the notification
object and the exact message the LSP signs. Pure."""

from __future__ import annotations

import json
from typing import Optional
from urllib.parse import urlsplit

from lsps.lsps0.msgs import LspsError

SET_WEBHOOK = "lsps5.set_webhook"
LIST_WEBHOOKS = "lsps5.list_webhooks"
REMOVE_WEBHOOK = "lsps5.remove_webhook"

TOO_LONG = 500
URL_PARSE_ERROR = 501
UNSUPPORTED_PROTOCOL = 502
TOO_MANY_WEBHOOKS = 503
APP_NAME_NOT_FOUND = 1010

WEBHOOK_REGISTERED = "lsps5.webhook_registered"
PAYMENT_INCOMING = "lsps5.payment_incoming"
EXPIRY_SOON = "lsps5.expiry_soon"
LIQUIDITY_MANAGEMENT_REQUEST = "lsps5.liquidity_management_request"
ONION_MESSAGE_INCOMING = "lsps5.onion_message_incoming"

MAX_APP_NAME_BYTES = 64
MAX_WEBHOOK_CHARS = 1024
SIGNED_PREFIX = "LSPS5: DO NOT SIGN THIS MESSAGE MANUALLY: LSP: At "
TIMESTAMP_HEADER, SIGNATURE_HEADER = "x-lsps5-timestamp", "x-lsps5-signature"


def app_name_bytes(app_name: str) -> int:
    """The app_name's length as bLIP-55 counts it: UTF-8 bytes, a backslash escape
    counting as the bytes of its escaped form (as a JSON encoder writes it)."""
    return len(json.dumps(app_name, ensure_ascii=False)[1:-1].encode())


def check_app_name(app_name) -> str:
    if not isinstance(app_name, str):
        raise LspsError(-32602, "app_name must be a string", {"property": "app_name",
                                                             "message": "not a string"})
    if app_name_bytes(app_name) > MAX_APP_NAME_BYTES:
        raise LspsError(TOO_LONG, f"app_name is longer than {MAX_APP_NAME_BYTES} bytes")
    return app_name


def check_webhook(webhook) -> str:
    """An RFC 1738 https URL of at most 1024 ASCII characters, else the bLIP-55 error."""
    if not isinstance(webhook, str):
        raise LspsError(-32602, "webhook must be a string", {"property": "webhook",
                                                            "message": "not a string"})
    if len(webhook) > MAX_WEBHOOK_CHARS:
        raise LspsError(TOO_LONG, f"webhook is longer than {MAX_WEBHOOK_CHARS} characters")
    why = _url_problem(webhook)
    if why:
        raise LspsError(URL_PARSE_ERROR, f"webhook is not a URL: {why}")
    if urlsplit(webhook).scheme.lower() != "https":
        raise LspsError(UNSUPPORTED_PROTOCOL, "webhook must be an https URL")
    return webhook


def _url_problem(url: str) -> Optional[str]:
    """Why `url` is not an RFC 1738 URL with a host (scheme://host[:port][/path...])."""
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        return "only printable ASCII without spaces"
    try:
        parts = urlsplit(url)
        port = parts.port   # raises on a non-numeric or out-of-range port
    except ValueError as e:
        return str(e)
    if not parts.scheme or not parts.netloc or not parts.hostname:
        return "no scheme or host"
    if port == 0:
        return "port 0"
    return None


def notification(method: str, params: Optional[dict] = None) -> bytes:
    """The JSON-RPC 2.0 notification object, exactly as POSTed (and signed)."""
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params or {}},
                      separators=(",", ":")).encode()


def signed_message(timestamp: str, body: bytes) -> str:
    """What the LSP signs (LSPS0 ln_signature) for one notification."""
    return f"{SIGNED_PREFIX}{timestamp} I notify {body.decode()}"

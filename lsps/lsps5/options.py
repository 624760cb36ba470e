"""LSPS5 service options (webhooks). Pure."""

from __future__ import annotations

from lsps.lsps5.service import Policy
from lsps.options import Get, Option, at_least

OPTIONS = (
    Option("lsp-lsps5-max-webhooks", 10, "LSPS5: webhooks one client may register."),
    Option("lsp-lsps5-cooldown", 10,
           "LSPS5: minutes before the same notification is sent again to a client that "
           "stayed away."),
    Option("lsp-lsps5-timeout", 10, "LSPS5: seconds one webhook POST may take."),
    Option("lsp-lsps5-wake-timeout", 60,
           "LSPS5: seconds a complete JIT payment for a client being woken waits for it to "
           "come back (never past lsp-lsps2-htlc-expiry-margin blocks before its CLTV "
           "expiry); clients that cannot be woken keep the 90 s collection window."),
    Option("lsp-lsps5-ca-file", None,
           "LSPS5: PEM file of extra certificate authorities for webhooks (beside the "
           "system store).", "string"),
)


def policy(get: Get) -> Policy:
    at_least(get, 1, "lsp-lsps5-max-webhooks", "lsp-lsps5-timeout", "lsp-lsps5-wake-timeout")
    at_least(get, 0, "lsp-lsps5-cooldown")
    return Policy(max_webhooks=get("lsp-lsps5-max-webhooks"),
                  cooldown_s=get("lsp-lsps5-cooldown") * 60)

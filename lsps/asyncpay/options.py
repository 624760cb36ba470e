"""Async payment options: the static invoice server, mailbox, HTLC holding and the
recipient's refresh. Pure."""

from __future__ import annotations

from bolt12ext import hold, mailbox, server
from lsps.options import Get, Option, OptionError, at_least, flag

OPTIONS = (
    flag("lsp-asyncpay-server",
         "Static invoice server: keep async recipients' static invoices and answer "
         "invoice_requests for them while they are offline."),
    Option("lsp-asyncpay-max-slots", 10, "Static invoice server: invoice slots per recipient."),
    Option("lsp-asyncpay-max-recipients", 1000,
           "Static invoice server: recipients with stored invoices."),
    Option("lsp-asyncpay-mailbox-per-peer", 50,
           "Mailbox: onion messages kept for one offline peer."),
    Option("lsp-asyncpay-mailbox-total", 1000,
           "Mailbox: onion messages kept for all offline peers."),
    Option("lsp-asyncpay-mailbox-ttl", 86400,
           "Mailbox: seconds an onion message waits for its peer."),
    Option("lsp-asyncpay-hold", False,
           "Hold HTLCs of async payments for our peers until the recipient releases them "
           "(hold_htlc, and the LSPS0 extension clnlsp.asyncpay.hold when lsp-service is on).",
           "flag"),
    Option("lsp-asyncpay-hold-margin", 12,
           "Fail a held HTLC this many blocks before its CLTV expiry."),
    Option("lsp-asyncpay-hold-per-peer", 20, "Payments held at once for one peer."),
    Option("lsp-asyncpay-refresh-interval", 7200,
           "Async recipient: seconds between re-serving a static invoice."),
)


def server_limits(get: Get) -> server.Limits:
    try:
        at_least(get, 1, "lsp-asyncpay-max-slots", "lsp-asyncpay-max-recipients")
    except OptionError:
        raise OptionError("lsp-asyncpay-max-slots and lsp-asyncpay-max-recipients must be "
                          "at least 1") from None
    return server.Limits(max_slots_per_recipient=get("lsp-asyncpay-max-slots"),
                         max_recipients=get("lsp-asyncpay-max-recipients"))


def mailbox_limits(get: Get) -> mailbox.Limits:
    made = mailbox.Limits(per_peer=get("lsp-asyncpay-mailbox-per-peer"),
                          total=get("lsp-asyncpay-mailbox-total"),
                          ttl_s=get("lsp-asyncpay-mailbox-ttl"))
    if min(made.per_peer, made.total, made.ttl_s) < 1:
        raise OptionError("lsp-asyncpay-mailbox-* must be at least 1")
    return made


def hold_limits(get: Get) -> hold.Limits:
    made = hold.Limits(per_peer=get("lsp-asyncpay-hold-per-peer"),
                       expiry_margin_blocks=get("lsp-asyncpay-hold-margin"))
    if made.per_peer < 1 or made.expiry_margin_blocks < 1:
        raise OptionError("lsp-asyncpay-hold-per-peer and -margin must be at least 1")
    return made


def refresh_interval(get: Get) -> int:
    if get("lsp-asyncpay-refresh-interval") < 60:
        raise OptionError("lsp-asyncpay-refresh-interval must be at least 60")
    return get("lsp-asyncpay-refresh-interval")

"""LSPS0 options: the LSP role itself, request timeouts and per-peer limits. Pure."""

from __future__ import annotations

from typing import Tuple

from lsps.lsps0.service import Limits
from lsps.options import Get, Option, at_least, flag

OPTIONS = (
    flag("lsp-service", "Act as an LSP: answer LSPS requests and advertise feature bit 729."),
    Option("lsp-request-timeout", 60, "Seconds an LSPS client request waits for the LSP's answer."),
    Option("lsp-max-pending-per-peer", 10,
           "LSP: requests one peer may have in progress before getting error 1."),
    Option("lsp-max-pending-total", 1000,
           "LSP: requests all peers together may have in progress."),
)


def transport(get: Get) -> Tuple[float, Limits]:
    """(client request timeout in seconds, the service's pending-request limits)."""
    at_least(get, 1, "lsp-request-timeout", "lsp-max-pending-per-peer", "lsp-max-pending-total")
    return (float(get("lsp-request-timeout")),
            Limits(per_peer=get("lsp-max-pending-per-peer"), total=get("lsp-max-pending-total")))

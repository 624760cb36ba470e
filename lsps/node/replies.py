"""htlc_accepted hook answers: every reply the plugin gives lightningd is built here."""

from __future__ import annotations

from typing import Callable, Optional

from lsps.htlc import TEMPORARY_NODE_FAILURE, incorrect_or_unknown
from lsps.node.events import Htlc


def htlc_continue(payload: Optional[str] = None, forward_to: Optional[str] = None,
                  extra_tlvs: Optional[str] = None,
                  invoice_msat: Optional[int] = None) -> dict:
    """An htlc_accepted hook answer: let lightningd go on, with replacements."""
    result: dict = {"result": "continue"}
    if payload is not None:
        result["payload"] = payload
    if forward_to is not None:
        result["forward_to"] = forward_to
    if extra_tlvs is not None:
        result["extra_tlvs"] = extra_tlvs
    if invoice_msat is not None:
        result["invoice_msat"] = invoice_msat
    return result



def htlc_fail(failure_message_hex: str) -> dict:
    return {"result": "fail", "failure_message": failure_message_hex}



def htlc_failure_for(owner: str, htlc: Htlc) -> dict:
    """The failure for an HTLC a service owns but could not handle: for our own
    invoices (final hop) incorrect_or_unknown_payment_details, else
    temporary_node_failure."""
    if owner in ("lsps1_service", "async_recipient"):
        return htlc_fail(incorrect_or_unknown(htlc.amount_msat, htlc.height))
    return htlc_fail(TEMPORARY_NODE_FAILURE)



def htlc_resolve(preimage_hex: str) -> dict:
    """Settle with our own preimage: lightningd fulfils without its invoice checks."""
    return {"result": "resolve", "payment_key": preimage_hex}


def answer_once(request, log) -> Callable[[dict], None]:
    """The hook's responder: lightningd must hear one answer only; a second is logged
    and dropped."""
    def respond(result: dict) -> None:
        try:
            request.set_result(result)
        except ValueError:  # pyln: already answered
            log(f"second answer for {request.method} dropped", "warn")
    return respond

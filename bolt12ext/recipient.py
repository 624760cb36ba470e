"""Async recipient (the often-offline side of async payments), pure parts.

The recipient's offer carries the static invoice server's paths and the
recipient's own issuer key. Its static invoice has blinded payment paths through
its LSP to itself and message paths (LDK field 236) on which payers announce held
HTLCs. A payment made from a static invoice carries its preimage and the payer's
invoice_request in the final hop; the recipient checks them against its offer
before claiming. Online, it answers forwarded invoice_requests with normal
invoices whose payment hash it chose.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from . import build, messages
from .blinding import BlindedPath, PayInfo
from .offer import offer_part
from .tlv import DecodeError

MIN_FINAL_CLTV_EXPIRY_DELTA = 18
# BOLT12: an offer for another chain than bitcoin names its genesis hash (display order).
CHAIN_HASHES = {
    "bitcoin": "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
    "testnet": "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943",
    "testnet4": "00000000da84f2bafbbc53dee25a72ae507ff4914b867c565be350b0da8bf043",
    "signet": "00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6",
    "regtest": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
}
INVOICE_RELATIVE_EXPIRY_S = 7200


def make_offer(issuer_id: bytes, offer_paths: Sequence[BlindedPath], description: str,
               amount_msat: Optional[int] = None, absolute_expiry: Optional[int] = None,
               network: str = "bitcoin") -> bytes:
    chains = None if network == "bitcoin" else [CHAIN_HASHES[network]]
    return build.offer(offer_chains=chains, offer_description=description,
                       offer_amount_msat=amount_msat,
                       offer_absolute_expiry=absolute_expiry, offer_paths=list(offer_paths),
                       offer_issuer_id=issuer_id)


def make_static_invoice(offer: bytes, issuer_secret: bytes,
                        pay_paths: Sequence[Tuple[BlindedPath, PayInfo]],
                        held_paths: Sequence[BlindedPath], created_at: int,
                        relative_expiry: int = build.STATIC_INVOICE_DEFAULT_EXPIRY) -> bytes:
    return build.static_invoice(
        offer, issuer_secret, invoice_paths=[p for p, _ in pay_paths],
        invoice_blindedpay=[i for _, i in pay_paths], invoice_created_at=created_at,
        invoice_relative_expiry=relative_expiry, invoice_held_htlc_available_paths=held_paths)


def expected_amount(request: dict) -> Optional[int]:
    """What an invoice_request (decoded) asks to pay, or None when it cannot say."""
    if "invreq_amount_msat" in request:
        return request["invreq_amount_msat"]
    if "offer_amount_msat" in request:
        return request["offer_amount_msat"] * request.get("invreq_quantity", 1)
    return None


def check_invoice_request(invreq: bytes, offer: bytes) -> dict:
    """The decoded invoice_request when it is signed and asks for `offer`; else DecodeError."""
    request = messages.decode_invoice_request(invreq)
    if not request["signature_valid"]:
        raise DecodeError("invoice_request signature does not verify")
    if offer_part(invreq) != offer_part(offer):
        raise DecodeError("invoice_request for another offer")
    if expected_amount(request) is None:
        raise DecodeError("invoice_request names no amount")
    return request


def answer_invoice_request(invreq: bytes, offer: bytes, issuer_secret: bytes,
                           pay_paths: Sequence[Tuple[BlindedPath, PayInfo]],
                           payment_hash: bytes, created_at: int) -> bytes:
    """A normal invoice for a (forwarded) invoice_request, signed with the issuer key."""
    return invoice_for(invreq, check_invoice_request(invreq, offer), issuer_secret, pay_paths,
                       payment_hash, created_at)


def invoice_for(invreq: bytes, request: dict, issuer_secret: bytes,
                pay_paths: Sequence[Tuple[BlindedPath, PayInfo]], payment_hash: bytes,
                created_at: int) -> bytes:
    """The invoice for an invoice_request already checked (`request`: its decoding)."""
    return build.invoice(invreq, issuer_secret, invoice_paths=[p for p, _ in pay_paths],
                         invoice_blindedpay=[i for _, i in pay_paths],
                         invoice_created_at=created_at,
                         invoice_relative_expiry=INVOICE_RELATIVE_EXPIRY_S,
                         invoice_payment_hash=payment_hash,
                         invoice_amount_msat=expected_amount(request))


@dataclass(frozen=True)
class Claim:
    preimage: Optional[bytes]    # None: refuse
    why: str = ""


def check_payment(payload: dict, payment_hash: bytes, htlc_msat: int, cltv_expiry: int,
                  blockheight: int, offer: bytes,
                  known_preimage: Optional[bytes] = None,
                  invoice_amount_msat: int = 0) -> Claim:
    """May this HTLC, whose final payload came on one of our paths for `offer`, be claimed?

    A static-invoice payment brings its preimage and invoice_request; a payment of a
    normal invoice we issued is claimed with the preimage we kept (`known_preimage`)
    when it pays at least `invoice_amount_msat`.
    """
    preimage = payload.get("payment_preimage", known_preimage)
    if preimage is None:
        return Claim(None, "no preimage for this payment")
    if hashlib.sha256(preimage).digest() != payment_hash:
        return Claim(None, "preimage does not match the payment hash")
    amount = payload.get("amt_to_forward")
    if amount is None or payload.get("outgoing_cltv_value") is None:
        return Claim(None, "final payload without amount or CLTV")
    if htlc_msat < amount:
        return Claim(None, "HTLC carries less than the payload says")
    if payload.get("total_amount_msat", amount) != amount:
        return Claim(None, "multi-part payments are not accepted on async paths")
    if cltv_expiry < payload["outgoing_cltv_value"]:
        return Claim(None, "HTLC expires before the payload's CLTV")
    if cltv_expiry < blockheight + MIN_FINAL_CLTV_EXPIRY_DELTA:
        return Claim(None, "HTLC expires too soon")
    if known_preimage is not None:
        if amount < invoice_amount_msat:
            return Claim(None, "amount below the invoice's")
    else:
        invreq = payload.get("invoice_request")
        if invreq is None:
            return Claim(None, "static-invoice payment without invoice_request")
        try:
            request = check_invoice_request(invreq, offer)
        except DecodeError as e:
            return Claim(None, str(e))
        if amount < expected_amount(request):
            return Claim(None, "amount below what the invoice_request asks")
    return Claim(preimage)

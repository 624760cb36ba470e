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

from . import asyncmsg, build, messages
from .blinding import BlindedPath, PayInfo
from .offer import offer_part
from .tlv import DecodeError, read_bigsize
from .tlv import records as tlv_records

MIN_FINAL_CLTV_EXPIRY_DELTA = 18
# BOLT12: an offer for another chain than bitcoin names its genesis hash (wire byte
# order, as CLN's decode prints it).
CHAIN_HASHES = {
    "bitcoin": "6fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000",
    "testnet": "43497fd7f826957108f4a30fd9cec3aeba79972084e90ead01ea330900000000",
    "testnet4": "43f08bdab050e35b567c864b91f47f50ae725ae2de53bcfbbaf284da00000000",
    "signet": "f61eee3b63a380a477a063af32b2bbc97c9ff9f01f2c4225e973988108000000",
    "regtest": "06226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910f",
}
INVOICE_RELATIVE_EXPIRY_S = 7200
# Blocks a payment path stays usable: payments may arrive (and be held) during the
# invoice's life.
CLTV_ROOM_BLOCKS = 2 * 2016


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
    quantity = request.get("invreq_quantity")
    quantity_max = request.get("offer_quantity_max")
    if quantity is not None and (quantity == 0 or quantity_max is None
                                 or (quantity_max != 0 and quantity > quantity_max)):
        raise DecodeError("invoice_request quantity outside the offer's")
    if quantity is None and quantity_max is not None:
        raise DecodeError("invoice_request without the quantity the offer asks for")
    if "offer_amount_msat" in request and \
            expected_amount(request) < request["offer_amount_msat"] * (quantity or 1):
        raise DecodeError("invoice_request amount below offer_amount × quantity")
    return request


def answer_invoice_request(invreq: bytes, offer: bytes, issuer_secret: bytes,
                           pay_paths: Sequence[Tuple[BlindedPath, PayInfo]],
                           payment_hash: bytes, created_at: int) -> bytes:
    """A normal invoice for a (forwarded) invoice_request, signed with the issuer key."""
    return invoice_for(invreq, check_invoice_request(invreq, offer), issuer_secret, pay_paths,
                       payment_hash, created_at)


def invoice_for(invreq: bytes, request: dict, issuer_secret: bytes,
                pay_paths: Sequence[Tuple[BlindedPath, PayInfo]], payment_hash: bytes,
                created_at: int, relative_expiry: int = INVOICE_RELATIVE_EXPIRY_S) -> bytes:
    """The invoice for an invoice_request already checked (`request`: its decoding)."""
    return build.invoice(invreq, issuer_secret, invoice_paths=[p for p, _ in pay_paths],
                         invoice_blindedpay=[i for _, i in pay_paths],
                         invoice_created_at=created_at,
                         invoice_relative_expiry=relative_expiry,
                         invoice_payment_hash=payment_hash,
                         invoice_amount_msat=expected_amount(request))


@dataclass(frozen=True)
class Claim:
    preimage: Optional[bytes]    # None: refuse
    why: str = ""


def check_payment(payload: dict, payment_hash: bytes, htlc_msat: int, cltv_expiry: int,
                  blockheight: int, offer: bytes,
                  known_preimage: Optional[bytes] = None,
                  invoice_amount_msat: int = 0, fee_allowance_msat: int = 0) -> Claim:
    """May this HTLC, whose final payload came on one of our paths for `offer`, be claimed?

    A static-invoice payment brings its preimage and invoice_request; a payment of a
    normal invoice we issued is claimed with the preimage we kept (`known_preimage`)
    when it pays at least `invoice_amount_msat`. `fee_allowance_msat`: what a hop of
    our path may keep of the payment (a JIT channel's opening fee, charged in the
    hop's encrypted relay): the HTLC may carry that much less than the payload says.
    """
    preimage = payload.get("payment_preimage", known_preimage)
    if preimage is None:
        return Claim(None, "no preimage for this payment")
    if hashlib.sha256(preimage).digest() != payment_hash:
        return Claim(None, "preimage does not match the payment hash")
    amount = payload.get("amt_to_forward")
    if amount is None or payload.get("outgoing_cltv_value") is None:
        return Claim(None, "final payload without amount or CLTV")
    if htlc_msat + fee_allowance_msat < amount:
        return Claim(None, f"HTLC carries less than the payload says (minus a fee of "
                           f"at most {fee_allowance_msat})")
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


def came_blinded(payload: dict, extra_tlvs: str) -> bool:
    """A path key came with the HTLC: in update_add_htlc (TLV 0, from the hop before
    us) or in the payload (current_path_key, when we are the introduction node)."""
    if payload.get("current_path_key") is not None:
        return True
    try:
        extra = bytes.fromhex(extra_tlvs)
        return any(t == 0 and len(v) == 33 for t, v, _ in tlv_records(extra))
    except (DecodeError, ValueError):
        return False


def blinded_final_payload(framed_hex: str, extra_tlvs: str) -> Optional[dict]:
    """The final hop payload of an HTLC that came down a blinded path (as lightningd
    gives it, length-prefixed, with the update_add_htlc TLVs), decoded; None when it
    is unreadable, carries no encrypted_recipient_data or came without a path key."""
    try:
        framed = bytes.fromhex(framed_hex)
        length, start = read_bigsize(framed, 0)
        if start + length != len(framed):
            return None
        payload = asyncmsg.decode_payment_payload(framed[start:])
    except (DecodeError, ValueError):
        return None
    if payload.get("encrypted_recipient_data") is None or not came_blinded(payload, extra_tlvs):
        return None
    return payload

"""Building and signing offers, invoice_requests, invoices and static invoices."""
import hashlib
import os

import pytest
from vectorfiles import load

from bolt12ext import blinding, build, encoding, merkle, messages
from bolt12ext.blinding import PaymentHop, PaymentRelay
from bolt12ext.offer import decode_offer, dict_path
from bolt12ext.sphinx import pubkey
from bolt12ext.tlv import DecodeError, records

ALICE = b"\x41" * 32
BOB = b"\x42" * 32
LSP = hashlib.sha256(b"lsp").digest()


def test_invoice_request_reproduces_signature_vector():
    case = load("bolt12/signature-test.json")[3]
    offer = build.offer(offer_issuer_id=pubkey(ALICE), offer_description="A Mathematical Treatise",
                        offer_amount=100, offer_currency="USD")
    invreq = build.invoice_request(offer, BOB, invreq_metadata=bytes(8))
    want = encoding.decode(case["bolt12"])[1]
    # everything but the signature byte for byte; the signature is randomised (BIP340
    # auxiliary randomness) and reproduces the vector's without it
    assert invreq[:-66] == want[:-66]
    assert merkle.sign("invoice_request", invreq[:-66], BOB, aux_randomness=None) == want[-64:]
    assert messages.decode_invoice_request(invreq)["signature_valid"]


def _payment_path():
    hop = PaymentHop(pubkey(LSP), "100x1x0", PaymentRelay(40, 1000, 1000))
    return blinding.payment_path(os.urandom(32), [hop], pubkey(ALICE), b"p" * 32,
                                 max_cltv_expiry=800_000, htlc_maximum_msat=10**10)


def _message_path():
    return blinding.message_path(os.urandom(32), [pubkey(LSP), pubkey(ALICE)], b"m" * 32)


def test_offer_invoice_request_invoice_chain():
    offer = build.offer(offer_issuer_id=pubkey(ALICE), offer_description="coffee",
                        offer_amount_msat=5000, offer_quantity_max=0,
                        extra={1_000_000_001: b"odd experimental"})
    decoded = decode_offer(build.offer_string(offer))
    assert decoded["offer_amount_msat"] == 5000 and decoded["offer_description"] == "coffee"
    assert decoded["unknown_offer_tlvs"] == [{"type": 1_000_000_001,
                                              "value": b"odd experimental".hex()}]

    invreq = build.invoice_request(offer, BOB, invreq_metadata=b"m" * 16, invreq_quantity=3,
                                   invreq_payer_note="two sugars")
    req = messages.decode_invoice_request(invreq)
    assert req["valid"] and req["invreq_payer_id"] == pubkey(BOB).hex()
    offer_raw = [raw for t, _, raw in records(offer)]
    assert [raw for t, _, raw in records(invreq) if 1 <= t < 80 or 1e9 <= t < 2e9] == offer_raw

    path, payinfo = _payment_path()
    inv = build.invoice(invreq, ALICE, invoice_paths=[path], invoice_blindedpay=[payinfo],
                        invoice_created_at=1_700_000_000, invoice_payment_hash=b"h" * 32)
    decoded = messages.decode_invoice(inv)
    assert decoded["valid"] and decoded["invoice_amount_msat"] == 15000
    assert decoded["invoice_node_id"] == pubkey(ALICE).hex()
    assert decoded["invoice_relative_expiry"] == 7200
    assert decoded["invoice_blindedpay"][0]["fee_base_msat"] == 1000
    assert build.invoice_string(inv).startswith("lni1")
    assert [raw for t, _, raw in records(inv) if t < 160] == \
        [raw for t, _, raw in records(invreq) if t < 160]


def test_writer_rules():
    offer = build.offer(offer_issuer_id=pubkey(ALICE), offer_description="any amount")
    with pytest.raises(ValueError, match="invreq_amount_msat"):
        build.invoice_request(offer, BOB, invreq_metadata=b"x")
    with pytest.raises(ValueError, match="invreq_metadata"):
        build.invoice_request(offer, BOB, invreq_amount_msat=1)
    with pytest.raises(ValueError, match="invalid"):
        build.offer(offer_amount_msat=5)  # amount without description, no issuer
    with pytest.raises(ValueError, match="unknown field"):
        build.offer(offer_colour="blue")
    with pytest.raises(ValueError, match="belong"):
        build.offer(offer_issuer_id=pubkey(ALICE), invreq_metadata=b"x")
    with pytest.raises(ValueError, match="belong"):
        build.offer(offer_issuer_id=pubkey(ALICE), extra={81: b"x"})
    invreq = build.invoice_request(offer, BOB, invreq_metadata=b"x", invreq_amount_msat=10)
    path, payinfo = _payment_path()
    with pytest.raises(ValueError, match="twice"):
        build.offer(offer_issuer_id=pubkey(ALICE), offer_description="a", extra={10: b"b"})
    with pytest.raises(ValueError, match="belong"):
        build.invoice(invreq, ALICE, invoice_paths=[path], invoice_blindedpay=[payinfo],
                      invoice_created_at=1, invoice_payment_hash=b"h" * 32,
                      extra={88: pubkey(ALICE)})
    forged = invreq[:-1] + bytes([invreq[-1] ^ 1])
    with pytest.raises(ValueError, match="signature"):
        build.invoice(forged, ALICE, invoice_paths=[path], invoice_blindedpay=[payinfo],
                      invoice_created_at=1, invoice_payment_hash=b"h" * 32)


def make_static_invoice(**over):
    offer = build.offer(offer_issuer_id=pubkey(ALICE), offer_paths=[_message_path()],
                        offer_description="tips")
    path, payinfo = _payment_path()
    fields = dict(invoice_paths=[path], invoice_blindedpay=[payinfo],
                  invoice_created_at=1_700_000_000, invoice_features=b"",
                  invoice_held_htlc_available_paths=[_message_path()])
    fields.update(over)
    return offer, build.static_invoice(offer, ALICE, **fields)


def test_static_invoice_round_trip():
    offer, inv = make_static_invoice()
    decoded = messages.decode(inv.hex())
    assert decoded["type"] == "bolt12 static invoice"
    assert decoded["valid"] and decoded["signature_valid"]
    assert decoded["invoice_node_id"] == pubkey(ALICE).hex()
    assert decoded["invoice_relative_expiry"] == 14 * 24 * 3600
    assert decoded["offer_description"] == "tips"
    assert len(decoded["invoice_held_htlc_available_paths"]) == 1
    assert len(decoded["invoice_paths"]) == len(decoded["invoice_blindedpay"]) == 1
    sig = dict((t, v) for t, v, _ in records(inv))[240]
    assert merkle.verify("static_invoice", inv, sig, pubkey(ALICE))
    assert not merkle.verify("invoice", inv, sig, pubkey(ALICE))  # tag binds the type
    # offer records byte for byte, and nothing from the invoice_request range
    assert [raw for t, _, raw in records(inv) if t < 80] == [raw for _, _, raw in records(offer)]
    assert not any(80 <= t < 160 for t, _, _ in records(inv))


def test_static_invoice_every_byte_flip_is_caught():
    _, inv = make_static_invoice()
    for i in range(len(inv)):
        mutated = bytearray(inv)
        mutated[i] ^= 0x01
        try:
            decoded = messages.decode_static_invoice(bytes(mutated))
        except DecodeError:
            continue
        assert not decoded["signature_valid"], f"flip at byte {i} went unnoticed"


def test_static_invoice_writer_rules():
    with pytest.raises(ValueError, match="no invoice_payment_hash"):
        make_static_invoice(invoice_payment_hash=b"h" * 32)
    with pytest.raises(ValueError, match="issuer"):
        make_static_invoice(invoice_node_id=pubkey(BOB))
    path, payinfo = _payment_path()
    with pytest.raises(ValueError, match="5 KiB"):
        make_static_invoice(invoice_paths=[path] * 30, invoice_blindedpay=[payinfo] * 30)
    with pytest.raises(ValueError, match="invalid"):
        make_static_invoice(invoice_blindedpay=[payinfo, payinfo])  # paths ≠ payinfos


def test_created_at_is_a_tu64():
    _, inv = make_static_invoice(invoice_created_at=2**40)
    assert messages.decode_static_invoice(inv)["invoice_created_at"] == 2**40


def _build_input(decoded):
    """decode_offer's output turned back into build.offer's keyword arguments."""
    fields, extra = {}, {}
    for name, value in decoded.items():
        if name in ("type", "valid"):
            continue
        if name == "unknown_offer_tlvs":
            extra = {u["type"]: bytes.fromhex(u["value"]) for u in value}
        elif name == "offer_paths":
            fields[name] = [dict_path(p) for p in value]
        elif name in ("offer_metadata", "offer_features", "offer_issuer_id"):
            fields[name] = bytes.fromhex(value)
        else:
            fields[name] = value
    return fields, extra


def test_every_valid_offer_vector_re_encodes_byte_for_byte():
    cases = [c for c in load("bolt12/offers-test.json") if c["valid"]]
    assert len(cases) >= 20
    for case in cases:
        decoded = decode_offer(case["bolt12"])
        fields, extra = _build_input(decoded)
        data = build.offer(extra=extra, **fields)
        assert data == encoding.decode(case["bolt12"])[1], case["description"]


def test_dict_path_rejects_bad_objects():
    path = _message_path()
    from bolt12ext.offer import path_dict
    assert dict_path(path_dict(path)) == path
    for bad in ({}, {"first_node_id": "zz"}, dict(path_dict(path), first_path_key="05" * 33)):
        with pytest.raises(DecodeError):
            dict_path(bad)

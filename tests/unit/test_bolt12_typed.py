"""The typed decoders (`messages.parse*`, `offer.parse_offer`) against the JSON they print.

Inputs are the snapshot's: every BOLT12 vector string plus built invoices, invoice_requests
and static invoices whose paths `bolt12_snapshot._paths()` rebuilds deterministically.
"""
import json

import pytest
from bolt12_snapshot import FIXTURE, _paths
from vectorfiles import load

from bolt12ext import encoding, messages
from bolt12ext.blinding import BlindedPath, PayInfo
from bolt12ext.decoded import KINDS, Decoded
from bolt12ext.offer import dict_path, parse_offer
from bolt12ext.tlv import DecodeError

with open(FIXTURE) as f:
    ENTRIES = json.load(f)
DECODED = [e for e in ENTRIES if "json" in e]
INPUT = {e["name"]: e["input"] for e in ENTRIES}
PATHS = {"offer_paths": "offer_paths", "invreq_paths": "invreq_paths",
         "invoice_paths": "invoice_paths",
         "invoice_held_htlc_available_paths": "held_htlc_available_paths"}


def _check_path(path, shown):
    assert isinstance(path, BlindedPath)
    if "first_node_id" in shown:
        assert path.first_node_id.hex() == shown["first_node_id"]
    else:  # introduction by sciddir: direction byte, then the scid
        assert path.first_node_id[0] == shown["first_scid_dir"]
        block, tx, out = (int(x) for x in shown["first_scid"].split("x"))
        assert path.first_node_id[1:] == (block << 40 | tx << 16 | out).to_bytes(8, "big")
    assert path.first_path_key.hex() == shown["first_path_key"]
    assert len(path.hops) == len(shown["path"])
    assert path == dict_path(shown)


@pytest.mark.parametrize("entry", DECODED, ids=[e["name"] for e in DECODED])
def test_typed_accessors_match_the_json(entry):
    decoded = messages.parse(entry["input"])
    shown = json.loads(entry["json"])
    assert isinstance(decoded, Decoded) and decoded.kind in KINDS
    assert shown["type"] == f"bolt12 {decoded.kind}" and shown["valid"] == decoded.valid
    assert shown.get("signature_valid") == decoded.signature_valid
    for name, accessor in PATHS.items():
        typed = getattr(decoded, accessor)
        assert len(typed) == len(shown.get(name, []))
        for path, path_shown in zip(typed, shown.get(name, []), strict=True):
            _check_path(path, path_shown)
    infos = [PayInfo(**dict(i, features=bytes.fromhex(i["features"])))
             for i in shown.get("invoice_blindedpay", [])]
    assert decoded.payinfos == infos
    assert decoded.payment_routes == list(zip(decoded.invoice_paths, infos, strict=True))
    if decoded.kind in ("invoice", "static invoice"):
        assert decoded.node_id.hex() == shown["invoice_node_id"]
        assert decoded.expires_at == messages.expires_at(shown)
        assert decoded.payment_routes  # the decoder refuses an invoice without one
    else:
        assert decoded.node_id is None and decoded.expires_at is None
        assert decoded.payment_routes == []


def test_offer_vectors_with_paths():
    cases = [c for c in load("bolt12/offers-test.json") if c["valid"]]
    with_paths = [parse_offer(c["bolt12"]) for c in cases]
    with_paths = [d for d in with_paths if d.offer_paths]
    assert len(with_paths) >= 4
    by_scid = [p for d in with_paths for p in d.offer_paths if len(p.first_node_id) == 9]
    assert by_scid and all(len(p.first_path_key) == 33 for p in by_scid)
    for d in with_paths:
        assert d.signature is None and d.valid and d.payment_routes == []


def test_invoice_routes_are_the_built_paths():
    (pay, pay_info), (direct, direct_info), _, _ = _paths()
    invoice = messages.parse(INPUT["invoice/built"])
    assert invoice.payment_routes == [(pay, pay_info), (direct, direct_info)]
    assert invoice.invoice_paths[0].first_node_id == pay.first_node_id  # the LSP
    assert invoice.payinfos[0].htlc_minimum_msat == 7
    assert invoice.payment_hash == b"h" * 32
    assert invoice.expires_at == 1_700_000_000 + 600
    default = messages.parse(INPUT["invoice/default-expiry"])
    assert default.expires_at == 1_700_000_000 + 7200


def test_message_paths_are_the_built_paths():
    _, _, msg, scid = _paths()
    invreq = messages.parse(INPUT["invreq/built"])
    assert invreq.kind == "invoice_request" and invreq.valid
    assert invreq.offer_paths == [msg, scid] and invreq.invreq_paths == [scid, msg]
    static = messages.parse(INPUT["static/built"])
    assert static.kind == "static invoice"
    assert static.offer_paths == [msg]
    assert static.held_htlc_available_paths == [msg, scid]
    assert static.expires_at == 1_700_000_000 + 14 * 24 * 3600


def test_bytes_parsers_match_string_parse():
    data = bytes.fromhex(INPUT["static/built"])
    assert messages.parse_static_invoice(data) == messages.parse(INPUT["static/built"])
    inv = encoding.decode(INPUT["invoice/built"])[1]
    assert messages.parse_invoice(inv).to_json() == messages.decode_invoice(inv)
    req = encoding.decode(INPUT["invreq/built"])[1]
    assert messages.parse_invoice_request(req).fields["invreq_payer_id"] == \
        bytes.fromhex(messages.decode_invoice_request(req)["invreq_payer_id"])


def test_signature_vector_typed():
    case = load("bolt12/signature-test.json")[-1]
    req = messages.parse(case["bolt12"])
    assert req.kind == "invoice_request" and req.signature_valid is True
    assert req.signature == bytes.fromhex(case["signature"])
    assert req.fields["invreq_metadata"] == bytes(8)
    assert req.fields["offer_amount"] == 100 and req.fields["offer_currency"] == "USD"
    flipped = messages.parse(INPUT["invreq/bad-signature"])
    assert flipped.signature_valid is False and flipped.valid is False
    assert flipped.to_json()["valid"] is False


def test_typed_parse_raises_like_decode():
    for entry in (e for e in ENTRIES if "error" in e):
        with pytest.raises(DecodeError) as got:
            messages.parse(entry["input"])
        assert str(got.value) == entry["error"], entry["name"]

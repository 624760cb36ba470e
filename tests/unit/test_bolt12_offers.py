"""BOLT12's official offer and string-format vectors (shared/vectors/bolt12)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vectorfiles import MISSING, cases, load

from bolt12ext import encoding
from bolt12ext.offer import decode_offer
from bolt12ext.tlv import DecodeError, records

OFFERS = cases("bolt12/offers-test.json")
FORMAT = cases("bolt12/format-string-test.json")


@pytest.mark.parametrize("case", OFFERS, ids=[c["description"] for c in OFFERS])
def test_offers_vectors(case):
    if case["valid"]:
        offer = decode_offer(case["bolt12"])
        assert offer["valid"] is True
        recs = records(encoding.decode(case["bolt12"])[1])
        assert [{"type": t, "length": len(v), "hex": v.hex()} for t, v, _ in recs] == \
            case["fields"]
        # byte-exact round trip of the string's data
        hrp, data = encoding.decode(case["bolt12"])
        assert encoding.decode(encoding.encode(hrp, data)) == (hrp, data)
    else:
        with pytest.raises(DecodeError):
            decode_offer(case["bolt12"])


@pytest.mark.parametrize("case", FORMAT, ids=[c["comment"] for c in FORMAT])
def test_format_string_vectors(case):
    if case["valid"]:
        assert decode_offer(case["string"])["valid"]
    else:
        with pytest.raises(DecodeError):
            decode_offer(case["string"])


def test_offer_fields_named_like_cln():
    if not OFFERS:
        pytest.skip(MISSING)
    valid = [c for c in OFFERS if c["valid"]]
    with_amount = next(c for c in valid if c["description"] == "with amount")
    offer = decode_offer(with_amount["bolt12"])
    assert offer["offer_amount_msat"] > 0 and "offer_description" in offer
    assert len(offer["offer_issuer_id"]) == 66
    via_bob = next(c for c in valid if "second blinded path" in c["description"])
    paths = decode_offer(via_bob["bolt12"])["offer_paths"]
    assert len(paths) == 2 and paths[1]["first_scid"] == "1x2x3"
    assert paths[1]["first_scid_dir"] == 1


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_random_strings_raise_only_decode_error(text):
    try:
        decode_offer(text)
    except DecodeError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_records_raise_only_decode_error(data):
    try:
        decode_offer(encoding.encode("lno", data))
    except DecodeError:
        pass


def test_offer_chains_print_in_wire_byte_order_like_cln_decode():
    testnet = next(c for c in load("bolt12/offers-test.json")
                   if c["description"] == "for testnet")
    assert decode_offer(testnet["bolt12"])["offer_chains"] == [
        "43497fd7f826957108f4a30fd9cec3aeba79972084e90ead01ea330900000000"]

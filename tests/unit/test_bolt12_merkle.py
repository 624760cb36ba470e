"""BOLT12 signature-test.json: leaves, branches, root, tagged message, signature."""
import re

import coincurve
import pytest
from vectorfiles import cases

from bolt12ext import encoding, merkle
from bolt12ext.tlv import parse_stream

CASES = cases("bolt12/signature-test.json")


def stream_of(case):
    if "bolt12" in case:
        return encoding.decode(case["bolt12"])[1]
    leaves = [re.search(r"LnLeaf`,([0-9a-f]+)\)", k).group(1) for leaf in case["leaves"]
              for k in leaf if "LnLeaf" in k]
    return bytes.fromhex("".join(leaves))


@pytest.mark.parametrize("case", CASES, ids=[c["comment"][:40] for c in CASES])
def test_merkle_root(case):
    assert merkle.merkle_root(stream_of(case)).hex() == case["merkle"]


@pytest.mark.parametrize("case", [c for c in CASES if "signature" in c],
                         ids=lambda c: c["tlv"])
def test_signature(case):
    data = stream_of(case)
    name = case["signature_tag"][len("lightning"):-len("signature")]
    root = bytes.fromhex(case["merkle"])
    assert merkle.signature_message(name, root).hex() == case["H(signature_tag,merkle)"]
    recs = parse_stream(data)
    assert recs[240].hex() == case["signature"]
    payer_id = recs[88]
    assert merkle.verify(name, data, recs[240], payer_id)
    # Bob's key (0x4242...) is the payer: signing again verifies too (BIP340 uses aux
    # randomness, so compare by verification, not bytes).
    bob = bytes([0x42] * 32)
    assert coincurve.PrivateKey(bob).public_key.format() == payer_id
    assert merkle.verify(name, data, merkle.sign(name, data, bob), payer_id)
    tampered = bytearray(recs[240])
    tampered[0] ^= 1
    assert not merkle.verify(name, data, bytes(tampered), payer_id)

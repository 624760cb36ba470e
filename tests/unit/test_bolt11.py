"""The invoice rewrite, checked against BOLT11's own test vectors.

Signing here does what lightningd's `signinvoice` does (sign hrp + data with
the node key), so re-signing a decoded spec vector must give the vector back
byte for byte."""
import coincurve
import pytest

import lsps.bolt11 as bolt11
from lsps.bolt11 import Bolt11Error

# BOLT11 test vectors: the key that signed them, and the one with routing info.
SPEC_PRIV = "e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734"
WITH_ROUTE = (
    "lnbc20m1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqs"
    "yqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqhp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqsfpp3"
    "qjmp7lwpagxun9pygexvgpjdc4jdj85fr9yq20q82gphp2nflc7jtzrcazrra7wwgzxqc8u7754cdlpfrmccae92qgzq"
    "vzq2ps8pqqqqqqpqqqqq9qqqvpeuqafqxu92d8lr6fvg0r5gv0heeeqgcrqlnm6jhphu9y00rrhy4grqszsvpcgpy9q"
    "qqqqqgqqqqq7qqzq9qrsgqdfjcdk6w3ak5pca9hwfwfh63zrrz06wwfya0ydlzpgzxkn5xagsqz7x9j4jwe7yj7vaf2"
    "k9lqsdk45kts2fd0fkr28am0u4w95tt2nsq76cqw0")
UTF8_DESCRIPTION = (
    "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfq"
    "qqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpu9qrsgqhtjpauu9ur7"
    "fw2thcl4y9vfvh4m9wlfyz2gem29g5ghe2aak2pm3ps8fdhtceqsaagty2vph7utlgj48u0ged6a337aewvraedendscp"
    "573dxr")
LSP = "03" + "42" * 32
SCID = 700123 << 40 | 17 << 16 | 1


def sign_like_lightningd(unsigned: str, priv: str = SPEC_PRIV) -> str:
    raw = bolt11.decode(unsigned)
    words = list(raw.timestamp_words)
    for tag, data in raw.tags:
        words += [tag, len(data) >> 5, len(data) & 31] + list(data)
    message = raw.hrp.encode() + bytes(bolt11.bech32.convertbits(words, 5, 8, True))
    sig = coincurve.PrivateKey(bytes.fromhex(priv)).sign_recoverable(message)
    body = words + bolt11.to_words(sig)
    checksum = bolt11.bech32.bech32_create_checksum(raw.hrp, body)
    return raw.hrp + "1" + "".join(bolt11.CHARSET[w] for w in body + checksum)


@pytest.mark.parametrize("vector", [WITH_ROUTE, UTF8_DESCRIPTION])
def test_decode_encode_sign_reproduces_spec_vectors(vector):
    assert sign_like_lightningd(bolt11.encode_unsigned(bolt11.decode(vector))) == vector


def test_route_hint_encoding_matches_spec_vector():
    routes = bolt11.decode(WITH_ROUTE).tag_values(bolt11.TAG_ROUTE)
    assert len(routes) == 1
    hop1 = bolt11.route_hint_words(
        "029e03a901b85534ff1e92c43c74431f7ce72046060fcf7a95c37e148f78c77255",
        0x0102030405060708, 1, 20, 3)
    hop2 = bolt11.route_hint_words(
        "039e03a901b85534ff1e92c43c74431f7ce72046060fcf7a95c37e148f78c77255",
        0x030405060708090a, 2, 30, 4)
    assert bolt11.from_words(routes[0]) == bolt11.from_words(hop1) + bolt11.from_words(hop2)


def test_rewrite_for_jit():
    unsigned = bolt11.rewrite_for_jit(UTF8_DESCRIPTION, LSP, SCID, 144)
    raw = bolt11.decode(sign_like_lightningd(unsigned))
    original = bolt11.decode(UTF8_DESCRIPTION)
    routes = raw.tag_values(bolt11.TAG_ROUTE)
    assert len(routes) == 1
    hop = bolt11.from_words(routes[0])
    assert hop == bytes.fromhex(LSP) + SCID.to_bytes(8, "big") + bytes(8) + (144).to_bytes(2, "big")
    assert bolt11.min_final_cltv(raw) == bolt11.min_final_cltv(original) + 2
    # Everything else is untouched: payment hash, secret, description, expiry.
    for tag in (bolt11.TAG_PAYMENT_HASH, bolt11.TAG_PAYMENT_SECRET, bolt11.CHARSET.index("d")):
        assert raw.tag_values(tag) == original.tag_values(tag)
    assert raw.timestamp_words == original.timestamp_words


def test_existing_route_hints_are_replaced():
    unsigned = bolt11.rewrite_for_jit(WITH_ROUTE, LSP, SCID, 40)
    routes = bolt11.decode(unsigned).tag_values(bolt11.TAG_ROUTE)
    assert len(routes) == 1 and bolt11.from_words(routes[0])[:33] == bytes.fromhex(LSP)


def test_no_mpp_clears_basic_mpp_and_keeps_other_features():
    raw = bolt11.decode(UTF8_DESCRIPTION)
    bolt11.set_features(raw, 1 << 8 | 1 << 14 | 1 << 17)
    with_mpp = bolt11.encode_unsigned(raw)
    no_mpp = bolt11.rewrite_for_jit(with_mpp, LSP, SCID, 144, allow_mpp=False)
    assert bolt11.features(bolt11.decode(no_mpp)) == 1 << 8 | 1 << 14
    kept = bolt11.rewrite_for_jit(with_mpp, LSP, SCID, 144)
    assert bolt11.features(bolt11.decode(kept)) == 1 << 8 | 1 << 14 | 1 << 17


@pytest.mark.parametrize("bad", ["", "lnbcrt1qqqq", UTF8_DESCRIPTION[:20].upper()
                                 + UTF8_DESCRIPTION[20:], "lnbc1pbad!" + "q" * 120])
def test_bad_strings(bad):
    with pytest.raises(Bolt11Error):
        bolt11.decode(bad)


def test_checksum_checked():
    flipped = UTF8_DESCRIPTION[:-1] + ("q" if UTF8_DESCRIPTION[-1] != "q" else "p")
    with pytest.raises(Bolt11Error):
        bolt11.decode(flipped)

"""Refund addresses: BIP173 / BIP350 examples, and the node's network."""
import pytest

from lsps.addresses import segwit_address_ok, segwit_script

VALID = [  # BIP173 and BIP350 test vectors
    ("bitcoin", "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4"),
    ("testnet", "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7"),
    ("bitcoin", "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"),
    ("testnet", "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c"),
    ("regtest", "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw"),
]
INVALID = [
    ("bitcoin", "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7"),  # network
    ("regtest", "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4"),                       # network
    ("bitcoin", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5"),                       # checksum
    # BIP350: v1 with a bech32 (not bech32m) checksum
    ("bitcoin", "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd"),
    # BIP350: v0 with a bech32m checksum
    ("bitcoin", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kmrs9q4"),
    ("bitcoin", "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7Kv8f3t4"),                       # mixed case
    ("bitcoin", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),                               # base58
    ("bitcoin", "bc1zw508d6qejxtdg4y5r3zarvaryvqyzf3du"),                            # v2, bech32
    ("bitcoin", ""), ("liquid", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"),
]


@pytest.mark.parametrize("network,address", VALID)
def test_valid(network, address):
    assert segwit_address_ok(address, network)


@pytest.mark.parametrize("network,address", INVALID)
def test_invalid(network, address):
    assert not segwit_address_ok(address, network)


def test_scripts():
    # BIP173: the P2WPKH example pays 0014751e76e8199196d454941c45d1b3a323f1433bd6
    assert segwit_script("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "bitcoin").hex() == \
        "0014751e76e8199196d454941c45d1b3a323f1433bd6"
    # BIP350: the P2TR example pays 5120 79be667e...
    assert segwit_script("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
                         "bitcoin").hex() == \
        "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    assert segwit_script("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "bitcoin") is None

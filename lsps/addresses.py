"""On-chain addresses a client may give for refunds (bLIP-51: bech32 / bech32m
segwit addresses: P2WPKH, P2WSH, P2TR and later witness versions), checked
against the node's network. Pure."""

from __future__ import annotations

from typing import Optional

from bech32 import CHARSET, bech32_hrp_expand, bech32_polymod, convertbits

# lightningd's getinfo "network" -> segwit address prefix (BIP173/BIP350).
HRP = {"bitcoin": "bc", "testnet": "tb", "testnet4": "tb", "signet": "tb", "regtest": "bcrt"}
BECH32, BECH32M = 1, 0x2BC830A3


def segwit_address_ok(address: str, network: str) -> bool:
    """A valid segwit address of `network` (witness v0 with bech32, v1+ with bech32m)."""
    return segwit_script(address, network) is not None


def segwit_script(address: str, network: str) -> Optional[bytes]:
    """The scriptPubKey a valid segwit address of `network` pays, else None."""
    hrp = HRP.get(network)
    if hrp is None or not isinstance(address, str) or len(address) > 90:
        return None
    if address.lower() != address and address.upper() != address:
        return None
    address = address.lower()
    pos = address.rfind("1")
    if address[:pos] != hrp or len(address) - pos - 1 < 7:
        return None
    try:
        data = [CHARSET.index(c) for c in address[pos + 1:]]
    except ValueError:
        return None
    const = bech32_polymod(bech32_hrp_expand(hrp) + data)
    version, words = data[0], data[1:-6]
    if version > 16 or const != (BECH32 if version == 0 else BECH32M):
        return None
    program = convertbits(words, 5, 8, False)
    if program is None or not 2 <= len(program) <= 40:
        return None
    if version == 0 and len(program) not in (20, 32):
        return None
    if version == 1 and len(program) != 32:
        return None
    return bytes([version + 0x50 if version else 0, len(program)]) + bytes(program)

"""LSPS2 service options (bLIP-52 opening_fee_params and channel sizing). Pure."""

from __future__ import annotations

from typing import Optional

from lsps.lsps2.service import Policy
from lsps.options import Get, Option, OptionError

OPTIONS = (
    Option("lsp-lsps2-min-fee-msat", 10000, "LSPS2: min_fee_msat of the first menu entry."),
    Option("lsp-lsps2-proportional", 10000,
           "LSPS2: proportional fee (ppm) of the first menu entry."),
    Option("lsp-lsps2-menu-entry", None,
           "LSPS2: another menu entry, as MIN_FEE_MSAT/PROPORTIONAL; each must cost "
           "more than the one before.", "string", multi=True),
    Option("lsp-lsps2-valid-for", 3600,
           "LSPS2: seconds an offered opening_fee_params stays valid."),
    Option("lsp-lsps2-min-lifetime", 1008,
           "LSPS2: blocks the LSP promises to keep a JIT channel open."),
    Option("lsp-lsps2-max-client-to-self-delay", 2016,
           "LSPS2: largest to_self_delay a client may impose on us."),
    Option("lsp-lsps2-min-payment-msat", 10000,
           "LSPS2: smallest payment that may open a JIT channel."),
    Option("lsp-lsps2-max-payment-msat", 4_000_000_000,
           "LSPS2: largest payment that may open a JIT channel."),
    Option("lsp-lsps2-cltv-expiry-delta", 144,
           "LSPS2: cltv_expiry_delta of the invoice's route hint hop (at least "
           "lightningd's cltv-delta)."),
    Option("lsp-lsps2-min-channel-sat", 100000, "LSPS2: smallest JIT channel opened (sat)."),
    Option("lsp-lsps2-token", None,
           "LSPS2: a token clients must present; without any, no token is needed.",
           "string", multi=True),
    Option("lsp-lsps2-promise-secret", None,
           "LSPS2: 64 hex characters keying the promise HMAC; derived from the node "
           "secret (makesecret) when absent.", "string"),
    Option("lsp-lsps2-htlc-expiry-margin", 6,
           "LSPS2: fail held JIT payment parts this many blocks before their CLTV expiry."),
    Option("lsp-lsps2-open-timeout", 60,
           "LSPS2: seconds to wait for a JIT channel to become usable."),
)
_UINTS = ("lsp-lsps2-valid-for", "lsp-lsps2-min-lifetime", "lsp-lsps2-max-client-to-self-delay",
          "lsp-lsps2-min-payment-msat", "lsp-lsps2-max-payment-msat",
          "lsp-lsps2-cltv-expiry-delta", "lsp-lsps2-min-channel-sat",
          "lsp-lsps2-htlc-expiry-margin", "lsp-lsps2-open-timeout")


def policy(get: Get, node_cltv_delta: int) -> Policy:
    fees = [(get("lsp-lsps2-min-fee-msat"), get("lsp-lsps2-proportional"))]
    for entry in get("lsp-lsps2-menu-entry") or []:
        try:
            fee, prop = (int(x) for x in entry.split("/"))
        except ValueError:
            raise OptionError(f"lsp-lsps2-menu-entry {entry!r}: expected MIN_FEE_MSAT/PPM") \
                from None
        fees.append((fee, prop))
    ints = {name: get(name) for name in _UINTS}
    for name, value in ints.items():
        if value < 0:
            raise OptionError(f"{name} must not be negative")
    if any(f < 0 or p < 0 or p > 2**32 - 1 for f, p in fees):
        raise OptionError("LSPS2 fees must be non-negative (proportional a u32)")
    if ints["lsp-lsps2-cltv-expiry-delta"] < node_cltv_delta:
        raise OptionError(f"lsp-lsps2-cltv-expiry-delta must be at least lightningd's "
                          f"cltv-delta ({node_cltv_delta})")
    made = Policy(
        fees=tuple(fees), valid_for_s=ints["lsp-lsps2-valid-for"],
        min_lifetime=ints["lsp-lsps2-min-lifetime"],
        max_client_to_self_delay=ints["lsp-lsps2-max-client-to-self-delay"],
        min_payment_size_msat=ints["lsp-lsps2-min-payment-msat"],
        max_payment_size_msat=ints["lsp-lsps2-max-payment-msat"],
        cltv_expiry_delta=ints["lsp-lsps2-cltv-expiry-delta"],
        min_channel_sat=ints["lsp-lsps2-min-channel-sat"],
        tokens=frozenset(get("lsp-lsps2-token") or []),
        htlc_expiry_margin=ints["lsp-lsps2-htlc-expiry-margin"],
        open_timeout_s=ints["lsp-lsps2-open-timeout"])
    why = made.check()
    if why:
        raise OptionError(f"LSPS2 policy: {why}")
    return made


def promise_secret(get: Get) -> Optional[bytes]:
    """The operator's promise key, or None: then it is derived from the node secret."""
    secret_hex = get("lsp-lsps2-promise-secret")
    if not secret_hex:
        return None
    try:
        secret = bytes.fromhex(secret_hex)
    except ValueError:
        secret = b""
    if len(secret) != 32:
        raise OptionError("lsp-lsps2-promise-secret must be 64 hex characters")
    return secret

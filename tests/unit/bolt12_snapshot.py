"""The corpus behind fixtures/bolt12_decode_snapshot.json and how one entry is recorded.

`python tests/unit/bolt12_snapshot.py` (re)writes the fixture. Only do that when a change
of `bolt12ext-decode`'s output is intended: the fixture is what the RPC printed before.
Inputs already in the fixture are kept as they are (the built ones carry random BIP340
signatures), so a rerun only re-records outputs and adds vector strings that are new.
"""
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

from bolt12ext import blinding, build, encoding, messages  # noqa: E402
from bolt12ext.blinding import PaymentHop, PaymentRelay  # noqa: E402
from bolt12ext.sphinx import pubkey  # noqa: E402
from bolt12ext.tlv import DecodeError, record, serialize_stream, tu  # noqa: E402

FIXTURE = os.path.join(HERE, "fixtures", "bolt12_decode_snapshot.json")
VECTOR_FILES = (("bolt12/offers-test.json", "bolt12"), ("bolt12/format-string-test.json", "string"),
                ("bolt12/signature-test.json", "bolt12"))


def snapshot(text: str) -> dict:
    """What the RPC returns for `text`: its JSON text (key order included), or the error."""
    try:
        return {"json": json.dumps(messages.decode(text), sort_keys=False)}
    except DecodeError as e:
        return {"error": str(e)}


def vector_inputs():
    """[(name, string)] of every BOLT12 string in the official vectors (none when absent)."""
    from vectorfiles import cases
    out = []
    for relative, key in VECTOR_FILES:
        for i, case in enumerate(cases(relative)):
            if key in case:
                out.append((f"{relative}#{i}", case[key]))
    return out


def _key(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def _paths():
    """Deterministic paths: a payment path through an LSP, message paths (one by sciddir)."""
    lsp, alice = pubkey(_key("lsp")), pubkey(_key("alice"))
    hop = PaymentHop(lsp, "100x1x0", PaymentRelay(40, 1000, 1000))
    pay = blinding.payment_path(_key("s1"), [hop], alice, b"p" * 32, max_cltv_expiry=800_000,
                                htlc_maximum_msat=10**10, htlc_minimum_msat=7)
    direct = blinding.payment_path(_key("s2"), [], alice, b"q" * 32, max_cltv_expiry=900_000,
                                   htlc_maximum_msat=10**9)
    msg = blinding.message_path(_key("s3"), [lsp, alice], b"m" * 32)
    scid = blinding.message_path(_key("s4"), [lsp, alice], b"n" * 32,
                                 first_scid_dir=b"\x01" + (700_000 << 40 | 5 << 16 | 1)
                                 .to_bytes(8, "big"))
    return pay, direct, msg, scid


def built_inputs():
    """[(name, string)] built here: invoices and static invoices the vectors lack."""
    import test_bolt12_messages as tm
    alice, bob = _key("alice"), _key("bob")
    (path, info), (path2, info2), msg, scid = _paths()
    out = [("static/messages-test", tm.static_invoice().hex()),
           ("static/unsigned", tm.static_invoice(sign=False).hex())]
    for t, v in ((168, bytes(32)), (170, tu(5)), (88, tm.NODE_ID), (238, b""), (161, b"odd")):
        out.append((f"static/extra-{t}", tm.static_invoice({t: v}).hex()))
    out.append(("static/too-big", tm.static_invoice({1001: b"x" * 5200}, sign=False).hex()))
    unequal = serialize_stream({10: b"coffee", 22: tm.NODE_ID, 160: tm.blinded_path() * 2,
                                162: tm.payinfo(), 164: tu(1), 176: tm.NODE_ID})
    out.append(("static/paths-unequal", (unequal + record(240, bytes(64))).hex()))

    offer = build.offer(offer_issuer_id=pubkey(alice), offer_description="coffee",
                        offer_amount_msat=5000, offer_quantity_max=0, offer_paths=[msg, scid],
                        offer_issuer="Alice", offer_absolute_expiry=2_000_000_000,
                        extra={1_000_000_001: b"odd experimental"})
    out.append(("offer/built", build.offer_string(offer)))
    invreq = build.invoice_request(offer, bob, invreq_metadata=b"m" * 16, invreq_quantity=3,
                                   invreq_payer_note="two sugars", invreq_paths=[scid, msg],
                                   invreq_features=b"", extra={2_000_000_001: b"odd invreq"})
    out.append(("invreq/built", encoding.encode("lnr", invreq)))
    flipped = invreq[:-1] + bytes([invreq[-1] ^ 1])
    out.append(("invreq/bad-signature", encoding.encode("lnr", flipped)))
    inv = build.invoice(invreq, alice, invoice_paths=[path, path2],
                        invoice_blindedpay=[info, info2], invoice_created_at=1_700_000_000,
                        invoice_payment_hash=b"h" * 32, invoice_relative_expiry=600,
                        invoice_features=b"\x02\x00", invoice_fallbacks=b"\x00\x01",
                        extra={161: b"odd invoice", 3_000_000_001: b"odd experimental"})
    out.append(("invoice/built", build.invoice_string(inv)))
    out.append(("invoice/bad-signature",
                build.invoice_string(inv[:-1] + bytes([inv[-1] ^ 1]))))
    out.append(("invoice/truncated", build.invoice_string(inv[:-10])))
    out.append(("invoice/is-an-invreq", encoding.encode("lni", invreq)))
    out.append(("invreq/is-an-invoice", encoding.encode("lnr", inv)))
    plain = build.invoice(invreq, alice, invoice_paths=[path], invoice_blindedpay=[info],
                          invoice_created_at=1_700_000_000, invoice_payment_hash=b"i" * 32)
    out.append(("invoice/default-expiry", build.invoice_string(plain)))
    static = build.static_invoice(
        build.offer(offer_issuer_id=pubkey(alice), offer_paths=[msg], offer_description="tips"),
        alice, invoice_paths=[path], invoice_blindedpay=[info], invoice_created_at=1_700_000_000,
        invoice_features=b"", invoice_held_htlc_available_paths=[msg, scid])
    out.append(("static/built", static.hex()))
    for name, text in (("garbage/empty", ""), ("garbage/prefix", "lnx1qqqq"),
                       ("garbage/odd-hex", "abc"), ("garbage/hex-truncated", "00fd")):
        out.append((name, text))
    return out


def main():
    old = {}
    if os.path.exists(FIXTURE):
        with open(FIXTURE) as f:
            old = {c["name"]: c["input"] for c in json.load(f)}
    vectors = vector_inputs()
    assert vectors, "the official vectors are needed to record the snapshot"
    cases = vectors + [(n, old.get(n, s)) for n, s in built_inputs()]
    assert len({n for n, _ in cases}) == len(cases), "case names must be unique"
    entries = [dict(name=n, input=s, **snapshot(s)) for n, s in cases]
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    with open(FIXTURE, "w") as f:
        json.dump(entries, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{len(entries)} cases, {sum('error' in e for e in entries)} errors -> {FIXTURE}")


if __name__ == "__main__":
    main()

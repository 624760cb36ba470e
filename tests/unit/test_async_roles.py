"""Pure parts of the async roles: recipient checks (bolt12ext.recipient), HTLC holding
(bolt12ext.hold) and what the payer accepts (lsps.asyncpay.payer)."""
import hashlib
import os
import threading
import time

import pytest
from fakes import htlc_event

from bolt12ext import asyncmsg, build, hold, messages, recipient
from bolt12ext.blinding import PaymentHop, PaymentRelay, payment_path
from bolt12ext.contexts import PathBook
from bolt12ext.sphinx import pubkey
from bolt12ext.tlv import DecodeError, record, records
from lsps.asyncpay.holder import forward_released

ISSUER = bytes(range(1, 33))
LSP = pubkey(bytes([7] * 32))
ME = pubkey(bytes([9] * 32))


def offer(amount=None):
    book = PathBook(os.urandom, LSP, bytes([3] * 32))
    path, _, _ = book.make("server_offer", 0, 3600)
    return recipient.make_offer(pubkey(ISSUER), [path], "tips", amount, network="regtest")


def pay_paths():
    hop = PaymentHop(LSP, "1x2x3", PaymentRelay(40, 100, 1000), 1)
    return [payment_path(os.urandom(32), [hop], ME, os.urandom(32), 10_000, 10**9,
                         recipient.MIN_FINAL_CLTV_EXPIRY_DELTA)]


def invreq_for(offer_data, amount=None, secret=None):
    return build.invoice_request(offer_data, secret or os.urandom(32),
                                 invreq_metadata=os.urandom(8),
                                 invreq_chain=recipient.CHAIN_HASHES["regtest"],
                                 invreq_amount_msat=amount)


def static_payload(preimage, invreq, amount=5000, cltv=500, total=None):
    return {"amt_to_forward": amount, "outgoing_cltv_value": cltv,
            "total_amount_msat": amount if total is None else total,
            "payment_preimage": preimage, "invoice_request": invreq}


# ---- recipient -------------------------------------------------------------------------------

def test_offer_names_the_chain_and_issuer():
    from bolt12ext.offer import decode_offer
    fields = decode_offer(build.offer_string(offer(5000)))
    assert fields["offer_chains"] == [recipient.CHAIN_HASHES["regtest"]]
    assert fields["offer_issuer_id"] == pubkey(ISSUER).hex()
    assert fields["offer_amount_msat"] == 5000
    path = PathBook(os.urandom, LSP, bytes([3] * 32)).make("server_offer", 0, 60)[0]
    mainnet = decode_offer(build.offer_string(recipient.make_offer(pubkey(ISSUER), [path], "x")))
    assert "offer_chains" not in mainnet      # bitcoin is the default chain


def test_static_invoice_is_signed_by_the_issuer_with_held_paths():
    data = offer()
    book = PathBook(os.urandom, ME, bytes([4] * 32))
    held = [book.make("recipient_held", 0, 60, via=LSP)[0]]
    inv = recipient.make_static_invoice(data, ISSUER, pay_paths(), held, 1_700_000_000)
    decoded = messages.decode_static_invoice(inv)
    assert decoded["signature_valid"] and decoded["invoice_node_id"] == pubkey(ISSUER).hex()
    assert held[0].first_node_id == LSP and len(held[0].hops) == 3   # LSP, us, virtual node
    assert any(t == 236 for t, _, _ in records(inv))


def test_forwarded_invoice_request_gets_an_invoice_for_its_amount():
    data = offer(5000)
    req = invreq_for(data)
    payment_hash = hashlib.sha256(b"p" * 32).digest()
    inv = recipient.answer_invoice_request(req, data, ISSUER, pay_paths(), payment_hash, 1000)
    decoded = messages.decode_invoice(inv)
    assert decoded["signature_valid"] and decoded["invoice_amount_msat"] == 5000
    assert decoded["invoice_payment_hash"] == payment_hash.hex()
    assert messages.invreq_part(inv) == messages.invreq_part(req)   # what the payer checks
    other = offer(5000)
    with pytest.raises(DecodeError, match="another offer"):
        recipient.answer_invoice_request(invreq_for(other), data, ISSUER, pay_paths(),
                                         payment_hash, 1000)


def test_amountless_offer_needs_the_invreq_amount():
    data = offer()
    req = invreq_for(data, amount=777)
    assert recipient.expected_amount(recipient.check_invoice_request(req, data)) == 777


def test_static_payment_claimed_only_when_everything_matches():
    data = offer(5000)
    req = invreq_for(data)
    preimage = os.urandom(32)
    h = hashlib.sha256(preimage).digest()
    ok = recipient.check_payment(static_payload(preimage, req), h, 5000, 500, 400, data)
    assert ok.preimage == preimage

    cases = {
        "preimage does not match": (static_payload(os.urandom(32), req), h, 5000, 500),
        "less than the payload": (static_payload(preimage, req), h, 4999, 500),
        "multi-part": (static_payload(preimage, req, total=10_000), h, 5000, 500),
        "before the payload's CLTV": (static_payload(preimage, req), h, 5000, 499),
        "expires too soon": (static_payload(preimage, req, cltv=410), h, 5000, 410),
        "without invoice_request": (static_payload(preimage, None), h, 5000, 500),
        "another offer": (static_payload(preimage, invreq_for(offer(5000))), h, 5000, 500),
        "below what the invoice_request": (static_payload(preimage, req, amount=4000), h,
                                           4000, 500),
        "no preimage": ({"amt_to_forward": 5000, "outgoing_cltv_value": 500}, h, 5000, 500),
    }
    for why, (payload, payment_hash, msat, cltv) in cases.items():
        claim = recipient.check_payment(payload, payment_hash, msat, cltv, 400, data)
        assert claim.preimage is None and why in claim.why, (why, claim)


def test_tampered_invoice_request_in_the_onion_is_refused():
    data = offer(5000)
    req = bytearray(invreq_for(data))
    req[-1] ^= 1                                   # signature no longer verifies
    preimage = os.urandom(32)
    claim = recipient.check_payment(static_payload(preimage, bytes(req)),
                                    hashlib.sha256(preimage).digest(), 5000, 500, 400, data)
    assert claim.preimage is None and "signature" in claim.why


def test_normal_invoice_payment_uses_the_kept_preimage():
    data = offer(5000)
    preimage = os.urandom(32)
    h = hashlib.sha256(preimage).digest()
    payload = {"amt_to_forward": 5000, "outgoing_cltv_value": 500, "total_amount_msat": 5000}
    assert recipient.check_payment(payload, h, 5000, 500, 400, data, preimage,
                                   5000).preimage == preimage
    short = recipient.check_payment(payload, h, 5000, 500, 400, data, preimage, 6000)
    assert short.preimage is None and "invoice's" in short.why


# ---- holding ---------------------------------------------------------------------------------

def test_hold_then_release_forwards():
    book = hold.HoldBook(hold.Limits(expiry_margin_blocks=10))
    h = book.register("peer", "aa" * 32, now=100)
    assert book.register("peer", "aa" * 32, now=101) is h          # asking again: same hold
    action, got = book.on_htlc("peer", "aa" * 32, "1x1x1/0", 5000, 300, False, 102, 200)
    assert action == "hold" and got.state == hold.HELD and "1x1x1/0" in got.htlcs
    # Replayed after a restart: still held, the same entry.
    assert book.on_htlc("peer", "aa" * 32, "1x1x1/0", 5000, 300, False, 103, 200)[0] == "hold"
    released = book.release("peer", "aa" * 32, now=110)
    assert released is h and h.state == hold.RELEASED
    assert book.release("peer", "aa" * 32, now=111) is None         # only once


def test_release_before_the_htlc_forwards_it_on_arrival():
    book = hold.HoldBook()
    book.register("peer", "bb" * 32, now=1)
    book.release("peer", "bb" * 32, now=2)
    assert book.on_htlc("peer", "bb" * 32, "k", 1, 500, False, 3, 100)[0] == "forward"


def test_other_peers_and_unflagged_htlcs_are_not_held():
    book = hold.HoldBook()
    book.register("peer", "cc" * 32, now=1)
    assert book.on_htlc("other", "cc" * 32, "k", 1, 500, False, 2, 100) == (None, None)
    assert book.on_htlc("peer", "dd" * 32, "k", 1, 500, False, 2, 100) == (None, None)
    # LDK's hold_htlc record alone makes a hold.
    action, h = book.on_htlc("other", "dd" * 32, "k", 1, 500, True, 2, 100)
    assert action == "hold" and h.peer == "other"


def test_held_htlcs_fail_before_expiry():
    book = hold.HoldBook(hold.Limits(expiry_margin_blocks=12))
    book.register("peer", "ee" * 32, now=1)
    assert book.on_htlc("peer", "ee" * 32, "k", 1, 112, False, 2, 100)[0] == "fail"
    assert book.on_htlc("peer", "ee" * 32, "k2", 1, 150, False, 2, 100)[0] == "hold"
    assert book.due(137) == []
    ((h, key),) = book.due(138)
    book.fail(h, key, "CLTV expiry close")
    assert h.state == hold.FAILED and not h.htlcs


def test_hold_limits_and_forgetting():
    book = hold.HoldBook(hold.Limits(per_peer=2, total=3, ttl_s=50))
    book.register("a", "01" * 32, 0)
    book.register("a", "02" * 32, 0)
    with pytest.raises(hold.HoldError, match="this peer"):
        book.register("a", "03" * 32, 0)
    book.register("b", "01" * 32, 0)
    with pytest.raises(hold.HoldError, match="too many holds"):
        book.register("c", "01" * 32, 0)
    assert len(book.stale(49)) == 0 and len(book.stale(50)) == 3
    h = book.holds[hold.hold_key("a", "01" * 32)]
    assert hold.Hold.from_record(h.to_record()) == h


def test_released_htlc_is_forwarded_without_hold_htlc():
    extra = record(65537, b"\x01") + asyncmsg.hold_htlc_tlvs()
    out = forward_released(extra.hex())
    assert out["result"] == "continue"
    assert bytes.fromhex(out["extra_tlvs"]) == record(65537, b"\x01")
    assert forward_released("") == {"result": "continue"}
    assert bytes.fromhex(forward_released(asyncmsg.hold_htlc_tlvs().hex())["extra_tlvs"]) == b""


# ---- messages lightningd hands over through onion_message_recv_secret -----------------------

class _Node:
    def node_id(self):
        return ME.hex()

    def makesecret(self, label):
        return hashlib.sha256(label.encode()).digest()


class _Store:
    def __init__(self):
        self.areas = {}

    def put(self, area, key, record):
        self.areas.setdefault(area, {})[key] = record

    def list(self, area):
        return dict(self.areas.get(area, {}))

    def delete(self, area, key):
        self.areas.get(area, {}).pop(key, None)


def test_known_type_message_on_our_path_reaches_its_waiter():
    from bolt12ext.offer import path_dict
    from lsps.asyncpay.messenger import OnionMessenger
    messenger = OnionMessenger(_Node(), _Store(), lambda msg, level: None)
    _, path_id, waiting = messenger.reply_path(60)
    reply = PathBook(os.urandom, LSP, bytes([5] * 32)).make("x", 0, 60)[0]
    shown = path_dict(reply)
    shown["hops"] = shown.pop("path")          # lightningd's spelling in this hook
    invoice = bytes([1, 2, 3])
    assert messenger.on_cln_message({"pathsecret": path_id, "invoice": invoice.hex(),
                                     "reply_blindedpath": shown,
                                     "unknown_fields": [{"number": 77, "value": "aa"}]})
    got = waiting.get(timeout=5)
    assert got.contents == {66: invoice, 77: b"\xaa"} and got.reply_path == reply
    # Not ours: lightningd's own plugins get it.
    assert not messenger.on_cln_message({"pathsecret": "11" * 32, "invoice": "00"})
    assert not messenger.on_cln_message({"invoice_request": "00"})


# ---- what the payer refuses before any money moves --------------------------------------------

SIGNERS = {pubkey(ISSUER).hex()}
LIMITS = None  # set below, once bolt12ext.payer is imported


def _payer():
    from lsps.asyncpay.messenger import OnionMessenger
    from lsps.asyncpay.payer import AsyncPayer
    messenger = OnionMessenger(_Node(), _Store(), lambda msg, level: None)
    return AsyncPayer(_Node(), _Store(), messenger, ask=None, log=lambda msg, level: None)


def test_payer_refuses_expired_offers_and_bad_amounts():
    from lsps.asyncpay.payer import PayError
    path = PathBook(os.urandom, LSP, bytes([3] * 32)).make("server_offer", 0, 60)[0]
    expired = build.offer_string(recipient.make_offer(pubkey(ISSUER), [path], "old", 5000,
                                                      absolute_expiry=1000))
    with pytest.raises(PayError, match="expired"):
        _payer().pay(expired, None, None)
    priced = build.offer_string(offer(5000))
    with pytest.raises(PayError, match="below the offer"):
        _payer().pay(priced, 4000, None)
    with pytest.raises(PayError, match="names no amount"):
        _payer().pay(build.offer_string(offer()), None, None)
    with pytest.raises(PayError, match="not a valid offer"):
        _payer().pay("lno1qqqq", None, None)


def test_payer_refuses_tampered_expired_or_foreign_static_invoices():
    from lsps.asyncpay.payer import PayError
    data = offer(5000)
    text = build.offer_string(data)
    req = invreq_for(data)
    now = int(time.time())
    held = [PathBook(os.urandom, ME, bytes([4] * 32)).make("recipient_held", 0, 60)[0]]
    good = recipient.make_static_invoice(data, ISSUER, pay_paths(), held, now)
    tampered = bytearray(good)
    tampered[-1] ^= 1
    old = recipient.make_static_invoice(data, ISSUER, pay_paths(), held, now - 100,
                                        relative_expiry=50)
    foreign = recipient.make_static_invoice(offer(5000), ISSUER, pay_paths(), held, now)
    for raw, why in ((bytes(tampered), "signature"), (old, "expired"),
                     (foreign, "another offer")):
        with pytest.raises(PayError, match=why):
            _payer()._pay_static(text, data, raw, req, 5000, SIGNERS, LIMITS)


def test_payer_refuses_invoices_that_do_not_answer_its_request():
    from lsps.asyncpay.payer import PayError
    data = offer(5000)
    text = build.offer_string(data)
    mine, theirs = invreq_for(data), invreq_for(data)
    h = hashlib.sha256(b"x").digest()
    other = recipient.answer_invoice_request(theirs, data, ISSUER, pay_paths(), h, 1000)
    with pytest.raises(PayError, match="does not answer our invoice_request"):
        _payer()._pay_invoice(text, other, mine, 5000, SIGNERS, LIMITS)
    ok = recipient.answer_invoice_request(mine, data, ISSUER, pay_paths(), h, 1000)
    with pytest.raises(PayError, match="another amount"):
        _payer()._pay_invoice(text, ok, mine, 6000, SIGNERS, LIMITS)


def test_payer_refuses_answers_not_signed_by_the_issuer():
    """Issue 11 item 13: a server or relay answering with its own invoice (signed
    by itself, valid signature) is refused."""
    from lsps.asyncpay.payer import PayError
    impostor = bytes([9] * 32)
    data = offer(5000)
    text = build.offer_string(data)
    mine = invreq_for(data)
    h = hashlib.sha256(b"x").digest()
    theirs = recipient.answer_invoice_request(mine, data, impostor, pay_paths(), h, 1000)
    with pytest.raises(PayError, match="not signed by the offer's issuer"):
        _payer()._pay_invoice(text, theirs, mine, 5000, SIGNERS, LIMITS)
    # (our builder refuses to sign a static invoice for another issuer's offer: the
    # check is shown with a well-signed one the payer expects from someone else)
    held = [PathBook(os.urandom, ME, bytes([4] * 32)).make("recipient_held", 0, 60)[0]]
    static = recipient.make_static_invoice(data, ISSUER, pay_paths(), held, int(time.time()))
    with pytest.raises(PayError, match="not signed by the offer's issuer"):
        _payer()._pay_static(text, data, static, mine, 5000, {pubkey(impostor).hex()}, LIMITS)


def test_payer_caps_fees_and_cltv_like_xpay():
    from bolt12ext import payer
    from lsps.asyncpay.payer import MAX_CLTV, default_maxfee
    assert default_maxfee(100_000) == 5000 and default_maxfee(10**9) == 10**7
    limits = payer.Limits(maxfee_msat=5000, max_cltv=MAX_CLTV)
    assert payer.over_limits(limits, 100_000, 105_000, 200) is None
    assert "maxfee_msat" in payer.over_limits(limits, 100_000, 105_001, 200)
    assert "CLTV" in payer.over_limits(limits, 100_000, 100_000, MAX_CLTV + 1)


# ---- issue 11 item 14: what the recipient refuses ------------------------------------------

def quantity_offer(quantity_max, amount=1000):
    path = PathBook(os.urandom, LSP, bytes([3] * 32)).make("server_offer", 0, 3600)[0]
    return build.offer(offer_chains=[recipient.CHAIN_HASHES["regtest"]],
                       offer_description="stickers", offer_amount_msat=amount,
                       offer_quantity_max=quantity_max, offer_paths=[path],
                       offer_issuer_id=pubkey(ISSUER))


@pytest.mark.parametrize("quantity_max,quantity,amount,why", [
    (3, 0, None, "quantity"),
    (3, 4, None, "quantity"),
    (3, 2, 1999, "below offer_amount"),
    (None, 2, None, "quantity"),
    (3, None, None, "without the quantity"),
])
def test_recipient_refuses_wrong_quantities_and_amounts(quantity_max, quantity, amount, why):
    from bolt12ext.tlv import DecodeError
    data = quantity_offer(quantity_max) if quantity_max else offer(1000)
    fields = {"invreq_metadata": os.urandom(8), "invreq_chain": recipient.CHAIN_HASHES["regtest"]}
    if quantity is not None:
        fields["invreq_quantity"] = quantity
    if amount is not None:
        fields["invreq_amount_msat"] = amount
    req = build.invoice_request(data, os.urandom(32), **fields)
    with pytest.raises(DecodeError, match=why):
        recipient.check_invoice_request(req, data)


def test_recipient_accepts_the_right_quantity():
    data = quantity_offer(3)
    req = build.invoice_request(data, os.urandom(32), invreq_metadata=os.urandom(8),
                                invreq_chain=recipient.CHAIN_HASHES["regtest"],
                                invreq_quantity=3)
    assert recipient.expected_amount(recipient.check_invoice_request(req, data)) == 3000


def test_recipient_claims_only_htlcs_that_came_through_its_path():
    from bolt12ext.recipient import came_blinded as _came_blinded
    from lsps.asyncpay.recipient import AsyncRecipient
    path_key = "02" + "ee" * 32
    assert _came_blinded({}, "0021" + path_key)
    assert _came_blinded({"current_path_key": bytes(33)}, "")
    assert not _came_blinded({}, "")
    assert not _came_blinded({}, "fdfe0100")   # 65537-ish odd TLV only
    data = b"\x01" * 40
    ours = AsyncRecipient.__new__(AsyncRecipient)
    ours._lock = threading.Lock()
    ours.paypaths = {hashlib.sha256(data).hexdigest(): {"offer_id": "o", "via": "peer"}}
    payload = asyncmsg.final_payload(5000, 500, 5000, data)
    onion = {"payload": (bytes([len(payload)]) + payload).hex()}
    blinded = {"extra_tlvs": "0021" + path_key}
    assert ours.context_of(htlc_event(onion, "peer", **blinded)) is not None
    assert ours.context_of(htlc_event(onion, "peer")) is None    # copied into a plain onion
    assert ours.context_of(htlc_event(onion, "other", **blinded)) is None  # another peer
    assert ours.context_of(htlc_event(dict(onion, short_channel_id="9x9x9"), "peer",
                                      **blinded)) is None        # not the final hop


def test_flagged_htlc_beyond_the_limits_is_failed_not_forwarded():
    """Issue 11 item 15: never `continue` with hold_htlc still set."""
    book = hold.HoldBook(hold.Limits(per_peer=1, total=5))
    book.register("a", "01" * 32, 0)
    assert book.on_htlc("a", "02" * 32, "k", 1, 500, True, 1, 100) == ("fail", None)
    # through the runtime holder: answered with a failure
    from lsps.asyncpay.holder import HtlcHolder
    holder = HtlcHolder.__new__(HtlcHolder)
    holder.book, holder._lock, holder._waiting = book, threading.Lock(), {}
    holder.store, holder.log = None, lambda msg, level: None
    answers = []
    htlc = {"short_channel_id": "1x1x1", "id": 7, "payment_hash": "03" * 32,
            "amount_msat": 1000, "cltv_expiry": 500, "cltv_expiry_relative": 400,
            "extra_tlvs": asyncmsg.hold_htlc_tlvs().hex()}
    assert holder.on_htlc(htlc_event({}, "a", **htlc), answers.append)
    assert answers == [{"result": "fail", "failure_message": "2002"}]




def test_recipient_bounds_the_invoices_an_offer_has_outstanding(monkeypatch):
    """Issue 11 item 16: invoice_requests from anyone cannot grow our store."""
    from fakes import MemoryRpc

    import lsps.asyncpay.recipient as R
    from lsps.node.store import Store
    rpc = MemoryRpc()
    ours = R.AsyncRecipient.__new__(R.AsyncRecipient)
    ours._lock, ours.store = threading.Lock(), Store(lambda: rpc)
    monkeypatch.setattr(R, "now_s", lambda: 10_000)
    ours.issued = {f"{i:064x}": {"offer_id": "o", "expires_at": 10_000 - R.KEEP_AFTER_EXPIRY_S}
                   for i in range(5)}                       # past: forgotten
    ours.issued.update({f"f{i:063x}": {"offer_id": "o", "expires_at": 20_000} for i in range(3)})
    ours.paypaths = {"a": {"expires_at": 9_999}, "b": {"expires_at": 10_001}}
    for h, i in ours.issued.items():
        ours.store.put(R.ISSUED, h, i)
    assert ours._open_invoices("o") == 3 and ours._open_invoices("other") == 0
    assert list(ours.paypaths) == ["b"] and len(rpc.data) == 3


def test_invoice_requests_beyond_the_bound_are_dropped(monkeypatch):
    import lsps.asyncpay.recipient as R
    from bolt12ext import onionmsg
    monkeypatch.setattr(R, "MAX_OPEN_INVOICES_PER_OFFER", 3)
    dropped = []

    class Messenger:
        def drop(self, why):
            dropped.append(why)

    data = offer(5000)
    ours = R.AsyncRecipient.__new__(R.AsyncRecipient)
    ours._lock, ours.messenger, ours.paypaths = threading.Lock(), Messenger(), {}
    ours.offers = {"o": {"offer_id": "o", "offer": data.hex()}}
    ours.issued = {f"{i:064x}": {"offer_id": "o", "expires_at": 2**40} for i in range(3)}
    got = onionmsg.Received(os.urandom(32), {onionmsg.INVOICE_REQUEST: invreq_for(data)},
                            "a reply path", {})

    class Ctx:
        data = {"offer_id": "o"}
    ours.on_invoice_request(Ctx(), got)
    assert dropped == ["too many open invoices for this offer"]


def test_fresh_node_ids_cannot_take_every_hold():
    book = hold.HoldBook(hold.Limits(per_peer=20, total=100))
    for i in range(50):
        book.register(f"fresh{i}", "01" * 32, 0, channel_peers={"customer"})
    with pytest.raises(hold.HoldError, match="without a channel"):
        book.register("fresh50", "01" * 32, 0, channel_peers={"customer"})
    for i in range(20):
        book.register("customer", f"{i:064x}", 0, channel_peers={"customer"})

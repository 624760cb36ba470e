"""LSPS5 (bLIP-55), pure parts: limits and errors of set/list/remove, the notification
bytes and the signed template (the spec's own example), verification of a signed
notification, cooldowns."""
import hashlib
import json

import coincurve
import pytest

import lsps.lsps5.msgs as M
import lsps.lsps5.service as S
from lsps.lsps0.msgs import LspsError
from lsps.lsps5.client import ZBASE32, VerifyError, signer_of, verify_notification

POLICY = S.Policy(max_webhooks=2, cooldown_s=600)
URL = "https://www.example.org/push?l=1234567890abcdefghijklmnopqrstuv&c=best"


def code_of(fn, *args):
    with pytest.raises(LspsError) as e:
        fn(*args)
    return e.value.code


@pytest.mark.parametrize("name, ok", [
    ("a" * 64, True), ("a" * 65, False),
    ('"' * 32, True), ('"' * 33, False),       # each \" counts two bytes
    ("é" * 32, True), ("é" * 33, False),       # UTF-8 bytes, not characters
    ("\x00" * 10, True), ("\x00" * 11, False),  # \u0000: six bytes each
])
def test_app_name_is_at_most_64_bytes_escapes_counted(name, ok):
    if ok:
        assert M.check_app_name(name) == name
    else:
        assert code_of(M.check_app_name, name) == M.TOO_LONG


@pytest.mark.parametrize("url, code", [
    (URL, None), ("https://h.example/" + "a" * 1005, None),
    ("https://h.example/" + "a" * 1007, M.TOO_LONG),
    ("http://www.example.org/push", M.UNSUPPORTED_PROTOCOL),
    ("ftp://files.example.org/x", M.UNSUPPORTED_PROTOCOL),
    ("not a url", M.URL_PARSE_ERROR), ("https://", M.URL_PARSE_ERROR),
    ("https://exa mple.org/", M.URL_PARSE_ERROR), ("https://bücher.example/", M.URL_PARSE_ERROR),
    ("https://example.org:99999/", M.URL_PARSE_ERROR),
    ("https://example.org:x/", M.URL_PARSE_ERROR),
    ("www.example.org/push", M.URL_PARSE_ERROR),
])
def test_webhooks_are_https_urls_of_at_most_1024_ascii_characters(url, code):
    if code is None:
        assert M.check_webhook(url) == url
    else:
        assert code_of(M.check_webhook, url) == code


def test_set_is_insert_or_replace_under_the_maximum():
    record = S.new_record(0)
    assert S.set_webhook(record, {"app_name": "a", "webhook": URL}, POLICY, 1) == (
        {"num_webhooks": 1, "max_webhooks": 2, "no_change": False}, True)
    assert S.set_webhook(record, {"app_name": "a", "webhook": URL}, POLICY, 2) == (
        {"num_webhooks": 1, "max_webhooks": 2, "no_change": True}, False)
    S.set_webhook(record, {"app_name": "b", "webhook": URL}, POLICY, 3)
    with pytest.raises(LspsError) as e:
        S.set_webhook(record, {"app_name": "c", "webhook": URL}, POLICY, 4)
    assert (e.value.code, e.value.data) == (M.TOO_MANY_WEBHOOKS, {"max_webhooks": 2})
    # replacing at the maximum is fine, and is a change
    assert S.set_webhook(record, {"app_name": "b", "webhook": URL + "x"}, POLICY, 5)[1]
    assert S.list_webhooks(record, POLICY) == {"app_names": ["a", "b"], "max_webhooks": 2}
    assert S.list_webhooks(None, POLICY) == {"app_names": [], "max_webhooks": 2}


def test_remove_knows_only_registered_names():
    record = S.new_record(0)
    S.set_webhook(record, {"app_name": "a", "webhook": URL}, POLICY, 1)
    assert code_of(S.remove_webhook, record, {"app_name": "b"}) == M.APP_NAME_NOT_FOUND
    assert code_of(S.remove_webhook, None, {"app_name": "a"}) == M.APP_NAME_NOT_FOUND
    assert S.remove_webhook(record, {"app_name": "a"}) == {}
    assert record["webhooks"] == {}


def test_webhooks_are_kept_seven_days_after_the_last_channel():
    record = S.new_record(1000)
    assert not S.forgettable(record, True, 10**12)
    assert not S.forgettable(record, False, 1000 + S.KEEP_WITHOUT_CHANNEL_MS - 1)
    assert S.forgettable(record, False, 1000 + S.KEEP_WITHOUT_CHANNEL_MS)


def test_the_signed_message_is_the_specs_example():
    body = b'{"jsonrpc":"2.0","method":"lsps5.goodbye","params":{}}'
    assert M.notification("lsps5.goodbye") == body
    message = M.signed_message("2023-05-04T10:52:58.395Z", body).encode()
    dump = ("4c53 5053 353a 2044 4f20 4e4f 5420 5349 474e 2054 4849 5320 4d45 5353 4147 4520 "
            "4d41 4e55 414c 4c59 3a20 4c53 503a 2041 7420 3230 3233 2d30 352d 3034 5431 303a "
            "3532 3a35 382e 3339 355a 2049 206e 6f74 6966 7920 7b22 6a73 6f6e 7270 6322 3a22 "
            "322e 3022 2c22 6d65 7468 6f64 223a 226c 7370 7335 2e67 6f6f 6462 7965 222c 2270 "
            "6172 616d 7322 3a7b 7d7d")
    assert message == bytes.fromhex(dump.replace(" ", ""))


def zbase32(data: bytes) -> str:
    bits = "".join(f"{b:08b}" for b in data)
    bits += "0" * (-len(bits) % 5)
    return "".join(ZBASE32[int(bits[i:i + 5], 2)] for i in range(0, len(bits), 5))


def ln_sign(secret: bytes, message: str) -> str:
    """CLN signmessage's zbase: header 31 + recid, then r ‖ s."""
    digest = hashlib.sha256(hashlib.sha256(b"Lightning Signed Message:" + message.encode())
                            .digest()).digest()
    sig = coincurve.PrivateKey(secret).sign_recoverable(digest, hasher=None)
    return zbase32(bytes([31 + sig[64]]) + sig[:64])


SECRET = b"\x11" * 32
LSP_ID = coincurve.PrivateKey(SECRET).public_key.format().hex()
NOW_MS = 1_700_000_000_000
STAMP = "2023-11-14T22:13:20.000Z"   # NOW_MS


def test_a_notification_signed_by_the_lsp_verifies():
    body = M.notification(M.EXPIRY_SOON, {"timeout": 850_000})
    sig = ln_sign(SECRET, M.signed_message(STAMP, body))
    assert signer_of(M.signed_message(STAMP, body), sig).hex() == LSP_ID
    note = verify_notification(LSP_ID, STAMP, sig, body, NOW_MS + 5000)
    assert note == {"jsonrpc": "2.0", "method": M.EXPIRY_SOON, "params": {"timeout": 850_000}}


@pytest.mark.parametrize("change, why", [
    (dict(lsp_id="02" + "22" * 32), "not signed by the LSP"),
    (dict(body=M.notification(M.PAYMENT_INCOMING, {"x": 1})), "not signed by the LSP"),
    (dict(timestamp="2023-11-14T22:13:20.001Z"), "not signed by the LSP"),
    (dict(now_ms=NOW_MS + 601_000), "more than 600 s away"),
    (dict(timestamp="yesterday"), "not an ISO8601"),
    (dict(signature="zz"), "not a 65-byte"),
    (dict(signature="l"), "not zbase32"),
])
def test_a_notification_is_refused_when_anything_differs(change, why):
    body = M.notification(M.PAYMENT_INCOMING)
    args = dict(lsp_id=LSP_ID, timestamp=STAMP,
                signature=ln_sign(SECRET, M.signed_message(STAMP, body)), body=body,
                now_ms=NOW_MS)
    args.update(change)
    with pytest.raises(VerifyError, match=why):
        verify_notification(**args)


def test_a_signed_body_that_is_not_a_notification_is_refused():
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "x", "params": {}}).encode()
    sig = ln_sign(SECRET, M.signed_message(STAMP, body))
    with pytest.raises(VerifyError, match="not a JSON-RPC 2.0 notification"):
        verify_notification(LSP_ID, STAMP, sig, body, NOW_MS)


def test_one_notification_per_method_per_cooldown_until_the_client_was_back():
    c = S.Cooldowns()
    assert c.take("p", M.PAYMENT_INCOMING, 0, 600)
    assert not c.take("p", M.PAYMENT_INCOMING, 599_999, 600)
    assert c.take("p", M.ONION_MESSAGE_INCOMING, 1, 600)     # another method
    assert c.take("q", M.PAYMENT_INCOMING, 1, 600)           # another client
    assert c.take("p", M.PAYMENT_INCOMING, 600_000, 600)
    c.reset("p")
    assert c.take("p", M.PAYMENT_INCOMING, 600_001, 600)


def test_the_escaped_form_cln_signmessage_signs_is_accepted_too():
    """CLN v26.06 signs the RPC parameter as it came, JSON-escaped (checked on a node:
    signmessage of 'x {"a":"b"}' recovers the node id only over 'x {\\"a\\":\\"b\\"}')."""
    from lsps.lsps5.client import cln_signed
    body = M.notification(M.PAYMENT_INCOMING)
    message = M.signed_message(STAMP, body)
    assert cln_signed(message) == message.replace('"', '\\"')
    sig = ln_sign(SECRET, cln_signed(message))
    assert verify_notification(LSP_ID, STAMP, sig, body, NOW_MS)["method"] == M.PAYMENT_INCOMING

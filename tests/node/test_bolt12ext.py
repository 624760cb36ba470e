"""bolt12ext against CLN: CLN's objects decode alike; the library's objects, blinded paths,
Sphinx packets and onion messages are accepted by CLN."""
import os

import pytest
from pyln.client import RpcError
from pyln.testing.utils import wait_for

from bolt12ext import blinding, build, encoding, messages, onionmsg, sphinx
from bolt12ext.sphinx import pubkey
from bolt12ext.tlv import bigsize, records

SAME_FIELDS = ("offer_description", "offer_issuer_id", "offer_amount_msat", "offer_issuer",
               "offer_absolute_expiry", "offer_quantity_max", "invreq_metadata",
               "invreq_payer_id", "invreq_amount_msat", "invreq_payer_note",
               "invoice_node_id", "invoice_payment_hash", "invoice_amount_msat",
               "invoice_created_at", "invoice_relative_expiry")


def compare(node, string, kind):
    ours = node.rpc.call("bolt12ext-decode", {"string": string})
    cln = node.rpc.decode(string)
    assert ours["type"] == kind and cln["type"] == kind
    assert ours["valid"] is True and cln["valid"] is True
    checked = [f for f in SAME_FIELDS if f in cln]
    assert checked, cln
    for field in checked:
        assert ours[field] == cln[field], field
    for paths in ("offer_paths", "invoice_paths", "invreq_paths"):
        assert len(ours.get(paths, [])) == len(cln.get(paths, []))
    return ours


def test_cln_objects_decode_alike(node_factory, plugin_path):
    alice, bob = node_factory.get_nodes(2, opts={"plugin": plugin_path})
    node_factory.join_nodes([bob, alice], wait_for_announce=True)
    offer = alice.rpc.offer(amount="2000msat", description="clnlsp test", issuer="alice",
                            quantity_max=5)["bolt12"]
    compare(alice, offer, "bolt12 offer")
    invreq = bob.rpc.invoicerequest(amount="3000msat", description="refund me")["bolt12"]
    ours = compare(bob, invreq, "bolt12 invoice_request")
    assert ours["signature_valid"] is True
    invoice = bob.rpc.fetchinvoice(offer, quantity=2)["invoice"]
    ours = compare(bob, invoice, "bolt12 invoice")
    assert ours["signature_valid"] is True


def test_bad_input_is_a_clear_error(node_factory, plugin_path):
    node = node_factory.get_node(options={"plugin": plugin_path})
    for bad in ("lno1", "lnbc1xyz", "Lno1qq", "zz"):
        with pytest.raises(RpcError, match="invalid BOLT12 object") as e:
            node.rpc.call("bolt12ext-decode", {"string": bad})
        assert e.value.error["code"] == -32602


# ---- objects, paths and onions made by the library, checked by CLN ----------------------------

SINK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins", "om_sink.py")


def test_library_offer_with_blinded_path_is_valid_for_cln(node_factory):
    node = node_factory.get_node()
    node_id = bytes.fromhex(node.info["id"])
    virtual = os.urandom(32)
    path = blinding.message_path(os.urandom(32), [node_id, pubkey(virtual)], os.urandom(32))
    issuer = os.urandom(32)
    offer = build.offer_string(build.offer(offer_issuer_id=pubkey(issuer), offer_paths=[path],
                                           offer_description="from clnlsp",
                                           offer_amount_msat=1234))
    cln = node.rpc.decode(offer)
    assert cln["type"] == "bolt12 offer" and cln["valid"] is True
    assert cln["offer_description"] == "from clnlsp" and cln["offer_amount_msat"] == 1234
    (cln_path,) = cln["offer_paths"]
    assert cln_path["first_node_id"] == node.info["id"]
    assert cln_path["first_path_key"] == path.first_path_key.hex()
    assert [(h["blinded_node_id"], h["encrypted_recipient_data"]) for h in cln_path["path"]] == \
        [(h.blinded_node_id.hex(), h.encrypted_data.hex()) for h in path.hops]
    ours = messages.decode(offer)
    assert ours["offer_paths"][0]["path"] == cln_path["path"]


def test_cln_decrypts_library_blinded_hop(node_factory):
    node = node_factory.get_node()
    node_id = bytes.fromhex(node.info["id"])
    nxt = pubkey(os.urandom(32))
    data = blinding.pad_equal([{"next_node_id": nxt}, {"path_id": b"x" * 32}])
    trace = []
    path = blinding.blind(os.urandom(32), [(node_id, data[0]), (nxt, data[1])], trace)
    got = node.rpc.decryptencrypteddata(encrypted_data=path.hops[0].encrypted_data.hex(),
                                        path_key=path.first_path_key.hex())
    got = got["decryptencrypteddata"]
    assert got["decrypted"] == data[0].hex()
    assert got["next_path_key"] == trace[1].path_key.hex()


@pytest.mark.parametrize("size", [1300, 32768])
def test_library_sphinx_packet_equals_createonion(node_factory, size):
    node = node_factory.get_node()
    session = os.urandom(32)
    assoc = os.urandom(32)
    hops = [(pubkey(os.urandom(32)), os.urandom(n)) for n in (40, 300, 17)]
    cln = node.rpc.createonion(
        hops=[{"pubkey": k.hex(), "payload": (bigsize(len(p)) + p).hex()} for k, p in hops],
        assocdata=assoc.hex(), session_key=session.hex(), onion_size=size)
    assert cln["onion"] == sphinx.build(session, hops, assoc, size=size).hex()


def test_library_onion_message_fetches_a_cln_invoice(node_factory):
    """Our invoice_request, in our onion message, with our reply path to a key behind l1:
    l2 answers with an invoice that we peel out of l1's forward failure and verify."""
    l1, l2 = node_factory.line_graph(2, opts=[{"plugin": SINK}, {}], wait_for_announce=True)
    l1_id, l2_id = bytes.fromhex(l1.info["id"]), bytes.fromhex(l2.info["id"])
    offer = l2.rpc.offer(amount="5000msat", description="library payer")["bolt12"]
    offer_data = encoding.decode(offer)[1]
    fields = messages.decode(offer)
    payer = os.urandom(32)
    invreq = build.invoice_request(offer_data, payer, invreq_metadata=os.urandom(16),
                                   invreq_chain=fields.get("offer_chains", [None])[0])
    assert l1.rpc.decode(encoding.encode("lnr", invreq))["valid"] is True

    if "offer_paths" in fields:
        dest = blinding.parse_paths(dict((t, v) for t, v, _ in records(offer_data))[16])[0]
    else:
        dest = blinding.blind(os.urandom(32), [(l2_id, b"")])
    path = dest if dest.first_node_id == l1_id else onionmsg.prepend(os.urandom(32), [l1_id],
                                                                     dest)
    virtual = os.urandom(32)
    path_id = os.urandom(32)
    reply = blinding.message_path(os.urandom(32), [l1_id, pubkey(virtual)], path_id)
    msg = onionmsg.build(os.urandom(32), path, {onionmsg.INVOICE_REQUEST: invreq},
                         reply_path=reply)
    l1.rpc.injectonionmessage(path_key=msg.path_key.hex(), message=msg.packet.hex())

    wait_for(lambda: l1.rpc.call("om-sink-list")["failed"])
    (failed,) = l1.rpc.call("om-sink-list")["failed"]
    assert failed["next_node_id"] == pubkey(virtual).hex()
    got = onionmsg.peel(virtual, onionmsg.OnionMessage.parse(bytes.fromhex(failed["outgoing"])))
    assert isinstance(got, onionmsg.Received) and got.path_id == path_id
    invoice = messages.decode_invoice(got.contents[onionmsg.INVOICE])
    assert invoice["valid"] and invoice["signature_valid"]
    assert invoice["invreq_payer_id"] == pubkey(payer).hex()
    assert invoice["invoice_amount_msat"] == 5000
    assert l1.rpc.decode(encoding.encode("lni", got.contents[onionmsg.INVOICE]))["valid"] is True


def test_library_invoice_for_cln_invoice_request_is_valid_for_cln(node_factory):
    node = node_factory.get_node()
    invreq = node.rpc.invoicerequest(amount="7000msat", description="withdraw")["bolt12"]
    node_secret = os.urandom(32)
    hop = blinding.PaymentHop(bytes.fromhex(node.info["id"]), "1x1x1",
                              blinding.PaymentRelay(40, 100, 1000))
    path, payinfo = blinding.payment_path(os.urandom(32), [hop], pubkey(node_secret),
                                          os.urandom(32), max_cltv_expiry=10_000,
                                          htlc_maximum_msat=10**9)
    inv = build.invoice(encoding.decode(invreq)[1], node_secret, invoice_paths=[path],
                        invoice_blindedpay=[payinfo], invoice_created_at=1_800_000_000,
                        invoice_payment_hash=os.urandom(32))
    cln = node.rpc.decode(encoding.encode("lni", inv))
    assert cln["type"] == "bolt12 invoice" and cln["valid"] is True
    assert cln["invoice_amount_msat"] == 7000
    assert cln["invoice_node_id"] == pubkey(node_secret).hex()
    assert cln["invoice_paths"][0]["payinfo"]["fee_base_msat"] == 1000

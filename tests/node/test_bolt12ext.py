"""bolt12ext-decode against CLN's own `decode`, on objects CLN made."""
import pytest
from pyln.client import RpcError

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

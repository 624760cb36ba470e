"""ClnNode, the lightningd adapter: the exact RPC calls it makes and lightningd's JSON
turned into plain values. A fake LightningRpc records every call and answers with
lightningd-shaped JSON (or raises RpcError like pyln does)."""
import threading

import pytest
from pyln.client import RpcError

import lsps.node.rpc as rpc
from lsps.node.rpc import ClnNode, FundingError

PEER = "02" + "11" * 32
ME = "03" + "22" * 32


class FakeRpc:
    """lightningd's RPC: `answers` maps a method to its result, a callable of the
    params, or an RpcError to raise; every call is recorded as (method, params)."""

    def __init__(self, path=None, **answers):
        self.path, self.answers, self.calls = path, answers, []

    def call(self, method, params=None):
        self.calls.append((method, params))
        answer = self.answers[method]
        if isinstance(answer, Exception):
            raise answer
        return answer(params) if callable(answer) else answer


def rpc_error(method, code, message="nope"):
    return RpcError(method, {}, {"code": code, "message": message})


def node_with(**answers):
    logs = []
    node = ClnNode("/tmp/lightning-rpc", log=lambda m, level="info": logs.append((m, level)))
    fake = FakeRpc(**answers)
    node._local.rpc = fake
    return node, fake, logs


# --- one LightningRpc per thread --------------------------------------------------


def test_rpc_makes_one_lightningrpc_per_thread_on_the_socket_path(monkeypatch):
    made = []
    monkeypatch.setattr(rpc, "LightningRpc", lambda path: made.append(FakeRpc(path)) or made[-1])
    node = ClnNode("/ln/regtest/lightning-rpc", log=print)
    first = node.rpc()
    assert node.rpc() is first
    other = []
    t = threading.Thread(target=lambda: other.append(node.rpc()))
    t.start()
    t.join()
    assert other[0] is not first
    assert [m.path for m in made] == ["/ln/regtest/lightning-rpc"] * 2


# --- messages and peers -----------------------------------------------------------


def test_send_custommsg_sends_the_whole_message_as_hex():
    node, fake, _ = node_with(sendcustommsg={})
    node.send_custommsg(PEER, bytes.fromhex("9419") + b"{}")
    assert fake.calls == [("sendcustommsg", {"node_id": PEER, "msg": "9419" + b"{}".hex()})]


def test_connected_peers_are_the_listed_ones_that_are_connected():
    peers = [{"id": "a", "connected": True}, {"id": "b", "connected": False}, {"id": "c"}]
    node, fake, _ = node_with(listpeers={"peers": peers})
    assert node.connected_peers() == ["a"]
    assert fake.calls == [("listpeers", None)]


def test_inject_onion_message_sends_hex():
    node, fake, _ = node_with(injectonionmessage={})
    node.inject_onion_message(b"\x02" * 33, b"\xab\xcd")
    assert fake.calls == [("injectonionmessage", {"path_key": "02" * 33, "message": "abcd"})]


def test_connect_asks_by_id():
    node, fake, _ = node_with(connect={})
    node.connect(PEER)
    assert fake.calls == [("connect", {"id": PEER})]


def test_connect_lets_rpc_error_through():
    node, _, _ = node_with(connect=rpc_error("connect", 401))
    with pytest.raises(RpcError):
        node.connect(PEER)


# --- routes and onions --------------------------------------------------------------

ROUTE = {"routes": [{"path": [
    {"node_id_out": "n1", "short_channel_id_dir": "1x2x3/0", "amount_out_msat": "1010msat",
     "cltv_out": 40},
    {"node_id_out": "n2", "short_channel_id_dir": "4x5x6/1", "amount_out_msat": 1000,
     "cltv_out": 18}]}]}


def test_route_to_asks_askrene_and_returns_one_entry_per_channel():
    node, fake, _ = node_with(getinfo={"id": ME}, getroutes=ROUTE)
    hops = node.route_to("n2", 100_000, 18)
    assert hops == [{"node_id": "n1", "channel": "1x2x3", "amount_msat": 1010, "cltv": 40},
                    {"node_id": "n2", "channel": "4x5x6", "amount_msat": 1000, "cltv": 18}]
    assert fake.calls[-1] == ("getroutes", {
        "source": ME, "destination": "n2", "amount_msat": 100_000,
        "layers": ["auto.localchans", "auto.sourcefree"], "maxfee_msat": 100_000 // 20 + 5000,
        "final_cltv": 18, "maxparts": 1})


def test_route_to_for_onion_messages_ignores_local_channel_capacity():
    node, fake, _ = node_with(getinfo={"id": ME}, getroutes=ROUTE)
    node.route_to("n2", 1, 0, payment=False)
    assert fake.calls[-1][1]["layers"] == ["auto.sourcefree"]


def test_send_onion_creates_then_sends_it():
    made = {"onion": "0a0b", "shared_secrets": ["ss"]}
    node, fake, _ = node_with(createonion=made, sendonion={})
    first = {"id": "n1", "amount_msat": 1010, "delay": 40}
    node.send_onion([(b"\x02" * 33, b"\x01\x02")], b"\xaa" * 32, first, 1000, "n2", "desc")
    assert fake.calls == [
        ("createonion", {"hops": [{"pubkey": "02" * 33, "payload": "020102"}],
                         "assocdata": "aa" * 32}),
        ("sendonion", {"onion": "0a0b", "first_hop": first, "payment_hash": "aa" * 32,
                       "shared_secrets": ["ss"], "amount_msat": 1000, "destination": "n2",
                       "description": "desc"})]


def test_sendpay_status_is_the_latest_attempt_or_none():
    node, fake, _ = node_with(listsendpays={"payments": [{"status": "failed"},
                                                         {"status": "complete"}]})
    assert node.sendpay_status("ab") == {"status": "complete"}
    assert fake.calls == [("listsendpays", {"payment_hash": "ab"})]
    node, _, _ = node_with(listsendpays={"payments": []})
    assert node.sendpay_status("ab") is None


def test_wait_sendpay_passes_the_timeout():
    node, fake, _ = node_with(waitsendpay={"status": "complete"})
    assert node.wait_sendpay("ab", 30) == {"status": "complete"}
    assert fake.calls == [("waitsendpay", {"payment_hash": "ab", "timeout": 30})]


# --- facts about the node -----------------------------------------------------------


def test_getinfo_facts():
    node, _, _ = node_with(getinfo={"id": ME, "blockheight": 812, "network": "regtest"})
    assert (node.node_id(), node.blockheight(), node.network()) == (ME, 812, "regtest")


@pytest.mark.parametrize("entry,value", [
    ({"value_int": 6}, 6), ({"value_str": "x"}, "x"), ({"value_bool": True}, True),
    ({"value_msat": 1000}, 1000), ({"source": "default"}, None)])
def test_config_reads_whichever_value_field_lightningd_sends(entry, value):
    node, fake, _ = node_with(listconfigs={"configs": {"cltv-delta": entry}})
    assert node.config("cltv-delta") == value
    assert fake.calls == [("listconfigs", {"config": "cltv-delta"})]


def test_config_of_an_unlisted_option_is_none():
    node, _, _ = node_with(listconfigs={"configs": {}})
    assert node.config("nope") is None


def test_makesecret_returns_bytes():
    node, fake, _ = node_with(makesecret={"secret": "ab" * 32})
    assert node.makesecret("clnlsp/x") == b"\xab" * 32
    assert fake.calls == [("makesecret", {"string": "clnlsp/x"})]


def test_default_channel_fee_from_config():
    values = {"fee-base": {"value_int": 1000}, "fee-per-satoshi": {"value_int": 10}}
    node, _, _ = node_with(listconfigs=lambda p: {"configs": {p["config"]: values[p["config"]]}})
    assert node.default_channel_fee() == (1000, 10)


def test_default_channel_fee_when_unset_is_zero():
    node, _, _ = node_with(listconfigs={"configs": {}})
    assert node.default_channel_fee() == (0, 0)


# --- channels -----------------------------------------------------------------------

FULL_CHANNEL = {
    "channel_id": "cc" * 32, "peer_id": PEER, "state": "CHANNELD_NORMAL", "opener": "local",
    "short_channel_id": "1x2x3", "alias": {"local": "9x9x9", "remote": "8x8x8"},
    "minimum_htlc_out_msat": "1msat", "receivable_msat": 5000, "peer_connected": True,
    "funding_txid": "ff" * 32, "funding_outnum": 1, "total_msat": "2000000msat",
    "updates": {"remote": {"fee_base_msat": "1000msat", "fee_proportional_millionths": 10}},
    "htlcs": [{"direction": "out", "id": 0, "expiry": 812}, {"direction": "in", "id": 3}],
}


def test_channels_turn_listpeerchannels_into_plain_values():
    node, fake, _ = node_with(listpeerchannels={"channels": [FULL_CHANNEL]})
    assert node.channels(PEER) == [{
        "channel_id": "cc" * 32, "peer_id": PEER, "state": "CHANNELD_NORMAL",
        "opener": "local", "scids": ["1x2x3", "9x9x9", "8x8x8"], "htlc_minimum_msat": 1,
        "receivable_msat": 5000, "peer_connected": True,
        "funding_outpoint": "ff" * 32 + ":1", "short_channel_id": "1x2x3",
        "inbound_scid": "1x2x3", "capacity_sat": 2000, "htlc_expiries": [812],
        "remote_policy": {"fee_base_msat": 1000, "fee_proportional_millionths": 10}}]
    assert fake.calls == [("listpeerchannels", {"id": PEER})]


def test_an_unconfirmed_zeroconf_channel_is_known_by_its_aliases():
    bare = {"channel_id": "dd" * 32, "peer_id": PEER, "state": "OPENINGD",
            "alias": {"local": "9x9x9", "remote": "8x8x8"}}
    node, fake, _ = node_with(listpeerchannels={"channels": [bare]})
    [c] = node.channels()
    assert fake.calls == [("listpeerchannels", {})]
    assert (c["scids"], c["short_channel_id"], c["inbound_scid"]) == (
        ["9x9x9", "8x8x8"], "9x9x9", "8x8x8")
    assert (c["funding_outpoint"], c["capacity_sat"], c["remote_policy"],
            c["peer_connected"], c["htlc_minimum_msat"]) == (None, 0, {}, False, 0)


# --- opening channels ---------------------------------------------------------------

FUNDED = {"channel_id": "cc" * 32, "txid": "ee" * 32, "outnum": 0}


def test_fund_channel_returns_channel_id_and_outpoint():
    node, fake, _ = node_with(fundchannel=FUNDED)
    assert node.fund_channel(PEER, 100_000, True, 3) == {
        "channel_id": "cc" * 32, "funding_outpoint": "ee" * 32 + ":0"}
    assert fake.calls == [("fundchannel", {"id": PEER, "amount": 100_000, "announce": True,
                                           "mindepth": 3})]


def test_fund_channel_zeroconf_unannounced_asks_for_scid_alias_and_push():
    node, fake, _ = node_with(fundchannel=FUNDED)
    node.fund_channel(PEER, 100_000, False, 0, push_msat=5000)
    assert fake.calls[0][1] == {"id": PEER, "amount": 100_000, "announce": False,
                                "mindepth": 0, "push_msat": 5000,
                                "channel_type": [12, 46, 50]}


def test_fund_channel_zeroconf_announced_has_no_scid_alias():
    node, fake, _ = node_with(fundchannel=FUNDED)
    node.fund_channel(PEER, 100_000, True, 0)
    assert fake.calls[0][1]["channel_type"] == [12, 50]


@pytest.mark.parametrize("code", [300, 301, 302, 303, 304, 305, 306, 313])
def test_lsp_side_funding_errors_are_not_the_peers_refusal(code):
    node, _, _ = node_with(fundchannel=rpc_error("fundchannel", code, "cannot afford"))
    with pytest.raises(FundingError) as e:
        node.fund_channel(PEER, 100_000, True, 1)
    assert e.value.refused_by_peer is False
    assert str(e.value) == "cannot afford"


@pytest.mark.parametrize("code", [-1, 400, 307, None])
def test_other_funding_errors_mean_the_peer_refused(code):
    node, _, _ = node_with(fundchannel=rpc_error("fundchannel", code, "peer said no"))
    with pytest.raises(FundingError) as e:
        node.fund_channel(PEER, 100_000, True, 1)
    assert e.value.refused_by_peer is True
    assert str(e.value) == "peer said no"


def test_a_funding_error_without_a_json_error_is_the_peers():
    node, _, _ = node_with(fundchannel=RpcError("fundchannel", {}, "socket closed"))
    with pytest.raises(FundingError) as e:
        node.fund_channel(PEER, 100_000, True, 1)
    assert e.value.refused_by_peer is True
    assert "socket closed" in str(e.value)


def test_cancel_open_cancels_then_disconnects():
    node, fake, _ = node_with(fundchannel_cancel={}, disconnect={})
    node.cancel_open(PEER)
    assert fake.calls == [("fundchannel_cancel", {"id": PEER}),
                          ("disconnect", {"id": PEER, "force": True})]


def test_cancel_open_logs_errors_and_still_disconnects():
    node, fake, logs = node_with(fundchannel_cancel=rpc_error("fundchannel_cancel", -1),
                                 disconnect=rpc_error("disconnect", -1))
    node.cancel_open(PEER)
    assert [m for m, _ in fake.calls] == ["fundchannel_cancel", "disconnect"]
    assert [level for _, level in logs] == ["debug", "debug"]
    assert logs[0][0].startswith(f"fundchannel_cancel {PEER}: ")


def test_close_channel_by_id():
    node, fake, _ = node_with(close={})
    node.close_channel("cc" * 32)
    assert fake.calls == [("close", {"id": "cc" * 32})]


def test_set_channel_fee():
    node, fake, _ = node_with(setchannel={})
    node.set_channel_fee("cc" * 32, 1000, 50)
    assert fake.calls == [("setchannel", {"id": "cc" * 32, "feebase": 1000, "feeppm": 50})]


# --- the wallet ---------------------------------------------------------------------


def test_new_address_is_p2tr_or_bech32():
    node, fake, _ = node_with(newaddr={"p2tr": "bcrt1p..."})
    assert node.new_address() == "bcrt1p..."
    assert fake.calls == [("newaddr", {"addresstype": "p2tr"})]
    node, _, _ = node_with(newaddr={"bech32": "bcrt1q..."})
    assert node.new_address() == "bcrt1q..."


def test_wallet_outputs_skip_spent_and_give_confirmed_heights():
    outputs = [
        {"txid": "aa", "output": 0, "address": "x", "amount_msat": "5000000msat",
         "status": "confirmed", "blockheight": 100},
        {"txid": "bb", "output": 1, "address": "y", "amount_msat": 3000,
         "status": "unconfirmed"},
        {"txid": "cc", "output": 2, "amount_msat": 1000, "status": "spent"}]
    node, _, _ = node_with(listfunds={"outputs": outputs})
    assert node.wallet_outputs() == [
        {"outpoint": "aa:0", "address": "x", "amount_sat": 5000, "blockheight": 100},
        {"outpoint": "bb:1", "address": "y", "amount_sat": 3, "blockheight": None}]


def test_refund_fee_rounds_up_the_opening_feerate():
    node, fake, _ = node_with(feerates={"perkw": {"opening": 1001}})
    assert node.refund_fee_sat() == 901          # ceil(1001 * 900 / 1000)
    assert fake.calls == [("feerates", {"style": "perkw"})]
    node, _, _ = node_with(feerates={"perkw": {}})
    assert node.refund_fee_sat() == 228          # ceil(253 * 0.9): the floor feerate


def test_prepare_send_and_discard_onchain():
    node, fake, _ = node_with(txprepare={"txid": "t1", "psbt": "p1", "unsigned_tx": "u"},
                              txsend={}, txdiscard={})
    assert node.prepare_onchain("bcrt1q", 5000) == {"txid": "t1", "psbt": "p1"}
    node.send_prepared("t1")
    node.discard_prepared("t1", "p1")
    assert fake.calls == [("txprepare", {"outputs": [{"bcrt1q": 5000}]}),
                          ("txsend", {"txid": "t1"}), ("txdiscard", {"txid": "t1"})]


def test_a_forgotten_prepared_tx_has_its_inputs_unreserved():
    node, fake, _ = node_with(txdiscard=rpc_error("txdiscard", -1),
                              unreserveinputs=rpc_error("unreserveinputs", -1))
    node.discard_prepared("t1", "p1")        # neither error escapes
    assert fake.calls == [("txdiscard", {"txid": "t1"}), ("unreserveinputs", {"psbt": "p1"})]


def test_a_forgotten_prepared_tx_without_psbt_is_left_alone():
    node, fake, _ = node_with(txdiscard=rpc_error("txdiscard", -1))
    node.discard_prepared("t1", None)
    assert fake.calls == [("txdiscard", {"txid": "t1"})]


TXS = {"transactions": [
    {"hash": "t1", "outputs": [{"scriptPubKey": "0014aa", "amount_msat": 4000}]},
    {"hash": "t2", "outputs": [{"scriptPubKey": "0014bb", "amount_msat": "5000000msat"}]}]}


def test_sent_to_finds_the_tx_paying_exactly_that_script_and_amount():
    node, _, _ = node_with(listtransactions=TXS)
    assert node.sent_to(bytes.fromhex("0014bb"), 5000) == "t2"
    assert node.sent_to(bytes.fromhex("0014bb"), 4999) is None
    assert node.sent_to(bytes.fromhex("0014cc"), 5000) is None


def test_wallet_has_tx():
    node, _, _ = node_with(listtransactions=TXS)
    assert node.wallet_has_tx("t1") is True
    assert node.wallet_has_tx("t3") is False


# --- invoices -----------------------------------------------------------------------


def test_create_invoice_any_amount_without_extras():
    node, fake, _ = node_with(invoice={"bolt11": "lnbc1"})
    assert node.create_invoice(None, "l", "d", 600) == {"bolt11": "lnbc1"}
    assert fake.calls == [("invoice", {"amount_msat": "any", "label": "l", "description": "d",
                                       "expiry": 600})]


def test_create_invoice_with_preimage_and_cltv():
    node, fake, _ = node_with(invoice={"bolt11": "lnbc1"})
    node.create_invoice(1000, "l", "d", 600, preimage="ab" * 32, cltv=144)
    assert fake.calls[0][1] == {"amount_msat": 1000, "label": "l", "description": "d",
                                "expiry": 600, "preimage": "ab" * 32, "cltv": 144}


def test_replace_invoice_deletes_the_unpaid_one_then_stores_the_signed_one():
    node, fake, _ = node_with(delinvoice={}, createinvoice={"bolt11": "lnbc2"})
    assert node.replace_invoice("l", "lnbc-unsigned", "ab" * 32) == "lnbc2"
    assert fake.calls == [("delinvoice", {"label": "l", "status": "unpaid"}),
                          ("createinvoice", {"invstring": "lnbc-unsigned", "label": "l",
                                             "preimage": "ab" * 32})]


def test_invoice_status_is_the_first_found_or_none():
    node, fake, _ = node_with(listinvoices={"invoices": [{"status": "paid"}]})
    assert node.invoice_status("l") == {"status": "paid"}
    assert fake.calls == [("listinvoices", {"label": "l"})]
    node, _, _ = node_with(listinvoices={"invoices": []})
    assert node.invoice_status("l") is None


# --- the on-chain fee of a funding transaction ----------------------------------------
WALLET_TXS = {"transactions": [
    {"hash": "dep", "inputs": [{"txid": "elsewhere", "index": 0}],
     "outputs": [{"index": 0, "amount_msat": 9_000_000_000},
                 {"index": 1, "amount_msat": 5_000_000_000}]},
    {"hash": "fund", "inputs": [{"txid": "dep", "index": 1}],
     "outputs": [{"index": 0, "amount_msat": 110_000_000},
                 {"index": 1, "amount_msat": 4_889_859_000}]},
    {"hash": "foreign", "inputs": [{"txid": "dep", "index": 0}, {"txid": "nope", "index": 3}],
     "outputs": [{"index": 0, "amount_msat": 1_000}]}]}


def test_funding_fee_is_what_our_inputs_carried_less_the_outputs():
    node, fake, _ = node_with(listtransactions=WALLET_TXS)
    assert node.funding_fee_sat("fund") == 141
    assert fake.calls == [("listtransactions", None)]


@pytest.mark.parametrize("txid", ["foreign", "missing"])
def test_funding_fee_is_unknown_when_an_input_or_the_tx_is_not_ours(txid):
    node, _, logs = node_with(listtransactions=WALLET_TXS)
    assert node.funding_fee_sat(txid) is None
    assert logs and logs[0][1] == "debug"


def test_funding_fee_never_fails():
    node, _, _ = node_with(listtransactions=rpc_error("listtransactions", -1))
    assert node.funding_fee_sat("fund") is None

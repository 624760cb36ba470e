"""lightningd's RPC as the services see it: one LightningRpc per thread, and the
calls they make (send a custom message, open, pay, look at channels) with
lightningd's JSON shapes turned into plain values."""

from __future__ import annotations

import threading
from typing import Callable, List, Optional

from pyln.client import LightningRpc, RpcError

from bolt12ext.tlv import bigsize
from lsps.node.events import msat

# fundchannel failures that are the LSP's own (funds, sync); anything else
# means the peer refused or went away. Codes from lightningd's jsonrpc_errors.h.
FUND_MAX_EXCEEDED, FUND_CANNOT_AFFORD, FUND_OUTPUT_IS_DUST = 300, 301, 302
FUNDING_BROADCAST_FAIL, FUNDING_STILL_SYNCING_BITCOIN = 303, 304
FUNDING_PEER_NOT_CONNECTED, FUNDING_UNKNOWN_PEER = 305, 306
FUND_CANNOT_AFFORD_WITH_EMERGENCY = 313
_LSP_SIDE_FUNDING_ERRORS = {FUND_MAX_EXCEEDED, FUND_CANNOT_AFFORD, FUND_OUTPUT_IS_DUST,
                            FUNDING_BROADCAST_FAIL, FUNDING_STILL_SYNCING_BITCOIN,
                            FUNDING_PEER_NOT_CONNECTED, FUNDING_UNKNOWN_PEER,
                            FUND_CANNOT_AFFORD_WITH_EMERGENCY}


class FundingError(Exception):
    def __init__(self, message: str, refused_by_peer: bool):
        super().__init__(message)
        self.refused_by_peer = refused_by_peer


class ClnNode:
    """lightningd, as the core sees it."""

    def __init__(self, rpc_path: str, log: Callable[[str, str], None]):
        self._rpc_path = rpc_path
        self._local = threading.local()
        self.log = log

    def rpc(self) -> LightningRpc:
        """One LightningRpc per thread: pyln's is not meant to be shared."""
        rpc = getattr(self._local, "rpc", None)
        if rpc is None:
            rpc = self._local.rpc = LightningRpc(self._rpc_path)
        return rpc

    def send_custommsg(self, peer_id: str, message: bytes) -> None:
        """`message`: a whole custom message, its 2-byte type first."""
        self.rpc().call("sendcustommsg", {"node_id": peer_id, "msg": message.hex()})

    def connected_peers(self) -> list:
        peers = self.rpc().call("listpeers")["peers"]
        return [p["id"] for p in peers if p.get("connected")]

    def inject_onion_message(self, path_key: bytes, packet: bytes) -> None:
        """Hand connectd an onion message whose first hop is this node."""
        self.rpc().call("injectonionmessage", {"path_key": path_key.hex(),
                                               "message": packet.hex()})

    def connect(self, peer_id: str, address: Optional[str] = None) -> None:
        """Connect to a node by id, at `address` (host:port) or one gossip knows;
        RpcError when impossible."""
        params = {"id": peer_id if address is None else f"{peer_id}@{address}"}
        self.rpc().call("connect", params)

    def sign_message(self, message: str) -> str:
        """LSPS0 ln_signature of `message` with the node key (signmessage's zbase)."""
        return self.rpc().call("signmessage", {"message": message})["zbase"]

    def peer_address(self, peer_id: str) -> Optional[str]:
        """The address a connected peer is reached at (host:port), if known."""
        for peer in self.rpc().call("listpeers", {"id": peer_id})["peers"]:
            for address in peer.get("netaddr") or []:
                return address
        return None

    def route_to(self, node_id: str, amount_msat: int, final_cltv: int,
                 payment: bool = True, source: Optional[str] = None) -> List[dict]:
        """A single path from us (or `source`) to node_id (askrene `getroutes`), one
        entry per channel: {node_id: the node it reaches, channel, amount_msat and cltv
        (relative) of the HTLC on it}. For onion messages (payment=False) capacity does
        not matter, so our channels' spendable amounts are not taken into account."""
        layers = ["auto.localchans", "auto.sourcefree"] if payment else ["auto.sourcefree"]
        routes = self.rpc().call("getroutes", {
            "source": source or self.node_id(), "destination": node_id,
            "amount_msat": amount_msat,
            "layers": layers, "maxfee_msat": amount_msat // 20 + 5000,
            "final_cltv": final_cltv, "maxparts": 1})["routes"]
        return [{"node_id": hop["node_id_out"],
                 "channel": hop["short_channel_id_dir"].split("/")[0],
                 "amount_msat": msat(hop["amount_out_msat"]), "cltv": hop["cltv_out"]}
                for hop in routes[0]["path"]]

    def send_onion(self, hops: List[tuple], payment_hash: bytes, first_hop: dict,
                   amount_msat: int, destination: str, description: str) -> None:
        """Build the payment onion for hops [(key, payload)] and send it via first_hop."""
        made = self.rpc().call("createonion", {
            "hops": [{"pubkey": k.hex(), "payload": (bigsize(len(p)) + p).hex()}
                     for k, p in hops],
            "assocdata": payment_hash.hex()})
        self.rpc().call("sendonion", {
            "onion": made["onion"], "first_hop": first_hop, "payment_hash": payment_hash.hex(),
            "shared_secrets": made["shared_secrets"], "amount_msat": amount_msat,
            "destination": destination, "description": description})

    def sendpay_status(self, payment_hash: str) -> Optional[dict]:
        """The latest attempt of payment_hash: {status, payment_preimage?, ...}."""
        pays = self.rpc().call("listsendpays", {"payment_hash": payment_hash})["payments"]
        return pays[-1] if pays else None

    def wait_sendpay(self, payment_hash: str, timeout: int) -> dict:
        return self.rpc().call("waitsendpay", {"payment_hash": payment_hash,
                                               "timeout": timeout})

    # --- facts about the node -------------------------------------------
    def node_id(self) -> str:
        return self.rpc().call("getinfo")["id"]

    def blockheight(self) -> int:
        return self.rpc().call("getinfo")["blockheight"]

    def network(self) -> str:
        """bitcoin, testnet, testnet4, signet or regtest."""
        return self.rpc().call("getinfo")["network"]

    def config(self, name: str):
        """A lightningd option's value (e.g. cltv-delta, watchtime-blocks)."""
        configs = self.rpc().call("listconfigs", {"config": name})["configs"]
        entry = configs.get(name, {})
        for key in ("value_int", "value_str", "value_bool", "value_msat"):
            if key in entry:
                return entry[key]
        return None

    def makesecret(self, string: str) -> bytes:
        return bytes.fromhex(self.rpc().call("makesecret", {"string": string})["secret"])

    def channels(self, peer_id: Optional[str] = None) -> List[dict]:
        """Our channels as {channel_id, peer_id, state, opener, scids,
        htlc_minimum_msat, receivable_msat, peer_connected}."""
        params = {"id": peer_id} if peer_id else {}
        out = []
        for c in self.rpc().call("listpeerchannels", params)["channels"]:
            alias = c.get("alias") or {}
            scids = [s for s in (c.get("short_channel_id"), alias.get("local"),
                                 alias.get("remote")) if s]
            out.append({
                "channel_id": c.get("channel_id"), "peer_id": c.get("peer_id"),
                "state": c.get("state"), "opener": c.get("opener"), "scids": scids,
                "htlc_minimum_msat": msat(c.get("minimum_htlc_out_msat", 0)),
                "receivable_msat": msat(c.get("receivable_msat", 0)),
                "peer_connected": c.get("peer_connected", False),
                "funding_outpoint": (f"{c['funding_txid']}:{c['funding_outnum']}"
                                     if c.get("funding_txid") else None),
                "short_channel_id": c.get("short_channel_id") or alias.get("local"),
                # what the peer knows this channel by, to forward to us over it
                "inbound_scid": c.get("short_channel_id") or alias.get("remote"),
                "capacity_sat": msat(c.get("total_msat", 0)) // 1000,
                "htlc_expiries": [h["expiry"] for h in c.get("htlcs") or [] if "expiry" in h],
                "remote_policy": {k: msat(v) for k, v in
                                  ((c.get("updates") or {}).get("remote") or {}).items()},
            })
        return out

    # --- actions -----------------------------------------------------------
    def fund_channel(self, peer_id: str, amount_sat: int, announce: bool, mindepth: int,
                     push_msat: int = 0) -> dict:
        """Open a channel; mindepth 0 asks for zero-conf (with scid-alias when
        unannounced). Returns {channel_id, funding_outpoint}; raises FundingError."""
        params = {"id": peer_id, "amount": amount_sat, "announce": announce,
                  "mindepth": mindepth}
        if push_msat:
            params["push_msat"] = push_msat
        if mindepth == 0:
            params["channel_type"] = [12, 50] if announce else [12, 46, 50]
        try:
            result = self.rpc().call("fundchannel", params)
        except RpcError as e:
            error = e.error if isinstance(e.error, dict) else {}
            code = error.get("code")
            message = str(error.get("message", e))
            raise FundingError(message,
                               refused_by_peer=code not in _LSP_SIDE_FUNDING_ERRORS) from None
        return {"channel_id": result["channel_id"],
                "funding_outpoint": f"{result['txid']}:{result['outnum']}"}

    def funding_fee_sat(self, txid: str) -> Optional[int]:
        """The on-chain fee of our wallet's transaction `txid` (its inputs, outputs of
        earlier wallet transactions, less its outputs), or None when lightningd does
        not know every input's value. For reports only: never fails."""
        try:
            txs = {t["hash"]: t for t in self.rpc().call("listtransactions")["transactions"]}
            tx = txs[txid]
            spent = 0
            for i in tx["inputs"]:
                prev = txs[i["txid"]]
                spent += msat(next(o["amount_msat"] for o in prev["outputs"]
                                   if o["index"] == i["index"]))
            return (spent - sum(msat(o["amount_msat"]) for o in tx["outputs"])) // 1000
        except Exception as e:   # a figure for the operator: never in the way of an open
            self.log(f"on-chain fee of {txid} unknown: {e!r}", "debug")
            return None

    def cancel_open(self, peer_id: str) -> None:
        """End an open to this peer that is stuck (fundchannel has no timeout): cancel
        it, and disconnect the peer so lightningd gives back the reserved inputs."""
        for method, params in (("fundchannel_cancel", {"id": peer_id}),
                               ("disconnect", {"id": peer_id, "force": True})):
            try:
                self.rpc().call(method, params)
            except RpcError as e:
                self.log(f"{method} {peer_id}: {e}", "debug")

    def close_channel(self, channel_id: str) -> None:
        """Mutual close, unilateral after lightningd's default timeout."""
        self.rpc().call("close", {"id": channel_id})

    def new_address(self) -> str:
        result = self.rpc().call("newaddr", {"addresstype": "p2tr"})
        return result.get("p2tr") or result.get("bech32")

    def wallet_outputs(self) -> List[dict]:
        """Unspent wallet outputs: {outpoint, address, amount_sat, blockheight or None}."""
        out = []
        for o in self.rpc().call("listfunds")["outputs"]:
            if o.get("status") == "spent":
                continue
            out.append({"outpoint": f"{o['txid']}:{o['output']}", "address": o.get("address"),
                        "amount_sat": msat(o["amount_msat"]) // 1000,
                        "blockheight": o.get("blockheight") if o.get("status") == "confirmed"
                        else None})
        return out

    def refund_fee_sat(self) -> int:
        """What a one-output refund costs at the "normal" feerate (a generous
        estimate of its weight: two inputs, two outputs)."""
        perkw = self.rpc().call("feerates", {"style": "perkw"})["perkw"].get("opening", 253)
        return -(-perkw * 900 // 1000)

    def prepare_onchain(self, destination: str, amount_sat: int) -> dict:
        """A wallet transaction paying amount_sat to destination, built and its inputs
        reserved but not broadcast (txprepare): {txid, psbt}."""
        made = self.rpc().call("txprepare", {"outputs": [{destination: amount_sat}]})
        return {"txid": made["txid"], "psbt": made["psbt"]}

    def send_prepared(self, txid: str) -> None:
        """Broadcast a transaction of prepare_onchain (txsend)."""
        self.rpc().call("txsend", {"txid": txid})

    def discard_prepared(self, txid: str, psbt: Optional[str]) -> None:
        """Give back the inputs of a prepared transaction that was never sent (after a
        restart lightningd has forgotten it: unreserve its inputs instead)."""
        try:
            self.rpc().call("txdiscard", {"txid": txid})
        except RpcError:
            if psbt:
                try:
                    self.rpc().call("unreserveinputs", {"psbt": psbt})
                except RpcError:
                    pass

    def sent_to(self, script: bytes, amount_sat: int) -> Optional[str]:
        """The txid of a wallet transaction paying exactly amount_sat to this
        scriptPubKey (a refund recorded before refunds carried their txid)."""
        for tx in self.rpc().call("listtransactions")["transactions"]:
            for out in tx.get("outputs", []):
                if out.get("scriptPubKey") == script.hex() and \
                        msat(out.get("amount_msat", 0)) == amount_sat * 1000:
                    return tx["hash"]
        return None

    def wallet_has_tx(self, txid: str) -> bool:
        """Did the wallet broadcast (or see) this transaction?"""
        return any(tx["hash"] == txid
                   for tx in self.rpc().call("listtransactions")["transactions"])

    def set_channel_fee(self, channel_id: str, base_msat: int, ppm: int) -> None:
        self.rpc().call("setchannel", {"id": channel_id, "feebase": base_msat,
                                       "feeppm": ppm})

    def default_channel_fee(self) -> tuple:
        return (int(self.config("fee-base") or 0), int(self.config("fee-per-satoshi") or 0))

    def create_invoice(self, amount_msat: Optional[int], label: str, description: str,
                       expiry_s: int, preimage: Optional[str] = None,
                       cltv: Optional[int] = None) -> dict:
        params = {"amount_msat": amount_msat if amount_msat is not None else "any",
                  "label": label, "description": description, "expiry": expiry_s}
        if preimage is not None:
            params["preimage"] = preimage
        if cltv is not None:
            params["cltv"] = cltv
        return self.rpc().call("invoice", params)

    def replace_invoice(self, label: str, unsigned: str, preimage: str) -> str:
        """Store `unsigned` (signed by lightningd) as invoice `label` in place of the
        unpaid one made with the same preimage; its bolt11."""
        self.rpc().call("delinvoice", {"label": label, "status": "unpaid"})
        return self.rpc().call("createinvoice", {"invstring": unsigned, "label": label,
                                                 "preimage": preimage})["bolt11"]

    def fetch_invoice(self, offer: str) -> str:
        """An invoice for a BOLT12 offer of fixed amount (CLN's fetchinvoice)."""
        return self.rpc().call("fetchinvoice", {"offer": offer})["invoice"]

    def pay(self, invoice: str) -> dict:
        """Pay a bolt11 or bolt12 invoice (xpay): amount_msat, payment_preimage."""
        paid = self.rpc().call("xpay", {"invstring": invoice})
        return {"amount_msat": msat(paid["amount_msat"]),
                "payment_preimage": paid["payment_preimage"]}

    def invoice_status(self, label: str) -> Optional[dict]:
        found = self.rpc().call("listinvoices", {"label": label})["invoices"]
        return found[0] if found else None

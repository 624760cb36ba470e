"""LSPS2 client at run time (the wallet): buying a JIT channel and accepting
the LSP's HTLCs through it. Purchases are persisted in the datastore."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import lsps.bolt11 as bolt11
import lsps.lsps2.client as C
from lsps.lsps0.client import ClientError
from lsps.lsps2.bolt12 import opening_fee
from lsps.lsps2.msgs import (
    OpeningFeeParams,
    ProtocolError,
    parse_scid,
)
from lsps.node.events import Htlc
from lsps.node.replies import htlc_continue
from lsps.node.rpc import ClnNode
from lsps.node.store import Area, Store
from lsps.runtime.threads import now_ms

PURCHASES = Area("lsps2-purchases")    # JIT channels we bought
# JIT purchases one offer may hold unused at a time: anyone may ask the offer for
# invoices, and each invoice that needs a JIT channel takes one.
MAX_OFFER_PURCHASES = 5


class Lsps2Client:
    def __init__(self, node: ClnNode, store: Store, request: Callable[[str, str, dict], Any],
                 log: Callable[[str, str], None]):
        """`request(lsp, method, params)` blocks for the LSP's answer (or raises)."""
        self.node = node
        self.store = store
        self._request = request
        self.log = log
        self.lock = threading.Lock()
        self.purchases: Dict[str, dict] = {}   # payment_hash -> purchase
        self.seen_fees: Dict[str, dict] = {}   # payment_hash -> {htlc key: (fee, at)}

    def start(self) -> None:
        with self.lock:
            self.purchases.update(self.store.list(PURCHASES))

    # --- commands (run on a worker thread: they wait for the LSP) ---------------
    def _menu(self, lsp_id: str, token: Optional[str]) -> List[OpeningFeeParams]:
        params = {"token": token} if token is not None else {}
        return C.parse_menu(lsp_id, self._request(lsp_id, "lsps2.get_info", params))

    def _to_self_delay(self) -> int:
        return int(self.node.config("watchtime-blocks") or 144)

    def get_info(self, lsp_id: str, token: Optional[str]) -> dict:
        menu = self._menu(lsp_id, token)
        # Integer msat for the operator; everything else (promise, valid_until)
        # exactly as the LSP sent it, so it can be handed back to lsps2-buy.
        return {"opening_fee_params_menu": [
            {**p.wire(), "min_fee_msat": p.min_fee_msat,
             "min_payment_size_msat": p.min_payment_size_msat,
             "max_payment_size_msat": p.max_payment_size_msat} for p in menu]}

    def buy(self, lsp_id: str, amount_msat: Optional[int], description: str,
            label: Optional[str], token: Optional[str], opening_fee_params: Optional[dict],
            max_fee_msat: Optional[int], expiry: Optional[int]) -> dict:
        start = now_ms()
        to_self_delay = self._to_self_delay()
        if opening_fee_params is not None:
            try:
                menu = [OpeningFeeParams.from_json(opening_fee_params)]
            except ProtocolError as e:
                raise ClientError(C.BAD_ARGUMENT, f"opening_fee_params: {e}") from None
        else:
            menu = self._menu(lsp_id, token)
        choice = C.choose(menu, amount_msat, start, to_self_delay, max_fee_msat)

        buy_params: dict = {"opening_fee_params": choice.params.wire()}
        if amount_msat is not None:
            buy_params["payment_size_msat"] = str(amount_msat)
        bought = C.parse_buy_result(lsp_id, self._request(lsp_id, "lsps2.buy", buy_params))

        pre_channels = [c["channel_id"] for c in self.node.channels(lsp_id)]
        expiry_s = C.invoice_expiry(choice.params, now_ms(), expiry)
        label = label or f"clnlsp-lsps2-{secrets.token_hex(8)}"
        preimage = secrets.token_hex(32)
        invoice = self.node.create_invoice(amount_msat, label, description, expiry_s,
                                           preimage=preimage)
        unsigned = bolt11.rewrite_for_jit(
            invoice["bolt11"], lsp_id, parse_scid(bought["jit_channel_scid"]),
            bought["lsp_cltv_expiry_delta"], allow_mpp=amount_msat is not None)
        # lightningd keeps the invoice we hand out (not the one before the rewrite):
        # listinvoices invstring=<bolt11> finds it.
        signed = self.node.replace_invoice(label, unsigned, preimage)

        purchase = {
            "lsp_id": lsp_id, "payment_hash": invoice["payment_hash"], "label": label,
            "bolt11": signed, "jit_channel_scid": bought["jit_channel_scid"],
            "lsp_cltv_expiry_delta": bought["lsp_cltv_expiry_delta"],
            "client_trusts_lsp": bought["client_trusts_lsp"],
            "opening_fee_params": choice.params.wire(),
            "payment_size_msat": amount_msat, "opening_fee_msat": choice.fee_msat,
            "max_fee_msat": max_fee_msat, "pre_channels": pre_channels, "jit_channel_id": None,
            "valid_until": choice.params.valid_until_ms // 1000,
            "expires_at": invoice["expires_at"], "state": C.WAITING,
            "created_at": start // 1000,
        }
        self.store.put(PURCHASES, purchase["payment_hash"], purchase)
        with self.lock:
            self.purchases[purchase["payment_hash"]] = purchase
        out = {k: purchase[k] for k in ("bolt11", "payment_hash", "label", "jit_channel_scid",
                                         "lsp_cltv_expiry_delta", "valid_until",
                                         "opening_fee_params")}
        out["expires_at"] = purchase["expires_at"]
        if choice.fee_msat is not None:
            out["opening_fee_msat"] = choice.fee_msat
        return out

    def offer_purchase(self, lsp_id: str, offer_id: str, amount_msat: Optional[int],
                       token: Optional[str], max_fee_msat: Optional[int],
                       invoice_life_s: Optional[int] = None) -> dict:
        """A JIT purchase for one invoice of an offer (LSPS2 over BOLT12): one the offer
        bought earlier that no outstanding invoice uses, else a fresh `lsps2.buy` in
        no-MPP mode (the fee follows the amount of the single part; None: a static
        invoice's, not known yet). The purchase is taken until the invoice expires
        (`invoice_life_s` asked, default 1 h, always before valid_until); returns it with
        `fee_msat` and `invoice_expiry_s`. Raises ClientError (menu, fee, LSP errors)."""
        start = now_ms()
        now = start // 1000
        latest_start = now + C.MIN_INVOICE_EXPIRY_S + C.EXPIRY_MARGIN_S
        with self.lock:
            mine = [p for p in self.purchases.values() if p.get("offer_id") == offer_id
                    and p["state"] == C.WAITING and p["valid_until"] > now]
            for p in sorted(mine, key=lambda p: -p["valid_until"]):
                fee = None if amount_msat is None else \
                    opening_fee(p["opening_fee_params"], amount_msat)
                if p.get("in_use_until", 0) <= now and p["valid_until"] >= latest_start \
                        and (amount_msat is None or fee is not None) \
                        and (max_fee_msat is None or fee is None or fee <= max_fee_msat):
                    return self._take_for_invoice(p, fee, start, invoice_life_s)
            if len(mine) >= MAX_OFFER_PURCHASES:
                raise ClientError(C.NO_SUITABLE_PARAMS, f"offer {offer_id} has "
                                  f"{len(mine)} JIT purchases waiting for their payments")
        choice = C.choose(self._menu(lsp_id, token), amount_msat, start,
                          self._to_self_delay(), max_fee_msat)
        bought = C.parse_buy_result(lsp_id, self._request(
            lsp_id, "lsps2.buy", {"opening_fee_params": choice.params.wire()}))
        purchase = {
            "kind": "bolt12", "offer_id": offer_id, "lsp_id": lsp_id,
            "payment_hash": None, "label": None, "bolt11": None,
            "jit_channel_scid": bought["jit_channel_scid"],
            "lsp_cltv_expiry_delta": bought["lsp_cltv_expiry_delta"],
            "client_trusts_lsp": bought["client_trusts_lsp"],
            "opening_fee_params": choice.params.wire(), "payment_size_msat": None,
            "opening_fee_msat": None, "max_fee_msat": max_fee_msat,
            "pre_channels": [c["channel_id"] for c in self.node.channels(lsp_id)],
            "jit_channel_id": None, "valid_until": choice.params.valid_until_ms // 1000,
            "expires_at": choice.params.valid_until_ms // 1000, "state": C.WAITING,
            "created_at": now, "in_use_until": 0, "invoices": 0,
        }
        with self.lock:
            self.purchases[_key(purchase)] = purchase
            return self._take_for_invoice(purchase, choice.fee_msat, start, invoice_life_s)

    def _take_for_invoice(self, purchase: dict, fee_msat: Optional[int], now: int,
                          invoice_life_s: Optional[int]) -> dict:
        """Caller holds the lock."""
        params = OpeningFeeParams.from_json(purchase["opening_fee_params"])
        life = C.invoice_expiry(params, now, invoice_life_s)
        purchase["in_use_until"] = now // 1000 + life
        purchase["invoices"] = purchase.get("invoices", 0) + 1
        self.store.put(PURCHASES, _key(purchase), purchase)
        return dict(purchase, fee_msat=fee_msat, invoice_expiry_s=life)

    def offer_paid(self, scid: str, incoming_scid: str, amount_msat: int,
                   fee_msat: int) -> None:
        """A payment through an offer's JIT path was claimed: the purchase is used."""
        with self.lock:
            purchase = self.purchases.get(_offer_key(scid))
            if purchase is None or purchase["state"] == C.PAID:
                return
            self._jit_channel(purchase, incoming_scid)
            purchase.update(state=C.PAID, paid_at=int(time.time()),
                            received_msat=amount_msat, opening_fee_msat=fee_msat)
            self.store.put(PURCHASES, _key(purchase), purchase)

    def offer_purchases(self, offer_id: str) -> List[dict]:
        return [p for p in self.list_buys() if p.get("offer_id") == offer_id]

    # --- node events ------------------------------------------------------------------
    def accepts_zeroconf_from(self, peer_id: str) -> bool:
        now = time.time()
        with self.lock:
            return any(p["lsp_id"] == peer_id and p["state"] == C.WAITING
                       and p["valid_until"] > now for p in self.purchases.values())

    def on_htlc(self, htlc: Htlc) -> Optional[dict]:
        """A hook answer for an HTLC of one of our JIT invoices, else None (then
        lightningd's own checks apply: a short HTLC from anyone else fails)."""
        with self.lock:
            purchase = self.purchases.get(htlc.payment_hash)
            if purchase is None or htlc.next_scid:
                return None
            if htlc.peer_id != purchase["lsp_id"]:
                self.log(f"lsps2: HTLC for {htlc.payment_hash} from {htlc.peer_id}, not from "
                         f"the LSP {purchase['lsp_id']}: not taken as a JIT part", "info")
                return None
            fees = self.seen_fees.setdefault(htlc.payment_hash, {})
            verdict = C.check_jit_htlc(
                purchase, htlc.key, htlc.amount_msat, htlc.payload, htlc.extra_tlvs or None,
                fees, now_ms(),
                over_jit_channel=lambda: self._jit_channel(purchase, htlc.incoming_scid))
        if not verdict.accept:
            self.log(f"lsps2: HTLC for {htlc.payment_hash} not taken as a JIT part: "
                     f"{verdict.reason}", "info")
            return None
        return htlc_continue(payload=verdict.payload, invoice_msat=verdict.invoice_msat)

    def _jit_channel(self, purchase: dict, incoming_scid: str) -> bool:
        """Is this the channel the LSP opened for the purchase? The first channel the
        LSP opened to us after the buy; bound (and persisted) on first use."""
        channel = next((c for c in self.node.channels(purchase["lsp_id"])
                        if incoming_scid in c["scids"]), None)
        if channel is None or channel["opener"] != "remote":
            return False
        if purchase.get("jit_channel_id") is not None:
            return channel["channel_id"] == purchase["jit_channel_id"]
        if "pre_channels" not in purchase:  # bought before channels were recorded
            return True
        if channel["channel_id"] in purchase["pre_channels"]:
            return False
        purchase["jit_channel_id"] = channel["channel_id"]
        self.store.put(PURCHASES, _key(purchase), purchase)
        return True

    def on_invoice_paid(self, label: str) -> None:
        with self.lock:
            purchase = next((p for p in self.purchases.values() if p["label"] == label), None)
            if purchase is None or purchase["state"] == C.PAID:
                return
            purchase["state"] = C.PAID
            purchase["paid_at"] = int(time.time())
            self.seen_fees.pop(purchase["payment_hash"], None)
        self.store.put(PURCHASES, purchase["payment_hash"], purchase)

    def list_buys(self) -> List[dict]:
        now = time.time()
        with self.lock:
            purchases = [dict(p) for p in self.purchases.values()]
        for p in purchases:
            p.setdefault("kind", "bolt11")
            if p["state"] == C.WAITING and now >= min(p["valid_until"], p["expires_at"]):
                p["state"] = C.EXPIRED
        return sorted(purchases, key=lambda p: p["created_at"])


def _key(purchase: dict) -> str:
    """A purchase's datastore key: its invoice's payment hash, or for an offer's
    purchase (no invoice of its own) its jit scid."""
    return purchase["payment_hash"] or _offer_key(purchase["jit_channel_scid"])


def _offer_key(scid: str) -> str:
    return f"bolt12-{scid}"

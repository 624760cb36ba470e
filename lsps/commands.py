"""What each RPC command does once its arguments are checked, with the running
services by name (lsps/app.py fills them; plugin.py only declares the commands)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import lsps.lsps0.protocols as lsps0
from bolt12ext import messages
from bolt12ext.tlv import DecodeError
from lsps.asyncpay.payer import PayError
from lsps.asyncpay.recipient import RecipientError
from lsps.lsps0.client import ClientError
from lsps.lsps1.client import PAY_METHODS
from lsps.node.commands import (
    INVALID_PARAMS,
    CommandError,
    fail_request,
    optional_amount,
    optional_int,
    require_node_id,
    run_in_worker,
)
from lsps.overview import Overview
from lsps.summary import DEFAULT_EXPIRING_WITHIN_BLOCKS

# RPC error codes of our commands when a role is off or an async payment fails.
SERVICE_OFF, ASYNCPAY_SERVER_OFF, ASYNCPAY_FAILED, ASYNCPAY_HOLD_OFF = 1200, 1600, 1601, 1602


def optional_node_id(value: Any, name: str) -> Optional[str]:
    return None if value is None else require_node_id(value, name)


def optional_str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def optional_pay_method(value: Any) -> Optional[str]:
    """`pay` of lsps1-createorder / lsps7-createorder: how to pay the order, if at all."""
    if value is None:
        return None
    if value not in PAY_METHODS:
        raise CommandError(f"pay: expected one of {', '.join(PAY_METHODS)}, got {value!r}",
                           INVALID_PARAMS)
    return value


class Commands:
    """What each RPC command does once its arguments are checked: the running
    services by name (lsps/app.py fills `services`)."""

    def __init__(self, services: Dict[str, Any]):
        self.services = services
        self.overview = Overview(services)

    def running(self, name: str, why_not: str, code: int):
        """The running service `name`, or the RPC error saying why it is not running."""
        service = self.services.get(name)
        if service is None:
            raise CommandError(why_not, code)
        return service

    def ask_lsp(self, request, lsp_id, work: Callable[[str], Any]) -> None:
        """Client commands wait for an LSP: check lsp_id, then run work(lsp_id) on the
        client worker pool and answer the command from there."""
        lsp_id = require_node_id(lsp_id, "lsp_id")
        run_in_worker(self.services["client_workers"], request, lambda: work(lsp_id))

    # --- the operator's overview ----------------------------------------------------
    def summary(self, request, expiring_within_blocks) -> None:
        """lsp-summary: read on a worker (the listings make RPC calls)."""
        within = optional_int(expiring_within_blocks, "expiring_within_blocks")
        within = DEFAULT_EXPIRING_WITHIN_BLOCKS if within is None else within
        run_in_worker(self.services["client_workers"], request,
                      lambda: self.overview.summary(within))

    # --- LSPS0 ---------------------------------------------------------------------
    def list_protocols(self, request, lsp_id) -> None:
        lsp_id = require_node_id(lsp_id, "lsp_id")

        def done(outcome):
            if isinstance(outcome, ClientError):
                fail_request(request, outcome.code, outcome.message, outcome.data)
                return
            try:
                request.set_result(lsps0.parse_list_protocols(lsp_id, outcome))
            except ClientError as e:
                fail_request(request, e.code, e.message, e.data)
        self.services["lsps0"].call(lsp_id, lsps0.LIST_PROTOCOLS, {}, done)

    # --- LSPS1 / LSPS7 -------------------------------------------------------------
    def lsps1_order(self, request, lsp_id, lsp_balance_sat, client_balance_sat,
                    channel_expiry_blocks, required_channel_confirmations,
                    funding_confirms_within_blocks, announce_channel, token,
                    refund_onchain_address, pay=None) -> None:
        pay = optional_pay_method(pay)
        if not isinstance(announce_channel, bool):
            announce_channel = str(announce_channel).lower() in ("true", "1", "yes")
        wanted = {
            "lsp_balance_sat": optional_int(lsp_balance_sat, "lsp_balance_sat", minimum=1),
            "client_balance_sat": optional_int(client_balance_sat, "client_balance_sat"),
            "channel_expiry_blocks": optional_int(channel_expiry_blocks,
                                                  "channel_expiry_blocks", minimum=1),
            "required_channel_confirmations": optional_int(required_channel_confirmations,
                                                           "required_channel_confirmations"),
            "funding_confirms_within_blocks": optional_int(funding_confirms_within_blocks,
                                                           "funding_confirms_within_blocks"),
            "announce_channel": announce_channel,
            "token": optional_str(token),
            "refund_onchain_address": optional_str(refund_onchain_address),
        }
        self.ask_lsp(request, lsp_id,
                     lambda lsp: self.services["lsps1_client"].order(lsp, wanted, pay))

    def lsps7_order(self, request, lsp_id, short_channel_id, channel_extension_expiry_blocks,
                    token, refund_onchain_address, pay=None) -> None:
        pay = optional_pay_method(pay)
        params = {"short_channel_id": str(short_channel_id),
                  "channel_extension_expiry_blocks": optional_int(
                      channel_extension_expiry_blocks, "channel_extension_expiry_blocks", 1)}
        if token is not None:
            params["token"] = str(token)
        if refund_onchain_address is not None:
            params["refund_onchain_address"] = str(refund_onchain_address)
        self.ask_lsp(request, lsp_id,
                     lambda lsp: self.services["lsps7_client"].create_extension(lsp, params,
                                                                                pay))

    def client_orders(self, lsp_id) -> dict:
        return {"orders": self.services["lsps1_client"].list_orders(
            optional_node_id(lsp_id, "lsp_id"))}

    def service_orders(self, order_id, peer_id, kind: str) -> dict:
        what = "sells no channels" if kind == "lsps1" else "extends no leases"
        service = self.running("lsps1_service", f"lsp-service is off: this node {what}",
                               SERVICE_OFF)
        return {"orders": service.list_orders(order_id, optional_node_id(peer_id, "peer_id"),
                                              kind=kind)}

    # --- LSPS2 ---------------------------------------------------------------------
    def lsps2_buy(self, request, lsp_id, amount_msat, description, label, token,
                  opening_fee_params, max_fee_msat, expiry) -> None:
        amount = optional_amount(amount_msat, "amount_msat")
        max_fee = optional_amount(max_fee_msat, "max_fee_msat")
        expiry_s = optional_int(expiry, "expiry", minimum=60)
        self.ask_lsp(request, lsp_id, lambda lsp: self.services["lsps2_client"].buy(
            lsp, amount, str(description), label, token, opening_fee_params, max_fee, expiry_s))

    def lsps2_buyoffer(self, request, lsp_id, amount_msat, description, token,
                       max_fee_msat) -> None:
        amount = optional_amount(amount_msat, "amount_msat")
        if amount is not None and amount < 1:
            raise CommandError("amount_msat must be positive", INVALID_PARAMS)
        max_fee = optional_amount(max_fee_msat, "max_fee_msat")
        if token is not None and not isinstance(token, str):
            raise CommandError("token must be a string", INVALID_PARAMS)
        self.ask_lsp(request, lsp_id, lambda lsp: self.services[
            "async_recipient"].create_jit_offer(lsp, str(description), amount, token, max_fee))

    def lsps2_sessions(self, peer_id, jit_channel_scid) -> dict:
        service = self.running("lsps2_service",
                               "lsp-service is off: this node sells no JIT channels",
                               SERVICE_OFF)
        return {"sessions": service.list_sessions(optional_node_id(peer_id, "peer_id"),
                                                  jit_channel_scid)}

    # --- LSPS5 ---------------------------------------------------------------------
    def lsps5_set(self, request, lsp_id, app_name, webhook) -> None:
        for name, value in (("app_name", app_name), ("webhook", webhook)):
            if not isinstance(value, str):
                raise CommandError(f"{name} must be a string", INVALID_PARAMS)
        self.ask_lsp(request, lsp_id, lambda lsp: self.services["lsps5_client"].set_webhook(
            lsp, app_name, webhook))

    def lsps5_remove(self, request, lsp_id, app_name) -> None:
        if not isinstance(app_name, str):
            raise CommandError("app_name must be a string", INVALID_PARAMS)
        self.ask_lsp(request, lsp_id, lambda lsp: self.services[
            "lsps5_client"].remove_webhook(lsp, app_name))

    def lsps5_webhooks(self, peer_id) -> dict:
        service = self.running("lsps5_service",
                               "lsp-service is off: this node wakes no clients", SERVICE_OFF)
        return service.view(optional_node_id(peer_id, "peer_id"))

    # --- async payments ------------------------------------------------------------
    def asyncpay_server(self):
        return self.running("asyncpay_server", "the static invoice server is off (start "
                            "lightningd with --lsp-asyncpay-server)", ASYNCPAY_SERVER_OFF)

    def server_paths(self, recipient_id) -> dict:
        if recipient_id is not None and (not isinstance(recipient_id, str) or not recipient_id
                                         or len(recipient_id) > 66):
            raise CommandError("recipient_id must be a non-empty string of at most 66 "
                               "characters", INVALID_PARAMS)
        return self.asyncpay_server().server_paths(recipient_id)

    def forget_invoices(self, recipient_id, slot) -> dict:
        slot = optional_int(slot, "slot")   # arguments are checked before the role
        return self.asyncpay_server().forget(recipient_id, slot)

    def asyncpay(self, request, work: Callable[[], Any]) -> None:
        """Run an async-payment command on a worker; its errors become RPC error 1601."""

        def run():
            try:
                return work()
            except (RecipientError, PayError) as e:
                raise CommandError(str(e), ASYNCPAY_FAILED) from None
        run_in_worker(self.services["client_workers"], request, run)

    def asyncpay_offer(self, request, server_id, description, amount_msat) -> None:
        server_id = require_node_id(server_id, "server_id")
        amount = optional_amount(amount_msat, "amount_msat")
        if amount is not None and amount < 1:
            raise CommandError("amount_msat must be positive", INVALID_PARAMS)
        self.asyncpay(request, lambda: self.services["async_recipient"].create_offer(
            server_id, str(description), amount))

    def forget_offer(self, offer_id) -> dict:
        try:
            return self.services["async_recipient"].forget(str(offer_id))
        except RecipientError as e:
            raise CommandError(str(e), INVALID_PARAMS) from None

    def asyncpay_pay(self, request, offer, amount_msat, payer_note, maxfee_msat) -> None:
        amount = optional_amount(amount_msat, "amount_msat")
        maxfee = optional_amount(maxfee_msat, "maxfee_msat")
        if not isinstance(offer, str) or not offer.lower().startswith("lno1"):
            raise CommandError("offer: expected a BOLT12 offer (lno1…)", INVALID_PARAMS)
        self.asyncpay(request, lambda: self.services["async_payer"].pay(
            offer, amount, optional_str(payer_note), maxfee))

    def asyncpay_status(self, payment_hash) -> dict:
        payer = self.services["async_payer"]
        if payment_hash is None:
            return payer.list()
        try:
            return payer.status(str(payment_hash).lower())
        except PayError as e:
            raise CommandError(str(e), INVALID_PARAMS) from None

    def held(self) -> dict:
        return self.running("holder", "HTLC holding is off (start lightningd with "
                            "--lsp-asyncpay-hold)", ASYNCPAY_HOLD_OFF).list()

    @staticmethod
    def bolt12_decode(string) -> dict:
        try:
            return messages.decode(string)
        except DecodeError as e:
            raise CommandError(f"invalid BOLT12 object: {e}", INVALID_PARAMS) from None

"""LSPS1 client core: checking an LSP's answers against what we asked. Pure."""

from __future__ import annotations

from typing import Any

import lsps.bolt11 as B11
import lsps.orders.payment as P
from bolt12ext import encoding, messages
from bolt12ext.offer import decode_offer
from bolt12ext.tlv import DecodeError
from lsps.lsps0.client import BAD_RESPONSE, ClientError
from lsps.lsps2.msgs import ProtocolError, parse_msat, parse_uint

# RPC error codes of the client: fee_total_sat + client_balance_sat != order_total_sat;
# LSPS7 expiration_block + extension != new_channel_expiry_block.
ORDER_TOTAL_MISMATCH = 1301
EXTENSION_MISMATCH = 1701
PAYMENT_FAILED = 1302      # the order was placed; paying it, as asked, failed
PAY_METHODS = ("bolt11", "bolt12")


INFO_FIELDS_UINT = ("min_required_channel_confirmations", "min_funding_confirms_within_blocks",
                    "max_channel_expiry_blocks")
INFO_FIELDS_SAT = ("min_initial_client_balance_sat", "max_initial_client_balance_sat",
                   "min_initial_lsp_balance_sat", "max_initial_lsp_balance_sat",
                   "min_channel_balance_sat", "max_channel_balance_sat")


def parse_info(lsp_id: str, result: Any) -> dict:
    """lsps1.get_info in the flat form, or the older one nested in `options`."""
    if isinstance(result, dict) and isinstance(result.get("options"), dict):
        result = {**result["options"], **{k: v for k, v in result.items() if k != "options"}}
    try:
        if not isinstance(result, dict):
            raise ProtocolError("result is not an object")
        out: dict = {k: parse_uint(result.get(k), k, 0xFFFFFFFF) for k in INFO_FIELDS_UINT}
        out.update({k: parse_msat(result.get(k), k) for k in INFO_FIELDS_SAT})
        zero_reserve = result.get("supports_zero_channel_reserve", False)
        if not isinstance(zero_reserve, bool):
            raise ProtocolError("supports_zero_channel_reserve must be a boolean")
        out["supports_zero_channel_reserve"] = zero_reserve
    except ProtocolError as e:
        raise ClientError(BAD_RESPONSE, f"{lsp_id} sent an invalid lsps1.get_info: {e}",
                          {"result": result}) from None
    return out


def check_order_result(lsp_id: str, result: Any) -> dict:
    """The order object: ids, totals; CANCELLED read as REFUNDED."""
    if not isinstance(result, dict) or not isinstance(result.get("order_id"), str):
        raise ClientError(BAD_RESPONSE, f"{lsp_id} sent an order without order_id",
                          {"result": result})
    client_balance = parse_msat(result.get("client_balance_sat", "0"), "client_balance_sat")
    payment = result.get("payment") if isinstance(result.get("payment"), dict) else {}
    for kind, option in payment.items():
        if not isinstance(option, dict):
            continue
        if option.get("state") == "CANCELLED":
            option["state"] = P.REFUNDED
        try:
            fee = parse_msat(option.get("fee_total_sat"), "fee_total_sat")
            total = parse_msat(option.get("order_total_sat"), "order_total_sat")
        except ProtocolError as e:
            raise ClientError(BAD_RESPONSE, f"{lsp_id}: payment.{kind}: {e}",
                              {"result": result}) from None
        if fee + client_balance != total:
            raise ClientError(ORDER_TOTAL_MISMATCH,
                              f"{lsp_id}: payment.{kind}: fee_total_sat {fee} + "
                              f"client_balance_sat {client_balance} != order_total_sat {total}",
                              {"order": result})
    return result


REQUEST_FIELDS = ("lsp_balance_sat", "client_balance_sat", "required_channel_confirmations",
                  "funding_confirms_within_blocks", "channel_expiry_blocks", "announce_channel")


def _same(field: str, asked, got) -> bool:
    if field.endswith("_sat"):
        try:
            return parse_msat(got, field) == parse_msat(asked, field)
        except ProtocolError:
            return False
    return got == asked and type(got) is type(asked)


def check_invoice_amount(lsp_id: str, order: dict, code: int) -> None:
    """The bolt11 invoice and the bolt12 offer ask exactly order_total_sat (else
    `code`); the offer is at most 2048 characters."""
    payment = order.get("payment") or {}
    for method, field, amount_of in (("bolt11", "invoice", _invoice_msat),
                                     ("bolt12", "offer", _offer_msat)):
        option = payment.get(method)
        if not isinstance(option, dict):
            continue
        try:
            amount = amount_of(str(option.get(field)))
            total = parse_msat(option.get("order_total_sat"), "order_total_sat")
        except (B11.Bolt11Error, DecodeError, ProtocolError) as e:
            raise ClientError(BAD_RESPONSE, f"{lsp_id}: payment.{method}: {e}",
                              {"order": order}) from None
        if amount != total * 1000:
            raise ClientError(code, f"{lsp_id}: the {field} asks {amount} msat, the order "
                              f"total is {total} sat", {"order": order})


def _invoice_msat(invoice: str) -> int:
    return B11.amount_msat(B11.decode(invoice))


def _offer_msat(offer: str) -> int:
    if len(offer) > P.MAX_OFFER_CHARS:
        raise DecodeError(f"offer of {len(offer)} characters (at most {P.MAX_OFFER_CHARS})")
    fields = decode_offer(offer)
    amount = fields.get("offer_amount_msat")
    if amount is None or "offer_currency" in fields:
        raise DecodeError("offer without an amount in msat")
    return amount


def to_pay(lsp_id: str, order: dict, method: str) -> str:
    """What to pay the order with by `method`: its bolt11 invoice or bolt12 offer,
    while the LSP expects that payment."""
    option = (order.get("payment") or {}).get(method)
    if not isinstance(option, dict) or option.get("state") != P.EXPECT_PAYMENT:
        raise ClientError(PAYMENT_FAILED, f"{lsp_id} takes no {method} payment for order "
                          f"{order.get('order_id')}", {"order": order})
    return str(option["invoice" if method == "bolt11" else "offer"])


def check_offer_invoice(lsp_id: str, order: dict, invoice: str) -> None:
    """The invoice fetched for the order's offer asks exactly the order total."""
    total = parse_msat(order["payment"]["bolt12"]["order_total_sat"], "order_total_sat")
    try:
        hrp, data = encoding.decode(invoice)
        amount = messages.decode_invoice(data)["invoice_amount_msat"] if hrp == "lni" else None
    except (DecodeError, KeyError) as e:
        raise ClientError(BAD_RESPONSE, f"{lsp_id}: unreadable invoice for the offer: {e}",
                          {"order": order}) from None
    if amount != total * 1000:
        raise ClientError(ORDER_TOTAL_MISMATCH, f"{lsp_id}: the offer's invoice asks {amount} "
                          f"msat, the order total is {total} sat", {"order": order})


def check_order_matches(lsp_id: str, order: dict, asked: dict) -> None:
    """The order is the one we asked for (error 1301 otherwise): an LSP may not
    sell other balances, another lease, announcement or confirmations."""
    for field in REQUEST_FIELDS:
        if field in asked and not _same(field, asked[field], order.get(field)):
            raise ClientError(ORDER_TOTAL_MISMATCH, f"{lsp_id}: {field} is "
                              f"{order.get(field)!r}, not the {asked[field]!r} asked for",
                              {"order": order})
    check_invoice_amount(lsp_id, order, ORDER_TOTAL_MISMATCH)



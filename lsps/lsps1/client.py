"""LSPS1 client core: checking an LSP's answers against what we asked. Pure."""

from __future__ import annotations

from typing import Any

import lsps.bolt11 as B11
import lsps.orders.payment as P
from lsps.lsps0.client import BAD_RESPONSE, ClientError
from lsps.lsps2.msgs import ProtocolError, parse_msat, parse_uint

# RPC error codes of the client: fee_total_sat + client_balance_sat != order_total_sat;
# LSPS7 expiration_block + extension != new_channel_expiry_block.
ORDER_TOTAL_MISMATCH = 1301
EXTENSION_MISMATCH = 1701


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
    """The bolt11 invoice asks exactly order_total_sat (else `code`)."""
    bolt11 = (order.get("payment") or {}).get("bolt11")
    if not isinstance(bolt11, dict):
        return
    try:
        amount = B11.amount_msat(B11.decode(str(bolt11.get("invoice"))))
        total = parse_msat(bolt11.get("order_total_sat"), "order_total_sat")
    except (B11.Bolt11Error, ProtocolError) as e:
        raise ClientError(BAD_RESPONSE, f"{lsp_id}: payment.bolt11: {e}",
                          {"order": order}) from None
    if amount != total * 1000:
        raise ClientError(code, f"{lsp_id}: the invoice asks {amount} msat, the order total is "
                          f"{total} sat", {"order": order})


def check_order_matches(lsp_id: str, order: dict, asked: dict) -> None:
    """The order is the one we asked for (error 1301 otherwise): an LSP may not
    sell other balances, another lease, announcement or confirmations."""
    for field in REQUEST_FIELDS:
        if field in asked and not _same(field, asked[field], order.get(field)):
            raise ClientError(ORDER_TOTAL_MISMATCH, f"{lsp_id}: {field} is "
                              f"{order.get(field)!r}, not the {asked[field]!r} asked for",
                              {"order": order})
    check_invoice_amount(lsp_id, order, ORDER_TOTAL_MISMATCH)



"""A decoded BOLT12 message as typed values, and its JSON form (CLN-`decode`-like).

`Decoded.fields` keeps the decoder's names in the decoder's order, because that order
is what `bolt12ext-decode` prints. Values are typed: bytes (shown as hex), str, int,
lists of BlindedPath / PayInfo / UnknownTlv. Every point was checked when decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Tuple

from .blinding import BlindedPath, PayInfo, scid_str

KINDS = ("offer", "invoice_request", "invoice", "static invoice")
DEFAULT_RELATIVE_EXPIRY = 7200  # BOLT12's, when an invoice has no invoice_relative_expiry


class UnknownTlv(NamedTuple):
    """An odd record the decoder does not know (kept, as the spec asks)."""
    type: int
    value: bytes


def path_dict(path: BlindedPath) -> dict:
    """A blinded_path as CLN's `decode` shows it (offer.check_path checks its points)."""
    first = path.first_node_id
    if len(first) == 9:
        out = {"first_scid_dir": first[0],
               "first_scid": scid_str(int.from_bytes(first[1:], "big"))}
    else:
        out = {"first_node_id": first.hex()}
    out["first_path_key"] = path.first_path_key.hex()
    out["path"] = [{"blinded_node_id": hop.blinded_node_id.hex(),
                    "encrypted_recipient_data": hop.encrypted_data.hex()} for hop in path.hops]
    return out


def payinfo_dict(info: PayInfo) -> dict:
    return {"fee_base_msat": info.fee_base_msat,
            "fee_proportional_millionths": info.fee_proportional_millionths,
            "cltv_expiry_delta": info.cltv_expiry_delta,
            "htlc_minimum_msat": info.htlc_minimum_msat,
            "htlc_maximum_msat": info.htlc_maximum_msat,
            "features": info.features.hex()}


def json_value(value):
    """One field value in its JSON form."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, BlindedPath):
        return path_dict(value)
    if isinstance(value, PayInfo):
        return payinfo_dict(value)
    if isinstance(value, UnknownTlv):
        return {"type": value.type, "value": value.value.hex()}
    if isinstance(value, list):
        return [json_value(v) for v in value]
    return value


@dataclass
class Decoded:
    """An offer, invoice_request, invoice or static invoice (`kind`), structurally valid.

    `signature` is None only for offers (unsigned); a bad signature is reported by
    `signature_valid`, not raised, as CLN's `decode` reports `valid`.
    """
    kind: str                                 # one of KINDS
    fields: Dict[str, object] = field(default_factory=dict)
    signature: Optional[bytes] = None
    signature_valid: Optional[bool] = None

    @property
    def valid(self) -> bool:
        return self.signature_valid is not False

    def _list(self, name: str) -> list:
        return list(self.fields.get(name, []))

    # Message paths: where to send onion messages (invoice_request, held_htlc_available, …).
    @property
    def offer_paths(self) -> List[BlindedPath]:
        return self._list("offer_paths")

    @property
    def invreq_paths(self) -> List[BlindedPath]:
        return self._list("invreq_paths")

    @property
    def held_htlc_available_paths(self) -> List[BlindedPath]:
        return self._list("invoice_held_htlc_available_paths")

    # Payment paths and their blinded_payinfo, one per path (the decoder checked).
    @property
    def invoice_paths(self) -> List[BlindedPath]:
        return self._list("invoice_paths")

    @property
    def payinfos(self) -> List[PayInfo]:
        return self._list("invoice_blindedpay")

    @property
    def payment_routes(self) -> List[Tuple[BlindedPath, PayInfo]]:
        """[(blinded payment path, its payinfo)]; [] for offers and invoice_requests."""
        return list(zip(self.invoice_paths, self.payinfos, strict=True))

    @property
    def node_id(self) -> Optional[bytes]:
        """invoice_node_id: the key an invoice or static invoice is signed with."""
        return self.fields.get("invoice_node_id")

    @property
    def payment_hash(self) -> Optional[bytes]:
        return self.fields.get("invoice_payment_hash")

    @property
    def expires_at(self) -> Optional[int]:
        """When an invoice or static invoice expires; None for the other kinds."""
        created = self.fields.get("invoice_created_at")
        if created is None:
            return None
        return created + self.fields.get("invoice_relative_expiry", DEFAULT_RELATIVE_EXPIRY)

    def to_json(self) -> dict:
        """What `bolt12ext-decode` returns (CLN `decode`'s names), key order included."""
        out = {name: json_value(value) for name, value in self.fields.items()}
        if self.signature is not None:
            out["signature"] = self.signature.hex()
            out["signature_valid"] = self.signature_valid
        out["type"] = f"bolt12 {self.kind}"
        out["valid"] = self.valid
        return out

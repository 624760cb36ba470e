"""Onion messages (BOLT4 `onion_message`, type 513): build to a blinded path, peel a layer.

Every hop of an onion message is inside a blinded path; a sender that is not
the introduction node prepends its own hops with `prepend()`. Payload types
of the final hop that this library understands are listed in KNOWN_TYPES; an
unknown even type makes the message ignored (BOLT4 reader rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Union

from . import blinding, sphinx
from .blinding import BlindedPath
from .tlv import DecodeError, records, serialize_stream

MESSAGE_TYPE = 513
REPLY_PATH = 2
ENCRYPTED_DATA = 4
INVOICE_REQUEST = 64
INVOICE = 66
INVOICE_ERROR = 68
STATIC_INVOICE = 70
HELD_HTLC_AVAILABLE = 72
RELEASE_HELD_HTLC = 74
OFFER_PATHS_REQUEST = 75540
OFFER_PATHS = 75542
SERVE_STATIC_INVOICE = 75544
STATIC_INVOICE_PERSISTED = 75546
KNOWN_TYPES = frozenset({REPLY_PATH, ENCRYPTED_DATA, INVOICE_REQUEST, INVOICE, INVOICE_ERROR,
                         STATIC_INVOICE, HELD_HTLC_AVAILABLE, RELEASE_HELD_HTLC,
                         OFFER_PATHS_REQUEST, OFFER_PATHS, SERVE_STATIC_INVOICE,
                         STATIC_INVOICE_PERSISTED})
FIRST_PAYLOAD_TYPE = 64  # types from 64 up are payloads for the final hop


@dataclass
class OnionMessage:
    path_key: bytes
    packet: bytes

    def serialize(self) -> bytes:
        """The lightning message, starting with its type (513)."""
        return (MESSAGE_TYPE.to_bytes(2, "big") + self.path_key
                + len(self.packet).to_bytes(2, "big") + self.packet)

    @classmethod
    def parse(cls, data: bytes) -> "OnionMessage":
        if len(data) < 37 or int.from_bytes(data[:2], "big") != MESSAGE_TYPE:
            raise DecodeError("not an onion_message")
        length = int.from_bytes(data[35:37], "big")
        if len(data) < 37 + length:
            raise DecodeError("truncated onion_message")
        return cls(data[2:35], data[37:37 + length])


def prepend(session_key: bytes, node_ids, path: BlindedPath) -> BlindedPath:
    """`path` preceded by blinded hops through `node_ids` (e.g. our own node, so that
    CLN's `injectonionmessage` can send it); the last one hands over to the
    introduction node with next_path_key_override."""
    if len(path.first_node_id) != 33:
        raise ValueError("resolve a sciddir introduction node before prepending")
    nxt = list(node_ids[1:]) + [path.first_node_id]
    payloads = [{"next_node_id": n} for n in nxt]
    payloads[-1]["next_path_key_override"] = path.first_path_key
    data = blinding.pad_equal(payloads)
    head = blinding.blind(session_key, list(zip(node_ids, data, strict=True)))
    return blinding.concatenate(head, path)


def build(session_key: bytes, path: BlindedPath, contents: Dict[int, bytes],
          reply_path: Optional[BlindedPath] = None, size: Optional[int] = None) -> OnionMessage:
    """Onion message along `path` whose final hop gets `contents` (type -> value)."""
    hops = []
    for i, hop in enumerate(path.hops):
        tlvs = {ENCRYPTED_DATA: hop.encrypted_data}
        if i == len(path.hops) - 1:
            tlvs.update(contents)
            if reply_path is not None:
                tlvs[REPLY_PATH] = reply_path.serialize()
        hops.append((hop.blinded_node_id, serialize_stream(tlvs)))
    return OnionMessage(path.first_path_key, sphinx.build(session_key, hops, b"", size))


@dataclass
class Forward:
    """Not for us: send `message` on to the next peer."""
    message: OnionMessage
    next_node_id: Optional[bytes] = None
    next_short_channel_id: Optional[int] = None


@dataclass
class Received:
    """We are the final hop."""
    path_id: Optional[bytes]
    contents: Dict[int, bytes]               # payload types >= 64
    reply_path: Optional[BlindedPath] = None
    data: dict = field(default_factory=dict)  # our decrypted encrypted_data_tlv


def peel(node_secret: bytes, message: OnionMessage,
         known_types=KNOWN_TYPES) -> Union[Forward, Received]:
    """One layer of `message` with our node secret, under the BOLT4 reader rules."""
    if len(message.path_key) != 33:
        raise DecodeError("bad path_key")
    hop_ss = sphinx.ecdh(node_secret, message.path_key)
    blinded_secret = sphinx.tweak_secret(node_secret,
                                         sphinx.hmac256(b"blinded_node_id", hop_ss))
    layer = sphinx.peel(blinded_secret, message.packet)
    tlvs = {t: v for t, v, _ in records(layer.payload)}
    for t in tlvs:
        if t % 2 == 0 and t not in known_types:
            raise DecodeError(f"unknown even onionmsg type {t}")
    if ENCRYPTED_DATA not in tlvs:
        raise DecodeError("no encrypted_recipient_data")
    hop = blinding.unblind(node_secret, message.path_key, tlvs[ENCRYPTED_DATA])
    data = hop.fields
    if data.get("allowed_features"):
        raise DecodeError("allowed_features asks for features we do not know")
    if "payment_relay" in data or "payment_constraints" in data:
        raise DecodeError("payment fields in an onion message path")
    if layer.next_packet is not None:
        if set(tlvs) != {ENCRYPTED_DATA}:
            raise DecodeError("non-final onion message hop with extra fields")
        if "path_id" in data:
            raise DecodeError("path_id in a non-final hop")
        if "next_node_id" not in data and "short_channel_id" not in data:
            raise DecodeError("no next hop")
        return Forward(OnionMessage(hop.next_path_key, layer.next_packet),
                       data.get("next_node_id"), data.get("short_channel_id"))
    contents = {t: v for t, v in tlvs.items() if t >= FIRST_PAYLOAD_TYPE}
    if len(contents) > 1:
        raise DecodeError("more than one payload in an onion message")
    reply = None
    if REPLY_PATH in tlvs:
        reply, end = BlindedPath.parse(tlvs[REPLY_PATH])
        if end != len(tlvs[REPLY_PATH]):
            raise DecodeError("trailing bytes after reply_path")
    return Received(data.get("path_id"), contents, reply, data)

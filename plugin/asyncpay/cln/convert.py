"""CLN's JSON conventions, decoded in one place for every role's adapter.

* amounts: an integer, or (older fields) a string ending in ``msat``;
* short channel ids: ``BLOCKxTXxOUT`` (BOLT 7), optionally ``/direction``;
* ``htlc_accepted``'s ``onion.payload``: the hop payload with its BigSize
  length prefix (BOLT 4), and ``htlc.extra_tlvs``: update_add_htlc's TLV
  stream (BOLT 2) as hex.
"""

from __future__ import annotations

from ..payment import HopPayload
from ..wire import WireError, read_tlv_stream
from ..wire.types import read_bigsize


def parse_scid(s: str) -> int:
    block, tx, out = (int(x) for x in s.split("x"))
    return (block << 40) | (tx << 16) | out


def msat(v) -> int:
    return int(str(v).removesuffix("msat")) if v is not None else 0


def hop_payload(raw_hex: str) -> HopPayload:
    """The hook's ``onion.payload``: a BigSize length, then the TLV stream."""
    raw = bytes.fromhex(raw_hex)
    length, pos = read_bigsize(raw, 0)
    if pos + length != len(raw):
        raise WireError("payload length prefix does not match")
    return HopPayload.decode(raw[pos:])


def has_tlv(extra_tlvs: str | None, t: int) -> bool:
    """Does the hook's ``htlc.extra_tlvs`` carry a record of type t (False if unreadable)?"""
    if not extra_tlvs:
        return False
    try:
        return any(k == t for k, _ in read_tlv_stream(bytes.fromhex(extra_tlvs), lambda _: True, "extra_tlvs"))
    except (WireError, ValueError):
        return False


def path_key_of(payload: HopPayload, extra_tlvs: str | None) -> bytes | None:
    if payload.current_path_key is not None:
        return payload.current_path_key
    if extra_tlvs:
        # Type 0 is update_add_htlc's path_key (BOLT 2); lightningd accepted the rest.
        for t, v in read_tlv_stream(bytes.fromhex(extra_tlvs), lambda t: True, "update_add_htlc_tlvs"):
            if t == 0 and len(v) == 33:
                return v
    return None

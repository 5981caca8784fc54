"""Our extension: the hold request a sender puts in its LSP's hop payload
(docs/compatibility.md, "Hold request").

LDK's often-offline sender signals a hold with ``update_add_htlc`` TLV 75537
and learns its LSP's release paths from ``revoke_and_ack``; a CLN plugin can
write neither. Between asyncpay nodes the request travels in the onion
instead, in the payload of the LSP's own hop, as one odd record (lightningd
ignores odd records it does not know, and so does every other hop: only the
LSP reads its own payload). Its value is a TLV stream:

* 1 ``held_htlc_available_paths``: the static invoice's paths (concatenated
  blinded paths, as in the invoice's type 236); the LSP sends
  ``held_htlc_available`` over them with a reply path to its own endpoint,
  so the sender may go offline as soon as its HTLC is locked in;
* 3 ``hold_until`` (tu64, UNIX seconds, optional): how long the sender wants
  its HTLC held at most.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..blinded_path import BlindedPath
from ..wire import WireError
from ..wire.fields import Concatenated, Field, TlvMessage, Truncated

# Odd, in the custom range of onion payloads (BOLT 4: >= 65536), far from
# LDK's async numbers (75537, 77777, 5482373484).
HOLD_REQUEST = 4_000_000_001

PATHS = Concatenated(BlindedPath.read, BlindedPath.write, "held_htlc_available_paths", non_empty=True)


@dataclass
class HoldRequest(TlvMessage):
    held_htlc_available_paths: list[BlindedPath] | None = None
    hold_until: int | None = None
    unknown: dict[int, bytes] = field(default_factory=dict)

    WHAT = "hold_request"
    FIELDS = (
        Field(1, "held_htlc_available_paths", PATHS),
        Field(3, "hold_until", Truncated(8)),
    )

    def check(self) -> None:
        if not self.held_htlc_available_paths:
            raise WireError("hold_request: missing held_htlc_available_paths")


# The LSP's word that it holds an HTLC: a BOLT 1 custom message (odd, in the
# custom range >= 32768) to the sender, its peer, carrying the payment hash.
# The sender reports ``held`` on this, never on its HTLC's lock-in alone: an
# LSP that refuses the hold fails a locked-in HTLC a moment later, and one
# that never read the request (an older LSP, a request lightningd dropped)
# forwards it; in both cases nothing holds the payment.
HOLD_CONFIRMED = 42401


def hold_confirmed(payment_hash: bytes) -> bytes:
    return HOLD_CONFIRMED.to_bytes(2, "big") + payment_hash


def read_hold_confirmed(msg: bytes) -> bytes | None:
    """The payment hash of a hold confirmation (None: another message)."""
    if len(msg) != 34 or int.from_bytes(msg[:2], "big") != HOLD_CONFIRMED:
        return None
    return msg[2:]

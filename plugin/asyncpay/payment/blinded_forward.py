"""What a node forwards when its hop is the introduction node of a blinded
payment path (BOLT 4 "Route Blinding", forwarding node), computed from the
hop's decrypted ``encrypted_recipient_data``.

lightningd parses such a hop itself, but refuses one that carries any other
record (``common/onion_decode.c``, ``check_nonfinal_tlv``): a sender's hold
request in the payload of its LSP's hop, when that LSP is also the
introduction node of the recipient's path (one LSP serving both wallets),
reaches ``htlc_accepted`` unparsed. The role that takes it works out the
forward here, and its ``continue`` tells lightningd what the failed parse
could not: the channel (``forward_to``) and the next hop's path key
(``extra_tlvs`` type 0, which replaces lightningd's next path key:
``lightningd/peer_htlcs.c``, ``htlc_accepted_hook_deserialize``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..blinded_path import EncryptedData
from ..wire.types import bigsize


class BlindedForwardError(ValueError):
    """The hop cannot be forwarded; the reason is one line."""


@dataclass(frozen=True)
class BlindedForward:
    short_channel_id: int
    amount_msat: int  # what leaves us
    outgoing_cltv: int
    next_path_key: bytes

    def hook_fields(self, channel_id: str) -> dict:
        """What a ``continue`` adds so that lightningd forwards the hop."""
        return {"forward_to": channel_id, "extra_tlvs": (bigsize(0) + bigsize(33) + self.next_path_key).hex()}


def blinded_forward(data: EncryptedData, next_path_key: bytes, amount_in: int, cltv_in: int) -> BlindedForward:
    """lightningd's ``handle_blinded_forward`` (v26.06): amount out =
    ceil((in - base) * 1e6 / (1e6 + ppm)), CLTV out = in - delta; the
    ``payment_constraints`` are checked against what came in."""
    relay = data.payment_relay
    if data.short_channel_id is None or relay is None:
        raise BlindedForwardError("the blinded hop names no channel or no payment_relay")
    c = data.payment_constraints
    if c is not None and cltv_in > c.max_cltv_expiry:
        raise BlindedForwardError(f"cltv_expiry {cltv_in} > payment_constraints {c.max_cltv_expiry}")
    if c is not None and amount_in < c.htlc_minimum_msat:
        raise BlindedForwardError(f"amount {amount_in} < payment_constraints minimum {c.htlc_minimum_msat}")
    if amount_in < relay.fee_base_msat:
        raise BlindedForwardError("amount below the path's base fee")
    out = -(-(amount_in - relay.fee_base_msat) * 1_000_000 // (1_000_000 + relay.fee_proportional_millionths))
    return BlindedForward(data.short_channel_id, out, cltv_in - relay.cltv_expiry_delta, next_path_key)

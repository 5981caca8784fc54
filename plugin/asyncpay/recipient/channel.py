"""The recipient's channel from its LSP, and the blinded payment paths over it.

A payment path is ``[LSP -> us]`` (BOLT 4 "Route Blinding", BOLT 12 invoice
paths): the LSP's hop names the channel by short channel id and carries its
``payment_relay`` (the LSP's fee and CLTV delta towards us) and
``payment_constraints``; our hop carries a 32-byte ``path_id`` that keys the
payment context. The payinfo sums both hops as LDK's
``blinded_path/payment.rs::compute_payinfo`` does (our final CLTV delta
included).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..blinded_path import BlindedPayInfo, BlindedPaymentPath, EncryptedData, PaymentConstraints, PaymentRelay
from ..onion_message import build_path


@dataclass(frozen=True)
class LspChannel:
    """What the LSP charges to forward to us (its side of our channel)."""

    lsp_id: bytes
    scid: int  # a short channel id the LSP knows: the real one, or its alias for us
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int
    htlc_minimum_msat: int
    htlc_maximum_msat: int

    def fingerprint(self) -> str:
        """Changes when anything a payer must know about this hop changes."""
        return (f"{self.lsp_id.hex()}:{self.scid}:{self.fee_base_msat}:{self.fee_proportional_millionths}:"
                f"{self.cltv_expiry_delta}:{self.htlc_minimum_msat}:{self.htlc_maximum_msat}")


def payment_path(
    rng: Callable[[int], bytes], node_id: bytes, channel: LspChannel, path_id: bytes,
    max_cltv_expiry: int, final_cltv_delta: int,
) -> BlindedPaymentPath:
    constraints = PaymentConstraints(max_cltv_expiry, channel.htlc_minimum_msat)
    path = build_path(rng(32), [
        (channel.lsp_id, EncryptedData(
            short_channel_id=channel.scid,
            payment_relay=PaymentRelay(channel.cltv_expiry_delta, channel.fee_proportional_millionths,
                                       channel.fee_base_msat),
            payment_constraints=PaymentConstraints(max_cltv_expiry + channel.cltv_expiry_delta,
                                                   channel.htlc_minimum_msat),
        )),
        (node_id, EncryptedData(path_id=path_id, payment_constraints=constraints)),
    ])
    info = BlindedPayInfo(
        fee_base_msat=channel.fee_base_msat,
        fee_proportional_millionths=channel.fee_proportional_millionths,
        cltv_expiry_delta=channel.cltv_expiry_delta + final_cltv_delta,
        htlc_minimum_msat=channel.htlc_minimum_msat,
        htlc_maximum_msat=channel.htlc_maximum_msat,
    )
    return BlindedPaymentPath(path, info)

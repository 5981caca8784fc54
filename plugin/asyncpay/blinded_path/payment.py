"""Blinded payment paths: a ``blinded_path`` plus its ``blinded_payinfo``.

In BOLT 12 invoices (and static invoices) the two travel in separate TLVs
(160 paths, 162 blindedpay), matched by position. LDK:
``blinded_path/payment.rs`` (``BlindedPayInfo``, ``BlindedPaymentPath``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..wire import Reader, WireError
from .path import BlindedPath


@dataclass(frozen=True)
class BlindedPayInfo:
    """u32 fee_base_msat, u32 fee_proportional_millionths, u16 cltv_expiry_delta,
    u64 htlc_minimum_msat, u64 htlc_maximum_msat, u16 flen, features."""

    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int
    htlc_minimum_msat: int
    htlc_maximum_msat: int
    features: bytes = b""

    @classmethod
    def read(cls, r: Reader) -> BlindedPayInfo:
        base, ppm, cltv = r.u32("fee_base_msat"), r.u32("fee_proportional_millionths"), r.u16("cltv")
        lo, hi = r.u64("htlc_minimum_msat"), r.u64("htlc_maximum_msat")
        return cls(base, ppm, cltv, lo, hi, r.read(r.u16("flen"), "features"))

    def write(self) -> bytes:
        if len(self.features) > 0xFFFF:
            raise WireError("blinded_payinfo: features too long")
        try:
            return (
                self.fee_base_msat.to_bytes(4, "big")
                + self.fee_proportional_millionths.to_bytes(4, "big")
                + self.cltv_expiry_delta.to_bytes(2, "big")
                + self.htlc_minimum_msat.to_bytes(8, "big")
                + self.htlc_maximum_msat.to_bytes(8, "big")
                + len(self.features).to_bytes(2, "big")
                + self.features
            )
        except OverflowError as e:
            raise WireError(f"blinded_payinfo: {e}") from None

    def to_json(self) -> dict:
        return {
            "fee_base_msat": self.fee_base_msat,
            "fee_proportional_millionths": self.fee_proportional_millionths,
            "cltv_expiry_delta": self.cltv_expiry_delta,
            "htlc_minimum_msat": self.htlc_minimum_msat,
            "htlc_maximum_msat": self.htlc_maximum_msat,
            "features": self.features.hex(),
        }


@dataclass(frozen=True)
class BlindedPaymentPath:
    path: BlindedPath
    payinfo: BlindedPayInfo

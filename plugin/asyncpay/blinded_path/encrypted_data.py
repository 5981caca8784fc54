"""``encrypted_data_tlv`` (BOLT 4): what one hop of a blinded path decrypts.

LDK: ``blinded_path/message.rs`` (``ForwardTlvs``, ``ReceiveTlvs``) and
``blinded_path/payment.rs`` (``PaymentRelay``, ``PaymentConstraints``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..wire import Reader, WireError
from ..wire.fields import Codec, Field, FixedInt, Point, RawBytes, TlvMessage
from ..wire.types import read_truncated, tu32, tu64


@dataclass(frozen=True)
class PaymentRelay:
    """[u16 cltv_expiry_delta][u32 fee_proportional_millionths][tu32 fee_base_msat]"""

    cltv_expiry_delta: int
    fee_proportional_millionths: int
    fee_base_msat: int


@dataclass(frozen=True)
class PaymentConstraints:
    """[u32 max_cltv_expiry][tu64 htlc_minimum_msat]"""

    max_cltv_expiry: int
    htlc_minimum_msat: int


class _RelayCodec(Codec[PaymentRelay]):
    def decode(self, data: bytes) -> PaymentRelay:
        r = Reader(data)
        cltv, ppm = r.u16(), r.u32()
        return PaymentRelay(cltv, ppm, read_truncated(r.rest(), 4, "fee_base_msat"))

    def encode(self, v: PaymentRelay) -> bytes:
        return (
            FixedInt(2).encode(v.cltv_expiry_delta)
            + FixedInt(4).encode(v.fee_proportional_millionths)
            + tu32(v.fee_base_msat)
        )


class _ConstraintsCodec(Codec[PaymentConstraints]):
    def decode(self, data: bytes) -> PaymentConstraints:
        r = Reader(data)
        mx = r.u32()
        return PaymentConstraints(mx, read_truncated(r.rest(), 8, "htlc_minimum_msat"))

    def encode(self, v: PaymentConstraints) -> bytes:
        return FixedInt(4).encode(v.max_cltv_expiry) + tu64(v.htlc_minimum_msat)


@dataclass
class EncryptedData(TlvMessage):
    padding: bytes | None = None
    short_channel_id: int | None = None
    next_node_id: bytes | None = None
    path_id: bytes | None = None
    next_path_key_override: bytes | None = None
    payment_relay: PaymentRelay | None = None
    payment_constraints: PaymentConstraints | None = None
    allowed_features: bytes | None = None
    unknown: dict[int, bytes] = field(default_factory=dict)

    WHAT = "encrypted_data_tlv"
    FIELDS = (
        Field(1, "padding", RawBytes()),
        Field(2, "short_channel_id", FixedInt(8)),
        Field(4, "next_node_id", Point("next_node_id")),
        Field(6, "path_id", RawBytes()),
        Field(8, "next_path_key_override", Point("next_path_key_override")),
        Field(10, "payment_relay", _RelayCodec()),
        Field(12, "payment_constraints", _ConstraintsCodec()),
        Field(14, "allowed_features", RawBytes()),
    )

    def check(self) -> None:
        if self.padding is not None and any(self.padding):
            raise WireError("encrypted_data_tlv: padding is not all zeros")

    def padded_to(self, size: int, unpadded: int | None = None) -> EncryptedData:
        """A copy whose encoding is exactly ``size`` bytes long (padding added);
        ``unpadded``: the length of its encoding without padding, if known."""
        base = EncryptedData(**{**self.__dict__, "padding": None})
        n = len(base.encode()) if unpadded is None else unpadded
        if n == size:
            return base
        # The padding record (type 1) costs a one-byte type and a BigSize
        # length: 2 header bytes for values up to 252 bytes, 4 up to 65535.
        for header, fits in ((2, range(0, 253)), (4, range(253, 65536))):
            pad = size - n - header
            if pad in fits:
                return EncryptedData(**{**self.__dict__, "padding": bytes(pad)})
        raise WireError(f"encrypted_data_tlv: cannot pad {n} bytes to {size}")

    def unpadded_size(self) -> int:
        """The length of its encoding without the padding record."""
        if self.padding is None:
            return len(self.encode())
        return len(EncryptedData(**{**self.__dict__, "padding": None}).encode())



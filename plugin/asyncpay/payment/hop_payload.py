"""The payment onion's per-hop ``payload`` TLV stream (BOLT 4), plus the two
records an async payment's final hop carries in LDK:

* 5482373484 ``keysend_preimage`` (32 bytes), the sender-chosen preimage;
* 77777 ``invoice_request``, the payer's request as raw bytes
  (LDK ``ln/msgs.rs``: ``InboundOnionPayload`` / ``OutboundOnionPayload``
  ``invoice_request`` for static-invoice payments).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..wire import Reader
from ..wire.fields import Codec, Field, FixedBytes, FixedInt, Point, RawBytes, TlvMessage, Truncated
from ..wire.types import read_truncated, tu64

KEYSEND_PREIMAGE = 5482373484
INVOICE_REQUEST = 77777


@dataclass(frozen=True)
class PaymentData:
    payment_secret: bytes
    total_msat: int


class _PaymentDataCodec(Codec[PaymentData]):
    def decode(self, data: bytes) -> PaymentData:
        r = Reader(data)
        secret = r.read(32, "payment_secret")
        return PaymentData(secret, read_truncated(r.rest(), 8, "total_msat"))

    def encode(self, v: PaymentData) -> bytes:
        return FixedBytes(32, "payment_secret").encode(v.payment_secret) + tu64(v.total_msat)


@dataclass
class HopPayload(TlvMessage):
    amt_to_forward: int | None = None
    outgoing_cltv_value: int | None = None
    short_channel_id: int | None = None
    payment_data: PaymentData | None = None
    encrypted_recipient_data: bytes | None = None
    current_path_key: bytes | None = None
    payment_metadata: bytes | None = None
    total_amount_msat: int | None = None
    invoice_request: bytes | None = None
    keysend_preimage: bytes | None = None
    unknown: dict[int, bytes] = field(default_factory=dict)

    WHAT = "payment onion payload"
    FIELDS = (
        Field(2, "amt_to_forward", Truncated(8)),
        Field(4, "outgoing_cltv_value", Truncated(4)),
        Field(6, "short_channel_id", FixedInt(8)),
        Field(8, "payment_data", _PaymentDataCodec()),
        Field(10, "encrypted_recipient_data", RawBytes()),
        Field(12, "current_path_key", Point("current_path_key")),
        Field(16, "payment_metadata", RawBytes()),
        Field(18, "total_amount_msat", Truncated(8)),
        Field(INVOICE_REQUEST, "invoice_request", RawBytes()),
        Field(KEYSEND_PREIMAGE, "keysend_preimage", FixedBytes(32, "keysend_preimage")),
    )

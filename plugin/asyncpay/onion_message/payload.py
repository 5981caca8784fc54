"""``onionmsg_tlv`` (BOLT 4), with the async-payments types LDK adds.

The BOLT 12 messages (64 invoice_request, 66 invoice, 68 invoice_error,
70 static_invoice) are kept as raw bytes: the onion TLV length delimits them
and ``asyncpay.offers`` parses them. The async messages (72, 74, 7554x) are
decoded into their dataclasses (see ``async_payments``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..blinded_path import BlindedPath
from ..wire import WireError
from ..wire.fields import Codec, Field, Nested, RawBytes, TlvMessage
from .async_payments import (
    ASYNC_MESSAGES,
    AsyncMessage,
    HeldHtlcAvailable,
    OfferPaths,
    OfferPathsRequest,
    ReleaseHeldHtlc,
    ServeStaticInvoice,
    StaticInvoicePersisted,
)

INVOICE_REQUEST = 64
INVOICE = 66
INVOICE_ERROR = 68
STATIC_INVOICE = 70


class _AsyncCodec(Codec[AsyncMessage]):
    def __init__(self, cls: type[AsyncMessage]) -> None:
        self.cls = cls

    def decode(self, data: bytes) -> AsyncMessage:
        return self.cls.decode_onion_value(data)

    def encode(self, value: AsyncMessage) -> bytes:
        return value.encode_onion_value()


@dataclass
class OnionMessagePayload(TlvMessage):
    reply_path: BlindedPath | None = None
    encrypted_recipient_data: bytes | None = None
    invoice_request: bytes | None = None
    invoice: bytes | None = None
    invoice_error: bytes | None = None
    static_invoice: bytes | None = None
    held_htlc_available: HeldHtlcAvailable | None = None
    release_held_htlc: ReleaseHeldHtlc | None = None
    offer_paths_request: OfferPathsRequest | None = None
    offer_paths: OfferPaths | None = None
    serve_static_invoice: ServeStaticInvoice | None = None
    static_invoice_persisted: StaticInvoicePersisted | None = None
    unknown: dict[int, bytes] = field(default_factory=dict)

    WHAT = "onionmsg_tlv"
    FIELDS = (
        Field(2, "reply_path", Nested(BlindedPath)),
        Field(4, "encrypted_recipient_data", RawBytes()),
        Field(INVOICE_REQUEST, "invoice_request", RawBytes()),
        Field(INVOICE, "invoice", RawBytes()),
        Field(INVOICE_ERROR, "invoice_error", RawBytes()),
        Field(STATIC_INVOICE, "static_invoice", RawBytes()),
        *(
            Field(t, name, _AsyncCodec(ASYNC_MESSAGES[t]))
            for t, name in (
                (72, "held_htlc_available"),
                (74, "release_held_htlc"),
                (75540, "offer_paths_request"),
                (75542, "offer_paths"),
                (75544, "serve_static_invoice"),
                (75546, "static_invoice_persisted"),
            )
        ),
    )

    def contents(self) -> list[str]:
        """Names of the message-content fields present (normally exactly one)."""
        return [
            f.name
            for f in self.FIELDS
            if f.type >= INVOICE_REQUEST and getattr(self, f.name) is not None
        ]

    def content_kind(self) -> str:
        kinds = self.contents()
        if len(kinds) != 1:
            raise WireError(f"onionmsg_tlv: expected one message, found {kinds or 'none'}")
        return kinds[0]

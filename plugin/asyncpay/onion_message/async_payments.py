"""LDK's async-payments onion messages, byte for byte.

Source: rust-lightning ``lightning/src/onion_message/async_payments.rs`` at
cfee4b755 (the commit that produced ../shared/vectors/ldk). Each struct there
is ``impl_writeable_tlv_based!``, so inside the onion TLV its value is a
BigSize length of the inner stream followed by the inner TLV stream
(``_encode_varint_length_prefixed_tlv!`` in ``util/ser_macros.rs``). Inner
integers are fixed width (u16: 2 bytes, u64: 8 bytes); ``required_vec`` is
the elements back to back with no count; the static invoice is its raw bytes.
Unknown even inner types are rejected, unknown odd ones kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..blinded_path import BlindedPath
from ..wire import WireError
from ..wire.fields import Concatenated, Field, FixedInt, Nested, RawBytes, TlvMessage
from ..wire.types import bigsize, read_bigsize

OFFER_PATHS_REQUEST = 75540
OFFER_PATHS = 75542
SERVE_STATIC_INVOICE = 75544
STATIC_INVOICE_PERSISTED = 75546
HELD_HTLC_AVAILABLE = 72
RELEASE_HELD_HTLC = 74

class AsyncMessage(TlvMessage):
    """Base: adds the inner length prefix LDK writes around the stream."""

    TLV_TYPE: ClassVar[int]
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def decode_onion_value(cls, value: bytes):
        length, pos = read_bigsize(value, 0)
        if pos + length != len(value):
            raise WireError(
                f"{cls.WHAT}: inner length {length} does not match the {len(value) - pos} bytes present"
            )
        return cls.decode(value[pos:])

    def encode_onion_value(self) -> bytes:
        inner = self.encode()
        return bigsize(len(inner)) + inner

    def check(self) -> None:
        for name in self.REQUIRED:
            if getattr(self, name) is None:
                raise WireError(f"{self.WHAT}: missing required field {name}")

_paths = Concatenated(BlindedPath.read, BlindedPath.write, "paths")

@dataclass
class OfferPathsRequest(AsyncMessage):
    """``(0, invoice_slot, required)`` u16."""

    invoice_slot: int | None = None
    unknown: dict[int, bytes] = field(default_factory=dict)
    TLV_TYPE = OFFER_PATHS_REQUEST
    WHAT = "offer_paths_request"
    FIELDS = (Field(0, "invoice_slot", FixedInt(2)),)
    REQUIRED = ("invoice_slot",)

@dataclass
class OfferPaths(AsyncMessage):
    """``(0, paths, required_vec)``, ``(2, paths_absolute_expiry, option)`` u64 seconds."""

    paths: list[BlindedPath] | None = None
    paths_absolute_expiry: int | None = None
    unknown: dict[int, bytes] = field(default_factory=dict)
    TLV_TYPE = OFFER_PATHS
    WHAT = "offer_paths"
    FIELDS = (Field(0, "paths", _paths), Field(2, "paths_absolute_expiry", FixedInt(8)))
    REQUIRED = ("paths",)

@dataclass
class ServeStaticInvoice(AsyncMessage):
    """``(0, invoice, required)`` raw static invoice, ``(2, forward_invoice_request_path, required)``."""

    invoice: bytes | None = None
    forward_invoice_request_path: BlindedPath | None = None
    unknown: dict[int, bytes] = field(default_factory=dict)
    TLV_TYPE = SERVE_STATIC_INVOICE
    WHAT = "serve_static_invoice"
    FIELDS = (
        Field(0, "invoice", RawBytes()),
        Field(2, "forward_invoice_request_path", Nested(BlindedPath)),
    )
    REQUIRED = ("invoice", "forward_invoice_request_path")

@dataclass
class StaticInvoicePersisted(AsyncMessage):
    unknown: dict[int, bytes] = field(default_factory=dict)
    TLV_TYPE = STATIC_INVOICE_PERSISTED
    WHAT = "static_invoice_persisted"

@dataclass
class HeldHtlcAvailable(AsyncMessage):
    unknown: dict[int, bytes] = field(default_factory=dict)
    TLV_TYPE = HELD_HTLC_AVAILABLE
    WHAT = "held_htlc_available"

@dataclass
class ReleaseHeldHtlc(AsyncMessage):
    unknown: dict[int, bytes] = field(default_factory=dict)
    TLV_TYPE = RELEASE_HELD_HTLC
    WHAT = "release_held_htlc"

ASYNC_MESSAGES: dict[int, type[AsyncMessage]] = {
    m.TLV_TYPE: m
    for m in (
        OfferPathsRequest,
        OfferPaths,
        ServeStaticInvoice,
        StaticInvoicePersisted,
        HeldHtlcAvailable,
        ReleaseHeldHtlc,
    )
}


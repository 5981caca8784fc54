"""BOLT 12 ``invoice_error``. LDK: ``offers/invoice_error.rs``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..wire.fields import Field, RawBytes, TlvMessage, Truncated, Utf8


@dataclass
class InvoiceError(TlvMessage):
    erroneous_field: int | None = None
    suggested_value: bytes | None = None
    error: str | None = None
    unknown: dict[int, bytes] = field(default_factory=dict)

    WHAT = "invoice_error"
    FIELDS = (
        Field(1, "erroneous_field", Truncated(8)),
        Field(3, "suggested_value", RawBytes()),
        Field(5, "error", Utf8()),
    )

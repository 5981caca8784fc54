"""BOLT 12 invoices (``lni``). LDK: ``offers/invoice.rs``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..blinded_path import BlindedPath, BlindedPayInfo, BlindedPaymentPath
from ..wire import WireError
from .fields import INVOICE_ONLY_FIELDS, INVOICE_RANGES, INVREQ_FIELDS, SIGNATURE, FallbackAddress
from .invoice_request import InvoiceRequestFields
from .message import Bolt12Message

DEFAULT_RELATIVE_EXPIRY = 7200  # BOLT 12: invoice_relative_expiry defaults to two hours


@dataclass
class InvoiceFields:
    # Seconds after created_at when invoice_relative_expiry is absent.
    DEFAULT_RELATIVE_EXPIRY: ClassVar[int] = DEFAULT_RELATIVE_EXPIRY

    invoice_paths: list[BlindedPath] | None = None
    invoice_blindedpay: list[BlindedPayInfo] | None = None
    invoice_created_at: int | None = None
    invoice_relative_expiry: int | None = None
    invoice_payment_hash: bytes | None = None
    invoice_amount: int | None = None
    invoice_fallbacks: list[FallbackAddress] | None = None
    invoice_features: bytes | None = None
    invoice_node_id: bytes | None = None

    def payment_paths(self) -> list[BlindedPaymentPath]:
        return [BlindedPaymentPath(p, i) for p, i in zip(self.invoice_paths or [], self.invoice_blindedpay or [])]

    def expires_at(self) -> int:
        assert self.invoice_created_at is not None
        rel = self.invoice_relative_expiry
        return self.invoice_created_at + (self.DEFAULT_RELATIVE_EXPIRY if rel is None else rel)

    def check_payment_paths(self, what: str) -> None:
        if not self.invoice_paths:
            raise WireError(f"{what}: missing invoice_paths")
        if self.invoice_blindedpay is None or len(self.invoice_blindedpay) != len(self.invoice_paths):
            raise WireError(f"{what}: invoice_blindedpay does not match invoice_paths")


@dataclass
class Invoice(InvoiceFields, InvoiceRequestFields, Bolt12Message):
    signature: bytes | None = None
    unknown: dict[int, bytes] = field(default_factory=dict)

    WHAT = "invoice"
    HRP = "lni"
    SIGNATURE_NAME = "invoice"
    FIELDS = (*INVREQ_FIELDS, *INVOICE_ONLY_FIELDS, SIGNATURE)
    RANGES = INVOICE_RANGES

    def check(self) -> None:
        self.check_payment_paths(self.WHAT)
        for name in ("invoice_created_at", "invoice_payment_hash", "invoice_amount", "invoice_node_id"):
            if getattr(self, name) is None:
                raise WireError(f"invoice: missing {name}")

    def signature_ok(self) -> bool:
        return self.invoice_node_id is not None and self.signature_valid(self.invoice_node_id)

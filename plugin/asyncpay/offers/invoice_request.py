"""BOLT 12 invoice requests (``lnr``). LDK: ``offers/invoice_request.rs``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..blinded_path import BlindedPath
from ..wire import WireError
from .fields import INVREQ_FIELDS, INVREQ_RANGES, SIGNATURE, Bip353Name
from .message import Bolt12Message
from .offer import OfferFields


@dataclass
class InvoiceRequestFields(OfferFields):
    invreq_metadata: bytes | None = None
    invreq_chain: bytes | None = None
    invreq_amount: int | None = None
    invreq_features: bytes | None = None
    invreq_quantity: int | None = None
    invreq_payer_id: bytes | None = None
    invreq_payer_note: str | None = None
    invreq_paths: list[BlindedPath] | None = None
    invreq_bip_353_name: Bip353Name | None = None



@dataclass
class InvoiceRequest(InvoiceRequestFields, Bolt12Message):
    signature: bytes | None = None
    unknown: dict[int, bytes] = field(default_factory=dict)

    WHAT = "invoice_request"
    HRP = "lnr"
    SIGNATURE_NAME = "invoice_request"
    FIELDS = (*INVREQ_FIELDS, SIGNATURE)
    RANGES = INVREQ_RANGES

    def check(self) -> None:
        for name in ("invreq_metadata", "invreq_payer_id"):
            if getattr(self, name) is None:
                raise WireError(f"invoice_request: missing {name}")

    def signature_ok(self) -> bool:
        return self.invreq_payer_id is not None and self.signature_valid(self.invreq_payer_id)

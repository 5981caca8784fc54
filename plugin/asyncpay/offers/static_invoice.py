"""Static invoices: the invoice an often-offline recipient's LSP serves.

Follows LDK ``offers/static_invoice.rs`` (rust-lightning cfee4b755):

* the offer's records copied byte for byte, then invoice fields 160 paths,
  162 blindedpay, 164 created_at, 166 relative_expiry (default 14 days),
  172 fallbacks, 174 features, 176 node_id, and 236
  held_htlc_available_paths; signature 240;
* never 168 payment_hash or 170 amount (the payer picks the preimage), and no
  invoice_request fields: allowed types are 1..79, 160..239, 240..1000 and the
  two experimental ranges (offer, invoice);
* signed over the BOLT 12 merkle root with tag
  ``"lightning" || "static_invoice" || "signature"``;
* node_id is the offer's issuer_id, or, when the offer has none, the final
  blinded node id of one of its paths (``check_invoice_signing_pubkey``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..blinded_path import BlindedPath, BlindedPaymentPath
from ..crypto import pubkey_of
from ..wire import WireError
from .fields import (
    HELD_HTLC_AVAILABLE_PATHS,
    INVOICE_ONLY_FIELDS,
    OFFER_FIELDS,
    SIGNATURE,
    STATIC_INVOICE_RANGES,
)
from .invoice import InvoiceFields
from .message import BITCOIN_CHAIN, Bolt12Message
from .offer import Offer, OfferFields

DEFAULT_RELATIVE_EXPIRY = 14 * 24 * 3600  # LDK static_invoice.rs DEFAULT_RELATIVE_EXPIRY

# LDK's InvoiceTlvStream plus OfferTlvStream and the signature, as the type
# numbers a static invoice may carry (tests compare ours against this list).
LDK_STATIC_INVOICE_TYPES = (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22,
                            160, 162, 164, 166, 168, 170, 172, 174, 176, 236, 240)


@dataclass
class StaticInvoice(InvoiceFields, OfferFields, Bolt12Message):
    invoice_held_htlc_available_paths: list[BlindedPath] | None = None
    signature: bytes | None = None
    unknown: dict[int, bytes] = field(default_factory=dict)

    WHAT = "static_invoice"
    DEFAULT_RELATIVE_EXPIRY = DEFAULT_RELATIVE_EXPIRY
    SIGNATURE_NAME = "static_invoice"
    FIELDS = (*OFFER_FIELDS, *INVOICE_ONLY_FIELDS, HELD_HTLC_AVAILABLE_PATHS, SIGNATURE)
    RANGES = STATIC_INVOICE_RANGES

    def check(self) -> None:
        """Structure LDK's parser enforces (``TryFrom<PartialInvoiceTlvStream>``)."""
        if self.invoice_payment_hash is not None:
            raise WireError("static_invoice: carries invoice_payment_hash (168)")
        if self.invoice_amount is not None:
            raise WireError("static_invoice: carries invoice_amount (170)")
        self.check_payment_paths(self.WHAT)
        if not self.invoice_held_htlc_available_paths:
            raise WireError("static_invoice: missing held_htlc_available_paths (236)")
        if self.invoice_created_at is None:
            raise WireError("static_invoice: missing invoice_created_at")
        if self.invoice_node_id is None:
            raise WireError("static_invoice: missing invoice_node_id")
        if not self.offer_paths:
            raise WireError("static_invoice: its offer has no offer_paths")
        if self.offer_chains is not None and len(self.offer_chains) > 1:
            raise WireError("static_invoice: more than one offer chain")
        self.check_offer_fields(self.WHAT)
        if self.signature is None:
            raise WireError("static_invoice: missing signature")

    @classmethod
    def build(
        cls,
        offer: Offer,
        payment_paths: list[BlindedPaymentPath],
        held_htlc_available_paths: list[BlindedPath],
        created_at: int,
        signing_secret: bytes,
        relative_expiry: int | None = None,
        features: bytes | None = None,
    ) -> StaticInvoice:
        """Build and sign a static invoice for ``offer`` (LDK ``StaticInvoiceBuilder``).

        The signing key's public key must be the offer's issuer_id, or the
        final blinded node id of one of its paths when it has no issuer_id.
        ``relative_expiry`` equal to the 14-day default is omitted, as LDK does.
        """
        inv = cls.from_records(offer.to_records(), check=False)
        inv.invoice_paths = [p.path for p in payment_paths]
        inv.invoice_blindedpay = [p.payinfo for p in payment_paths]
        inv.invoice_created_at = created_at
        if relative_expiry is not None and relative_expiry != DEFAULT_RELATIVE_EXPIRY:
            inv.invoice_relative_expiry = relative_expiry
        inv.invoice_features = features or None
        inv.invoice_node_id = pubkey_of(signing_secret)
        inv.invoice_held_htlc_available_paths = list(held_htlc_available_paths)
        inv.sign(signing_secret)
        inv.check()
        inv.validate(now=created_at, chain=(offer.offer_chains or [BITCOIN_CHAIN])[0])
        return inv


    def is_expired(self, now: int) -> bool:
        return now >= self.expires_at()

    def validate(self, now: int, chain: bytes = BITCOIN_CHAIN) -> None:
        """Semantic checks beyond parsing; raise WireError with the reason.

        Signature against node_id; node_id bound to the offer; not expired
        (invoice or offer); the chain is one the offer names.
        """
        node_id = self.invoice_node_id
        if self.offer_issuer_id is not None:
            if node_id != self.offer_issuer_id:
                raise WireError("static_invoice: node_id is not the offer's issuer_id")
        elif not any(p.hops[-1].blinded_node_id == node_id for p in self.offer_paths or []):
            raise WireError("static_invoice: node_id matches no offer path's final blinded node")
        if not self.signature_valid(node_id):
            raise WireError("static_invoice: signature does not verify against node_id")
        if self.is_expired(now):
            raise WireError(f"static_invoice: expired at {self.expires_at()}")
        if self.offer_expired(now):
            raise WireError(f"static_invoice: its offer expired at {self.offer_absolute_expiry}")
        if not self.offer_supports_chain(chain):
            raise WireError("static_invoice: offer is not for this chain")

"""BOLT 12 offers (``lno``). LDK: ``offers/offer.rs``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..blinded_path import BlindedPath
from ..wire import WireError
from ..wire.tlv import TlvStream
from . import merkle
from .fields import OFFER_FIELDS, OFFER_RANGES, unknown_even_feature
from .message import BITCOIN_CHAIN, Bolt12Message


def offer_records(records: TlvStream) -> TlvStream:
    """The offer's records inside any BOLT 12 message (types 1..79 and the
    experimental offer range), which BOLT 12 has copied verbatim."""
    return [r for r in records if 1 <= r[0] < 80 or 1_000_000_000 <= r[0] < 2_000_000_000]


def ldk_offer_id(records: TlvStream) -> bytes:
    """LDK's ``OfferId`` (``offers/offer.rs``): the tagged hash "LDK Offer ID"
    of the merkle root of the offer's records, whatever message carries them."""
    return merkle.tagged_hash(b"LDK Offer ID", merkle.merkle_root(offer_records(records)))


@dataclass
class OfferFields:
    offer_chains: list[bytes] | None = None
    offer_metadata: bytes | None = None
    offer_currency: str | None = None
    offer_amount: int | None = None
    offer_description: str | None = None
    offer_features: bytes | None = None
    offer_absolute_expiry: int | None = None
    offer_paths: list[BlindedPath] | None = None
    offer_issuer: str | None = None
    offer_quantity_max: int | None = None
    offer_issuer_id: bytes | None = None

    def check_offer_fields(self, what: str) -> None:
        """The BOLT 12 offer-reader rules that make an offer unusable."""
        bit = unknown_even_feature(self.offer_features)
        if bit is not None:
            raise WireError(f"{what}: unknown required offer feature {bit}")
        if self.offer_amount == 0:
            raise WireError(f"{what}: offer_amount is zero")
        if self.offer_currency is not None and self.offer_amount is None:
            raise WireError(f"{what}: offer_currency without offer_amount")
        if self.offer_amount is not None and self.offer_description is None:
            raise WireError(f"{what}: offer_amount without offer_description")
        if self.offer_issuer_id is None and not self.offer_paths:
            raise WireError(f"{what}: neither offer_issuer_id nor offer_paths")

    def offer_expired(self, now: int) -> bool:
        return self.offer_absolute_expiry is not None and now >= self.offer_absolute_expiry

    def offer_supports_chain(self, chain: bytes) -> bool:
        return chain in (self.offer_chains or [BITCOIN_CHAIN])

    def offer(self) -> Offer:
        """The offer this message was made for (for use on invoice requests
        and invoices, which mix these fields into a TlvMessage)."""
        return Offer.from_records(offer_records(self.to_records()))


@dataclass
class Offer(OfferFields, Bolt12Message):
    unknown: dict[int, bytes] = field(default_factory=dict)

    WHAT = "offer"
    HRP = "lno"
    FIELDS = OFFER_FIELDS
    RANGES = OFFER_RANGES

    def check(self) -> None:
        self.check_offer_fields(self.WHAT)

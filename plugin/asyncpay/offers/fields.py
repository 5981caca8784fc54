"""The BOLT 12 TLV fields, defined once and shared by every message.

Type numbers and encodings: BOLT 12 "TLV Fields for Offers", "...for
invoice_request", "...for Invoices"; LDK ``offers/offer.rs``,
``offers/invoice_request.rs``, ``offers/invoice.rs``. Type 236 is LDK's
``held_htlc_available_paths``, present only in static invoices.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..blinded_path import BlindedPath, BlindedPayInfo
from ..wire import Reader, WireError
from ..wire.fields import Codec, Concatenated, Field, FixedBytes, Point, RawBytes, Truncated, Utf8


@dataclass(frozen=True)
class FallbackAddress:
    version: int
    address: bytes

    @classmethod
    def read(cls, r: Reader) -> FallbackAddress:
        v = r.u8("fallback version")
        return cls(v, r.read(r.u16("fallback len"), "fallback address"))

    def write(self) -> bytes:
        if not 0 <= self.version <= 255 or len(self.address) > 0xFFFF:
            raise WireError("fallback address: version must be a u8 and the address at most 65535 bytes")
        return bytes((self.version,)) + len(self.address).to_bytes(2, "big") + self.address


@dataclass(frozen=True)
class Bip353Name:
    name: bytes
    domain: bytes


class _Bip353Codec(Codec[Bip353Name]):
    def decode(self, data: bytes) -> Bip353Name:
        r = Reader(data)
        name = r.read(r.u8(), "bip353 name")
        domain = r.read(r.u8(), "bip353 domain")
        r.expect_end("invreq_bip_353_name")
        return Bip353Name(name, domain)

    def encode(self, v: Bip353Name) -> bytes:
        if len(v.name) > 255 or len(v.domain) > 255:
            raise WireError("invreq_bip_353_name: part longer than 255 bytes")
        return bytes((len(v.name),)) + v.name + bytes((len(v.domain),)) + v.domain


def _chain(r: Reader) -> bytes:
    return r.read(32, "chain hash")


CHAINS = Concatenated(_chain, bytes, "offer_chains", non_empty=True)
PATHS = Concatenated(BlindedPath.read, BlindedPath.write, "paths", non_empty=True)
PAYINFOS = Concatenated(BlindedPayInfo.read, BlindedPayInfo.write, "blindedpay")
FALLBACKS = Concatenated(FallbackAddress.read, FallbackAddress.write, "fallbacks")
SIGNATURE = Field(240, "signature", FixedBytes(64, "signature"))

OFFER_FIELDS = (
    Field(2, "offer_chains", CHAINS),
    Field(4, "offer_metadata", RawBytes()),
    Field(6, "offer_currency", Utf8()),
    Field(8, "offer_amount", Truncated(8)),
    Field(10, "offer_description", Utf8()),
    Field(12, "offer_features", RawBytes()),
    Field(14, "offer_absolute_expiry", Truncated(8)),
    Field(16, "offer_paths", PATHS),
    Field(18, "offer_issuer", Utf8()),
    Field(20, "offer_quantity_max", Truncated(8)),
    Field(22, "offer_issuer_id", Point("offer_issuer_id")),
)

INVREQ_FIELDS = (
    Field(0, "invreq_metadata", RawBytes()),
    *OFFER_FIELDS,
    Field(80, "invreq_chain", FixedBytes(32, "invreq_chain")),
    Field(82, "invreq_amount", Truncated(8)),
    Field(84, "invreq_features", RawBytes()),
    Field(86, "invreq_quantity", Truncated(8)),
    Field(88, "invreq_payer_id", Point("invreq_payer_id")),
    Field(89, "invreq_payer_note", Utf8()),
    Field(90, "invreq_paths", PATHS),
    Field(91, "invreq_bip_353_name", _Bip353Codec()),
)

INVOICE_ONLY_FIELDS = (
    Field(160, "invoice_paths", PATHS),
    Field(162, "invoice_blindedpay", PAYINFOS),
    Field(164, "invoice_created_at", Truncated(8)),
    Field(166, "invoice_relative_expiry", Truncated(4)),
    Field(168, "invoice_payment_hash", FixedBytes(32, "invoice_payment_hash")),
    Field(170, "invoice_amount", Truncated(8)),
    Field(172, "invoice_fallbacks", FALLBACKS),
    Field(174, "invoice_features", RawBytes()),
    Field(176, "invoice_node_id", Point("invoice_node_id")),
)

HELD_HTLC_AVAILABLE_PATHS = Field(236, "invoice_held_htlc_available_paths", PATHS)


def in_ranges(t: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= t < hi for lo, hi in ranges)


# BOLT 12 type ranges (start inclusive, end exclusive).
OFFER_RANGES = ((1, 80), (1_000_000_000, 2_000_000_000))
INVREQ_RANGES = ((0, 160), (240, 1001), (1_000_000_000, 3_000_000_000))
INVOICE_RANGES = ((0, 1001), (1_000_000_000, 4_000_000_000))
# LDK static invoices: offer, invoice, signature and both experimental ranges;
# never the invoice_request ranges (offers/static_invoice.rs FullInvoiceTlvStream).
STATIC_INVOICE_RANGES = (
    (1, 80),
    (160, 1001),
    (1_000_000_000, 2_000_000_000),
    (3_000_000_000, 4_000_000_000),
)


def unknown_even_feature(features: bytes | None) -> int | None:
    """The lowest even feature bit set in ``features`` (none of BOLT 12's
    offer/invoice_request/invoice features are defined as required yet,
    except MPP (16/17) in invoices which callers allow)."""
    if not features:
        return None
    # Mask the even bits at once: a bit-by-bit scan is quadratic in the
    # length, seconds for the 32 KB a single onion message can carry.
    even = int.from_bytes(features, "big") & int.from_bytes(b"\x55" * len(features), "big")
    return (even & -even).bit_length() - 1 if even else None

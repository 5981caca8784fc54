"""The often-offline recipient's settings; each is a plugin option
``asyncpay-<name with dashes>`` (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ..lsp.config import DAY, option


@dataclass
class RecipientConfig:
    # LDK's static invoices live 14 days (static_invoice.rs DEFAULT_RELATIVE_EXPIRY).
    recipient_invoice_ttl: int = option(14 * DAY, "Seconds a static invoice we publish stays valid.")
    recipient_refresh_margin: int = option(
        7 * DAY, "Seconds before its expiry that a static invoice (or offer paths) is renewed.")
    recipient_refresh_interval: int = option(3600, "Seconds between two checks that our offers are fresh.")
    recipient_offer_wait: int = option(5, "Seconds asyncpay-offer waits for the server's confirmation.")
    # BOLT 4 payment_constraints: how far in the future an HTLC over our paths may expire.
    recipient_max_cltv_blocks: int = option(4032, "Blocks after now that an HTLC paying us may expire at most.")
    recipient_final_cltv_delta: int = option(18, "Blocks our own hop asks for when it is paid (min_final_cltv).")
    recipient_mpp_timeout: int = option(60, "Seconds the parts of a multi-part payment wait for the rest.")
    recipient_held_paths_ttl: int = option(
        30 * DAY, "Seconds the paths we ask payers to announce held HTLCs over stay valid.")

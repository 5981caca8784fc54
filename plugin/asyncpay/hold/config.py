"""The holding LSP's settings; each is a plugin option ``asyncpay-<name with
dashes>`` (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ..lsp.config import option


@dataclass
class HoldConfig:
    hold_min_blocks: int = option(
        36, "Blocks before a held HTLC's outgoing CLTV expiry at which it is failed back instead of held on.")
    hold_max_seconds: int = option(7 * 86400, "Seconds an HTLC is held at most before it is failed back.")
    hold_max_per_peer: int = option(20, "HTLCs held at once for one peer.")
    hold_max_total: int = option(1000, "HTLCs held at once in all.")

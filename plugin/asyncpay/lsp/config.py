"""Every limit of the LSP role, with its default. Each is a plugin option
``asyncpay-<name with dashes>`` (see docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass, fields

DAY = 24 * 3600


@dataclass
class LspConfig:
    # Mailbox (design §6). ldk-node keeps 30 messages per peer in memory.
    mailbox_max_messages_per_peer: int = 100
    mailbox_max_bytes_per_peer: int = 4 * 1024 * 1024
    mailbox_max_messages: int = 100_000
    mailbox_max_bytes: int = 256 * 1024 * 1024
    mailbox_ttl: int = 7 * DAY
    # connectd accepts one onion message per 250 ms per peer, burst 4
    # (connectd/onion_message.c); we stay under it.
    mailbox_flush_interval_ms: int = 300
    # Intake per source peer: tokens per second and burst.
    mailbox_intake_rate: float = 20.0
    mailbox_intake_burst: int = 100

    # Static invoice server.
    max_slots_per_recipient: int = 16
    max_invoice_bytes: int = 8192
    offer_paths_ttl: int = 365 * DAY
    recipient_paths_ttl: int = 365 * DAY
    # Persisting: LDK's server allows a bucket of 5, one token per 100 ms.
    persist_rate: float = 10.0
    persist_burst: int = 5
    serve_rate: float = 10.0
    serve_burst: int = 20

    @classmethod
    def option_names(cls) -> dict[str, str]:
        """Plugin option name -> field name."""
        return {"asyncpay-" + f.name.replace("_", "-"): f.name for f in fields(cls)}

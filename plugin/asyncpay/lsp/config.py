"""Every limit of the LSP role, with its default. Each is a plugin option
``asyncpay-<name with dashes>`` whose help is the field's ``help`` metadata
(see docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import DAY, option


@dataclass
class LspConfig:
    # Mailbox (design §6). ldk-node keeps 30 messages per peer in memory.
    mailbox_max_messages_per_peer: int = option(100, "Most onion messages kept for one offline peer.")
    # One source's share of one peer's quota: a stranger cannot fill a
    # sleeping wallet's mailbox, and a payer's held_htlc_available gets in.
    mailbox_max_messages_per_source_per_peer: int = option(
        10, "Most onion messages one source peer may have queued for one offline peer.")
    mailbox_max_bytes_per_peer: int = option(4 * 1024 * 1024, "Most bytes of onion messages kept for one offline peer.")
    mailbox_max_messages: int = option(100_000, "Most onion messages kept for all offline peers together.")
    mailbox_max_bytes: int = option(256 * 1024 * 1024, "Most bytes of onion messages kept for all peers together.")
    mailbox_ttl: int = option(7 * DAY, "Seconds a queued onion message is kept before it is dropped.")
    # connectd accepts one onion message per 250 ms per peer, burst 4
    # (connectd/onion_message.c); we stay under it.
    mailbox_flush_interval_ms: int = option(300, "Milliseconds between two messages flushed to a reconnected peer.")
    mailbox_intake_rate: int = option(20, "Messages per second one source peer may add to the mailbox.")
    mailbox_intake_burst: int = option(100, "Messages one source peer may add at once before its rate applies.")
    mailbox_notify_interval: int = option(
        60, "Seconds between two asyncpay_mailbox_queued notifications for the same peer.")

    # Static invoice server.
    max_slots_per_recipient: int = option(16, "Invoice slots each recipient may use.")
    max_invoice_bytes: int = option(8192, "Largest static invoice stored, in bytes.")
    # What one recipient can make us store: per slot, this many offer-path
    # sets (one issued path, two contexts each), plus the one in use.
    max_offer_paths_per_slot: int = option(
        4, "Offer-path sets kept per recipient slot; older ones not in the stored invoice are deleted.")
    offer_paths_ttl: int = option(365 * DAY, "Seconds the offer paths handed to a recipient stay valid.")
    recipient_paths_ttl: int = option(365 * DAY, "Seconds the paths of asyncpay-recipientpaths stay valid.")
    # Persisting: LDK's server allows a bucket of 5, one token per 100 ms.
    persist_rate: int = option(10, "Offer-path requests and invoice stores per second for one recipient.")
    persist_burst: int = option(5, "Offer-path requests and invoice stores one recipient may make at once.")
    serve_rate: int = option(10, "Static invoices served per second for one recipient.")
    serve_burst: int = option(20, "Static invoices served at once for one recipient before its rate applies.")
    # Per (source peer, recipient): one source alone cannot use up a
    # recipient's serve budget (a payer behind a big LSP shares its source).
    serve_source_rate: int = option(5, "Static invoices served per second for one recipient to one source peer.")
    serve_source_burst: int = option(10, "Static invoices served at once for one recipient to one source peer.")
    # Counters and served marks are written off the answers' path (bookkeeping.py).
    counters_interval_ms: int = option(
        1000, "Milliseconds between two writes of the counters and served marks; a crash loses at most these.")

"""The often-offline recipient's settings; each is a plugin option
``asyncpay-<name with dashes>`` (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import DAY, option

# LDK chain/channelmonitor.rs: HTLC_FAIL_BACK_BUFFER = CLTV_CLAIM_BUFFER (2 x MAX_BLOCKS_FOR_CONF = 36,
# since LDK #3608; 18 before, hence the older "21") + LATENCY_GRACE_PERIOD_BLOCKS (3). Within it an
# HTLC paid to us is failed rather than claimed: going on chain to claim it might not confirm in time.
HTLC_FAIL_BACK_BUFFER = 39
# LDK ln/channelmanager.rs MIN_FINAL_CLTV_EXPIRY_DELTA = HTLC_FAIL_BACK_BUFFER + 3: an HTLC arriving
# with exactly margin + 1 blocks left is failed (onion_payment.rs), and a block may be found in flight.
FINAL_CLTV_SLACK = 3
# A payer sets the HTLC's expiry from its own tip, and CLN's xpay adds no random offset: a wallet that
# just woke, or blocks found in a burst, leave it a few blocks behind ours. With only FINAL_CLTV_SLACK a
# payer two blocks behind fails cltv_too_soon (seen in the chaos run, docs/chaos.md); asking for this
# many blocks more lets it be up to PAYER_LAG_BLOCKS + 1 behind. It costs the payer that many blocks
# of CLTV, far inside asyncpay-payer-max-cltv and xpay's maxdelay (2016).
PAYER_LAG_BLOCKS = 6


@dataclass
class RecipientConfig:
    # LDK's static invoices live 14 days (static_invoice.rs DEFAULT_RELATIVE_EXPIRY).
    recipient_invoice_ttl: int = option(14 * DAY, "Seconds a static invoice we publish stays valid.")
    recipient_refresh_margin: int = option(
        7 * DAY, "Seconds before its expiry that a static invoice (or offer paths) is renewed.")
    recipient_refresh_interval: int = option(3600, "Seconds between two checks that our offers are fresh.")
    recipient_offer_wait: int = option(5, "Seconds asyncpay-offer waits for the server's confirmation.")
    # Each re-serve mints a payment path, a held path and a forward path whose contexts live as long
    # as the invoice: a connection to the LSP that flaps (or fees it keeps changing) must not grow them
    # without bound. An invoice about to expire is re-served whatever this says.
    recipient_reserve_interval: int = option(
        600, "Seconds after a slot's last serve before a reconnect or a channel change re-serves it.")
    # BOLT 4 payment_constraints: how far in the future an HTLC over our paths may expire.
    recipient_max_cltv_blocks: int = option(4032, "Blocks after now that an HTLC paying us may expire at most.")
    recipient_final_cltv_delta: int = option(
        HTLC_FAIL_BACK_BUFFER + FINAL_CLTV_SLACK + PAYER_LAG_BLOCKS,
        "Blocks our own hop asks for when it is paid (min_final_cltv); at least the claim margin + 3.")
    recipient_claim_margin_blocks: int = option(
        HTLC_FAIL_BACK_BUFFER,
        "Blocks that must remain before an HTLC's expiry for us to reveal its preimage (at least 39).")
    recipient_mpp_timeout: int = option(60, "Seconds the parts of a multi-part payment wait for the rest.")
    recipient_max_pending_payments: int = option(
        64, "Multi-part payments waiting for their other parts at once; a part of one more is failed.")
    recipient_max_pending_parts: int = option(
        483, "HTLCs of multi-part payments waiting at once, in all; one more is failed.")
    recipient_max_expected_invoices: int = option(
        1000, "Unpaid BOLT 12 invoices we issued while online whose preimages we keep; more requests go unanswered.")
    recipient_held_paths_ttl: int = option(
        30 * DAY, "Seconds the paths we ask payers to announce held HTLCs over stay valid.")

    def validate(self) -> None:
        """Refuse settings under which we would reveal a preimage too close to expiry (BOLT 4:
        fail an HTLC whose expiry is unreasonably near), or advertise a delta we then refuse."""
        m = self.recipient_claim_margin_blocks
        if m < HTLC_FAIL_BACK_BUFFER:
            raise ValueError(f"asyncpay-recipient-claim-margin-blocks: must be at least {HTLC_FAIL_BACK_BUFFER} "
                             f"(LDK's HTLC_FAIL_BACK_BUFFER), got {m}")
        if self.recipient_final_cltv_delta < m + FINAL_CLTV_SLACK:
            raise ValueError(f"asyncpay-recipient-final-cltv-delta: must be at least "
                             f"asyncpay-recipient-claim-margin-blocks + {FINAL_CLTV_SLACK} = {m + FINAL_CLTV_SLACK}, "
                             f"got {self.recipient_final_cltv_delta}")
        if self.recipient_max_cltv_blocks <= self.recipient_final_cltv_delta:
            raise ValueError(f"asyncpay-recipient-max-cltv-blocks: must be above "
                             f"asyncpay-recipient-final-cltv-delta ({self.recipient_final_cltv_delta}), "
                             f"got {self.recipient_max_cltv_blocks}")

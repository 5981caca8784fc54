"""The payer's settings; each is a plugin option ``asyncpay-<name with
dashes>`` (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option


@dataclass
class PayerConfig:
    payer_timeout: int = option(60, "Seconds asyncpay-pay waits for its payment before it answers pending.")
    payer_request_retry: int = option(5, "Seconds without an answer before an invoice_request is sent again.")
    payer_request_attempts: int = option(4, "Invoice_request sends (over the offer's paths in turn) before failing.")
    payer_invoice_grace: int = option(
        2, "Seconds a static invoice waits for a normal invoice from an online recipient before holding.")
    payer_max_fee_base_msat: int = option(
        5000, "Fee in msat a payment may pay (blinded path and route together), on top of the ppm part.")
    payer_max_fee_ppm: int = option(10_000, "Fee in millionths of the amount a payment may pay, on top of the base.")
    # xpay's maxdelay default; LDK routing/router.rs DEFAULT_MAX_TOTAL_CLTV_EXPIRY_DELTA is 1008, too few
    # for a payment our LSP holds (asyncpay-payer-hold-blocks 1008 on top of the route's).
    payer_max_cltv: int = option(
        2016, "Blocks after the tip the HTLC we send may expire at most (route, blinded path and hold).")
    payer_held_resend_min: int = option(
        30, "Seconds before held_htlc_available is sent again when no release came; doubles each time.")
    payer_held_resend_max: int = option(3600, "Longest wait between two sends of held_htlc_available.")
    # LDK ln/outbound_payment.rs ASYNC_PAYMENT_TIMEOUT_RELATIVE_EXPIRY (one week).
    payer_release_timeout: int = option(
        604_800, "Seconds a static-invoice payment waits for the recipient's release before it fails.")
    # Often-offline sender: hand static-invoice payments to this channel peer to hold (docs/rpc.md).
    payer_lsp: str | None = option(None, "Node id of our LSP, which holds our static-invoice payments for us.")
    payer_hold_blocks: int = option(
        1008, "Blocks of CLTV a payment held by our LSP carries on top of the route's, for the hold.")

    def validate(self) -> None:
        """Checks beyond each option's type (``cln/options.load`` calls it)."""
        for name in ("payer_max_fee_base_msat", "payer_max_fee_ppm", "payer_held_resend_min",
                     "payer_held_resend_max", "payer_release_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"asyncpay-{name.replace('_', '-')}: must not be negative")
        if self.payer_held_resend_min < 1 or self.payer_held_resend_max < self.payer_held_resend_min:
            raise ValueError("asyncpay-payer-held-resend-min must be at least 1 and at most "
                             "asyncpay-payer-held-resend-max")
        if self.payer_lsp is not None and self.payer_hold_blocks + 1 >= self.payer_max_cltv:
            raise ValueError("asyncpay-payer-max-cltv must exceed asyncpay-payer-hold-blocks + 1, or no payment "
                             "our LSP holds fits")
        if self.payer_lsp is not None:
            try:
                ok = len(bytes.fromhex(self.payer_lsp)) == 33
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"asyncpay-payer-lsp: must be a node id (66 hex characters), got {self.payer_lsp!r}")

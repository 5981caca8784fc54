"""The payer's settings; each is a plugin option ``asyncpay-<name with
dashes>`` (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ..lsp.config import option


@dataclass
class PayerConfig:
    payer_timeout: int = option(60, "Seconds asyncpay-pay waits for its payment before it answers pending.")
    payer_request_retry: int = option(5, "Seconds without an answer before an invoice_request is sent again.")
    payer_request_attempts: int = option(4, "Invoice_request sends (over the offer's paths in turn) before failing.")
    payer_invoice_grace: int = option(
        2, "Seconds a static invoice waits for a normal invoice from an online recipient before holding.")
    payer_max_fee_base_msat: int = option(5000, "Fee in msat a static-invoice payment may pay on top of the rest.")
    payer_max_fee_ppm: int = option(10_000, "Fee in millionths of the amount a static-invoice payment may pay.")
    # Often-offline sender: hand static-invoice payments to this channel peer to hold (docs/rpc.md).
    payer_lsp: str | None = option(None, "Node id of our LSP, which holds our static-invoice payments for us.")
    payer_hold_blocks: int = option(
        1008, "Blocks of CLTV a payment held by our LSP carries on top of the route's, for the hold.")

    def validate(self) -> None:
        """Checks beyond each option's type (``cln/options.load`` calls it)."""
        if self.payer_lsp is not None:
            try:
                ok = len(bytes.fromhex(self.payer_lsp)) == 33
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"asyncpay-payer-lsp: must be a node id (66 hex characters), got {self.payer_lsp!r}")

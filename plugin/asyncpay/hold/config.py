"""The holding LSP's settings; each is a plugin option ``asyncpay-<name with
dashes>`` (docs/configuration.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..config import node_ids, option

PRIVATE, CHANNEL = "private", "channel"


@dataclass
class HoldConfig:
    hold_min_blocks: int = option(
        36, "Blocks before a held HTLC's CLTV budget (its outgoing CLTV, or its incoming one less our cltv-delta) "
            "at which it is failed back instead of held on.")
    hold_max_seconds: int = option(7 * 86400, "Seconds an HTLC is held at most before it is failed back.")
    hold_max_per_peer: int = option(20, "HTLCs held at once for one peer.")
    hold_max_total: int = option(1000, "HTLCs held at once in all.")
    # A routing peer must not fill hold-max-total and jam our channels for
    # days at no fee: we hold only for the wallets we serve.
    hold_clients: str = option(
        PRIVATE, "Whose HTLCs we hold: private (peers whose every channel with us is unannounced), channel (any "
                 "channel peer) or a comma-separated list of node ids.")
    hold_resend_first: int = option(
        60, "Seconds before held_htlc_available goes again for an HTLC still held; the wait doubles each time.")
    hold_resend_max_interval: int = option(3600, "Longest wait in seconds between two sends of held_htlc_available.")
    hold_resend_attempts: int = option(24, "Sends of held_htlc_available for one held HTLC, at most.")
    hold_check_seconds: int = option(
        30, "Seconds between two checks of held HTLCs: their hold_until, longest hold and re-sends.")

    def validate(self) -> None:
        """Checks beyond each option's type (``cln/options.load`` calls it)."""
        self.client_ids()
        if self.hold_resend_max_interval < self.hold_resend_first:
            raise ValueError("asyncpay-hold-resend-max-interval must be at least asyncpay-hold-resend-first")

    def client_ids(self) -> frozenset[str] | None:
        """The node ids listed in hold-clients (None: a policy word)."""
        value = self.hold_clients.strip().lower()
        if value in (PRIVATE, CHANNEL):
            return None
        ids = node_ids(value, "hold-clients", "private, channel or node ids")
        if not ids:
            raise ValueError("asyncpay-hold-clients: empty list")
        return frozenset(ids)

    def serves(self, peer_id: str, channels_private: Sequence[bool]) -> bool:
        """Do we hold for this peer? ``channels_private``: the private flag
        of each of its open channels with us (none: unknown, so no)."""
        ids = self.client_ids()
        if ids is not None:
            return peer_id.lower() in ids
        if not channels_private:
            return False
        if self.hold_clients.strip().lower() == CHANNEL:
            return True
        return all(channels_private)

"""The payer's table: one row per ``asyncpay-pay``. Own migrations
(``Store.migrate_component("payer")``).

Bound: only the local user's ``asyncpay-pay`` creates a row (nothing a
peer, payer or LSP sends does), so the table is the user's own payment
history, kept like ``listsendpays``'s and never pruned. What strangers can
reach is the path contexts of our reply paths: at most
``asyncpay-payer-request-attempts`` for a request and three per send of
``held_htlc_available`` (backoff capped at ``asyncpay-payer-held-resend-max``,
for at most ``asyncpay-payer-release-timeout``); each expires with its
payment and ``Store.purge_contexts`` deletes it then.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..storage import SchemaEditor
from ..store import RowTable, Store


def _v1(db: SchemaEditor) -> None:
    db["payer_payments"].create(
        {"id": str, "state": str, "kind": str, "bolt12": str, "offer": bytes, "amount_msat": int,
         "nonce": bytes, "invreq": bytes, "invoice": bytes, "payment_hash": bytes, "payment_preimage": bytes,
         "reason": str, "attempts": int, "next_at": int, "expires_at": int, "created_at": int,
         "updated_at": int},
        pk="id",
    )
    db["payer_payments"].create_index(["state"])


def _v2(db: SchemaEditor) -> None:
    # held_htlc_available is sent again with backoff until the release comes.
    db["payer_payments"].add_column("held_sends", int, not_null_default=0)


def _v3(db: SchemaEditor) -> None:
    # The timer finds what is due through these (issue 24): never a read of every open payment.
    db["payer_payments"].create_index(["state", "next_at"])
    db["payer_payments"].create_index(["state", "expires_at"])


MIGRATIONS = [_v1, _v2, _v3]

# States. REQUESTING: invoice_request sent. STATIC: a static invoice came,
# held_htlc_available goes out at next_at unless a normal invoice comes first.
# AWAITING_RELEASE: held_htlc_available sent. PAYING: HTLCs on their way.
# HELD_AT_LSP: our LSP holds the HTLC (asyncpay-payer-lsp); we may sleep.
REQUESTING, STATIC, AWAITING_RELEASE, PAYING = "requesting", "static", "awaiting_release", "paying"
HELD_AT_LSP, COMPLETE, FAILED = "held_at_lsp", "complete", "failed"
OPEN = (REQUESTING, STATIC, AWAITING_RELEASE, PAYING, HELD_AT_LSP)


@dataclass
class PaymentRow:
    id: str
    state: str
    kind: str | None
    bolt12: str
    offer: bytes
    amount_msat: int
    nonce: bytes
    invreq: bytes
    invoice: bytes | None = None
    payment_hash: bytes | None = None
    payment_preimage: bytes | None = None
    reason: str | None = None
    attempts: int = 0
    next_at: int = 0
    expires_at: int = 0
    created_at: int = 0
    updated_at: int = 0
    held_sends: int = 0  # sends of held_htlc_available so far (the backoff's exponent)

    @property
    def status(self) -> str:
        if self.state == HELD_AT_LSP:
            return "held"
        return self.state if self.state in (COMPLETE, FAILED) else "pending"

    def view(self) -> dict:
        """The JSON of asyncpay-pay and asyncpay-listpays (docs/rpc.md)."""
        out = {"id": self.id, "status": self.status, "kind": self.kind,
               "payment_hash": self.payment_hash.hex() if self.payment_hash else None,
               "amount_msat": self.amount_msat, "bolt12": self.bolt12}
        if self.state == COMPLETE and self.payment_preimage:
            out["payment_preimage"] = self.payment_preimage.hex()
        if self.state == FAILED:
            out["reason"] = self.reason
        return out


class PayerRecords:
    def __init__(self, store: Store) -> None:
        self.store = store
        store.migrate_component("payer", MIGRATIONS)
        self.rows = RowTable(store, "payer_payments", PaymentRow, "id")
        self.put, self.get = self.rows.put, self.rows.get

    def in_state(self, *states: str) -> list[PaymentRow]:
        return self.rows.where_in("state", states, "created_at")

    def due(self, now: int, states: tuple[str, ...], expiring: str) -> list[PaymentRow]:
        """Payments in ``states`` whose ``next_at`` has come, and those in
        ``expiring`` past ``expires_at``: found through the (state, next_at)
        and (state, expires_at) indexes, so a timer pass reads what is due only."""
        marks = ", ".join("?" * len(states))
        rows = self.rows.where(f"state IN ({marks}) AND next_at <= ?", (*states, now))
        rows += self.rows.where("state = ? AND expires_at <= ?", (expiring, now))
        unique = {r.id: r for r in rows}
        return sorted(unique.values(), key=lambda r: (r.created_at, r.id))

    def all(self) -> list[PaymentRow]:
        return self.rows.where(order="created_at, id")

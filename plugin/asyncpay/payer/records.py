"""The payer's table: one row per ``asyncpay-pay``. Own migrations
(``Store.migrate_component("payer")``)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import sqlite_utils

from ..store import Store


def _v1(db: sqlite_utils.Database) -> None:
    db["payer_payments"].create(
        {"id": str, "state": str, "kind": str, "bolt12": str, "offer": bytes, "amount_msat": int,
         "nonce": bytes, "invreq": bytes, "invoice": bytes, "payment_hash": bytes, "payment_preimage": bytes,
         "reason": str, "attempts": int, "next_at": int, "expires_at": int, "created_at": int,
         "updated_at": int},
        pk="id",
    )
    db["payer_payments"].create_index(["state"])


MIGRATIONS = [_v1]

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


_COLUMNS = [f.name for f in fields(PaymentRow)]


class PayerRecords:
    def __init__(self, store: Store) -> None:
        self.store = store
        store.migrate_component("payer", MIGRATIONS)

    def put(self, row: PaymentRow) -> None:
        self.store.conn.execute(
            f"INSERT OR REPLACE INTO payer_payments ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
            [getattr(row, c) for c in _COLUMNS])

    def get(self, payment_id: str) -> PaymentRow | None:
        r = self.store.conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM payer_payments WHERE id = ?", (payment_id,)).fetchone()
        return PaymentRow(*r) if r else None

    def in_state(self, *states: str) -> list[PaymentRow]:
        marks = ", ".join("?" * len(states))
        rows = self.store.conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM payer_payments WHERE state IN ({marks}) ORDER BY created_at",
            states).fetchall()
        return [PaymentRow(*r) for r in rows]

    def all(self) -> list[PaymentRow]:
        rows = self.store.conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM payer_payments ORDER BY created_at, id").fetchall()
        return [PaymentRow(*r) for r in rows]

"""The recipient's tables: the server it uses, one offer per slot, and what
it was paid. Own migrations (``Store.migrate_component("recipient")``)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from ..store import RowTable, Store


def _v1(db: sqlite_utils.Database) -> None:
    db["recipient_server"].create({"id": int, "paths": bytes, "set_at": int}, pk="id")
    db["recipient_offers"].create(
        {"slot": int, "state": str, "description": str, "amount_msat": int, "nonce": bytes,
         "offer": bytes, "bolt12": str, "paths_expires_at": int, "serve_path": bytes,
         "invoice": bytes, "invoice_expires_at": int, "channel": str, "persisted_at": int,
         "created_at": int, "updated_at": int},
        pk="slot",
    )
    db["recipient_payments"].create(
        {"payment_hash": bytes, "payment_preimage": bytes, "amount_msat": int, "slot": int, "kind": str,
         "status": str, "received_at": int, "created_at": int},
        pk="payment_hash",
    )


MIGRATIONS = [_v1]

# Offer states: paths asked for; invoice sent to the server; server confirmed it.
REQUESTED, PENDING, READY = "requested", "pending", "ready"


@dataclass
class OfferRow:
    slot: int
    state: str
    description: str | None
    amount_msat: int | None
    nonce: bytes
    offer: bytes | None = None
    bolt12: str | None = None
    paths_expires_at: int | None = None
    serve_path: bytes | None = None
    invoice: bytes | None = None
    invoice_expires_at: int | None = None
    channel: str | None = None
    persisted_at: int | None = None
    created_at: int = 0
    updated_at: int = 0


class RecipientRecords:
    def __init__(self, store: Store) -> None:
        self.store = store
        store.migrate_component("recipient", MIGRATIONS)
        self.offer_rows = RowTable(store, "recipient_offers", OfferRow, "slot")
        self.put_offer, self.offer = self.offer_rows.put, self.offer_rows.get

    @property
    def conn(self):
        return self.store.conn

    # -- the server ----------------------------------------------------------

    def set_server(self, paths: bytes, now: int) -> None:
        self.conn.execute(
            "INSERT INTO recipient_server (id, paths, set_at) VALUES (1, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET paths = excluded.paths, set_at = excluded.set_at",
            (paths, now),
        )

    def server(self) -> bytes | None:
        row = self.conn.execute("SELECT paths FROM recipient_server WHERE id = 1").fetchone()
        return row[0] if row else None

    # -- offers ----------------------------------------------------------------

    def offers(self) -> list[OfferRow]:
        return self.offer_rows.where(order="slot")

    # -- payments --------------------------------------------------------------

    def expect_payment(self, payment_hash: bytes, preimage: bytes, slot: int, amount_msat: int | None,
                       now: int) -> None:
        """A BOLT 12 invoice we issued: its preimage, kept until it is paid."""
        self.conn.execute(
            "INSERT OR IGNORE INTO recipient_payments (payment_hash, payment_preimage, amount_msat, slot, kind, "
            "status, received_at, created_at) VALUES (?, ?, ?, ?, 'invoice', 'expected', NULL, ?)",
            (payment_hash, preimage, amount_msat, slot, now),
        )

    def prune_expected(self, before: int) -> int:
        """Forget the preimages of invoices nobody paid (issued before ``before``):
        a payer's requests must not grow our store without bound."""
        return self.conn.execute(
            "DELETE FROM recipient_payments WHERE status = 'expected' AND created_at < ?", (before,)).rowcount

    def payment(self, payment_hash: bytes) -> dict | None:
        row = self.conn.execute(
            "SELECT payment_hash, payment_preimage, amount_msat, slot, kind, status, received_at "
            "FROM recipient_payments WHERE payment_hash = ?", (payment_hash,)).fetchone()
        keys = ("payment_hash", "payment_preimage", "amount_msat", "slot", "kind", "status", "received_at")
        return dict(zip(keys, row)) if row else None

    def received(self, payment_hash: bytes, preimage: bytes, amount_msat: int, slot: int, kind: str,
                 now: int) -> bool:
        """Record a claimed payment; False if it was already recorded (a replay)."""
        cur = self.conn.execute(
            "INSERT INTO recipient_payments (payment_hash, payment_preimage, amount_msat, slot, kind, status, "
            "received_at, created_at) VALUES (?, ?, ?, ?, ?, 'received', ?, ?) "
            "ON CONFLICT(payment_hash) DO UPDATE SET status = 'received', amount_msat = excluded.amount_msat, "
            "received_at = excluded.received_at WHERE recipient_payments.status != 'received'",
            (payment_hash, preimage, amount_msat, slot, kind, now, now),
        )
        return cur.rowcount > 0

    def payments(self) -> list[dict]:
        rows = self.conn.execute(
            "SELECT p.payment_hash, p.payment_preimage, p.amount_msat, o.bolt12, p.slot, p.kind, p.received_at "
            "FROM recipient_payments p LEFT JOIN recipient_offers o ON o.slot = p.slot "
            "WHERE p.status = 'received' ORDER BY p.received_at, p.payment_hash").fetchall()
        return [
            {"payment_hash": r[0].hex(), "payment_preimage": r[1].hex(), "amount_msat": r[2], "bolt12": r[3],
             "slot": r[4], "kind": r[5], "received_at": r[6]}
            for r in rows
        ]

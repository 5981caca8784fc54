"""The holding LSP's table: one row per HTLC held for a sender. Own
migrations (``Store.migrate_component("hold")``)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from ..store import RowTable, Store


def _v1(db: sqlite_utils.Database) -> None:
    db["held_htlcs"].create(
        {"key": str, "payment_hash": bytes, "amount_msat": int, "cltv_expiry": int, "outgoing_cltv": int,
         "peer_id": str, "payload": bytes, "state": str, "reason": str, "since": int, "updated_at": int},
        pk="key",
    )
    db["held_htlcs"].create_index(["state"])
    db["held_htlcs"].create_index(["payment_hash"])


def _v2(db: sqlite_utils.Database) -> None:
    # The per-peer limit counts held HTLCs of one peer on every new HTLC.
    db["held_htlcs"].create_index(["state", "peer_id"])


MIGRATIONS = [_v1, _v2]

# HELD: waiting for the release. RELEASED: released, to be continued (now, or
# when lightningd replays it after a restart). FORWARDED, FAILED: answered.
HELD, RELEASED, FORWARDED, FAILED = "held", "released", "forwarded", "failed"


@dataclass
class HeldRow:
    key: str  # "<incoming scid>/<htlc id>": stable across lightningd's replays
    payment_hash: bytes
    amount_msat: int
    cltv_expiry: int
    outgoing_cltv: int
    peer_id: str
    payload: bytes  # our hop's payload without the hold request, for `continue`
    state: str = HELD
    reason: str | None = None
    since: int = 0
    updated_at: int = 0

    def view(self) -> dict:
        """One entry of asyncpay-listheld (docs/rpc.md)."""
        return {"payment_hash": self.payment_hash.hex(), "amount_msat": self.amount_msat,
                "cltv_expiry": self.cltv_expiry, "peer_id": self.peer_id, "since": self.since,
                "state": self.state, **({"reason": self.reason} if self.reason else {})}


class HoldRecords:
    def __init__(self, store: Store) -> None:
        self.store = store
        store.migrate_component("hold", MIGRATIONS)
        self.rows = RowTable(store, "held_htlcs", HeldRow, "key")
        self.put, self.get = self.rows.put, self.rows.get

    def by_state(self, *states: str) -> list[HeldRow]:
        return self.rows.where_in("state", states, "since")

    def by_payment_hash(self, payment_hash: bytes) -> list[HeldRow]:
        return self.rows.where("payment_hash = ?", (payment_hash,))

    def count_held(self, peer_id: str | None = None) -> int:
        if peer_id is None:
            q, args = "SELECT COUNT(*) FROM held_htlcs WHERE state = ?", (HELD,)
        else:
            q, args = "SELECT COUNT(*) FROM held_htlcs WHERE state = ? AND peer_id = ?", (HELD, peer_id)
        return self.store.conn.execute(q, args).fetchone()[0]

    def all(self) -> list[HeldRow]:
        return self.rows.where(order="since")

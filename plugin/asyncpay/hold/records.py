"""The holding LSP's table: one row per HTLC held for a sender. Own
migrations (``Store.migrate_component("hold")``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..storage import SchemaEditor
from ..store import RowTable, Store


def _v1(db: SchemaEditor) -> None:
    db["held_htlcs"].create(
        {"key": str, "payment_hash": bytes, "amount_msat": int, "cltv_expiry": int, "outgoing_cltv": int,
         "peer_id": str, "payload": bytes, "state": str, "reason": str, "since": int, "updated_at": int},
        pk="key",
    )
    db["held_htlcs"].create_index(["state"])
    db["held_htlcs"].create_index(["payment_hash"])


def _v2(db: SchemaEditor) -> None:
    # The per-peer limit counts held HTLCs of one peer on every new HTLC.
    db["held_htlcs"].create_index(["state", "peer_id"])


def _v3(db: SchemaEditor) -> None:
    # hold_until enforced, and held_htlc_available sent again while held (a
    # lost message must not lock the sender's funds until the margin).
    t = db["held_htlcs"]
    t.add_column("deadline", int, not_null_default=0)  # 0: since + hold-max-seconds
    t.add_column("request", bytes)
    t.add_column("sends", int, not_null_default=0)
    t.add_column("next_send_at", int, not_null_default=0)


MIGRATIONS = [_v1, _v2, _v3]

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
    deadline: int = 0  # when the hold ends without a release: min(hold_until, since + hold-max-seconds)
    request: bytes | None = None  # the hold request, to send held_htlc_available again
    sends: int = 0  # held_htlc_available rounds sent
    next_send_at: int = 0

    def view(self) -> dict:
        """One entry of asyncpay-listheld (docs/rpc.md)."""
        return {"payment_hash": self.payment_hash.hex(), "amount_msat": self.amount_msat,
                "cltv_expiry": self.cltv_expiry, "peer_id": self.peer_id, "since": self.since,
                "state": self.state, **({"deadline": self.deadline} if self.deadline else {}),
                **({"reason": self.reason} if self.reason else {})}


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

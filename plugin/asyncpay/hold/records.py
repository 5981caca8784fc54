"""The holding LSP's table: one row per HTLC held for a sender. Own
migrations (``Store.migrate_component("hold")``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..held_counts import PEER, TOTAL, CountedRows, HeldCounts
from ..storage import SchemaEditor
from ..store import Store


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


HELD_COUNTS = HeldCounts("hold_counts", "held_htlcs")


def _v4(db: SchemaEditor) -> None:
    # Issue 24: the limits from maintained counts, the timer from indexes on
    # what makes a hold due (its CLTV budget, deadline, age, next send).
    HELD_COUNTS.create(db)
    t = db["held_htlcs"]
    for column in ("cltv_expiry", "outgoing_cltv", "deadline", "since", "next_send_at"):
        t.create_index(["state", column])


MIGRATIONS = [_v1, _v2, _v3, _v4]
NEVER = 2**62  # next_send_at of a hold with no send of held_htlc_available left

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
        self.rows = CountedRows(store, HELD_COUNTS, HeldRow, "key")
        self.put, self.get = self.rows.put, self.rows.get

    def by_state(self, *states: str) -> list[HeldRow]:
        return self.rows.where_in("state", states, "since")

    def by_payment_hash(self, payment_hash: bytes) -> list[HeldRow]:
        return self.rows.where("payment_hash = ?", (payment_hash,))

    def count_held(self, peer_id: str | None = None) -> int:
        """HTLCs held for ``peer_id``, or in all: from the maintained counts, never a count of the rows."""
        return self.rows.count(TOTAL) if peer_id is None else self.rows.count(PEER, peer_id)

    def due(self, height_in: int, height_out: int, deadline: int, since: int, send: int) -> list[HeldRow]:
        """Holds the timer must look at, found through the (state, ...) indexes:
        held or released with ``cltv_expiry`` below ``height_in`` or
        ``outgoing_cltv`` below ``height_out`` (the budget), held with a
        ``deadline`` (non-zero) at or before ``deadline``, held ``since`` at or
        before ``since``, or held with its next send at or before ``send``."""
        live = (HELD, RELEASED)
        rows = self.rows.where("state IN (?, ?) AND cltv_expiry < ?", (*live, height_in))
        rows += self.rows.where("state IN (?, ?) AND outgoing_cltv < ?", (*live, height_out))
        rows += self.rows.where("state = ? AND deadline BETWEEN 1 AND ?", (HELD, deadline))
        rows += self.rows.where("state = ? AND since <= ?", (HELD, since))
        rows += self.rows.where("state = ? AND next_send_at <= ?", (HELD, send))
        unique = {r.key: r for r in rows}
        return sorted(unique.values(), key=lambda r: (r.since, r.key))

    def all(self) -> list[HeldRow]:
        return self.rows.where(order="since")

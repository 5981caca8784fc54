"""How many rows are held, and for how much, per peer, per incoming channel
and in all, kept in a table beside the rows (issue 24): a hold's limits are
read from here, one primary-key lookup, instead of counting the held rows on
every new HTLC.

The counts change in the same transaction as the row (``CountedRows.put``),
so a crash or a rollback never leaves them apart, on either database; the
migration that makes the table fills it from the rows, and ``rebuild`` does
the same for rows written behind the roles' back (a bulk load).

A row is counted under each of its scopes: ``("peer", peer_id)``,
``("total", "")`` and, where the table bounds it, ``("channel", <incoming
short channel id>)`` (the key of a held HTLC is "<incoming scid>/<htlc id>").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .storage import SchemaEditor
from .store import RowTable, Store

Scope = tuple[str, str]
PEER, CHANNEL, TOTAL = "peer", "channel", "total"


def incoming_channel(key: str) -> str:
    """The incoming short channel id of a held HTLC's key "<scid>/<htlc id>"."""
    return key.rsplit("/", 1)[0]


@dataclass(frozen=True)
class HeldCounts:
    """Counts of the rows of ``rows`` whose ``state`` is ``held``, in ``table``."""

    table: str
    rows: str
    by_channel: bool = False  # also per incoming channel
    held: str = "held"

    def scopes(self, key: str, peer_id: str) -> list[Scope]:
        out = [(PEER, peer_id), (TOTAL, "")]
        if self.by_channel:
            out.append((CHANNEL, incoming_channel(key)))
        return out

    def create(self, db: SchemaEditor) -> None:
        """The migration: the table, filled from the rows already there."""
        db[self.table].create({"scope": str, "id": str, "held": int, "amount_msat": int}, pk=("scope", "id"))
        self._fill(db.execute)

    def rebuild(self, store: Store) -> None:
        with store.tx():
            store.conn.execute(f"DELETE FROM {self.table}")
            self._fill(store.conn.execute)

    def _fill(self, execute: Callable) -> None:
        # Once, at the migration (or after a bulk load): the one pass over the rows.
        totals: dict[Scope, list[int]] = {}
        for key, peer_id, amount in execute(f"SELECT key, peer_id, amount_msat FROM {self.rows} WHERE state = ?",
                                            (self.held,)).fetchall():
            for scope in self.scopes(key, peer_id):
                entry = totals.setdefault(scope, [0, 0])
                entry[0] += 1
                entry[1] += amount
        items = list(totals.items())
        for i in range(0, len(items), 200):
            chunk = items[i:i + 200]
            execute(f"INSERT INTO {self.table} (scope, id, held, amount_msat) VALUES "
                    + ", ".join(["(?, ?, ?, ?)"] * len(chunk)),
                    [v for (scope, ident), (n, amount) in chunk for v in (scope, ident, n, amount)])

    def count(self, store: Store, scope: str, ident: str = "") -> tuple[int, int]:
        """(rows held, their msat) in one scope."""
        row = store.conn.execute(f"SELECT held, amount_msat FROM {self.table} WHERE scope = ? AND id = ?",
                                 (scope, ident)).fetchone()
        return (row[0], row[1]) if row else (0, 0)

    def add(self, store: Store, scopes: Iterable[Scope], n: int, amount: int) -> None:
        """Inside the transaction that changes the row."""
        for scope, ident in scopes:
            store.conn.execute(
                f"INSERT INTO {self.table} (scope, id, held, amount_msat) VALUES (?, ?, ?, ?) "
                f"ON CONFLICT(scope, id) DO UPDATE SET held = {self.table}.held + excluded.held, "
                f"amount_msat = {self.table}.amount_msat + excluded.amount_msat", (scope, ident, n, amount))
            if n < 0 and scope != TOTAL:  # a peer or channel holding nothing keeps no row
                store.conn.execute(f"DELETE FROM {self.table} WHERE scope = ? AND id = ? AND held <= 0",
                                   (scope, ident))


class CountedRows(RowTable):
    """A ``RowTable`` of rows with ``key``, ``peer_id``, ``amount_msat`` and
    ``state``: every ``put`` moves the counts when a row enters or leaves the
    held state, in the same transaction (one primary-key read of the row as it
    was, then the write)."""

    def __init__(self, store: Store, counts: HeldCounts, row: type, key: str) -> None:
        super().__init__(store, counts.rows, row, key)
        self.counts = counts
        self._before = f"SELECT state, peer_id, amount_msat FROM {counts.rows} WHERE {key} = ?"

    def put(self, row) -> None:
        held = self.counts.held
        with self.store.tx():
            before = self.store.conn.execute(self._before, (getattr(row, self.key),)).fetchone()
            super().put(row)
            was = before is not None and before[0] == held
            now = row.state == held
            if was and now and (before[1], before[2]) == (row.peer_id, row.amount_msat):
                return
            if was:
                self.counts.add(self.store, self.counts.scopes(row.key, before[1]), -1, -before[2])
            if now:
                self.counts.add(self.store, self.counts.scopes(row.key, row.peer_id), 1, row.amount_msat)

    def count(self, scope: str, ident: str = "") -> int:
        return self.counts.count(self.store, scope, ident)[0]

    def amount(self, scope: str, ident: str = "") -> int:
        return self.counts.count(self.store, scope, ident)[1]

"""How many rows are held, per peer and in all, kept in a table beside the
rows (issue 24): a hold's limits are read from here, one primary-key lookup,
instead of counting the held rows on every new HTLC.

The count changes in the same transaction as the row (``CountedRows.put``),
so a crash or a rollback never leaves them apart, on either database; the
migration that makes the table fills it from the rows, and ``rebuild`` does
the same for rows written behind the roles' back (a bulk load). The total is
the row of the empty peer id, which no node id is.
"""

from __future__ import annotations

from dataclasses import dataclass

from .storage import SchemaEditor
from .store import RowTable, Store

TOTAL = ""  # the peer id of the row counting every peer


@dataclass(frozen=True)
class HeldCounts:
    """Counts of the rows of ``rows`` whose ``state`` is ``held``, by ``peer_id``, in ``table``."""

    table: str
    rows: str
    held: str = "held"

    def create(self, db: SchemaEditor) -> None:
        """The migration: the table, filled from the rows already there."""
        db[self.table].create({"peer_id": str, "held": int}, pk="peer_id")
        self._fill(db.execute)

    def rebuild(self, store: Store) -> None:
        with store.tx():
            store.conn.execute(f"DELETE FROM {self.table}")
            self._fill(store.conn.execute)

    def _fill(self, execute) -> None:
        execute(f"INSERT INTO {self.table} (peer_id, held) SELECT peer_id, COUNT(*) FROM {self.rows} "
                "WHERE state = ? GROUP BY peer_id", (self.held,))
        execute(f"INSERT INTO {self.table} (peer_id, held) SELECT ?, COUNT(*) FROM {self.rows} WHERE state = ?",
                (TOTAL, self.held))

    def count(self, store: Store, peer_id: str | None = None) -> int:
        """Rows held for ``peer_id``, or in all."""
        row = store.conn.execute(f"SELECT held FROM {self.table} WHERE peer_id = ?",
                                 (TOTAL if peer_id is None else peer_id,)).fetchone()
        return row[0] if row else 0

    def add(self, store: Store, peer_id: str, by: int) -> None:
        """Inside the transaction that changes the row."""
        for key in (peer_id, TOTAL):
            store.conn.execute(
                f"INSERT INTO {self.table} (peer_id, held) VALUES (?, ?) "
                f"ON CONFLICT(peer_id) DO UPDATE SET held = {self.table}.held + excluded.held", (key, by))
        if by < 0:  # a peer holding nothing keeps no row
            store.conn.execute(f"DELETE FROM {self.table} WHERE peer_id = ? AND held <= 0", (peer_id,))


class CountedRows(RowTable):
    """A ``RowTable`` whose rows have ``state`` and ``peer_id``: every ``put``
    moves the counts when a row enters or leaves the held state, in the same
    transaction (one primary-key read of the row as it was, then the write)."""

    def __init__(self, store: Store, counts: HeldCounts, row: type, key: str) -> None:
        super().__init__(store, counts.rows, row, key)
        self.counts = counts
        self._before = f"SELECT state, peer_id FROM {counts.rows} WHERE {key} = ?"

    def put(self, row) -> None:
        with self.store.tx():
            before = self.store.conn.execute(self._before, (getattr(row, self.key),)).fetchone()
            super().put(row)
            was = before is not None and before[0] == self.counts.held
            now = row.state == self.counts.held
            if was and (not now or before[1] != row.peer_id):
                self.counts.add(self.store, before[1], -1)
            if now and (not was or before[1] != row.peer_id):
                self.counts.add(self.store, row.peer_id, 1)

    def count(self, peer_id: str | None = None) -> int:
        return self.counts.count(self.store, peer_id)

"""What a piece of code asks the store, and how the database answers it: the
statements run (``Recorder``), the rows they returned, and which tables a
statement reads in full (``full_scans``: SQLite's ``EXPLAIN QUERY PLAN``;
PostgreSQL's ``EXPLAIN`` with sequential scans priced out, so a ``Seq Scan``
left in the plan means no index can serve the statement)."""

from __future__ import annotations

import re
from contextlib import contextmanager

from asyncpay.store import Store


class Recorder:
    """Every statement ``store`` runs inside ``with recorder:``, with the rows it returned."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.statements: list[tuple[str, tuple]] = []
        self.rows_returned = 0

    def __enter__(self) -> Recorder:
        backend = self.store.backend
        real = type(backend).execute

        def execute(sql, args=()):
            result = real(backend, sql, args)
            self.statements.append((sql, tuple(args)))
            self.rows_returned += len(result.rows)
            return result

        backend.execute = execute  # store.conn is the backend itself
        return self

    def __exit__(self, *exc) -> None:
        del self.store.backend.execute

    def reading(self, *tables: str) -> list[tuple[str, tuple]]:
        """The statements that name one of ``tables``."""
        return [(q, a) for q, a in self.statements if any(re.search(rf"\b{t}\b", q) for t in tables)]


def full_scans(store: Store, sql: str, args: tuple = ()) -> set[str]:
    """Tables the statement reads in full."""
    if store.kind == "sqlite":
        plan = store.backend.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
        out = set()
        for row in plan:
            m = re.match(r"SCAN (\w+)", row[3])
            if m and m.group(1) != "CONSTANT":
                out.add(m.group(1))
        return out
    with _no_seqscan(store):
        lines = [r[0] for r in store.backend.execute("EXPLAIN " + sql, args).fetchall()]
    blocks: list[list[str]] = []
    for line in lines:  # one block per plan node: its line, then its details
        if not blocks or "->" in line:
            blocks.append([line])
        else:
            blocks[-1].append(line)
    out = set()
    for node, *details in blocks:
        m = re.search(r"(Seq Scan|Index Only Scan|Index Scan)(?: Backward)?(?: using \S+)? on (\w+)", node)
        if m and (m.group(1) == "Seq Scan" or not any("Index Cond" in d for d in details)):
            out.add(m.group(2))
    return out


@contextmanager
def _no_seqscan(store: Store):
    with store.tx():
        store.backend.execute("SET LOCAL enable_seqscan = off")
        yield

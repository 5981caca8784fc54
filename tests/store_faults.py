"""A store whose database fails on demand, daemon-free (over SQLite or any
backend): the faults a PostgreSQL store meets in production, as the roles
see them.

* ``down``: every statement and transaction raises (the lock lost:
  ``StoreLocked``; the server gone: ``StoreError``) until it is cleared;
* ``fail_next_commit``: the next transaction is rolled back and raises (the
  connection dropped before COMMIT);
* ``unknown_next_commit``: the next transaction commits, then raises (the
  answer to COMMIT lost: the outcome is unknown to the caller).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from asyncpay.storage import StoreError, StoreLocked
from asyncpay.store import Store

LOCK_LOST = StoreLocked("lost the advisory lock's session (test)")
SERVER_GONE = StoreError("server closed the connection unexpectedly (test)")
KINDS = ("lock_lost", "commit_fails", "commit_outcome_unknown")  # the faults ``inject`` makes


class FaultyBackend:
    def __init__(self, real: Any) -> None:
        self.real = real
        self.down: StoreError | None = None
        self.fail_commits = 0
        self.unknown_commits = 0
        self.raised = 0  # faults raised so far
        self._depth = threading.local()

    def truth(self, read: Callable[[], Any]) -> Any:
        """What a test reads of the database, whatever faults the code under test sees."""
        down, self.down = self.down, None
        try:
            return read()
        finally:
            self.down = down

    def inject(self, kind: str) -> None:
        """One of ``KINDS``: the lock lost (every call raises until ``down`` is cleared, as a
        restart takes the lock again), or the next commit rolled back, or landed but raising."""
        if kind == "lock_lost":
            self.down = LOCK_LOST
        elif kind == "commit_fails":
            self.fail_commits = 1
        elif kind == "commit_outcome_unknown":
            self.unknown_commits = 1
        else:
            raise ValueError(kind)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def _check(self) -> None:
        if self.down is not None:
            self.raised += 1
            raise self.down

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        self._check()
        return self.real.execute(sql, args)

    def table_names(self) -> list[str]:
        self._check()
        return self.real.table_names()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._check()
        depth = getattr(self._depth, "n", 0)
        self._depth.n = depth + 1
        try:
            if depth:
                with self.real.transaction():
                    yield
                return
            with self.real.transaction():
                yield
                if self.fail_commits:
                    self.fail_commits -= 1
                    self.raised += 1
                    raise StoreError("connection lost before COMMIT (test)")  # rolls the transaction back
            if self.unknown_commits:
                self.unknown_commits -= 1
                self.raised += 1
                raise StoreError("connection reset after COMMIT (test): its outcome is unknown to us")
        finally:
            self._depth.n = depth


def faulty(store: Store) -> FaultyBackend:
    """Put a ``FaultyBackend`` under ``store`` (and return it to steer the faults)."""
    if isinstance(store.backend, FaultyBackend):
        return store.backend
    fb = FaultyBackend(store.backend)
    store.backend = fb  # type: ignore[assignment]
    store.conn = fb  # type: ignore[assignment]
    return fb

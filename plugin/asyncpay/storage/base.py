"""What both backends provide: statements with ``?`` placeholders, thread-bound
transactions, the schema editor the migrations are written against, and the
one-writer lock."""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol


class StoreError(RuntimeError):
    """The database cannot be used (unreachable, locked, newer schema)."""


class StoreLocked(StoreError):
    """Another process holds the database: two writers would corrupt each other's state."""


class CommitUnknown(StoreError):
    """COMMIT was sent and its answer lost (the connection broke): the transaction
    may or may not have committed. Re-read the database before acting on it."""


def is_store_failure(e: BaseException) -> bool:
    """The database could not be used (as opposed to a bug): ours, or the
    driver's own error (a connection reset raises psycopg's; a full disk,
    sqlite3's). After one, a commit's outcome is unknown."""
    if isinstance(e, (StoreError, sqlite3.Error)):
        return True
    psycopg = sys.modules.get("psycopg")  # loaded only with a PostgreSQL store
    return psycopg is not None and isinstance(e, psycopg.Error)


class Result:
    """A statement's rows, fetched before the connection goes back: a result
    never keeps a connection (or the SQLite lock) busy."""

    __slots__ = ("rows", "rowcount")

    def __init__(self, rows: list[tuple], rowcount: int) -> None:
        self.rows, self.rowcount = rows, rowcount

    def fetchone(self) -> tuple | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple]:
        return self.rows

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.rows)


class TableEditor(Protocol):
    def create(self, columns: dict[str, type], pk: str | tuple[str, ...] | None = None,
               defaults: dict[str, Any] | None = None) -> Any: ...

    def create_index(self, columns: Sequence[str], unique: bool = False) -> Any: ...

    def add_column(self, name: str, col_type: type, not_null_default: Any = None) -> Any: ...


class SchemaEditor(Protocol):
    """The part of sqlite-utils' ``Database`` the migrations use. On SQLite it
    is sqlite-utils itself (so a database keeps the very DDL it was written
    with); on PostgreSQL ``postgres.PgSchema`` speaks the same calls."""

    def __getitem__(self, table: str) -> TableEditor: ...

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any: ...


Migration = Callable[[SchemaEditor], None]


class Backend:
    """One database. ``execute`` runs one statement (inside the calling
    thread's transaction if it has one, else on its own, committed)."""

    kind = "?"

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def schema(self) -> SchemaEditor:
        raise NotImplementedError

    def table_names(self) -> list[str]:
        raise NotImplementedError

    def primary_key(self, table: str) -> list[str]:
        raise NotImplementedError

    def describe(self) -> dict[str, str]:
        """Settings that matter for durability and speed (bench, logs)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class HeldLock:
    """One process's hold on a database: ``check`` raises StoreLocked once it is lost;
    ``fence`` is what a backend checks before each COMMIT (PostgreSQL's ``Fence``)."""

    def __init__(self, release: Callable[[], None], check: Callable[[], None] = lambda: None,
                 fence: Any = None) -> None:
        self.release, self.check, self.fence = release, check, fence


class ProcessLocks:
    """The one-writer locks this process holds, by name: a second ``Store``
    on the same database in this process (a test's restart) shares the lock;
    it is given back when the last one closes. Another process is refused."""

    def __init__(self) -> None:
        # Re-entrant: a Store dropped without close() is closed by its finalizer, which the
        # garbage collector may run inside acquire's ``take`` on this very thread (seen as
        # a hang of the PostgreSQL suite); its release then needs the mutex acquire holds.
        self._mutex = threading.RLock()
        self._held: dict[str, list] = {}  # name -> [HeldLock, count]

    def acquire(self, name: str, take: Callable[[], HeldLock]) -> HeldLock:
        """``take`` locks (raising StoreLocked if it cannot); the lock this process holds."""
        with self._mutex:
            if name in self._held:
                self._held[name][1] += 1
            else:
                self._held[name] = [take(), 1]
            return self._held[name][0]

    def check(self, name: str) -> None:
        entry = self._held.get(name)
        if entry is not None:
            entry[0].check()

    def release(self, name: str) -> None:
        with self._mutex:
            entry = self._held.get(name)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del self._held[name]
                entry[0].release()


LOCKS = ProcessLocks()

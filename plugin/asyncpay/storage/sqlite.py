"""SQLite: one file beside the node, through sqlite-utils.

WAL journal with ``synchronous=FULL``: every commit is on disk (fsync of the
WAL) before the statement returns, so nothing we have acknowledged to a peer
is lost to a process crash, an OS crash or a power cut; ``NORMAL`` survives
only a process crash. One connection, used under one re-entrant lock: a
transaction holds it from ``BEGIN`` to ``COMMIT``, so another thread's
statement waits instead of landing inside it (SQLite has one writer anyway).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlite_utils

from .base import LOCKS, Backend, HeldLock, Result, SchemaEditor, StoreLocked

CACHE_KIB = 32 * 1024


class SqliteBackend(Backend):
    kind = "sqlite"

    def __init__(self, path: str, synchronous: str = "FULL") -> None:
        self.path, self.synchronous = path, synchronous
        self._lock = threading.RLock()
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self._lock_name: str | None = None
        if path != ":memory:" and not path.startswith("file:"):
            self._lock_name = "sqlite:" + os.path.realpath(path)
            try:
                LOCKS.acquire(self._lock_name, lambda: _lock_file(path + ".lock"))
            except BaseException:
                conn.close()
                raise
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        # SQLite's default page cache is 2 MB: with a million rows the indexes a
        # decision or a timer pass probes no longer fit, and each probe reads
        # pages back from the OS (issue 24: bench/bench_scale.py). A bound, in KiB.
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        with self._lock:
            cur = self.conn.execute(sql, args)
            return Result(cur.fetchall() if cur.description else [], cur.rowcount)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock, self.db.atomic():
            yield

    def schema(self) -> SchemaEditor:
        return self.db

    def table_names(self) -> list[str]:
        with self._lock:
            return self.db.table_names()

    def primary_key(self, table: str) -> list[str]:
        rows = self.execute(f"PRAGMA table_info({table})").fetchall()
        return [r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5])]

    def describe(self) -> dict[str, str]:
        return {"backend": f"SQLite {sqlite3.sqlite_version}", "journal_mode": "WAL",
                "synchronous": self.synchronous}

    def close(self) -> None:
        with self._lock:
            self.conn.close()
            if self._lock_name:
                LOCKS.release(self._lock_name)
                self._lock_name = None


# A lightningd killed and started again at once starts a new plugin while the
# old one may still be exiting (it sees its stdin close, then joins its
# threads): without a wait the new one found the lock held and disabled itself
# for good (the chaos run, docs/chaos.md). As postgres.LOCK_WAIT.
LOCK_WAIT = 10.0  # seconds to wait for a previous process to exit before refusing
LOCK_POLL = 0.1


def _lock_file(path: str) -> HeldLock:
    """Hold an exclusive ``flock`` on ``<database>.lock`` for the process's life
    (the kernel drops it when the process dies, so a crash never leaves it)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise StoreLocked(f"{path} is held by another process: another asyncpay is using this "
                                  f"database") from None
            time.sleep(LOCK_POLL)

    def release() -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    return HeldLock(release)  # a flock cannot be lost while the process lives

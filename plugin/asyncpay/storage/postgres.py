"""PostgreSQL (``asyncpay-db=postgresql://…``): asyncpay's state on the
cluster CLN itself runs on (``--wallet=postgres://…``), so that a standby
taking over from a failed LSP finds the static invoices, the mailbox and the
held HTLCs where the old one left them.

* Durability: ``synchronous_commit=on`` (``FULL``): a commit returns once
  the WAL is flushed on the server (and on synchronous standbys, if the
  cluster has them), as CLN's own wallet does. ``NORMAL`` sets it ``off``:
  the last commits may be lost in a server crash, never half of one.
* Threads: a pool of connections (``POOL_SIZE``: the plugin's threads); a
  statement outside a transaction borrows one and runs in autocommit; a
  transaction keeps one for its thread from ``BEGIN`` to ``COMMIT`` (nested:
  a savepoint on it). Transactions of different threads run one at a time,
  as on SQLite, so a check and its write never interleave with another's.
* One writer: ``pg_try_advisory_lock`` on a connection of its own, held
  while the store is open; PostgreSQL drops it when that session ends (the
  process died or was cut off), so a standby takes over only then.
* Schema: the tables live in the connection's ``search_path`` (set it with
  ``?options=-csearch_path%3Dname`` in the URI to share a database).

psycopg 3 and psycopg_pool: https://www.psycopg.org/psycopg3/docs/
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
import psycopg.sql
from psycopg_pool import ConnectionPool, PoolTimeout

from .base import LOCKS, Backend, HeldLock, Result, StoreError, StoreLocked

POOL_SIZE = 8  # main, hold timer, mailbox intake, endpoint worker, payer, flushes to peers
CONNECT_TIMEOUT = 10  # seconds to reach the server at start
LOCK_WAIT = 5.0  # seconds to wait for a previous process's session to end before refusing
LOCK_CHECK_INTERVAL = 1.0  # seconds between two checks that the lock's session is alive

# Python types of the migrations' column definitions (sqlite-utils' vocabulary).
# msat amounts and timestamps need 64 bits: every integer is a BIGINT.
TYPES = {int: "BIGINT", str: "TEXT", bytes: "BYTEA", float: "DOUBLE PRECISION", bool: "BIGINT"}


@lru_cache(maxsize=4096)
def to_pg(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (our SQL has no ``?`` in literals)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _literal(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"column default {value!r}: only int and str defaults are supported")
    return str(value) if isinstance(value, int) else "'" + value.replace("'", "''") + "'"


class PostgresBackend(Backend):
    kind = "postgresql"

    def __init__(self, dsn: str, synchronous: str = "FULL") -> None:
        self.synchronous, self.dsn = synchronous, dsn
        self._commit = "on" if synchronous == "FULL" else "off"
        self._local = threading.local()
        self._tx_lock = threading.RLock()
        self._lock_name = ""
        try:
            setup = psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to PostgreSQL: {' '.join(str(e).split())}") from e
        with setup:
            database, schema = _schema(setup)
            self.where = f"{setup.info.host}:{setup.info.port}/{database}/{schema}"
        self._lock_name = "pg:" + self.where
        LOCKS.acquire(self._lock_name, lambda: _advisory_lock(dsn, database, schema, self.where))
        try:
            self.pool = ConnectionPool(dsn, min_size=1, max_size=POOL_SIZE, timeout=60, open=False,
                                       kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
                                       configure=self._configure, name="asyncpay")
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except (psycopg.Error, PoolTimeout) as e:
            self._release()
            raise StoreError(f"PostgreSQL pool: {' '.join(str(e).split())}") from e

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute(f"SET synchronous_commit = {self._commit}")

    # -- statements and transactions -----------------------------------------

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return _run(conn, sql, args)
        LOCKS.check(self._lock_name)
        with self.pool.connection() as conn:
            return _run(conn, sql, args)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with conn.transaction():  # a savepoint
                yield
            return
        with self._tx_lock, self.pool.connection() as conn:
            LOCKS.check(self._lock_name)
            self._local.conn = conn
            try:
                with conn.transaction():
                    yield
            finally:
                self._local.conn = None

    # -- schema --------------------------------------------------------------

    def schema(self) -> PgSchema:
        return PgSchema(self)

    def table_names(self) -> list[str]:
        q = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        return [r[0] for r in self.execute(q)]

    def primary_key(self, table: str) -> list[str]:
        return [r[0] for r in self.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = ?::regclass AND i.indisprimary "
            "ORDER BY array_position(i.indkey::int2[], a.attnum)", (table,))]

    def describe(self) -> dict[str, str]:
        version = self.execute("SHOW server_version").fetchone()[0]
        fsync = self.execute("SHOW fsync").fetchone()[0]
        return {"backend": f"PostgreSQL {version}", "synchronous_commit": self._commit, "fsync": fsync,
                "pool": f"1..{POOL_SIZE}"}

    def close(self) -> None:
        self.pool.close()
        self._release()

    def _release(self) -> None:
        if self._lock_name:
            LOCKS.release(self._lock_name)
            self._lock_name = ""


def _schema(conn: psycopg.Connection) -> tuple[str, str]:
    """(database, schema) the tables go in: the search_path's first schema, created if
    missing (asyncpay beside CLN's tables in one database needs a schema of its own:
    both have an ``invoices`` table)."""
    database, schema = conn.execute("SELECT current_database(), current_schema()").fetchone()
    if schema is not None:
        return database, schema
    path = conn.execute("SELECT current_setting('search_path')").fetchone()[0]
    first = path.split(",")[0].strip()
    if not first or first.startswith("$"):
        raise StoreError(f"PostgreSQL: no schema to write to (search_path {path!r})")
    try:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(psycopg.sql.Identifier(first.strip('"'))))
    except psycopg.Error as e:
        raise StoreError(f"PostgreSQL: cannot create schema {first}: {' '.join(str(e).split())}") from e
    return conn.execute("SELECT current_database(), current_schema()").fetchone()


def _advisory_lock(dsn: str, database: str, schema: str, where: str) -> HeldLock:
    """``pg_try_advisory_lock`` on a session of its own, held until released or until
    that session ends (PostgreSQL then drops the lock: a process that died holds none).
    ``check`` (at most once a second) refuses to go on once the session is gone: a
    server restart or a cut connection dropped the lock, and a standby may hold it now;
    a write in that second may still land."""
    key = int.from_bytes(hashlib.sha256(f"asyncpay/{database}/{schema}".encode()).digest()[:8], "big", signed=True)
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as e:
        raise StoreError(f"cannot connect to PostgreSQL: {' '.join(str(e).split())}") from e
    deadline = time.monotonic() + LOCK_WAIT
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
        if time.monotonic() >= deadline:
            conn.close()
            raise StoreLocked(f"PostgreSQL {where}: another asyncpay holds the advisory lock {key} "
                              "(one active LSP per database); refusing to run")
        time.sleep(0.2)
    mutex, checked = threading.Lock(), [time.monotonic()]

    def check() -> None:
        if time.monotonic() < checked[0] + LOCK_CHECK_INTERVAL:
            return
        with mutex:
            try:
                conn.execute("SELECT 1")
            except psycopg.Error as e:
                raise StoreLocked(f"PostgreSQL {where}: lost the advisory lock's session "
                                  f"({' '.join(str(e).split())}); restart asyncpay to take it again") from e
            checked[0] = time.monotonic()

    def release() -> None:
        with mutex:
            conn.close()  # ends the session, and the lock with it

    return HeldLock(release, check)


def _run(conn: psycopg.Connection, sql: str, args: Sequence[Any]) -> Result:
    cur = conn.execute(to_pg(sql), tuple(args))
    return Result(cur.fetchall() if cur.description else [], cur.rowcount)


class PgTable:
    def __init__(self, backend: PostgresBackend, name: str) -> None:
        self.backend, self.name = backend, name

    def create(self, columns: dict[str, type], pk: str | tuple[str, ...] | None = None,
               defaults: dict[str, Any] | None = None) -> None:
        keys = (pk,) if isinstance(pk, str) else tuple(pk or ())
        defaults = defaults or {}
        cols = []
        for name, col_type in columns.items():
            ddl = f'"{name}" {TYPES[col_type]}'
            if keys == (name,) and col_type is int:
                # sqlite-utils makes it SQLite's rowid; here a sequence that never
                # hands out an id twice (mailbox ids are never reused).
                ddl += " GENERATED BY DEFAULT AS IDENTITY"
            elif name in defaults:
                ddl += f" DEFAULT {_literal(defaults[name])}"
            if name in keys:
                ddl += " NOT NULL"
            cols.append(ddl)
        if not (len(keys) == 1 and columns.get(keys[0]) is int) and "rowid" not in columns:
            # SQLite's insertion order (ORDER BY rowid), for queries that keep the newest rows.
            cols.append("rowid BIGINT GENERATED ALWAYS AS IDENTITY")
        if keys:
            cols.append("PRIMARY KEY (" + ", ".join(f'"{k}"' for k in keys) + ")")
        self.backend.execute(f'CREATE TABLE "{self.name}" ({", ".join(cols)})')

    def create_index(self, columns: list[str], unique: bool = False) -> None:
        name = f"idx_{self.name}_{'_'.join(columns)}"
        self.backend.execute(f'CREATE {"UNIQUE " if unique else ""}INDEX "{name}" ON "{self.name}" ('
                             + ", ".join(f'"{c}"' for c in columns) + ")")

    def add_column(self, name: str, col_type: type, not_null_default: Any = None) -> None:
        ddl = f'ALTER TABLE "{self.name}" ADD COLUMN "{name}" {TYPES[col_type]}'
        if not_null_default is not None:
            ddl += f" NOT NULL DEFAULT {_literal(not_null_default)}"
        self.backend.execute(ddl)


class PgSchema:
    """The sqlite-utils calls our migrations make, as PostgreSQL DDL."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend

    def __getitem__(self, table: str) -> PgTable:
        return PgTable(self.backend, table)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        return self.backend.execute(sql, args)

    def table_names(self) -> list[str]:
        return self.backend.table_names()

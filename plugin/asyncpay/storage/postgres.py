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
  process died or was cut off), so a standby takes over only then. Every
  transaction checks, on its own connection and right before ``COMMIT``,
  that the lock's session still holds it (``_advisory_lock``, ``Fence``): a
  transaction open when the lock is lost rolls back instead of committing.
* Bounded waits: a transaction waits at most ``POOL_WAIT`` seconds for its
  turn and a connection; statements and lock waits time out on the server
  (``STATEMENT_TIMEOUT``, ``LOCK_TIMEOUT``); TCP keepalives and
  ``tcp_user_timeout`` end a connection to a silent server; the lock's
  session is checked every ``LOCK_CHECK_INTERVAL`` seconds by a heartbeat.
  An outage therefore raises ``StoreError`` within seconds, never stalls
  the caller (the hook thread) for a minute.
* Schema: the tables live in the ``search_path``'s first schema, created if
  missing (set it with ``?options=-csearch_path%3Dname`` in the URI to share
  a database); asyncpay refuses to start when its tables are in another
  schema of the path (``_schema``).

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
import psycopg.conninfo
import psycopg.errors
import psycopg.sql
from psycopg_pool import ConnectionPool, PoolTimeout

from .base import LOCKS, Backend, CommitUnknown, HeldLock, Result, StoreError, StoreLocked

POOL_SIZE = 8  # main, hold timer, mailbox intake, endpoint worker, payer, flushes to peers
CONNECT_TIMEOUT = 10  # seconds to reach the server at start
LOCK_WAIT = 5.0  # seconds to wait for a previous process's session to end before refusing
LOCK_CHECK_INTERVAL = 1.0  # seconds between two heartbeats of the lock's session
POOL_WAIT = 3.0  # seconds a transaction waits for its turn and a connection before StoreError
STATEMENT_TIMEOUT = 30_000  # ms: no statement of ours takes longer; a stuck one is cancelled
LOCK_TIMEOUT = 5_000  # ms: a row or advisory lock awaited longer is an error, not a stall
# A dead or silent server ends the connection within ~30 s, not TCP's 2 h default
# (libpq parameters; a value given in the URI wins; Unix sockets ignore them).
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3",
              "tcp_user_timeout": "30000"}

# Two tables every asyncpay database has (and CLN's has not): their schema is asyncpay's.
OWN_TABLES = ("schema_version", "component_versions")

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
            setup = psycopg.connect(dsn, autocommit=True, **connect_kwargs(dsn))
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to PostgreSQL: {' '.join(str(e).split())}") from e
        with setup:
            database, schema = _schema(setup)
            self.where = f"{setup.info.host}:{setup.info.port}/{database}/{schema}"
        self._lock_name = "pg:" + self.where
        self._fence: Fence = LOCKS.acquire(self._lock_name,
                                           lambda: _advisory_lock(dsn, database, schema, self.where)).fence
        try:
            self.pool = ConnectionPool(dsn, min_size=1, max_size=POOL_SIZE, timeout=POOL_WAIT, open=False,
                                       kwargs={"autocommit": True, **connect_kwargs(dsn)},
                                       configure=self._configure, check=ConnectionPool.check_connection,
                                       name="asyncpay")
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except (psycopg.Error, PoolTimeout) as e:
            self._release()
            raise StoreError(f"PostgreSQL pool: {' '.join(str(e).split())}") from e

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute(f"SET synchronous_commit = {self._commit}")
        conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT}")
        conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT}")

    # -- statements and transactions -----------------------------------------

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return _run(conn, sql, args)
        if not _reads_only(sql):
            with self.transaction():  # a write is fenced like any other (see Fence)
                return _run(self._local.conn, sql, args)
        LOCKS.check(self._lock_name)
        with self._connection() as conn:
            return _run(conn, sql, args)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with conn.transaction():  # a savepoint
                yield
            return
        LOCKS.check(self._lock_name)
        if not self._tx_lock.acquire(timeout=POOL_WAIT):
            raise StoreError(f"PostgreSQL {self.where}: another transaction has held the store for "
                             f"{POOL_WAIT:g} s (server slow or unreachable)")
        try:
            with self._connection() as conn:
                self._local.conn = conn
                committing = False
                try:
                    with conn.transaction():
                        yield
                        self._fence.check(conn)
                        committing = True
                except psycopg.OperationalError as e:
                    if committing:
                        raise CommitUnknown(f"PostgreSQL {self.where}: COMMIT sent, its answer lost "
                                            f"({' '.join(str(e).split())})") from e
                    raise StoreError(f"PostgreSQL {self.where}: {' '.join(str(e).split())}") from e
                finally:
                    self._local.conn = None
        finally:
            self._tx_lock.release()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        try:
            with self.pool.connection(timeout=POOL_WAIT) as conn:
                yield conn
        except PoolTimeout as e:
            raise StoreError(f"PostgreSQL {self.where}: no connection within {POOL_WAIT:g} s "
                             "(server slow or unreachable)") from e

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


def connect_kwargs(dsn: str) -> dict[str, Any]:
    """libpq parameters for every connection: the connect timeout, and keepalives
    unless the URI sets its own."""
    given = psycopg.conninfo.conninfo_to_dict(dsn)
    return {"connect_timeout": CONNECT_TIMEOUT, **{k: v for k, v in KEEPALIVES.items() if k not in given}}


def _reads_only(sql: str) -> bool:
    """A statement that cannot write (our SELECTs call no writing function)."""
    return sql.lstrip()[:6].upper() in ("SELECT", "SHOW")


def search_path(path: str) -> list[str]:
    """The schema names of a ``search_path`` setting, in order (quoted ones kept as
    written, unquoted ones folded to lower case as PostgreSQL does)."""
    names, current, quoted, i = [], "", False, 0
    while i < len(path):
        c = path[i]
        if quoted:
            if c == '"' and path[i + 1:i + 2] == '"':
                current += '"'
                i += 1
            elif c == '"':
                quoted = False
            else:
                current += c
        elif c == '"':
            quoted = True
        elif c == ",":
            names.append(current)
            current = ""
        elif not c.isspace():
            current += c.lower()
        i += 1
    names.append(current)
    return [n for n in names if n]


def _schema(conn: psycopg.Connection) -> tuple[str, str]:
    """(database, schema) the tables go in: the search_path's first schema, created if
    missing (asyncpay beside CLN's tables in one database needs a schema of its own:
    both have an ``invoices`` table). ``$user`` counts only when that schema exists,
    as in PostgreSQL's own lookup; with ``asyncpay,public`` and no ``asyncpay`` yet,
    ``current_schema()`` would say ``public``: the first schema is created instead.
    Refused: asyncpay's tables in another schema of the path (a database written
    before the path changed: starting empty would lose it)."""
    database, user, path = conn.execute(
        "SELECT current_database(), current_user, current_setting('search_path')").fetchone()
    given = search_path(path)
    names = [user if n == "$user" else n for n in given]
    existing = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)",
                                           (names,))}
    candidates = [n for n, g in zip(names, given) if (n in existing or g != "$user") and not n.startswith("pg_")]
    if not candidates:
        raise StoreError(f"PostgreSQL: no schema to write to (search_path {path!r})")
    schema = candidates[0]
    elsewhere = [r[0] for r in conn.execute(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = ANY(%s) "
        "AND table_schema = ANY(%s) AND table_schema <> %s GROUP BY 1 HAVING count(*) = %s ORDER BY 1",
        (list(OWN_TABLES), names, schema, len(OWN_TABLES)))]
    if elsewhere:
        raise StoreError(f"PostgreSQL: asyncpay's tables are in schema {elsewhere[0]!r} of the search_path "
                         f"{path!r}, but it would write to {schema!r}; put {elsewhere[0]!r} first in the "
                         "search_path (or move the tables)")
    if schema not in existing:
        try:
            conn.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(psycopg.sql.Identifier(schema)))
        except psycopg.Error as e:
            raise StoreError(f"PostgreSQL: cannot create schema {schema}: {' '.join(str(e).split())}") from e
    if conn.execute("SELECT current_schema()").fetchone()[0] != schema:
        raise StoreError(f"PostgreSQL: schema {schema!r} is not writable as the first of {path!r}")
    return database, schema


def _key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _lock_columns(key: int) -> tuple[int, int]:
    """pg_locks' (classid, objid) of a bigint advisory lock (objsubid 1)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


HELD_BY = ("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted "
           "AND classid::bigint = %s AND objid::bigint = %s")


class Fence:
    """Stops the writes of a process that lost the lock, at COMMIT.

    The lock is a session lock held by the lock's connection; a transaction
    runs on another (a pool connection), so it cannot test the lock as its
    own. Right before COMMIT, on the writing connection and inside the
    transaction, ``check`` takes the *commit* advisory lock in shared mode
    (transaction-scoped: many writers of one process at once) and then reads
    in ``pg_locks`` that the lock's session (its pid) still holds the lock;
    otherwise it raises ``StoreLocked`` and the transaction rolls back.

    A new owner, once it holds the lock, takes the commit lock exclusively
    and lets it go (``barrier``) before its first read. So a commit of the old
    owner either saw its lock held and holds the commit lock until its COMMIT
    ends, and the new owner waits for that COMMIT; or it runs after the
    barrier and reads that the lock is no longer its own. Both in one
    statement: ``pg_advisory_xact_lock_shared`` is a FROM item, the
    ``pg_locks`` test an init-plan evaluated after it when the row is formed.

    Rejected: ``pg_try_advisory_xact_lock`` on the lock's own key fails while
    our session holds it (locks of one process's sessions conflict), and a
    transaction lock alone lets two processes alternate; a check from the
    lock's connection (``SELECT 1``) leaves a window between the check and
    another connection's COMMIT that only the commit lock closes anyway; a
    fencing-token row needs a table and a row lock per commit for the same
    effect. Cost: one round trip per transaction (tests/test_store_fence.py).
    """

    def __init__(self, lock_key: int, commit_key: int, pid: int, where: str) -> None:
        self.commit_key, self.pid, self.where = commit_key, pid, where
        self.columns = _lock_columns(lock_key)

    def check(self, conn: psycopg.Connection) -> None:
        held = conn.execute(f"SELECT EXISTS ({HELD_BY} AND pid = %s) FROM pg_advisory_xact_lock_shared(%s)",
                            (*self.columns, self.pid, self.commit_key)).fetchone()[0]
        if not held:
            raise StoreLocked(f"PostgreSQL {self.where}: lost the advisory lock (its session {self.pid} "
                              "no longer holds it); this transaction is rolled back; restart asyncpay to "
                              "take the lock again")


def _advisory_lock(dsn: str, database: str, schema: str, where: str) -> HeldLock:
    """``pg_try_advisory_lock`` on a session of its own, held until released or until
    that session ends (PostgreSQL then drops the lock: a process that died holds none).

    Taken only when no session holds it, our own included: behind a pooler in
    transaction mode a server session may already hold the lock for another
    client (re-entrant lock). A heartbeat every ``LOCK_CHECK_INTERVAL`` seconds
    reads, on the lock's connection, that the session answering is the one that
    took the lock and still holds it: a server restart, a cut connection or a
    pooler handing the connection another server session marks the lock lost,
    and ``check`` then refuses new transactions at once (the Fence stops the
    ones already open). A heartbeat not heard from for ``LOCK_TIMEOUT`` plus an
    interval also refuses, until it is heard again."""
    key, commit_key = _key(f"asyncpay/{database}/{schema}"), _key(f"asyncpay-commit/{database}/{schema}")
    try:
        conn = psycopg.connect(dsn, autocommit=True, **connect_kwargs(dsn))
    except psycopg.Error as e:
        raise StoreError(f"cannot connect to PostgreSQL: {' '.join(str(e).split())}") from e
    try:
        conn.execute(f"SET statement_timeout = {LOCK_TIMEOUT}")
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            row = conn.execute(f"SELECT pg_try_advisory_lock(%s), pg_backend_pid() WHERE NOT EXISTS ({HELD_BY})",
                               (key, *_lock_columns(key))).fetchone()
            if row is not None and row[0]:
                pid = row[1]
                break
            if time.monotonic() >= deadline:
                raise StoreLocked(f"PostgreSQL {where}: another asyncpay holds the advisory lock {key} "
                                  "(one active LSP per database); refusing to run")
            time.sleep(0.2)
        _refuse_a_pooler(dsn, conn, pid, key, where)
        # The barrier: a commit the previous owner began before it lost the lock ends first.
        conn.execute(f"SET lock_timeout = {int(LOCK_WAIT * 1000)}")
        conn.execute("SELECT pg_advisory_lock(%s)", (commit_key,))
        conn.execute("SELECT pg_advisory_unlock(%s)", (commit_key,))
    except psycopg.errors.LockNotAvailable as e:
        conn.close()
        raise StoreLocked(f"PostgreSQL {where}: the previous asyncpay still has a commit in flight "
                          f"after {LOCK_WAIT:g} s; refusing to run") from e
    except psycopg.Error as e:
        conn.close()
        raise StoreError(f"PostgreSQL {where}: cannot take the advisory lock: {' '.join(str(e).split())}") from e
    except BaseException:
        conn.close()
        raise
    mutex, stop = threading.Lock(), threading.Event()
    state: dict[str, Any] = {"lost": None, "heard": time.monotonic()}

    def beat(blocking: bool = True) -> None:
        # Never waits behind a heartbeat stuck on a silent server: the caller then
        # relies on "heard" growing old.
        if not mutex.acquire(blocking=blocking):
            return
        try:
            if stop.is_set():
                return
            ok = conn.execute(f"SELECT pg_backend_pid() = %s AND EXISTS ({HELD_BY} AND pid = pg_backend_pid())",
                              (pid, *_lock_columns(key))).fetchone()[0]
        except psycopg.Error as e:
            state["lost"] = f"lost the advisory lock's session ({' '.join(str(e).split())})"
            return
        finally:
            mutex.release()
        if not ok:
            state["lost"] = (f"lost the advisory lock (session {pid} no longer holds it, or a pooler "
                             "gave this connection another server session)")
        else:
            state["heard"] = time.monotonic()

    def heartbeat() -> None:
        while not stop.wait(max(LOCK_CHECK_INTERVAL, 0.05)) and state["lost"] is None:
            beat()

    threading.Thread(target=heartbeat, name=f"asyncpay-pg-lock {where}", daemon=True).start()

    def check() -> None:
        if state["lost"] is None and time.monotonic() - state["heard"] > LOCK_CHECK_INTERVAL:
            beat(blocking=False)  # the heartbeat is late (or the interval 0 in a test): look now
        if state["lost"] is not None:
            raise StoreLocked(f"PostgreSQL {where}: {state['lost']}; restart asyncpay to take it again")
        silent = time.monotonic() - state["heard"]
        if silent > LOCK_CHECK_INTERVAL + LOCK_TIMEOUT / 1000:
            raise StoreLocked(f"PostgreSQL {where}: the advisory lock's session has not answered for "
                              f"{silent:.0f} s")

    def release() -> None:
        stop.set()
        with mutex:
            conn.close()  # ends the session, and the lock with it

    return HeldLock(release, check, Fence(key, commit_key, pid, where))


def _refuse_a_pooler(dsn: str, conn: psycopg.Connection, pid: int, key: int, where: str) -> None:
    """A pooler in transaction or statement mode (pgbouncer) gives each transaction
    of a client connection any server session: a session lock then belongs to
    whichever client that session serves next. Seen as another client connection
    served by the lock's session (a pooler reuses the session it was just given
    back: pgbouncer's default), or as the lock's connection changing session.
    Connected directly, every connection is a session of its own."""
    try:
        other = psycopg.connect(dsn, autocommit=True, **connect_kwargs(dsn))
    except psycopg.Error as e:
        raise StoreError(f"cannot connect to PostgreSQL: {' '.join(str(e).split())}") from e
    with other:
        for _ in range(3):
            now, holds = conn.execute(f"SELECT pg_backend_pid(), EXISTS ({HELD_BY} AND pid = %s)",
                                      (*_lock_columns(key), pid)).fetchone()
            shared = other.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
            if now != pid or not holds or shared:
                raise StoreLocked(f"PostgreSQL {where}: the advisory lock's server session serves other "
                                  "connections too (a pooler in transaction or statement mode?); the lock "
                                  "needs a session of its own: connect directly or in session mode")


def _run(conn: psycopg.Connection, sql: str, args: Sequence[Any]) -> Result:
    try:
        cur = conn.execute(to_pg(sql), tuple(args))
    except psycopg.OperationalError as e:
        # The server gone, a timeout, a lock not granted: the store cannot be used now
        # (an error of our SQL, a constraint, stays psycopg's own).
        raise StoreError(f"PostgreSQL: {' '.join(str(e).split())}") from e
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

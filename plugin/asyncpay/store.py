"""The store: everything that must survive a crash of lightningd, behind one
interface whatever the database (``asyncpay.storage``: SQLite by default,
PostgreSQL with ``asyncpay-db=postgresql://…``; the roles never know which).

What is acknowledged is committed first (SQLite ``synchronous=FULL``,
PostgreSQL ``synchronous_commit=on``): nothing we have acknowledged to a peer
(a ``static_invoice_persisted``, a message taken into the mailbox) is lost
to a crash. A ``schema_version`` table with ordered migrations, written once
against sqlite-utils' calls and run on both databases, and every multi-step
change inside one transaction (``with store.tx():``, bound to its thread;
nested ones are savepoints). Single statements are atomic by themselves and
run in autocommit mode. The SQL here is the subset both databases share
(``ON CONFLICT`` upserts, no ``INSERT OR``, no ``LIMIT -1``, 64-bit
integers, no two-argument ``MAX``).
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

from . import storage
from .storage import Migration, SchemaEditor, StoreError


def _v1(db: SchemaEditor) -> None:
    db["path_contexts"].create(
        {"path_id": bytes, "kind": str, "recipient_id": str, "invoice_slot": int,
         "expires_at": int, "created_at": int},
        pk="path_id",
    )
    db["path_contexts"].create_index(["recipient_id"])
    db["recipients"].create({"recipient_id": str, "created_at": int, "last_request_at": int}, pk="recipient_id")
    db["issued_offer_paths"].create(
        {"path": bytes, "recipient_id": str, "invoice_slot": int, "expires_at": int}, pk="path"
    )
    db["invoices"].create(
        {"recipient_id": str, "invoice_slot": int, "invoice": bytes, "forward_path": bytes,
         "offer_id": bytes, "created_at": int, "expires_at": int, "updated_at": int, "served": int},
        pk=("recipient_id", "invoice_slot"),
        defaults={"served": 0},
    )
    db["mailbox"].create(
        {"id": int, "peer_id": str, "source": str, "path_key": bytes, "onion": bytes, "digest": bytes,
         "size": int, "received_at": int, "attempts": int, "last_attempt_at": int},
        pk="id",
        defaults={"attempts": 0},
    )
    db["mailbox"].create_index(["peer_id", "id"])
    db["mailbox"].create_index(["digest"], unique=True)
    db["mailbox"].create_index(["received_at"])
    db["counters"].create({"name": str, "value": int}, pk="name")


def _v2(db: SchemaEditor) -> None:
    # Each role keeps its own ordered migrations (Store.migrate_component).
    db["component_versions"].create({"name": str, "version": int}, pk="name")


def _v3(db: SchemaEditor) -> None:
    # The contexts behind each issued offer path, so that old ones can be pruned.
    db["issued_offer_paths"].add_column("offer_path_id", bytes)
    db["issued_offer_paths"].add_column("serve_path_id", bytes)
    db["issued_offer_paths"].create_index(["recipient_id", "invoice_slot"])


def _v4(db: SchemaEditor) -> None:
    # purge_contexts runs on every block: it finds what expired through these,
    # never by reading every context (issue 24: cost per block flat in the state).
    db["path_contexts"].create_index(["expires_at"])
    db["issued_offer_paths"].create_index(["expires_at"])


MIGRATIONS: list[Migration] = [_v1, _v2, _v3, _v4]


def _mailbox_v1(db: SchemaEditor) -> None:
    # Eviction takes the oldest message of the source holding the most.
    db["mailbox"].create_index(["source", "id"])


# The mailbox's own migrations (Store.migrate_component("mailbox", ...)).
MAILBOX_MIGRATIONS: list[Migration] = [_mailbox_v1]


@dataclass(frozen=True)
class MailboxRow:
    id: int
    peer_id: str
    source: str | None
    path_key: bytes
    onion: bytes
    size: int
    received_at: int
    attempts: int


class Store:
    """asyncpay's state in one database: ``target`` is a SQLite file (or
    ``:memory:``) or a ``postgresql://`` URI. Raises StoreError when the
    database cannot be used (StoreLocked: another process writes it)."""

    def __init__(self, target: str, synchronous: str = "FULL") -> None:
        self.backend = storage.open_backend(target, synchronous)
        # A store dropped without close() gives its connections (and lock) back when collected.
        self._finalizer = weakref.finalize(self, self.backend.close)
        self.kind = self.backend.kind
        self.conn = self.backend  # execute(sql, args) with ``?`` placeholders, on either database
        try:
            self.migrate()
        except BaseException:
            self.close()
            raise

    # -- transactions and schema ------------------------------------------

    @contextmanager
    def tx(self) -> Iterator[None]:
        """One atomic unit, bound to the calling thread; nested uses become savepoints."""
        with self.backend.transaction():
            yield

    def schema_version(self) -> int:
        if "schema_version" not in self.backend.table_names():
            return 0
        row = self.conn.execute("SELECT version FROM schema_version").fetchone()
        return row[0] if row else 0

    def migrate(self) -> None:
        with self.tx():
            if "schema_version" not in self.backend.table_names():
                self.backend.schema()["schema_version"].create({"id": int, "version": int}, pk="id")
                self.conn.execute("INSERT INTO schema_version (id, version) VALUES (1, 0)")
            current = self.schema_version()
            if current > len(MIGRATIONS):
                raise StoreError(f"database schema {current} is newer than this asyncpay ({len(MIGRATIONS)})")
            for version in range(current, len(MIGRATIONS)):
                MIGRATIONS[version](self.backend.schema())
                self.conn.execute("UPDATE schema_version SET version = ?", (version + 1,))

    def migrate_component(self, name: str, migrations: list[Migration]) -> None:
        """Bring one role's own tables (prefixed with its name) up to date.

        Roles migrate independently so that each owns its schema; the core
        tables above are the LSP's and the shared path contexts. A migration
        uses sqlite-utils' ``create``/``create_index``/``add_column`` and
        ``execute`` only (``storage.SchemaEditor``): PostgreSQL runs the same.
        """
        with self.tx():
            row = self.conn.execute("SELECT version FROM component_versions WHERE name = ?", (name,)).fetchone()
            current = row[0] if row else 0
            if current > len(migrations):
                raise StoreError(f"database schema for {name} ({current}) is newer than this asyncpay")
            for version in range(current, len(migrations)):
                migrations[version](self.backend.schema())
            self.conn.execute(
                "INSERT INTO component_versions (name, version) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET version = excluded.version",
                (name, len(migrations)),
            )

    def describe(self) -> dict[str, str]:
        return self.backend.describe()

    def close(self) -> None:
        self._finalizer()

    # -- counters ---------------------------------------------------------

    def bump(self, name: str, by: int = 1) -> None:
        self.conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = counters.value + excluded.value",
            (name, by),
        )

    def row_count(self, table: str) -> int:
        assert table in ("recipients", "invoices", "mailbox", "path_contexts", "issued_offer_paths")
        return self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def counters(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT name, value FROM counters ORDER BY name").fetchall())

    # -- path contexts ----------------------------------------------------

    def add_context(self, path_id: bytes, kind: str, recipient_id: str, slot: int | None,
                    expires_at: int, now: int) -> None:
        self.conn.execute(
            "INSERT INTO path_contexts (path_id, kind, recipient_id, invoice_slot, expires_at, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (path_id, kind, recipient_id, slot, expires_at, now),
        )

    def context(self, path_id: bytes) -> tuple[str, str, int | None, int] | None:
        """(kind, recipient_id, invoice_slot, expires_at) for a path_id."""
        return self.conn.execute(
            "SELECT kind, recipient_id, invoice_slot, expires_at FROM path_contexts WHERE path_id = ?",
            (path_id,),
        ).fetchone()

    def purge_contexts(self, now: int) -> int:
        with self.tx():
            n = self.conn.execute("DELETE FROM path_contexts WHERE expires_at <= ?", (now,)).rowcount
            self.conn.execute("DELETE FROM issued_offer_paths WHERE expires_at <= ?", (now,))
        return n

    # -- recipients and issued offer paths --------------------------------

    def touch_recipient(self, recipient_id: str, now: int) -> None:
        self.conn.execute(
            "INSERT INTO recipients (recipient_id, created_at, last_request_at) VALUES (?, ?, ?) "
            "ON CONFLICT(recipient_id) DO UPDATE SET last_request_at = excluded.last_request_at",
            (recipient_id, now, now),
        )

    def is_recipient(self, recipient_id: str) -> bool:
        q = "SELECT 1 FROM recipients WHERE recipient_id = ?"
        return self.conn.execute(q, (recipient_id,)).fetchone() is not None

    def recipients(self) -> list[dict]:
        rows = self.conn.execute(
            "SELECT r.recipient_id, r.created_at, r.last_request_at, COUNT(i.invoice_slot) "
            "FROM recipients r LEFT JOIN invoices i ON i.recipient_id = r.recipient_id "
            "GROUP BY r.recipient_id ORDER BY r.recipient_id"
        ).fetchall()
        return [
            {"recipient_id": r[0], "created_at": r[1], "last_request_at": r[2], "invoices": r[3]} for r in rows
        ]

    def add_issued_offer_path(self, path: bytes, recipient_id: str, slot: int, expires_at: int,
                              offer_path_id: bytes | None = None, serve_path_id: bytes | None = None) -> None:
        with self.tx():  # delete, then insert: a re-issued path counts as the newest (rowid)
            self.conn.execute("DELETE FROM issued_offer_paths WHERE path = ?", (path,))
            self.conn.execute(
                "INSERT INTO issued_offer_paths (path, recipient_id, invoice_slot, expires_at, "
                "offer_path_id, serve_path_id) VALUES (?, ?, ?, ?, ?, ?)",
                (path, recipient_id, slot, expires_at, offer_path_id, serve_path_id),
            )

    def prune_issued_offer_paths(self, recipient_id: str, slot: int, keep: int, in_use: list[bytes]) -> int:
        """Delete all but the newest ``keep`` offer paths of (recipient, slot),
        and their contexts; paths in ``in_use`` (the stored invoice's) stay."""
        rows = self.conn.execute(
            "SELECT path, offer_path_id, serve_path_id FROM issued_offer_paths "
            "WHERE recipient_id = ? AND invoice_slot = ? ORDER BY rowid DESC",
            (recipient_id, slot),
        ).fetchall()[keep:]
        pinned = set(in_use)
        doomed = [r for r in rows if r[0] not in pinned]
        with self.tx():
            for path, offer_id, serve_id in doomed:
                self.conn.execute("DELETE FROM issued_offer_paths WHERE path = ?", (path,))
                self.conn.execute("DELETE FROM path_contexts WHERE path_id IN (?, ?)", (offer_id, serve_id))
        return len(doomed)

    def offer_path_owner(self, path: bytes) -> tuple[str, int, int] | None:
        return self.conn.execute(
            "SELECT recipient_id, invoice_slot, expires_at FROM issued_offer_paths WHERE path = ?", (path,)
        ).fetchone()

    # -- static invoices ---------------------------------------------------

    def put_invoice(self, recipient_id: str, slot: int, invoice: bytes, forward_path: bytes,
                    offer_id: bytes, created_at: int, expires_at: int, now: int) -> None:
        """Replace the slot's invoice (one statement: atomic by itself)."""
        self.conn.execute(
            "INSERT INTO invoices (recipient_id, invoice_slot, invoice, forward_path, offer_id, created_at, "
            "expires_at, updated_at, served) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0) "
            "ON CONFLICT(recipient_id, invoice_slot) DO UPDATE SET invoice = excluded.invoice, "
            "forward_path = excluded.forward_path, offer_id = excluded.offer_id, "
            "created_at = excluded.created_at, expires_at = excluded.expires_at, "
            "updated_at = excluded.updated_at, served = 0",
            (recipient_id, slot, invoice, forward_path, offer_id, created_at, expires_at, now),
        )

    def invoice(self, recipient_id: str, slot: int) -> tuple[bytes, bytes, int] | None:
        """(invoice, forward_path, expires_at)."""
        return self.conn.execute(
            "SELECT invoice, forward_path, expires_at FROM invoices WHERE recipient_id = ? AND invoice_slot = ?",
            (recipient_id, slot),
        ).fetchone()

    def mark_served(self, recipient_id: str, slot: int, by: int = 1) -> None:
        self.conn.execute(
            "UPDATE invoices SET served = served + ? WHERE recipient_id = ? AND invoice_slot = ?",
            (by, recipient_id, slot),
        )

    def list_invoices(self, recipient_id: str | None = None) -> list[dict]:
        q = ("SELECT recipient_id, invoice_slot, invoice, offer_id, created_at, expires_at, updated_at, served "
             "FROM invoices")
        args: tuple = ()
        if recipient_id is not None:
            q += " WHERE recipient_id = ?"
            args = (recipient_id,)
        rows = self.conn.execute(q + " ORDER BY recipient_id, invoice_slot", args).fetchall()
        keys = ("recipient_id", "invoice_slot", "invoice", "offer_id", "created_at", "expires_at",
                "updated_at", "served")
        return [dict(zip(keys, r)) for r in rows]

    def delete_invoice(self, recipient_id: str, slot: int) -> bool:
        q = "DELETE FROM invoices WHERE recipient_id = ? AND invoice_slot = ?"
        return self.conn.execute(q, (recipient_id, slot)).rowcount > 0

    # -- mailbox -----------------------------------------------------------

    def mailbox_totals(self, peer_id: str | None = None) -> tuple[int, int]:
        """(messages, bytes), for one peer or overall."""
        if peer_id is None:
            row = self.conn.execute("SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM mailbox").fetchone()
        else:
            row = self.conn.execute(
                "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM mailbox WHERE peer_id = ?", (peer_id,)
            ).fetchone()
        return row[0], row[1]

    def mailbox_oldest(self, peer_id: str) -> int | None:
        """received_at of the peer's oldest queued message."""
        q = "SELECT MIN(received_at) FROM mailbox WHERE peer_id = ?"
        return self.conn.execute(q, (peer_id,)).fetchone()[0]

    def mailbox_add(self, peer_id: str, source: str | None, path_key: bytes, onion: bytes, now: int) -> bool:
        """Queue one message; False if the very same onion is already queued."""
        digest = hashlib.sha256(path_key + onion).digest()
        cur = self.conn.execute(
            "INSERT INTO mailbox (peer_id, source, path_key, onion, digest, size, received_at, "
            "attempts) VALUES (?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT DO NOTHING",
            (peer_id, source, path_key, onion, digest, len(onion), now),
        )
        return cur.rowcount > 0

    def mailbox_contains(self, path_key: bytes, onion: bytes) -> bool:
        digest = hashlib.sha256(path_key + onion).digest()
        return self.conn.execute("SELECT 1 FROM mailbox WHERE digest = ?", (digest,)).fetchone() is not None

    def mailbox_oldest_of(self, source: str | None, peer_id: str | None = None) -> tuple[int, str, int] | None:
        """(id, peer_id, size) of the oldest message from ``source`` (None: our
        own), for one peer or any."""
        # "= ?" / "IS NULL" rather than "IS NOT DISTINCT FROM ?", which no index serves.
        q = "SELECT id, peer_id, size FROM mailbox WHERE " + ("source IS NULL" if source is None else "source = ?")
        args: tuple = () if source is None else (source,)
        if peer_id is not None:
            q += " AND peer_id = ?"
            args += (peer_id,)
        return self.conn.execute(q + " ORDER BY id LIMIT 1", args).fetchone()

    def mailbox_peer_totals(self) -> list[tuple[str, int, int]]:
        """(peer_id, messages, bytes) for every peer with mail."""
        return self.conn.execute("SELECT peer_id, COUNT(*), CAST(SUM(size) AS BIGINT) FROM mailbox "
                                 "GROUP BY peer_id").fetchall()

    def mailbox_source_totals(self) -> list[tuple[str | None, int, int]]:
        """(source, messages, bytes) for every source with mail queued, all peers together."""
        return self.conn.execute("SELECT source, COUNT(*), CAST(SUM(size) AS BIGINT) FROM mailbox "
                                 "GROUP BY source").fetchall()

    def mailbox_sources_of(self, peer_id: str) -> list[tuple[str | None, int, int]]:
        """(source, messages, bytes) of one peer's mail (its rows only, through the peer_id index)."""
        return self.conn.execute("SELECT source, COUNT(*), CAST(SUM(size) AS BIGINT) FROM mailbox "
                                 "WHERE peer_id = ? GROUP BY source", (peer_id,)).fetchall()

    def mailbox_sources(self) -> list[tuple[str, str | None, int, int]]:
        """(peer_id, source, messages, bytes) for every pair with mail."""
        return self.conn.execute("SELECT peer_id, source, COUNT(*), CAST(SUM(size) AS BIGINT) FROM mailbox "
                                 "GROUP BY peer_id, source").fetchall()

    def mailbox_pending(self, peer_id: str, limit: int = 1000) -> list[MailboxRow]:
        rows = self.conn.execute(
            "SELECT id, peer_id, source, path_key, onion, size, received_at, attempts FROM mailbox "
            "WHERE peer_id = ? ORDER BY id LIMIT ?",
            (peer_id, limit),
        ).fetchall()
        return [MailboxRow(*r) for r in rows]

    def mailbox_delete(self, msg_id: int, path_key: bytes | None = None, onion: bytes | None = None) -> bool:
        """Delete one message; given its content, only if the row still holds
        it (SQLite reuses the id of a deleted last row (PostgreSQL never does), so a flush's snapshot
        may name a row that was expired or evicted and taken again since)."""
        if onion is None or path_key is None:
            return self.conn.execute("DELETE FROM mailbox WHERE id = ?", (msg_id,)).rowcount > 0
        digest = hashlib.sha256(path_key + onion).digest()
        q = "DELETE FROM mailbox WHERE id = ? AND digest = ?"
        return self.conn.execute(q, (msg_id, digest)).rowcount > 0

    def mailbox_attempted(self, msg_id: int, now: int) -> None:
        self.conn.execute(
            "UPDATE mailbox SET attempts = attempts + 1, last_attempt_at = ? WHERE id = ?", (now, msg_id)
        )

    def mailbox_expire(self, older_than: int) -> list[tuple[str, str | None, int]]:
        """Delete the messages received before ``older_than``; (peer_id, source,
        size) of each, so that the caller's totals follow without a recount.
        Found through the ``received_at`` index: the cost is what expired."""
        return self.conn.execute("DELETE FROM mailbox WHERE received_at < ? RETURNING peer_id, source, size",
                                 (older_than,)).fetchall()

    def mailbox_peers(self) -> list[dict]:
        rows = self.conn.execute(
            "SELECT peer_id, COUNT(*), CAST(SUM(size) AS BIGINT), MIN(received_at), MAX(attempts) FROM mailbox "
            "GROUP BY peer_id ORDER BY peer_id"
        ).fetchall()
        keys = ("peer_id", "messages", "bytes", "oldest_received_at", "max_attempts")
        return [dict(zip(keys, r)) for r in rows]


class RowTable:
    """One table whose rows are one dataclass (columns = its fields, in
    order): the roles' own tables (payer payments, held HTLCs, recipient
    offers) go through it."""

    def __init__(self, store: Store, table: str, row: type, key: str) -> None:
        self.store, self.table, self.row, self.key = store, table, row, key
        self.columns = [f.name for f in fields(row)]
        self._select = f"SELECT {', '.join(self.columns)} FROM {table}"
        # put() replaces the row with the same primary key (SQLite's INSERT OR REPLACE, as an upsert).
        pk = store.backend.primary_key(table)
        rest = [c for c in self.columns if c not in pk]
        marks = ", ".join("?" * len(self.columns))
        action = ("DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest)) if rest else "DO NOTHING"
        self._put = (f"INSERT INTO {table} ({', '.join(self.columns)}) VALUES ({marks}) "
                     f"ON CONFLICT ({', '.join(pk)}) {action}")

    def put(self, row) -> None:
        self.store.conn.execute(self._put, [getattr(row, c) for c in self.columns])

    def get(self, key):
        r = self.store.conn.execute(f"{self._select} WHERE {self.key} = ?", (key,)).fetchone()
        return self.row(*r) if r else None

    def where(self, clause: str = "1 = 1", args: tuple = (), order: str | None = None) -> list:
        """Rows matching an SQL condition on our own columns (never user text)."""
        q = f"{self._select} WHERE {clause}" + (f" ORDER BY {order}" if order else "")
        return [self.row(*r) for r in self.store.conn.execute(q, args).fetchall()]

    def where_in(self, column: str, values: tuple, order: str | None = None) -> list:
        return self.where(f"{column} IN ({', '.join('?' * len(values))})", values, order)

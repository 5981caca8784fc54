"""The database under the store: SQLite (a file beside the node, the
default) or PostgreSQL (``postgresql://…``, for an LSP whose CLN runs on a
replicated cluster). ``asyncpay.store`` is the only user; the roles never see
which one runs.

Both backends give the same promises: an acknowledged change is committed
(SQLite ``synchronous=FULL``, PostgreSQL ``synchronous_commit=on``);
``transaction()`` is one atomic unit bound to the calling thread, nested
ones are savepoints, and one thread's transaction never takes another
thread's statements in; one process at a time writes a database (a lock
taken at open, refused with ``StoreLocked``).
"""

from __future__ import annotations

from .base import Backend, Migration, Result, SchemaEditor, StoreError, StoreLocked


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def shown(target: str) -> str:
    """``target`` fit for a log line: a PostgreSQL URI without its password."""
    if not is_postgres(target):
        return target
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(target)
    if parts.password is None:
        return target
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc[1]}"))


def open_backend(target: str, synchronous: str = "FULL") -> Backend:
    """The backend for ``asyncpay-db``: a ``postgresql://`` URI, else a SQLite file (or ``:memory:``)."""
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    if is_postgres(target):
        try:
            from .postgres import PostgresBackend  # psycopg is needed only for PostgreSQL
        except ImportError as e:
            raise StoreError(f"asyncpay-db is a PostgreSQL URI but {e.name} is missing: "
                             "pip install 'asyncpay[postgresql]'") from e

        return PostgresBackend(target, synchronous)
    from .sqlite import SqliteBackend

    return SqliteBackend(target, synchronous)


__all__ = ["Backend", "Migration", "Result", "SchemaEditor", "StoreError", "StoreLocked", "is_postgres",
           "open_backend", "shown"]

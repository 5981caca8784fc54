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

from .base import Backend, CommitUnknown, Migration, Result, SchemaEditor, StoreError, StoreLocked


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


# libpq parameters whose value is a secret (the password, the client key's passphrase).
# Paths (passfile, sslkey, sslcert) are shown: a path is not the secret it names.
SECRET_PARAMETERS = ("password", "sslpassword")


def shown(target: str) -> str:
    """``target`` fit for a log line: every secret a PostgreSQL connection string
    can carry replaced by ``***``: the password of ``user:password@``, and
    ``password=`` / ``sslpassword=`` both as URI query parameters and in the
    ``key=value`` form (quoted values included). Anything else is kept."""
    import re
    from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

    secret = "|".join(SECRET_PARAMETERS)
    if not is_postgres(target):
        # key=value connection strings: `password=x`, `password='a b\'c'`
        return re.sub(rf"(?i)(?<![\w.])({secret})(\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)", r"\1\2***", target)
    parts = urlsplit(target)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMETERS for k, _ in pairs):
            query = "&".join(f"{quote(k, safe='')}=" + ("***" if k.lower() in SECRET_PARAMETERS
                                                          else quote(v, safe="/:-_.~,"))
                             for k, v in pairs)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


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


__all__ = ["Backend", "CommitUnknown", "Migration", "Result", "SchemaEditor", "StoreError", "StoreLocked",
           "is_postgres", "open_backend", "shown"]

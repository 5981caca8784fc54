"""A real PostgreSQL for the tests (never a mock).

``ASYNCPAY_TEST_PG`` is a ``postgresql://`` URI of a throwaway cluster
(``.ci/postgres`` starts one and prints it). When it is set:

* the store contract tests (``tests/test_store*.py``) run on PostgreSQL as
  well as on SQLite; a cluster that cannot be reached fails them (it is never
  a reason to skip); without the variable they skip, saying so;
* with ``ASYNCPAY_TEST_STORE=postgresql`` as well, every ``Store`` any test
  opens on a SQLite path is opened on PostgreSQL instead, in a schema of its
  own (the same path in one test: the same schema, as a restart reopens the
  same file), so that the whole daemon-free suite runs on PostgreSQL; a test
  module with ``CHOOSES_ITS_BACKENDS = True`` (tests/test_store.py) is left alone.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from asyncpay import storage

DSN = os.environ.get("ASYNCPAY_TEST_PG", "")
WHOLE_SUITE = os.environ.get("ASYNCPAY_TEST_STORE", "sqlite") == "postgresql"
SKIP_REASON = "no PostgreSQL: set ASYNCPAY_TEST_PG=postgresql://… (.ci/postgres starts a throwaway cluster)"
_fresh = itertools.count()


def check_reachable() -> None:
    import psycopg

    try:
        psycopg.connect(DSN, connect_timeout=10).close()
    except psycopg.Error as e:
        raise pytest.UsageError(f"ASYNCPAY_TEST_PG is set but PostgreSQL is unreachable: {e}") from e


def other_connection(store):
    """A connection of another client to ``store``'s database: what it reads is committed."""
    if store.kind == "sqlite":
        import sqlite3

        return sqlite3.connect(store.backend.path)
    import psycopg

    return psycopg.connect(store.backend.dsn, autocommit=True)


def with_schema(dsn: str, schema: str) -> str:
    """``dsn`` whose connections read and write ``schema`` only."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


class Schemas:
    """Schemas made for one test, dropped at its end."""

    def __init__(self, test_id: str) -> None:
        import psycopg

        self.test_id = test_id
        self.admin = psycopg.connect(DSN, autocommit=True)  # unreachable: the test fails here
        self.made: dict[str, str] = {}
        self.backends: list = []

    def dsn_for(self, key: str) -> str:
        if key not in self.made:
            name = "t_" + hashlib.sha256(f"{self.test_id}|{key}|{os.getpid()}".encode()).hexdigest()[:24]
            self.admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            self.admin.execute(f"CREATE SCHEMA {name}")
            self.made[key] = name
        return with_schema(DSN, self.made[key])

    def fresh(self) -> str:
        return self.dsn_for(f":memory:{next(_fresh)}")

    def track(self, monkeypatch) -> None:
        """Close every backend the test opens, at its end."""
        real = storage.open_backend

        def open_backend(target: str, synchronous: str = "FULL"):
            backend = real(target, synchronous)
            self.backends.append(backend)
            return backend

        monkeypatch.setattr(storage, "open_backend", open_backend)

    def close(self) -> None:
        for b in self.backends:
            try:
                b.close()
            except Exception:
                pass
        for name in self.made.values():
            self.admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        self.admin.close()


def redirect_to_postgres(request, monkeypatch) -> Schemas:
    """Open every SQLite path of this test on PostgreSQL (see the module's doc)."""
    schemas = Schemas(request.node.nodeid)
    real = storage.open_backend

    def open_backend(target: str, synchronous: str = "FULL"):
        # Without waiting for each commit's WAL flush (synchronous_commit=off): this run checks
        # behaviour on PostgreSQL; the durable setting is test_store.py's (on both backends).
        if storage.is_postgres(target):
            backend = real(target, synchronous)
        elif target == ":memory:":
            backend = real(schemas.fresh(), "NORMAL")
        elif not os.path.isdir(os.path.dirname(os.path.abspath(target))):
            backend = real(target, synchronous)  # a test of a bad path: SQLite's own error
        else:
            backend = real(schemas.dsn_for(os.path.realpath(target)), "NORMAL")
        schemas.backends.append(backend)
        return backend

    monkeypatch.setattr(storage, "open_backend", open_backend)
    return schemas


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(not DSN, reason=SKIP_REASON))]

"""Shared test set-up: where the vectors live, and hypothesis profiles.

Vectors are read in place from ``../shared/vectors`` next to the repository,
or from ``$ASYNCPAY_VECTORS`` when set. They are never copied in.
"""

from __future__ import annotations

import ast
import json
import os
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings


def _one_ast_parse_at_a_time() -> None:
    """CPython 3.11 keeps one AST recursion counter for all threads
    (python/cpython#106905): two ``ast.parse`` at once, say a traceback
    being formatted in a plugin thread (3.11 parses the line for its carets)
    while tests/test_imports.py parses the package, or pyln-testing's nodes
    starting in threads (werkzeug compiles routes), fail one of them with
    "AST constructor recursion depth mismatch" (seen here on 3.11.7)."""
    parse, lock = ast.parse, threading.RLock()

    def locked(*args, **kwargs):
        with lock:
            return parse(*args, **kwargs)

    ast.parse = locked


_one_ast_parse_at_a_time()

ROOT = Path(__file__).resolve().parent.parent
VECTORS = Path(os.environ.get("ASYNCPAY_VECTORS", ROOT.parent / "shared" / "vectors"))

# "ci" keeps the default run short; "thorough" is the 10,000-example profile
# (pytest --hypothesis-profile=thorough tests/test_properties.py).
# The second run on PostgreSQL (ASYNCPAY_TEST_STORE=postgresql, .ci/run) keeps "ci" with
# fewer examples: every example's stores are real databases, and the logic ran on SQLite.
settings.register_profile("ci", max_examples=15 if os.environ.get("ASYNCPAY_TEST_STORE") == "postgresql" else 300,
                          deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=10_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def load_vector(rel: str):
    path = VECTORS / rel
    if not path.exists():
        # Missing vectors are a broken checkout, not a reason to skip.
        raise FileNotFoundError(f"test vectors not found at {path} (set ASYNCPAY_VECTORS)")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def ldk():
    return load_vector("ldk/async-payments.json")


def h(s: str) -> bytes:
    return bytes.fromhex(s)


# -- the store's database: SQLite, or a real PostgreSQL (tests/pg_cluster.py) --

import pg_cluster  # noqa: E402
from pg_cluster import BACKENDS, DSN, WHOLE_SUITE, Schemas, redirect_to_postgres  # noqa: E402

if WHOLE_SUITE and not DSN:
    raise pytest.UsageError("ASYNCPAY_TEST_STORE=postgresql needs ASYNCPAY_TEST_PG=postgresql://…")


def pytest_configure(config):
    if DSN:  # named, so it must be there: an unreachable cluster fails the run instead of skipping
        pg_cluster.check_reachable()


@pytest.fixture(autouse=True)
def _store_on_postgres(request, monkeypatch):
    """With ASYNCPAY_TEST_STORE=postgresql, every Store of the test lives on PostgreSQL."""
    if not WHOLE_SUITE or getattr(request.module, "CHOOSES_ITS_BACKENDS", False):
        yield
        return
    schemas = redirect_to_postgres(request, monkeypatch)
    yield
    schemas.close()


@pytest.fixture(params=BACKENDS)
def store_target(request, tmp_path, monkeypatch):
    """What to open a fresh store on, for each backend: a SQLite file or a PostgreSQL schema
    (PostgreSQL skips, with the reason, without ASYNCPAY_TEST_PG)."""
    if request.param == "sqlite":
        yield str(tmp_path / "store.sqlite3")
        return
    schemas = Schemas(request.node.nodeid + "|target")
    schemas.track(monkeypatch)  # a failing test's stores are closed too
    yield schemas.fresh()
    schemas.close()


@pytest.fixture
def backend_store(store_target):
    """A Store opened on ``store_target`` (each backend), closed after the test."""
    from asyncpay.store import Store

    s = Store(store_target)
    yield s
    s.close()

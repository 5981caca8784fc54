"""Regtest: an HTLC held at the sender's LSP is failed back at its hold
deadline though the LSP's store is gone (docs/security.md "When the store is
gone"). Ls keeps asyncpay's state on PostgreSQL (``asyncpay-db``, a database
of its own on a throwaway cluster); with S's HTLC held, every backend of
that database is ended (``pg_terminate_backend``: the advisory lock's
session with them, as a server restart or a failover does), so every later
transaction of Ls's asyncpay raises ``StoreLocked``. The hold's timer fails
the HTLC back from memory before its deadline passes by more than a check
interval, and every channel stays ``CHANNELD_NORMAL``.

Needs a PostgreSQL server (``ASYNCPAY_TEST_PG``, else ``.ci/postgres``);
skipped, saying so, otherwise."""

from __future__ import annotations

import time
import uuid

import pytest

from regtest import require_binaries, wait_for

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from test_regtest_hold import assert_channels_normal, failed_at_sender, four_nodes, start_held_payment  # noqa: E402

HOLD_SECONDS, CHECK_SECONDS = 120, 2


@pytest.fixture
def asyncpay_database():
    """A database of its own on a throwaway cluster, for Ls's asyncpay."""
    import os
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    uri, where = os.environ.get("ASYNCPAY_TEST_PG"), None
    if not uri:
        if shutil.which("initdb") is None and not any(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
            pytest.skip("regtest store down: no PostgreSQL server (set ASYNCPAY_TEST_PG, or install postgresql)")
        where = tempfile.mkdtemp(prefix="asyncpay-pg-")  # not under pytest's 0700 root: the cluster's user enters it
        ci = Path(__file__).resolve().parent.parent / ".ci" / "postgres"
        started = subprocess.run([str(ci), "start", where], capture_output=True, text=True)
        if started.returncode != 0:
            pytest.fail(f".ci/postgres could not start a cluster: {started.stderr.strip()}")
        uri = started.stdout.strip()
    name = "store_down_" + uuid.uuid4().hex[:12]
    with psycopg.connect(uri, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield urlunsplit(urlsplit(uri)._replace(path="/" + name)), uri, name
    with psycopg.connect(uri, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    if where:
        ci = Path(__file__).resolve().parent.parent / ".ci" / "postgres"
        subprocess.run([str(ci), "stop", where], capture_output=True)
        shutil.rmtree(where, ignore_errors=True)


def end_every_session(admin_uri: str, database: str) -> int:
    import psycopg

    with psycopg.connect(admin_uri, autocommit=True) as admin:
        return len(admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                                 "AND pid <> pg_backend_pid()", (database,)).fetchall())


def test_held_htlc_is_failed_back_at_its_deadline_while_the_lsps_store_is_gone(node_factory, asyncpay_database):
    db, admin_uri, name = asyncpay_database
    s, ls, lr, r = four_nodes(node_factory, ls_opts={
        "asyncpay-db": db, "asyncpay-hold-max-seconds": HOLD_SECONDS, "asyncpay-hold-check-seconds": CHECK_SECONDS})
    pay = start_held_payment(s, ls, lr, r)
    [held] = ls.rpc.call("asyncpay-listheld")["held"]
    deadline = held["since"] + HOLD_SECONDS
    assert end_every_session(admin_uri, name) >= 1  # the lock's session among them
    gone_at = time.time()
    ls.daemon.wait_for_log("StoreLocked|advisory lock", timeout=60)  # a pass found the store gone
    failed = failed_at_sender(s, pay)
    answered_at = time.time()
    assert failed["status"] == "failed"
    assert answered_at <= deadline + CHECK_SECONDS + 30, (answered_at, deadline)  # the pay's own poll lags
    print(f"held since {held['since']}, hold deadline {deadline}, store gone at {gone_at:.0f}, "
          f"failed at S {answered_at - deadline:+.1f} s from the deadline")
    ls.daemon.wait_for_log("failing held HTLC .*: the store cannot be used and its deadline came")
    wait_for(lambda: not any(c.get("htlcs") for c in ls.rpc.listpeerchannels(s.info["id"])["channels"]),
             what="the HTLC gone from S-Ls")
    assert_channels_normal(s, ls, lr)

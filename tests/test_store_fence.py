"""The PostgreSQL store under the faults of a failover, on a real cluster
(ASYNCPAY_TEST_PG; skipped, saying so, without one): the lock lost while a
transaction is open, a new owner taking over while the old one commits, a
COMMIT whose answer is lost or that never arrives, an idle session cut by
the server, a transaction stuck behind another, and the schema a
``search_path`` picks."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

import pg_cluster
from asyncpay.lsp import LspConfig, Mailbox
from asyncpay.storage import CommitUnknown, StoreError, StoreLocked
from asyncpay.store import Store
from pg_proxy import CommitBreaker

CHOOSES_ITS_BACKENDS = True
pytestmark = pytest.mark.skipif(not pg_cluster.DSN, reason=pg_cluster.SKIP_REASON)


@pytest.fixture
def schemas(request, monkeypatch):
    s = pg_cluster.Schemas(request.node.nodeid)
    s.track(monkeypatch)
    yield s
    s.close()


def _lock_holders(store: Store, admin) -> list[int]:
    from asyncpay.storage.postgres import HELD_BY, _key, _lock_columns

    database, schema = store.backend.where.split("/")[-2:]
    key = _key(f"asyncpay/{database}/{schema}")
    return [r[0] for r in admin.execute(HELD_BY.replace("SELECT 1", "SELECT pid"), _lock_columns(key))]


def _counter(admin, schema: str, name: str) -> int | None:
    row = admin.execute(f'SELECT value FROM "{schema}".counters WHERE name = %s', (name,)).fetchone()
    return row[0] if row else None


def _wait(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_transaction_open_when_the_lock_is_lost_does_not_commit(schemas):
    """Two writers: the lock's session ends while a transaction is open, and a
    standby takes the lock; the open transaction rolls back at COMMIT."""
    target = schemas.fresh()
    schema = schemas.made[next(iter(schemas.made))]
    s = Store(target)
    admin = schemas.admin
    [pid] = _lock_holders(s, admin)
    with pytest.raises(StoreLocked, match="lost the advisory lock"):
        with s.tx():
            s.bump("written_after_the_loss")
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
            _wait(lambda: not _lock_holders(s, admin), "the lock's session to end")
            # The standby takes the lock (as its asyncpay would at start).
            from asyncpay.storage.postgres import _key

            database = s.backend.where.split("/")[-2]
            assert admin.execute("SELECT pg_try_advisory_lock(%s)",
                                 (_key(f"asyncpay/{database}/{schema}"),)).fetchone()[0]
    assert _counter(admin, schema, "written_after_the_loss") is None
    with pytest.raises(StoreLocked):  # and nothing after it either
        s.bump("later")
    assert _counter(admin, schema, "later") is None
    s.close()


def test_a_new_owner_waits_for_the_old_owners_commit_in_flight(schemas, monkeypatch):
    """The old owner passed its check and is committing when the new one takes the
    lock: the new one starts only after that COMMIT (or refuses), never beside it."""
    import psycopg

    import asyncpay.storage.postgres as pg

    monkeypatch.setattr(pg, "LOCK_WAIT", 1.0)
    target = schemas.fresh()
    schema = schemas.made[next(iter(schemas.made))]
    database = Store(target)
    database_name = database.backend.where.split("/")[-2]
    database.close()
    commit_key = pg._key(f"asyncpay-commit/{database_name}/{schema}")
    old = psycopg.connect(pg_cluster.DSN, autocommit=False)  # a commit of the old owner, in flight
    old.execute("SELECT pg_advisory_xact_lock_shared(%s)", (commit_key,))
    with pytest.raises(StoreLocked, match="commit in flight"):
        Store(target)
    opened: list[Store] = []
    t = threading.Thread(target=lambda: opened.append(Store(target)))
    t.start()
    time.sleep(0.3)
    assert not opened  # still waiting for the old owner's COMMIT
    old.commit()
    t.join(timeout=10)
    assert opened
    opened[0].close()
    old.close()


def test_a_commit_whose_answer_is_lost_says_its_outcome_is_unknown(schemas):
    """The server committed, the answer never came: CommitUnknown, not a plain error
    a caller could read as "nothing happened"."""
    proxy = CommitBreaker(schemas.fresh())
    try:
        schema = schemas.made[next(iter(schemas.made))]
        s = Store(proxy.uri)
        proxy.arm("lose_answer")
        with pytest.raises(CommitUnknown):
            with s.tx():
                s.bump("committed_unheard")
        assert proxy.fired.is_set()
        assert _counter(schemas.admin, schema, "committed_unheard") == 1  # it did commit
        s.bump("next")  # the store goes on with a fresh connection
        assert _counter(schemas.admin, schema, "next") == 1
        s.close()
    finally:
        proxy.close()


@pytest.mark.parametrize("mode", ["drop_commit", "lose_answer"])
@pytest.mark.parametrize("quota", ["per_peer", "global"])
def test_a_failed_delivery_commit_lets_no_message_past_the_quota(schemas, mode, quota):
    """A delivery whose COMMIT fails (or whose outcome is unknown) must not leave
    the in-memory totals lower than the table: the next message is then admitted
    only if the table has room."""
    proxy = CommitBreaker(schemas.fresh())
    try:
        limit = 3
        limits = ({"mailbox_max_messages_per_peer": limit} if quota == "per_peer"
                  else {"mailbox_max_messages": limit})
        mb = Mailbox(Store(proxy.uri), LspConfig(mailbox_max_messages_per_source_per_peer=100, **limits))
        peer = "02" + "11" * 32
        for i in range(limit):
            assert mb.intake(peer, "src", b"k" * 33, bytes([i]) * 40, 1000) is None
        row = mb.pending(peer)[0]
        proxy.arm(mode)
        with pytest.raises(StoreError):
            mb.delivered(row)
        assert proxy.fired.is_set()
        for i in range(3):  # the same source keeps sending
            mb.intake(peer, "src", b"k" * 33, bytes([100 + i]) * 40, 1001)
        in_table = mb.store.conn.execute("SELECT count(*) FROM mailbox").fetchone()[0]
        assert in_table <= limit
        assert mb.total[0] == in_table  # the totals follow the table again
        mb.store.close()
    finally:
        proxy.close()


def test_the_lock_survives_a_server_that_ends_idle_sessions(schemas, monkeypatch):
    """``idle_session_timeout`` (or a NAT dropping an idle flow) must not end the
    lock's session while asyncpay idles: the heartbeat keeps it busy."""
    import asyncpay.storage.postgres as pg

    monkeypatch.setattr(pg, "LOCK_CHECK_INTERVAL", 0.3)
    schemas.fresh()
    schema = schemas.made[next(iter(schemas.made))]
    s = Store(pg_cluster.with_schema(pg_cluster.DSN, schema).replace(
        "options=", "options=-cidle_session_timeout%3D1000%20"))
    time.sleep(2.5)  # idle past the server's timeout, twice
    s.bump("after_idling")
    assert _lock_holders(s, schemas.admin)
    s.close()


def test_a_transaction_waits_for_its_turn_a_bounded_time(schemas, monkeypatch):
    """A transaction stuck (a COMMIT to a silent server) holds the store: another
    thread's transaction gets StoreError after POOL_WAIT, instead of waiting for it
    with the hook thread blocked."""
    import asyncpay.storage.postgres as pg

    monkeypatch.setattr(pg, "POOL_WAIT", 0.5)
    s = Store(schemas.fresh())
    inside, leave = threading.Event(), threading.Event()

    def stuck() -> None:
        with s.tx():
            inside.set()
            leave.wait(30)

    t = threading.Thread(target=stuck)
    t.start()
    inside.wait(10)
    outcome: list[BaseException | None] = []

    def other() -> None:
        try:
            with s.tx():
                s.bump("x")
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    o = threading.Thread(target=other)
    o.start()
    o.join(timeout=10)
    stalled = o.is_alive()
    leave.set()
    t.join(timeout=10)
    o.join(timeout=30)
    assert not stalled, "a transaction waited for another without bound"
    assert isinstance(outcome[0], StoreError) and "held the store" in str(outcome[0])
    s.close()


# -- the schema a search_path picks ---------------------------------------------------------------


def _name(schemas: pg_cluster.Schemas, tag: str, create: bool = False) -> str:
    """A schema name of this test (dropped at its end), created or not."""
    name = "t_" + tag + "_" + hashlib.sha256(schemas.test_id.encode()).hexdigest()[:12]
    schemas.admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    if create:
        schemas.admin.execute(f"CREATE SCHEMA {name}")
    schemas.made[tag] = name
    return name


def _path_dsn(*schemas_: str) -> str:
    return pg_cluster.with_schema(pg_cluster.DSN, ",".join(schemas_))


def _tables_in(admin, schema: str) -> set[str]:
    return {r[0] for r in admin.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))}


def test_the_first_schema_of_the_path_is_created_and_written(schemas):
    """``search_path=mine,public`` with no ``mine`` yet: asyncpay creates ``mine`` and
    writes there, not in the next schema of the path."""
    existing, first = _name(schemas, "existing", create=True), _name(schemas, "first")
    s = Store(_path_dsn(first, existing))
    assert s.backend.where.endswith("/" + first)
    assert "schema_version" in _tables_in(schemas.admin, first)
    assert _tables_in(schemas.admin, existing) == set()
    s.close()


def test_asyncpay_tables_in_another_schema_of_the_path_are_refused(schemas):
    """The state was written in ``public``; the path now puts a new schema first.
    Starting empty there would lose every held HTLC and queued message: refused."""
    old, first = _name(schemas, "old", create=True), _name(schemas, "new")
    Store(_path_dsn(old)).close()
    with pytest.raises(StoreError, match=f"asyncpay's tables are in schema '{old}'"):
        Store(_path_dsn(first, old))
    # A path that names the old schema first still opens it.
    Store(_path_dsn(old, first)).close()


def test_a_missing_user_schema_is_skipped_as_postgres_does(schemas):
    """``"$user", x``: with no schema named after the role, the tables go to ``x`` (PostgreSQL's
    own rule), and ``$user`` is not created."""
    x = _name(schemas, "x")
    user = schemas.admin.execute("SELECT current_user").fetchone()[0]
    assert not schemas.admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (user,)).fetchone()
    s = Store(pg_cluster.with_schema(pg_cluster.DSN, f'"$user",{x}'))
    assert s.backend.where.endswith("/" + x)
    s.close()


def test_every_connection_has_keepalives_and_timeouts(schemas):
    """A silent server (NAT drop, black hole) ends a connection in about 30 s, not TCP's
    2 h; a stuck statement or lock wait ends on the server. A URI's own value wins."""
    import asyncpay.storage.postgres as pg

    s = Store(schemas.fresh())
    with s.backend._connection() as conn:
        given = conn.info.get_parameters()
        assert (given.get("keepalives"), given.get("keepalives_idle"), given.get("tcp_user_timeout")) == (
            "1", "10", "30000")
        settings = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN "
                                     "('statement_timeout', 'lock_timeout')").fetchall())
        assert settings == {"statement_timeout": str(pg.STATEMENT_TIMEOUT), "lock_timeout": str(pg.LOCK_TIMEOUT)}
    s.close()
    assert pg.connect_kwargs("postgresql://h/db?keepalives_idle=99")["keepalives_count"] == "3"
    assert "keepalives_idle" not in pg.connect_kwargs("postgresql://h/db?keepalives_idle=99")

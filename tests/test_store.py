"""The store's contract, on both backends (SQLite; PostgreSQL when
ASYNCPAY_TEST_PG names a cluster): schema versions and upgrades,
transactions, durability settings, threads, the one-writer lock."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from asyncpay.hold.records import HeldRow, HoldRecords
from asyncpay.payer.records import PayerRecords
from asyncpay.recipient.records import RecipientRecords
from asyncpay.storage import StoreError, StoreLocked, is_postgres
from asyncpay.store import MAILBOX_MIGRATIONS, MIGRATIONS, Store

# Each test opens the backends it names (store_target): ASYNCPAY_TEST_STORE=postgresql leaves it alone.
CHOOSES_ITS_BACKENDS = True
BEFORE_POSTGRES = Path(__file__).parent / "data" / "store_before_postgres.sql"


def open_all(target: str) -> Store:
    """A store with every role's tables, as a node opens it."""
    s = Store(target)
    s.migrate_component("mailbox", MAILBOX_MIGRATIONS)
    HoldRecords(s), PayerRecords(s), RecipientRecords(s)
    return s


def raw_reader(target: str):
    """A connection of another client: what it sees is what is committed."""
    if is_postgres(target):
        import psycopg

        conn = psycopg.connect(target, autocommit=True)
        return lambda q: conn.execute(q).fetchall()
    conn = sqlite3.connect(target)
    return lambda q: conn.execute(q).fetchall()


def test_fresh_store_is_at_the_latest_schema(store_target):
    s = Store(store_target)
    assert s.schema_version() == len(MIGRATIONS)
    settings = s.describe()
    if s.kind == "sqlite":
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    else:
        assert s.conn.execute("SHOW synchronous_commit").fetchone()[0] == "on" == settings["synchronous_commit"]
    s.close()


def test_normal_durability_is_the_relaxed_setting(store_target):
    s = Store(store_target, synchronous="NORMAL")
    if s.kind == "sqlite":
        assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    else:
        assert s.conn.execute("SHOW synchronous_commit").fetchone()[0] == "off"
    s.close()
    with pytest.raises(ValueError, match="FULL or NORMAL"):
        Store(store_target, synchronous="OFF")


def test_reopening_does_not_migrate_again(store_target):
    s = Store(store_target)
    s.bump("x", 3)
    s.close()
    again = Store(store_target)
    assert again.counters() == {"x": 3}
    assert again.schema_version() == len(MIGRATIONS)
    again.close()


def test_newer_schema_is_refused(store_target):
    s = Store(store_target)
    s.conn.execute("UPDATE schema_version SET version = 99")
    s.close()
    with pytest.raises(StoreError, match="newer"):
        Store(store_target)


def test_newer_component_schema_is_refused(store_target):
    s = open_all(store_target)
    s.conn.execute("UPDATE component_versions SET version = 99 WHERE name = 'hold'")
    with pytest.raises(StoreError, match="hold .* newer"):
        HoldRecords(s)
    s.close()


def test_transaction_rolls_back_as_a_whole(store_target):
    s = Store(store_target)
    with pytest.raises(ZeroDivisionError):
        with s.tx():
            s.bump("a")
            s.put_invoice("r", 0, b"inv", b"path", b"id", 1, 2, 3)
            raise ZeroDivisionError("abort the transaction")
    assert s.counters() == {} and s.list_invoices() == []
    s.close()


def test_nested_transactions_are_savepoints(store_target):
    s = Store(store_target)
    with s.tx():
        s.bump("a")
        with s.tx():
            s.bump("b")
        with pytest.raises(ZeroDivisionError):
            with s.tx():
                s.bump("c")
                raise ZeroDivisionError("undo the inner one only")
    assert s.counters() == {"a": 1, "b": 1}
    s.close()


def test_other_connection_sees_only_committed_state(store_target):
    s = Store(store_target)
    read = raw_reader(store_target)
    with s.tx():
        s.bump("a")
        assert read("SELECT COUNT(*) FROM counters")[0][0] == 0
    assert read("SELECT value FROM counters")[0][0] == 1
    s.close()


def test_a_transaction_is_bound_to_its_thread(store_target):
    """Another thread's statement never joins (nor is rolled back with) a transaction."""
    s = Store(store_target)
    started = threading.Event()

    def other() -> None:
        started.set()
        s.bump("other")

    t = threading.Thread(target=other)
    with pytest.raises(ZeroDivisionError):
        with s.tx():
            s.bump("mine")
            t.start()
            started.wait()
            raise ZeroDivisionError("roll back mine")
    t.join()
    assert s.counters() == {"other": 1}
    s.close()


def test_threads_writing_at_once_lose_nothing(store_target):
    s = Store(store_target, synchronous="NORMAL")  # the count is the point, not the fsyncs
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                with s.tx():
                    s.bump("total")
                    s.mailbox_add(f"peer{n}", None, b"k", f"{n}/{i}".encode(), i)
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert s.counters() == {"total": 150} and s.mailbox_totals()[0] == 150
    s.close()


def test_row_count(store_target):
    s = Store(store_target)
    s.put_invoice("r", 0, b"inv", b"path", b"id", 1, 2, 3)
    s.put_invoice("r", 1, b"inv", b"path", b"id", 1, 2, 3)
    s.touch_recipient("r", 1)
    assert (s.row_count("invoices"), s.row_count("recipients"), s.row_count("mailbox")) == (2, 1, 0)
    s.close()


def test_64_bit_amounts_and_times(store_target):
    s = open_all(store_target)
    rows = HoldRecords(s)
    big = 2_100_000_000_000_000_000  # every bitcoin, in msat
    rows.put(HeldRow("1x1x1/1", b"\x01" * 32, big, 800_000, 799_990, "peer", b"p", since=2**40, deadline=2**41))
    got = rows.get("1x1x1/1")
    assert (got.amount_msat, got.since, got.deadline) == (big, 2**40, 2**41)
    s.close()


def test_mailbox_duplicates_and_stale_ids(store_target):
    s = Store(store_target)
    assert s.mailbox_add("p", None, b"k", b"one", 1) and not s.mailbox_add("p", None, b"k", b"one", 2)
    s.mailbox_add("p", "src", b"k", b"two", 3)
    [first, second] = s.mailbox_pending("p")
    assert s.mailbox_oldest_of(None) == (first.id, "p", 3) and s.mailbox_oldest_of("src")[0] == second.id
    assert sorted(s.mailbox_sources(), key=lambda r: r[1] or "") == [("p", None, 1, 3), ("p", "src", 1, 3)]
    assert s.mailbox_delete(second.id, second.path_key, second.onion)
    s.mailbox_add("p", None, b"k", b"three", 4)
    [_, third] = s.mailbox_pending("p")
    # A flush's snapshot of the deleted message never deletes the one taken after it.
    assert not s.mailbox_delete(second.id, second.path_key, second.onion)
    if s.kind == "postgresql":
        assert third.id > second.id  # a sequence never hands out an id twice
    assert [m.onion for m in s.mailbox_pending("p")] == [b"one", b"three"]
    s.close()


def test_issued_offer_paths_keep_the_newest(store_target):
    s = Store(store_target)
    for path in (b"a", b"b", b"c", b"a"):  # re-issuing "a" makes it the newest
        s.add_issued_offer_path(path, "r", 0, 10)
    assert s.prune_issued_offer_paths("r", 0, keep=2, in_use=[]) == 1
    assert [p for p in (b"a", b"b", b"c") if s.offer_path_owner(p)] == [b"a", b"c"]
    s.close()


def test_both_backends_build_the_same_tables(store_target, tmp_path):
    """Migrations are written once: PostgreSQL gets SQLite's tables and columns (plus its rowid)."""
    s = open_all(store_target)
    ref = open_all(str(tmp_path / "reference.sqlite3"))

    def columns(store: Store) -> dict[str, list[str]]:
        out = {}
        for table in store.backend.table_names():
            if store.kind == "sqlite":
                names = [r[1] for r in store.conn.execute(f"PRAGMA table_info({table})")]
            else:
                names = [r[0] for r in store.conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                    "AND table_name = ? AND column_name != 'rowid' ORDER BY ordinal_position", (table,))]
            out[table] = names
        return out

    assert columns(s) == columns(ref)
    s.close(), ref.close()


def test_a_database_from_before_postgres_upgrades_in_place(tmp_path):
    """A SQLite file written by the version before this store (its dump is in
    tests/data) opens with its rows and schema unchanged, versions as they were."""
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(BEFORE_POSTGRES.read_text())
    before = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    conn.close()
    s = open_all(str(path))
    assert s.schema_version() == 3
    versions = dict(s.conn.execute("SELECT name, version FROM component_versions").fetchall())
    assert {k: versions[k] for k in ("mailbox", "hold", "payer", "recipient")} == \
        {"mailbox": 1, "hold": 3, "payer": 2, "recipient": 3}
    after = s.conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    assert [r for r in after if r in before] == before  # nothing of the old schema changed
    assert s.counters() == {"mailbox_buffered": 2}
    assert s.invoice("02" + "aa" * 32, 0)[0] == b"static-invoice"
    assert [m.onion for m in s.mailbox_pending("02" + "bb" * 32)] == [b"onion-1", b"onion-2"]
    assert HoldRecords(s).get("1x2x3/7").amount_msat == 2_100_000_000_000_000_000
    assert PayerRecords(s).get("pay-1").state == "complete"
    recipient = RecipientRecords(s)
    assert recipient.server() == b"paths" and recipient.payment(b"\x07" * 32)["status"] == "received"
    # and it keeps working: the newer SQL on the old tables
    assert s.mailbox_add("02" + "bb" * 32, None, b"k", b"onion-3", 1700000009)
    recipient.issue_offer(0, b"offer-1", None, b"n", 1700000010)
    assert recipient.issued_offer(recipient.issue_offer(0, b"offer-0", None, b"n", 1)).bolt12 == "lno1y"
    s.close()


def _open_elsewhere(target: str) -> subprocess.CompletedProcess:
    code = ("import asyncpay.storage.postgres as p; p.LOCK_WAIT = 0\n"
            "import asyncpay.storage.sqlite as q; q.LOCK_WAIT = 0\n"
            "from asyncpay.store import Store\n"
            "from asyncpay.storage import StoreLocked\n"
            f"try:\n    Store({target!r}).close()\nexcept StoreLocked as e:\n    print('LOCKED', e)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_second_process_is_refused(store_target):
    pytest.importorskip("psycopg", reason="the child imports the PostgreSQL backend")
    s = Store(store_target)
    again = Store(store_target)  # the same process (a restart in a test) shares the lock
    out = _open_elsewhere(store_target)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("LOCKED") and "another asyncpay" in out.stdout
    again.close()
    assert _open_elsewhere(store_target).stdout.startswith("LOCKED")  # still held by s
    s.close()
    out = _open_elsewhere(store_target)
    assert out.returncode == 0 and out.stdout == "", out.stdout + out.stderr


def test_a_lock_released_soon_after_is_taken(tmp_path):
    """A lightningd killed and started again at once: the new plugin opens the
    database while the old one is still exiting. It waits for the lock rather
    than disable itself (the chaos run saw a recipient lose its plugin so)."""
    target = str(tmp_path / "a.sqlite3")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom asyncpay.store import Store\n"
         f"s = Store({target!r})\nprint('ready', flush=True)\nsys.stdin.read()\ntime.sleep(1)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "ready\n"
        holder.stdin.close()  # its lightningd is gone: it exits a second later
        Store(target).close()  # within LOCK_WAIT: taken, not refused
    finally:
        holder.wait(timeout=30)


def test_store_locked_is_a_store_error():
    assert issubclass(StoreLocked, StoreError) and issubclass(StoreError, RuntimeError)


def test_a_database_another_process_holds_disables_the_plugin(store_target, monkeypatch, tmp_path):
    """The plugin refuses to run on a database another asyncpay writes, saying so in one line."""
    from test_cln_plugin import FakePlugin, _emulated_rpc, _init

    if is_postgres(store_target):
        import asyncpay.storage.postgres as pg

        monkeypatch.setattr(pg, "LOCK_WAIT", 0)
    import asyncpay.storage.sqlite as sq

    monkeypatch.setattr(sq, "LOCK_WAIT", 0)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom asyncpay.store import Store\n"
         f"s = Store({store_target!r})\nprint('ready', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "ready\n"
        fake = FakePlugin(_emulated_rpc())
        answer = _init(monkeypatch, fake, tmp_path, **{"asyncpay-db": store_target})
        reason = answer["disable"]
        assert "StoreLocked" in reason and "another asyncpay" in reason and "\n" not in reason
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_lost_lock_session_stops_the_writes(store_target, monkeypatch):
    """PostgreSQL drops the advisory lock with its session (a server restart, a cut
    connection): the store then refuses to write instead of writing unguarded."""
    s = Store(store_target)
    s.bump("before")
    if s.kind == "sqlite":  # a flock lives as long as the process: nothing to lose
        s.close()
        return
    import hashlib

    import psycopg

    import asyncpay.storage.postgres as pg

    monkeypatch.setattr(pg, "LOCK_CHECK_INTERVAL", 0)
    database, schema = s.backend.where.split("/")[-2:]
    key = int.from_bytes(hashlib.sha256(f"asyncpay/{database}/{schema}".encode()).digest()[:8], "big")
    with psycopg.connect(store_target, autocommit=True) as admin:
        [(pid,)] = admin.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s AND objid = %s "
            "AND objsubid = 1", (key >> 32, key & 0xFFFFFFFF)).fetchall()
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    with pytest.raises(StoreLocked, match="lost the advisory lock"):
        s.bump("after")
    with pytest.raises(StoreLocked, match="lost the advisory lock"):
        with s.tx():
            s.bump("after")
    s.close()

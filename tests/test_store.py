"""The SQLite store: schema versions, transactions, persistence."""

import sqlite3

import pytest

from asyncpay.store import MIGRATIONS, Store


def test_fresh_store_is_at_the_latest_schema(tmp_path):
    s = Store(str(tmp_path / "a.sqlite3"))
    assert s.schema_version() == len(MIGRATIONS)
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_does_not_migrate_again(tmp_path):
    path = str(tmp_path / "a.sqlite3")
    s = Store(path)
    s.bump("x", 3)
    s.close()
    again = Store(path)
    assert again.counters() == {"x": 3}
    assert again.schema_version() == len(MIGRATIONS)


def test_newer_schema_is_refused(tmp_path):
    path = str(tmp_path / "a.sqlite3")
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        Store(path)


def test_transaction_rolls_back_as_a_whole(tmp_path):
    s = Store(str(tmp_path / "a.sqlite3"))
    with pytest.raises(ZeroDivisionError):
        with s.tx():
            s.bump("a")
            s.put_invoice("r", 0, b"inv", b"path", b"id", 1, 2, 3)
            raise ZeroDivisionError("abort the transaction")
    assert s.counters() == {} and s.list_invoices() == []


def test_nested_transactions_join(tmp_path):
    s = Store(str(tmp_path / "a.sqlite3"))
    with s.tx():
        s.bump("a")
        with s.tx():
            s.bump("b")
    assert s.counters() == {"a": 1, "b": 1}


def test_other_connection_sees_only_committed_state(tmp_path):
    path = str(tmp_path / "a.sqlite3")
    s = Store(path)
    reader = sqlite3.connect(path)
    with s.tx():
        s.bump("a")
        assert reader.execute("SELECT COUNT(*) FROM counters").fetchone()[0] == 0
    assert reader.execute("SELECT value FROM counters").fetchone()[0] == 1


def test_row_count(tmp_path):
    s = Store(str(tmp_path / "a.sqlite3"))
    s.put_invoice("r", 0, b"inv", b"path", b"id", 1, 2, 3)
    s.put_invoice("r", 1, b"inv", b"path", b"id", 1, 2, 3)
    s.touch_recipient("r", 1)
    assert (s.row_count("invoices"), s.row_count("recipients"), s.row_count("mailbox")) == (2, 1, 0)

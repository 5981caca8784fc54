"""Counters and served marks off the answers' path (issue 15): the
accumulator on its own, and the LSP's invoice_request path through the real
router, where nothing is written before the payer's static invoice is handed
to lightningd and the forwarded copy is built only after it."""

from __future__ import annotations

import time

import pytest

from asyncpay.bookkeeping import Bookkeeping
from asyncpay.cln import views
from asyncpay.store import Store
from test_lsp_flow import Inbox, handshake, lsp_network
from wallet import Wallet

NEVER = 3600.0  # a flush interval no test waits for: only explicit flushes write


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "books.sqlite3"))
    yield s
    s.close()


def put_invoice(store: Store, rid: str = "alice", slot: int = 0) -> None:
    store.put_invoice(rid, slot, b"inv", b"fwd", bytes(32), 0, 10**10, 0)


def served(store: Store, rid: str = "alice") -> int:
    return store.list_invoices(rid)[0]["served"]


def test_writes_through_until_started(store):
    put_invoice(store)
    books = Bookkeeping(store)
    books.bump("invoices_served")
    books.served("alice", 0)
    assert store.counters()["invoices_served"] == 1 and served(store) == 1
    assert books.pending() == 0 and not books.deferred


def test_started_it_accumulates_and_one_flush_writes_everything(store):
    put_invoice(store)
    put_invoice(store, "bob", 1)
    books = Bookkeeping(store)
    books.start(NEVER)
    try:
        for _ in range(5):
            books.bump("invoices_served")
            books.served("alice", 0)
        books.bump("dropped_no_invoice", 3)
        books.served("bob", 1)
        assert store.counters() == {} and served(store) == 0  # nothing on disk yet
        assert books.pending() == 4
        books.flush()
        assert books.flushes == 1 and books.pending() == 0
        assert store.counters() == {"invoices_served": 5, "dropped_no_invoice": 3}
        assert (served(store), served(store, "bob")) == (5, 1)
        books.flush()  # nothing pending: no transaction
        assert books.flushes == 1
    finally:
        books.stop()


def test_background_thread_flushes_on_its_own(store):
    books = Bookkeeping(store)
    books.start(0.01)
    try:
        books.bump("sent_static_invoice")
        deadline = time.monotonic() + 10
        while store.counters().get("sent_static_invoice") != 1:
            assert time.monotonic() < deadline, "never flushed"
            time.sleep(0.01)
    finally:
        books.stop()


def test_stop_writes_what_is_left_and_writes_through_after(store):
    books = Bookkeeping(store)
    books.start(NEVER)
    books.bump("a", 2)
    assert books.stop() is True
    assert store.counters() == {"a": 2}
    books.bump("a")
    assert store.counters() == {"a": 3} and not books.deferred


def test_a_failed_flush_loses_nothing(store, monkeypatch):
    put_invoice(store)
    books = Bookkeeping(store)
    books.start(NEVER)
    try:
        books.bump("x", 4)
        books.served("alice", 0)
        real = store.mark_served

        def broken(*a):
            raise OSError("disk full")

        monkeypatch.setattr(store, "mark_served", broken)
        with pytest.raises(OSError):
            books.flush()
        assert store.counters() == {} and books.pending() == 2  # rolled back, kept for the next flush
        books.bump("x")
        monkeypatch.setattr(store, "mark_served", real)
        books.flush()
        assert store.counters() == {"x": 5} and served(store) == 1
    finally:
        books.stop()


def test_stop_gives_up_when_the_store_stays_busy(store):
    import threading

    lock = threading.RLock()
    books = Bookkeeping(store, lock)
    books.start(NEVER)
    books.bump("x")
    held, release = threading.Event(), threading.Event()

    def hold_lock():
        with lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold_lock)
    t.start()
    held.wait(10)
    try:
        assert books.stop(timeout=0.05) is False  # a stuck call: shutdown does not hang
    finally:
        release.set()
        t.join()
    assert books.pending() == 1


# --- the LSP's invoice_request path through the router ------------------------

def test_nothing_is_written_before_the_static_invoice_and_the_forward_is_built_after(tmp_path):
    net, lsp, rnode, pnode, asyncpay = lsp_network(tmp_path)
    _, rinbox, offer, invoice = handshake(lsp, rnode, asyncpay)
    asyncpay.books.start(NEVER)  # as Node.start does in the plugin
    events: list[tuple] = []
    real_inject, real_send = asyncpay.inject, asyncpay.lsp.server._send

    def on_disk():
        return asyncpay.store.counters(), asyncpay.store.list_invoices(rnode.id)[0]["served"]

    def inject(action):
        events.append(("inject", action.purpose, on_disk()))
        return real_inject(action)

    def send(dest, payload, purpose):
        events.append(("build", purpose))
        return real_send(dest, payload, purpose)

    asyncpay.inject, asyncpay.lsp.server._send = inject, send
    payer = Wallet(pnode.node_id)
    pinbox = Inbox(pnode, payer)
    req, (pk, pkt) = payer.invoice_request(offer)
    before = on_disk()
    pnode.rpc.call("injectonionmessage", {"path_key": pk.hex(), "message": pkt.hex()})
    assert pinbox.take().static_invoice == invoice.encode()
    assert rinbox.take().invoice_request == req.encode()  # the recipient is online: it gets the copy
    assert [e[:2] for e in events] == [("build", "static_invoice"), ("inject", "static_invoice"),
                                       ("build", "forward_invoice_request"), ("inject", "forward_invoice_request")]
    assert events[1][2] == before  # no counter, no served mark written before the payer's answer left
    assert asyncpay.store.counters().get("invoices_served", 0) == 0  # still in memory
    assert asyncpay.store.list_invoices(rnode.id)[0]["served"] == 0

    # What the operator reads brings the counters in first.
    status = views.status(asyncpay, int(time.time()))
    assert status["server"]["invoices_served"] == 1
    assert status["sent"] == {"offer_paths": 1, "static_invoice_persisted": 1, "static_invoice": 1,
                              "forward_invoice_request": 1}
    assert asyncpay.store.list_invoices(rnode.id)[0]["served"] == 1

    # A clean stop writes what the last interval accumulated.
    pnode.rpc.call("injectonionmessage", dict(zip(("path_key", "message"),
                                                  (x.hex() for x in payer.invoice_request(offer)[1]))))
    assert pinbox.take().static_invoice == invoice.encode()
    asyncpay.stop()
    assert asyncpay.store.counters()["invoices_served"] == 2
    assert asyncpay.store.list_invoices(rnode.id)[0]["served"] == 2
    assert not asyncpay.books.deferred
    assert net is not None

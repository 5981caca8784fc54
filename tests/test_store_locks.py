"""The process's one-writer locks (``storage.base.ProcessLocks``): a store
closed by its finalizer while another store of the same thread is taking its
lock (the garbage collector runs finalizers wherever it likes) must not
deadlock that thread (it hung the PostgreSQL suite)."""

from __future__ import annotations

import threading

from asyncpay.storage.base import HeldLock, ProcessLocks


def test_a_release_inside_a_take_on_the_same_thread_does_not_hang():
    locks = ProcessLocks()
    released = []
    locks.acquire("old", lambda: HeldLock(lambda: released.append("old")))

    def take() -> HeldLock:
        locks.release("old")  # what a finalizer run by the GC here does
        return HeldLock(lambda: None)

    t = threading.Thread(target=lambda: locks.acquire("new", take), daemon=True)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "acquire deadlocked on a release from inside take"
    assert released == ["old"]
